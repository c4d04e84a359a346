//! Orchestrators: how a run's due operations are scheduled. Every built-in one is the same ready-queue scheduler
//! with a different concurrency, priority and failure policy, and every one runs operations through the shared
//! executor, so every policy (retries, timeouts, hooks, conditions, transactions) applies on every path.
//!
//! | orchestrator | concurrency | on a failure |
//! |---|---|---|
//! | [`Sequential`] (default) | 1, timestamp order | stop; with `--rollback-on-failure` only, roll back this run's Rollbackable operations, in reverse |
//! | [`Batch`] | `--concurrency` | start nothing more; let running ones finish |
//! | [`TransactionalBatch`] | `--concurrency` | stop; roll back *every* operation this run completed, in reverse completion order; report what could not be undone |
//! | [`AllowedToFailBatch`] | `--concurrency` | go on; the run fails if an operation that is not `allowed_to_fail` failed |
//! | [`DependencyGraph`] | `--concurrency` | go on with other branches; the failed operation's dependents do not run |
//! | [`Scheduled`] | 1 | as [`Sequential`]; runs due `execute_at` / `delay` operations |
//!
//! Only [`TransactionalBatch`] undoes work without being asked.
//!
//! All of them start an operation the moment its last dependency has finished (a ready queue, not waves) and
//! never before. [`DependencyGraph`] picks, among ready operations, the one with the longest chain of dependents
//! first, which keeps a bounded pool close to the critical path. A failed operation's dependents stay pending in
//! the ledger, so that they run once it has been fixed; the report lists them as skipped, with the reason.

pub(crate) mod dispatch;
pub(crate) mod ready_queue;
pub(crate) mod run;

use std::sync::Arc;

pub use crate::orchestrator::ready_queue::{
    AllowedToFailBatch, Batch, DependencyGraph, Scheduled, Sequential, TransactionalBatch,
};
pub use crate::orchestrator::run::{Orchestrator, Run};
pub use crate::plan::Due;

/// The built-in orchestrator of a name: `sequential`, `batch`, `transactional`, `allowed-to-fail`, `graph`,
/// `scheduled`.
pub fn by_name(name: &str) -> Option<Arc<dyn Orchestrator>> {
    Some(match name {
        "sequential" => Arc::new(Sequential),
        "batch" => Arc::new(Batch),
        "transactional" | "transactional-batch" => Arc::new(TransactionalBatch),
        "allowed-to-fail" | "allowed-to-fail-batch" => Arc::new(AllowedToFailBatch),
        "graph" | "dependency-graph" => Arc::new(DependencyGraph),
        "scheduled" => Arc::new(Scheduled),
        _ => return None,
    })
}

/// The names [`by_name`] knows.
pub const NAMES: &[&str] = &[
    "sequential",
    "batch",
    "transactional",
    "allowed-to-fail",
    "graph",
    "scheduled",
];
