//! The ledger: one row per operation run, error records, batches and locks, through sqlx on SQLite (embedded,
//! WAL), PostgreSQL and MySQL / MariaDB. Its own schema migrations are applied on first use.

// connection.rs defines `Ledger` and how it connects; this file only declares and re-exports. Each table's file
// adds an `impl Ledger` block, with every statement written beside the method that runs it and built by
// `Dialect::sql` (numbered for PostgreSQL there): runs.rs (operations, batches), recovery.rs (recovery of dead
// claims, renewals, rollback claims), progress.rs (a running operation's progress, checkpoint and cancellation),
// batches.rs and batch_members.rs (recorded batches and chains, their members), batch_callbacks.rs (the claim on
// a batch's callbacks), error_log.rs (errors), listing.rs (the operations a page at a time, progress samples), audit.rs (the dashboard's audit log), logs.rs (a run's `ctx.log` lines), native.rs (the backend's own pool, and the connections of either kind a `transaction`
// operation's statements run on), locks.rs (locks, rate_limits, throttles, the isolation lock), jobs.rs, acks.rs (the workers' batched take and
// acknowledgements), tasks.rs (task runs), deferred.rs, browse.rs (the dashboard's pages: batches, members, task runs, counts);
// schema.rs creates them all.

pub(crate) mod acks;
mod acks_pg;
mod audit;
mod batch_callbacks;
mod batch_members;
pub(crate) mod batches;
mod beats;
mod browse;
pub(crate) mod connection;
pub(crate) mod deferred;
pub(crate) mod dialect;
pub(crate) mod error;
pub(crate) mod error_log;
pub(crate) mod jobs;
pub(crate) mod listen;
pub(crate) mod listing;
pub(crate) mod locks;
pub(crate) mod logs;
pub(crate) mod native;
mod outline;
pub(crate) mod progress;
mod recovery;
pub(crate) mod runs;
mod schema;
mod take;
pub(crate) mod tasks;

pub use acks::{Ack, RunClaim, Taking};
pub use audit::{AuditEntry, AuditRecord};
pub use batches::{BatchId, BatchInfo, BatchKind, BatchMemberRow, MemberState};
pub use browse::{TaskRunRow, TaskRunsPage};
pub use connection::{
    new_claim_token, now_ms, pid_namespace, process_alive, redact, Ledger, Owner,
    DEFAULT_MAX_CONNECTIONS, TABLES,
};
pub use deferred::{DeferredRow, DeferredStatus};
pub use dialect::{number_placeholders, Dialect};
pub use error::{transient, LedgerError};
pub use error_log::ErrorRecord;
pub use jobs::{Job, JobStatus, OpenJob, RunningJob};
pub use listen::Listener;
pub use listing::{ProgressSample, RowsPage, NAMES_PER_STATEMENT};
pub use locks::IsolationLock;
pub use locks::{stored_key, KEY_COLUMN_CHARS};
pub use logs::{LogLine, LOG_LINES_KEPT};
pub use native::{CheckpointDb, Conn, NativePool};
pub use progress::ProgressUpdate;
pub use runs::{Claim, Finish, LedgerRow, Status};
pub use tasks::Available;
