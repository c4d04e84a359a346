//! Events of a run, for `Sequencer::subscribe()`.

use serde::Serialize;

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run starts with this many pending operations.
    OperationsStarted {
        /// The batch number.
        batch: i64,
        /// Pending operations.
        count: usize,
    },
    /// An operation starts an attempt.
    OperationStarted {
        /// Ledger name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// An operation reported progress.
    OperationProgress {
        /// Ledger name.
        name: String,
        /// Units done.
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// An operation completed.
    OperationSucceeded {
        /// Ledger name.
        name: String,
        /// How long it ran.
        duration_ms: u64,
    },
    /// An attempt failed and another follows.
    OperationRetrying {
        /// Ledger name.
        name: String,
        /// The attempt that failed.
        attempt: u32,
        /// Wait before the next.
        delay_ms: u64,
        /// The error.
        error: String,
    },
    /// An operation failed for good.
    OperationFailed {
        /// Ledger name.
        name: String,
        /// The error.
        error: String,
        /// `allowed_to_fail`: the run goes on.
        allowed_to_fail: bool,
    },
    /// An operation was skipped.
    OperationSkipped {
        /// Ledger name.
        name: String,
        /// Why.
        reason: String,
    },
    /// An operation was rolled back.
    OperationRolledBack {
        /// Ledger name.
        name: String,
    },
    /// A run ended.
    OperationsEnded {
        /// The batch number.
        batch: i64,
        /// Completed operations.
        completed: usize,
        /// Failed operations.
        failed: usize,
        /// Skipped operations.
        skipped: usize,
    },
    /// A run found nothing to do.
    NoPendingOperations,
    /// `migrate` starts applying this many migrations.
    MigrationsStarted {
        /// Pending migrations.
        count: usize,
    },
    /// One migration was applied.
    MigrationEnded {
        /// Its version.
        version: i64,
        /// Its description.
        description: String,
    },
    /// `migrate` ended.
    MigrationsEnded {
        /// Migrations applied.
        applied: usize,
    },
    /// `migrate` found no pending migration.
    NoPendingMigrations,
}
