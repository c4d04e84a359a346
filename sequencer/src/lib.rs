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
//! Every key, its value forms, its default and its meaning are listed on the [`operation`] attribute; the
//! [declaring operations guide](crate::guides::declaring_operations) adds the compile error each mistake gives.
//!
//! ## Guides
//! The [`guides`] module holds the user guides (getting started, declaring operations, orchestrators, advanced
//! operations, migrations, workers, testing, the CLI and the ledger schema); every Rust snippet in them is a doc
//! test of this crate.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Marks a module of operations: inline, or loaded from a directory; generates its `registry()` function.
///
/// | form | what it does |
/// |---|---|
/// | `#[sequencer::operations] mod ops { … }` | every `#[operation(...)]` fn of the inline module is an operation; the attribute sees them all, so unknown dependencies, cycles and duplicate names are compile errors |
/// | `#[sequencer::operations("operations")] mod ops {}` | loads `operations/YYYY_MM_DD_HHMMSS_name.rs` (relative to the crate root), one operation per file: `#[operation(...)] pub async fn handle(ctx: &Ctx) -> Result<()>` and optionally `pub async fn rollback(ctx: &Ctx) -> Result<()>`; the timestamp and name come from the file name |
/// | `crate = "path"` (with either form) | the path sequencer is reachable under, for a renamed dependency: `#[seq::operations(crate = "seq")]`; default `::sequencer` |
///
/// Both forms generate `pub fn registry() -> sequencer::Registry` in the module and, for each operation, a
/// companion type named after its function (for the directory form, `ops::<name>::handle`) that implements
/// [`Operation`]: other modules name it in `depends_on`, and the [`testing`] assertions take it.
///
/// A new file in an operations directory triggers a rebuild only if `build.rs` says
/// `println!("cargo:rerun-if-changed=operations");`. Everything about both forms is in the
/// [declaring operations guide](crate::guides::declaring_operations).
///
/// Mistakes across operations are compile errors on the token at fault, every one of a module at once:
///
/// ```compile_fail
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000", depends_on = [b])]
///     async fn a(_ctx: &Ctx) -> Result<()> { Ok(()) }
///
///     // error: dependency cycle: 2024_01_15_120001_b → 2024_01_15_120000_a → 2024_01_15_120001_b
///     #[operation(timestamp = "2024_01_15_120001", depends_on = [a])]
///     async fn b(_ctx: &Ctx) -> Result<()> { Ok(()) }
/// }
/// # fn main() {}
/// ```
pub use sequencer_macros::operations;

/// Declares one operation: `#[operation(key = value, flag, …)] async fn name(ctx: &Ctx) -> Result<()>`, inside a
/// [`operations`] module (or on `pub async fn handle` in a file of an operations directory).
///
/// The function must be a free, non-generic `async fn` taking `&Ctx` and returning `Result<()>`
/// ([`Result`]), or `Result<(), E>` for any error type `E` that converts into [`Error`]. Return
/// `Err(Skip("reason"))` (or `ctx.skip("reason")`) to end it as skipped.
///
/// Keys come in any order, each at most once. A *duration* is an integer number of seconds (`30`) or a humantime
/// string (`"90s"`, `"2m"`, `"1h 30m"`, `"500ms"`). A *flag* is written alone, or as `= true` / `= false`.
/// Every key but `timestamp` (inline form) is optional.
///
/// | key | value | default | meaning |
/// |---|---|---|---|
/// | `timestamp` | `"YYYY_MM_DD_HHMMSS"` or `"YYYYMMDDHHMMSS"`, a real date-time | required inline; from the file name in a directory (where the key is an error) | the order key; equals the sqlx migration version of the same second |
/// | `name` | 1–191 ASCII letters, digits, `_ - . :` | `<timestamp>_<fn name>` | the ledger name, unique in a registry (not allowed in a directory file) |
/// | `depends_on` | `[op, super::m::op, "ledger_name", migration(20240115120000)]` | `[]` | operations (and schema migrations) that must have completed or been skipped first |
/// | `rollback` | a function `async fn(ctx: &Ctx) -> Result<()>` | none (directory: a `rollback` fn in the file) | makes the operation undoable (`rollback` command, rolling orchestrators) |
/// | `allowed_to_fail` | flag | off | a failure is recorded but does not fail the run |
/// | `retries` | integer ≥ 1 | `1` (unlimited when only `retry_until` is set) | total tries, not extra retries |
/// | `backoff` | duration, or a non-empty list `[1, 5, 10]` / `["1s", "2m"]` | no wait | wait before each retry; the n-th retry waits the n-th entry, later ones the last; needs `retries` ≥ 2 or `retry_until` |
/// | `retry_until` | duration | none | no retry starts later than this after the run started |
/// | `max_exceptions` | integer ≥ 1 | none | fail after this many failed attempts; needs `retries` or `retry_until` |
/// | `timeout` | duration > 0 | none | limit per attempt (hooks included); a timed-out attempt is retried if tries remain |
/// | `fail_on_timeout` | flag | off | a timeout fails the operation at once; needs `timeout` |
/// | `estimate` | duration > 0 | none | expected run time until the ledger has recorded one; the `graph` orchestrator starts the longest remaining work first |
/// | `execute_at` | `"HH:MM"` / `"HH:MM:SS"` (UTC), `"02:00 Europe/Berlin"` (an IANA time zone, checked at compile time), `"2026-12-01T02:00:00Z"`, or a `fn() -> SystemTime` | none | not run before that time (once, not a cron schedule) |
/// | `delay` | duration | none | due this long after the first run that sees it pending; contradicts `execute_at` |
/// | `asynchronous` | flag | off | `process` puts it on a durable queue; `work` processes run it |
/// | `queue` | non-empty string | `"default"` | the queue of an asynchronous operation; needs `asynchronous` |
/// | `unique` | non-empty string | none | at most one run holds this key at a time, across processes; a held key leaves the operation pending |
/// | `unique_for` | duration | 1 h | the longest the key is held if its holder dies; needs `unique` |
/// | `middleware` | `[rate_limited("api"), rate_limited("api", 60/min), without_overlapping("k").release_after("60s").expire_after("180s"), throttle_exceptions(10, "5m").backoff("5s").by("key"), audit]` | `[]` | run-time policies, in the order listed (`expire_after` defaults to 1 h); a bare name is a `Layer` registered with `.named_layer("audit", layer)` |
/// | `tags` | list of distinct non-empty strings | `[]` | `process --tags a,b` runs only operations with one of them |
/// | `before`, `after` | a function `async fn(ctx: &Ctx) -> Result<()>` | none | hooks around every attempt (`after` only after a success) |
/// | `failed` | a function `async fn(ctx: &Ctx, error: &Error) -> Result<()>` | none | runs once, after the last attempt failed |
/// | `transaction` | flag | off | `ctx.tx()` (or `ctx.postgres_tx()`, …) is a transaction committed together with the `completed` ledger row |
/// | `encrypted` | flag | off | its recorded errors and checkpoints are sealed with AES-256-GCM (`SEQUENCER_KEY` needed at start-up) |
/// | `environments` | list of distinct non-empty strings | `[]` (every environment) | elsewhere (`--env`, `SEQUENCER_ENV`) it is recorded skipped |
/// | `should_run` | a function `async fn(ctx: &Ctx) -> bool` | none | `false` records it skipped |
/// | `idempotent` | flag | off | safe to run again: an `interrupted` run is picked up by the next `process` |
///
/// A function named by a key (`rollback`, hooks, `should_run`, `execute_at`) is a function of the same module
/// (or file), or a path to one elsewhere. Each mistake is a compile error on the token at fault; the
/// [declaring operations guide](crate::guides::declaring_operations) quotes every message, and the
/// [advanced operations guide](crate::guides::advanced_operations) explains what each key does at run time.
///
/// ```
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000", rollback = drop_users, idempotent, tags = ["setup"])]
///     pub async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     async fn drop_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     #[operation(
///         timestamp = "20240115120100",
///         name = "backfill-orders",
///         depends_on = [create_users, migration(20240101000000)],
///         retries = 5,
///         backoff = ["1s", "5s", "30s"],
///         retry_until = "1h",
///         max_exceptions = 4,
///         timeout = "2m",
///         unique = "orders",
///         unique_for = "2h",
///         middleware = [rate_limited("api", 60/min), without_overlapping("orders").release_after(10)],
///         before = announce,
///         failed = alert,
///         environments = ["production", "staging"],
///         should_run = enabled,
///         transaction,
///     )]
///     async fn backfill_orders(ctx: &Ctx) -> Result<()> {
///         let _tx = ctx.tx().await?;
///         Ok(())
///     }
///
///     async fn announce(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     async fn alert(_ctx: &Ctx, _error: &Error) -> Result<()> {
///         Ok(())
///     }
///
///     async fn enabled(_ctx: &Ctx) -> bool {
///         true
///     }
///
///     #[operation(timestamp = "2024_01_15_120200", asynchronous, queue = "mail", delay = "10m", allowed_to_fail)]
///     async fn send_digest(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// use sequencer::Operation;
/// assert_eq!(ops::create_users::NAME, "2024_01_15_120000_create_users");
/// let registry = ops::registry();
/// let backfill = registry.get("backfill-orders").unwrap();
/// assert_eq!(backfill.meta.retry.tries, 5);
/// assert!(backfill.meta.transaction);
/// ```
pub use sequencer_macros::operation;

/// Declares a task: an operation that carries data, run each time it is dispatched, on the workers
/// (`seq.dispatch::<ops::NAME>(args)`) or here (`seq.dispatch_sync::<ops::NAME>(args)`), through the same
/// executor as operations. It goes inside a [`operations`] module, beside operations:
/// `#[task(key = value, …)] async fn name(ctx: &Ctx, args: Args) -> Result<()>`, where
/// `Args: Serialize + DeserializeOwned` is the data each run carries (recorded in the ledger with the run).
///
/// The keys are those of [`operation`] that mean something for a run of data — `name` (default: the
/// function's name), `queue`, `retries`, `backoff`, `retry_until`, `max_exceptions`, `timeout`,
/// `fail_on_timeout`, `unique_for`, `middleware`, `before`, `after`, `failed`, `should_run`, `throttle_on`,
/// `transaction`, `encrypted` (the arguments are sealed in the ledger), `environments`, `idempotent` — and
/// the keys computed from each run's data, each a function of `&Args` of the module:
///
/// | key | value | meaning |
/// |---|---|---|
/// | `unique` | `fn(&Args) -> String` (or a fixed `"key"`) | while a run with the key is queued or running, another dispatch with it is dropped (`dispatch` returns `None`) |
/// | `without_overlapping` | `fn(&Args) -> String` (or a fixed `"key"`) | runs with the same key never run at once: a worker puts the later one back on the queue |
/// | `rate_limit_key` | `fn(&Args) -> String` | the `rate_limited(..)` middleware counts per key |
/// | `tags` | `fn(&Args) -> Vec<String>` (or a list of strings) | the run's tags, in its [`Event::TaskStarted`] and its tracing span |
///
/// `timestamp`, `depends_on`, `rollback`, `execute_at`, `delay`, `asynchronous` and `allowed_to_fail` mean
/// nothing for a task: each is a compile error saying what to do instead. The
/// [advanced operations guide](crate::guides::advanced_operations) ("Tasks") has a whole example.
///
/// ```
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[derive(serde::Serialize, serde::Deserialize)]
///     pub struct Reprice {
///         pub customer_id: i64,
///     }
///
///     #[task(queue = "billing", retries = 3, backoff = [1, 5], timeout = "30s", unique = customer_key, tags = tags_of)]
///     pub async fn reprice(_ctx: &Ctx, args: Reprice) -> Result<()> {
///         assert!(args.customer_id > 0);
///         Ok(())
///     }
///
///     fn customer_key(args: &Reprice) -> String {
///         args.customer_id.to_string()
///     }
///
///     fn tags_of(args: &Reprice) -> Vec<String> {
///         vec![format!("customer:{}", args.customer_id)]
///     }
/// }
///
/// use sequencer::Task;
/// assert_eq!(ops::reprice::NAME, "reprice");
/// let task = ops::registry().task("reprice").unwrap();
/// assert_eq!(task.op.meta.retry.tries, 3);
/// let keys = (task.keys)(r#"{"customer_id": 42}"#).unwrap();
/// assert_eq!(keys.unique.as_deref(), Some("42"));
/// assert_eq!(keys.tags, ["customer:42"]);
/// ```
pub use sequencer_macros::task;

pub use sequencer_core::{graph, next_time_of_day, Timestamp, TimestampError};
pub use sequencer_runtime::*;

/// The sqlx version the ledger uses, for queries inside operations (`ctx.pool()` is a `sqlx::AnyPool`,
/// `ctx.postgres()` a `sqlx::PgPool`, …).
pub use sqlx;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "dashboard")]
pub mod dashboard;

/// The calling crate's name, version and description from its `Cargo.toml`, as an [`AppInfo`] for
/// [`SequencerBuilder::app`], so that the CLI's `--version` and `--help` show the application's.
///
/// ```
/// let builder = sequencer::Sequencer::builder().app(sequencer::app_info!());
/// let app = builder.app_info().expect("set");
/// assert_eq!(app.name, env!("CARGO_PKG_NAME"));
/// assert_eq!(app.version, env!("CARGO_PKG_VERSION"));
/// ```
#[macro_export]
macro_rules! app_info {
    () => {
        $crate::AppInfo::new(
            ::core::env!("CARGO_PKG_NAME"),
            ::core::env!("CARGO_PKG_VERSION"),
        )
        .about(::core::env!("CARGO_PKG_DESCRIPTION"))
    };
}
pub mod testing;

/// The user guides, from this crate's `docs/` directory. Their Rust snippets are doc tests of this crate,
/// so every one of them compiles, as shown, against the API documented here; those marked `no_run` (they need a
/// server, or would write `sequencer.db`) run in the `guides` suite of `tests/` on throw-away ledgers.
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
/// | `dashboard` (feature `dashboard`) | the web dashboard, its actions and security, and `/metrics` |
#[allow(clippy::needless_doctest_main)] // the guides show whole programs, `fn main` included
pub mod guides {
    #[doc = include_str!("../docs/getting-started.md")]
    pub mod getting_started {}
    #[doc = include_str!("../docs/declaring-operations.md")]
    pub mod declaring_operations {}
    #[doc = include_str!("../docs/orchestrators.md")]
    pub mod orchestrators {}
    #[doc = include_str!("../docs/advanced-operations.md")]
    pub mod advanced_operations {}
    #[doc = include_str!("../docs/migrations.md")]
    pub mod migrations {}
    #[doc = include_str!("../docs/workers.md")]
    pub mod workers {}
    #[doc = include_str!("../docs/testing.md")]
    pub mod testing {}
    #[cfg(feature = "cli")]
    #[doc = include_str!("../docs/cli.md")]
    pub mod cli {}
    #[doc = include_str!("../docs/ledger-schema.md")]
    pub mod ledger_schema {}
    #[cfg(feature = "dashboard")]
    #[doc = include_str!("../docs/dashboard.md")]
    pub mod dashboard {}
}

/// The README's snippets, compiled as doc tests.
#[cfg(doctest)]
#[allow(clippy::needless_doctest_main)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The names an operation module needs: `use sequencer::prelude::*;`.
pub mod prelude {
    pub use crate::{operation, task, Ctx, Error, Result, Skip};
}

#[doc(hidden)]
pub mod __private {
    pub use sequencer_runtime::glue::{
        condition_future, decode_args, failed_future, handler_future, task_args, task_tags,
    };
    pub use sequencer_runtime::{
        Backoff, BoxFuture, Ctx, Dependency, Error, Hooks, Middleware, Operation, OperationDef,
        OperationMeta, Registry, Result, RetryPolicy, Schedule, SourceLocation, Task, TaskDef,
        TaskKeys, Timestamp, Unique,
    };
}
