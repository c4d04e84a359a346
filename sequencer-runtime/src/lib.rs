//! The runtime of the `sequencer` crate: operation definitions, registries and their
//! start-up validation, the context an operation runs with, the executor, the orchestrators, the ledger and the
//! features built on them (workers, deferred operations, the migration strategy).
//!
//! Most users depend on the `sequencer` facade crate, which re-exports everything here.
//!
//! The modules, from the bottom up: the vocabulary ([`result`](crate::Result), `error`, `options`, `report`,
//! `plan`, `lease`, `events`, `ctx`, `registry`, [`crypto`], [`render`]), the [`ledger`], the executor, the
//! [`orchestrator`]s, the `Sequencer`, and the features on top (`worker`, `tasks`, `deferred`, `migrate`, `revert`), each adding an
//! `impl Sequencer` block. A module imports from the module that defines a name, never through this file.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batches;
pub mod crypto;
#[cfg(feature = "csv")]
mod csv_rows;
mod ctx;
mod deferred;
mod error;
mod events;
mod executor;
#[doc(hidden)]
pub mod glue;
mod handlers;
mod lease;
pub mod ledger;
mod migrate;
mod options;
pub mod orchestrator;
mod outline;
mod plan;
mod registry;
pub mod render;
mod report;
mod result;
mod revert;
mod sequencer;
pub mod strategy;
mod task_def;
mod task_runs;
mod tasks;
mod worker;

pub use crate::batches::BatchCtx;
#[cfg(feature = "csv")]
pub use crate::csv_rows::{CsvBatches, CsvRows};
pub use crate::ctx::{BatchHandle, BatchMember, Cancelled, Ctx, StateMap, TaskMember, TxGuard};
pub use crate::deferred::DeferredReport;
pub use crate::error::SequencerError;
pub use crate::events::{Event, Via};
pub use crate::executor::layer::{Layer, Next};
pub use crate::executor::watchdog::{DEFAULT_HARD_TIMEOUT_GRACE, HARD_TIMEOUT_EXIT};
pub use crate::ledger::CheckpointDb;
pub use crate::migrate::MigrateReport;
pub use crate::options::{
    only_environments, only_hosts, AppInfo, Cascade, Guard, Limit, LockWait, ProcessOptions,
    RollbackTarget, WorkOptions, DEFAULT_ACK_BATCH, DEFAULT_ACK_INTERVAL, DEFAULT_CONCURRENCY,
    DEFAULT_DATABASE_URL, DEFAULT_LEASE, DEFAULT_QUEUE,
};
pub use crate::orchestrator::ready_queue::{
    AllowedToFailBatch, Batch, DependencyGraph, Scheduled, Sequential, TransactionalBatch,
};
pub use crate::orchestrator::run::Orchestrator;
pub use crate::outline::{LatestRun, Outline};
pub use crate::registry::{
    BoxFuture, Condition, DueTime, FailedHook, Handler, Operation, OperationDef, Registry,
    RegistryBuilder, RegistryError,
};
#[allow(deprecated)]
pub use crate::report::OutcomeKind;
pub use crate::report::{Outcome, RunReport};
pub use crate::result::{Error, Result, Skip, Skipped};
pub use crate::revert::{RevertOptions, RevertReport, RevertStep};
pub use crate::sequencer::batch::{PendingBatch, PendingChain};
pub use crate::sequencer::builder::SequencerBuilder;
pub use crate::sequencer::listing::{
    estimate_eta, EtaBasis, StatusPage, StatusQuery, ETA_WINDOW_MS,
};
pub use crate::sequencer::status::{Preview, StatusEntry};
pub use crate::sequencer::Sequencer;
pub use crate::strategy::{
    ExecutionStrategy, Hybrid, MigrationStrategy, Strategy, WITH_MIGRATIONS,
};
pub use crate::task_def::{KeysFn, Task, TaskArgs, TaskDef, TaskKeys};
pub use crate::tasks::{TaskDispatch, TaskRun, TaskStatus};
pub use crate::worker::WorkReport;
pub use sequencer_core::{
    Backoff, Dependency, Hooks, Middleware, OperationMeta, RetryPolicy, Schedule, SourceLocation,
    Timestamp, Unique,
};
pub use tokio_util::sync::CancellationToken;
