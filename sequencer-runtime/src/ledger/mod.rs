//! The ledger: one row per operation run, error records, batches and locks, through sqlx on SQLite (embedded,
//! WAL), PostgreSQL and MySQL / MariaDB. Its own schema migrations are applied on first use.

// connection.rs defines `Ledger` and how it connects; this file only declares and re-exports. Each table's file
// adds an `impl Ledger` block, with every statement written beside the method that runs it and built by
// `Dialect::sql` (numbered for PostgreSQL there): runs.rs (operations, batches), recovery.rs (recovery of dead
// claims, renewals, rollback claims), progress.rs (a running operation's progress, checkpoint and cancellation),
// error_log.rs (errors), audit.rs (the dashboard's audit log), logs.rs (a run's `ctx.log` lines), native.rs (the backend's own pool, and the connections of either kind a `transaction`
// operation's statements run on), locks.rs (locks, rate_limits, throttles, the isolation lock), jobs.rs, deferred.rs;
// schema.rs creates them all.

mod audit;
pub(crate) mod connection;
pub(crate) mod deferred;
pub(crate) mod dialect;
pub(crate) mod error;
pub(crate) mod error_log;
pub(crate) mod jobs;
pub(crate) mod locks;
pub(crate) mod logs;
pub(crate) mod native;
mod progress;
mod recovery;
pub(crate) mod runs;
mod schema;

pub use audit::{AuditEntry, AuditRecord};
pub use connection::{
    new_claim_token, now_ms, pid_namespace, process_alive, redact, Ledger, Owner,
    DEFAULT_MAX_CONNECTIONS, TABLES,
};
pub use deferred::{DeferredRow, DeferredStatus};
pub use dialect::{number_placeholders, Dialect};
pub use error::{transient, LedgerError};
pub use error_log::ErrorRecord;
pub use jobs::{Job, JobStatus, OpenJob, RunningJob};
pub use locks::IsolationLock;
pub use logs::{LogLine, LOG_LINES_KEPT};
pub use native::{CheckpointDb, Conn, NativePool};
pub use runs::{Claim, Finish, LedgerRow, Status};
