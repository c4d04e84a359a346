//! # sequencer
//!
//! Declare one-time *operations* — data backfills, deploy tasks, fix-ups — as annotated async functions;
//! sequencer validates them at compile time and runs each exactly once, in the right order.
//!
//! ```
//! use sequencer::prelude::*;
//!
//! #[sequencer::operations]
//! mod ops {
//!     use sequencer::prelude::*;
//!
//!     #[operation(timestamp = "2024_01_15_120000", rollback = drop_users)]
//!     async fn create_users(ctx: &Ctx) -> Result<()> {
//!         Ok(())
//!     }
//!
//!     async fn drop_users(ctx: &Ctx) -> Result<()> {
//!         Ok(())
//!     }
//!
//!     #[operation(timestamp = "2024_01_15_120001", depends_on = [create_users], retries = 5, backoff = [1, 5, 10])]
//!     async fn backfill_orders(ctx: &Ctx) -> Result<()> {
//!         Ok(())
//!     }
//! }
//!
//! let order: Vec<_> = ops::registry().ordered().unwrap().iter().map(|op| op.meta.name).collect();
//! assert_eq!(order, ["2024_01_15_120000_create_users", "2024_01_15_120001_backfill_orders"]);
//! ```
//!
//! ## Two ways to declare operations
//! 1. An inline module marked [`operations`]: the attribute sees every `#[operation]` function in it, so
//!    unknown dependencies, cycles and duplicate names are compile errors pointing at the offending token.
//! 2. A directory of files, as Laravel keeps `database/operations/`: `#[sequencer::operations("operations")]
//!    mod ops {}` reads `operations/YYYY_MM_DD_HHMMSS_name.rs` (relative to the crate root), each file holding
//!    one `#[operation(...)] pub async fn handle(ctx: &Ctx) -> Result<()>` and optionally
//!    `pub async fn rollback(ctx: &Ctx) -> Result<()>`; the timestamp and name come from the file name, and
//!    `depends_on = [other]` names another file by its name part. A file that does not follow the pattern is a
//!    compile error naming it. Edits to a file rebuild; for a *new* file to trigger a rebuild, add
//!    `println!("cargo:rerun-if-changed=operations");` to your `build.rs`.
//!
//! ## Keys of `#[operation(...)]`
//! | key | meaning |
//! |---|---|
//! | `timestamp = "2024_01_15_120000"` | order key (`YYYY_MM_DD_HHMMSS` or `YYYYMMDDHHMMSS`), a real date-time; required inline |
//! | `name = "..."` | ledger name; default `<timestamp>_<fn name>` |
//! | `depends_on = [op, super::m::op, "ledger_name", migration(20240115120000)]` | ordering beyond timestamps |
//! | `rollback = undo_fn` | the operation can be undone |
//! | `allowed_to_fail` | failure is recorded but does not fail the run |
//! | `retries = 5` | total tries |
//! | `backoff = 30`, `"2m"`, `[1, 5, 10]` | wait between tries (seconds or humantime) |
//! | `retry_until = "1h"`, `max_exceptions = 3` | retry limits |
//! | `timeout = "2m"`, `fail_on_timeout` | time limit; a timeout is retried unless `fail_on_timeout` |
//! | `execute_at = "02:00"`, `"2026-12-01T02:00:00Z"`, `due_fn`; or `delay = "10m"` | scheduled |
//! | `asynchronous`, `queue = "name"` | run by `work` processes from the durable queue |
//! | `unique = "key"`, `unique_for = "1h"` | at most one run holds the key |
//! | `middleware = [rate_limited("api", 60/min), without_overlapping("k"), throttle_exceptions(10, "5m")]` | middleware |
//! | `tags = ["billing"]` | filter runs with `--tags` |
//! | `before = f`, `after = f`, `failed = f` | lifecycle hooks |
//! | `transaction` | the operation's writes commit with its ledger row |
//! | `encrypted` | payload and recorded context encrypted at rest |
//! | `environments = ["production"]`, `should_run = f` | conditional execution |
//! | `idempotent` | safe to run again after an interruption |
#![warn(missing_docs)]

/// Marks a module of operations: inline, or loaded from a directory. See the [crate docs](crate).
pub use sequencer_macros::operations;

/// Declares one operation. See the [crate docs](crate) for every key.
pub use sequencer_macros::operation;

pub use sequencer_core::{graph, Timestamp, TimestampError};
pub use sequencer_runtime::*;

/// The sqlx version the ledger uses, for queries inside operations (`ctx.pool()` is a `sqlx::AnyPool`).
pub use sqlx;

#[cfg(feature = "cli")]
pub mod cli;
pub mod testing;

/// The user guides, from the repository's `docs/` directory. Their Rust snippets are doc tests of this crate,
/// so every one of them compiles and runs against the API documented here.
///
/// Links between guides point at the Markdown files (`declaring-operations.md`), as on GitHub; here, the
/// guides are these modules:
///
/// | guide | for |
/// |---|---|
/// | [`getting_started`](crate::guides::getting_started) | install, a first operation, a first run, `status`, what the ledger records |
/// | [`declaring_operations`](crate::guides::declaring_operations) | both declaration forms, every attribute key, its default and its compile errors |
/// | [`orchestrators`](crate::guides::orchestrators) | sequential, batch, transactional, allowed-to-fail, graph, scheduled; custom orchestrators |
/// | [`advanced_operations`](crate::guides::advanced_operations) | retries, timeouts, batches, chains, conditions, hooks, middleware, transactions |
/// | [`migrations`](crate::guides::migrations) | the `migrate` command and running operations between schema migrations |
/// | [`workers`](crate::guides::workers) | queues, `work` processes, deferred operations, encryption keys |
/// | [`testing`](crate::guides::testing) | testing your operations |
/// | [`cli`](crate::guides::cli) | every command, flag, environment variable and exit code |
/// | [`ledger_schema`](crate::guides::ledger_schema) | the ledger's tables, columns and statuses |
pub mod guides {
    #[doc = include_str!("../../docs/getting-started.md")]
    pub mod getting_started {}
    #[doc = include_str!("../../docs/declaring-operations.md")]
    pub mod declaring_operations {}
    #[doc = include_str!("../../docs/orchestrators.md")]
    pub mod orchestrators {}
    #[doc = include_str!("../../docs/advanced-operations.md")]
    pub mod advanced_operations {}
    #[doc = include_str!("../../docs/migrations.md")]
    pub mod migrations {}
    #[doc = include_str!("../../docs/workers.md")]
    pub mod workers {}
    #[doc = include_str!("../../docs/testing.md")]
    pub mod testing {}
    #[cfg(feature = "cli")]
    #[doc = include_str!("../../docs/cli.md")]
    pub mod cli {}
    #[doc = include_str!("../../docs/ledger-schema.md")]
    pub mod ledger_schema {}
}

/// The README's snippets, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The names an operation module needs: `use sequencer::prelude::*;`.
pub mod prelude {
    pub use crate::{operation, Ctx, Error, Result, Skip};
}

#[doc(hidden)]
pub mod __private {
    pub use sequencer_runtime::glue::{condition_future, handler_future};
    pub use sequencer_runtime::{
        Backoff, BoxFuture, Ctx, Dependency, Error, Hooks, Middleware, Operation, OperationDef,
        OperationMeta, Registry, Result, RetryPolicy, Schedule, SourceLocation, Timestamp, Unique,
    };
}
