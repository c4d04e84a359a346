//! Events of a run, for `Sequencer::subscribe()`.

use serde::Serialize;

/// Something that happened during a run, from [`Sequencer::subscribe`](crate::Sequencer::subscribe). The CLI's
/// live output is printed from these; serialized, an event is JSON with an `"event"` tag.
///
/// ```
/// use sequencer::Event;
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000")]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sequencer::SequencerError> {
/// # let ledger = sequencer::testing::ledger(sequencer::Sequencer::builder().registry(ops::registry())).await?;
/// # let seq = &ledger.sequencer;
/// let mut events = seq.subscribe(); // a tokio broadcast receiver: every run from now on
/// seq.execute_all().await?;
/// let mut names = Vec::new();
/// while let Ok(event) = events.try_recv() {
///     if let Event::OperationSucceeded { name, .. } = &event {
///         names.push(name.clone());
///     }
/// }
/// assert_eq!(names, ["2024_01_15_120000_create_users"]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run starts with this many pending operations.
    OperationsStarted {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
        /// The batch number.
        batch: i64,
        /// Pending operations.
        count: usize,
    },
    /// An operation starts an attempt.
    OperationStarted {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
        /// Ledger name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A task run starts an attempt (after its [`Event::OperationStarted`]), with its tags: the task's fixed
    /// `tags = [..]` and those its `tags = f` computed from the run's data.
    TaskStarted {
        /// How the run was started: a worker, or `dispatch_sync` (`execute`).
        via: Via,
        /// The task's ledger name.
        name: String,
        /// The run.
        run: i64,
        /// Attempt number, from 1.
        attempt: u32,
        /// The run's tags.
        tags: Vec<String>,
    },
    /// A running operation holds at a checkpoint after `pause NAME`, until `resume NAME`.
    OperationPaused {
        /// How the run was started.
        via: Via,
        /// Ledger name.
        name: String,
    },
    /// A paused operation goes on after `resume NAME`.
    OperationResumed {
        /// How the run was started.
        via: Via,
        /// Ledger name.
        name: String,
        /// How long it held, milliseconds.
        paused_ms: u64,
    },
    /// An operation's `throttle_on` condition held it back at a checkpoint; it goes on now.
    OperationThrottled {
        /// How the run was started.
        via: Via,
        /// Ledger name.
        name: String,
        /// How long it backed off, milliseconds.
        throttled_ms: u64,
    },
    /// An operation reported progress.
    OperationProgress {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
        /// Ledger name.
        name: String,
        /// Units done.
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// An operation completed.
    OperationSucceeded {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
        /// Ledger name.
        name: String,
        /// How long it ran.
        duration_ms: u64,
    },
    /// An attempt failed and another follows.
    OperationRetrying {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
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
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
        /// Ledger name.
        name: String,
        /// The error.
        error: String,
        /// `allowed_to_fail`: the run goes on.
        allowed_to_fail: bool,
    },
    /// An operation stopped at a checkpoint because `cancel NAME` asked it to (recorded `interrupted`; `retry`
    /// resumes it from its checkpoint).
    OperationCancelled {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
        /// Ledger name.
        name: String,
        /// Why.
        reason: String,
    },
    /// An operation was skipped.
    OperationSkipped {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
        /// Ledger name.
        name: String,
        /// Why.
        reason: String,
    },
    /// An operation was rolled back.
    OperationRolledBack {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
        /// Ledger name.
        name: String,
    },
    /// A run ended.
    OperationsEnded {
        /// How the run was started: `process`, `migrate`, a worker, `execute`, `retry`, `rollback`.
        via: Via,
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
    /// One migration is about to be applied (the operations planned before it have completed).
    MigrationStarted {
        /// Its version.
        version: i64,
        /// Its description.
        description: String,
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
    /// `process --isolate --wait`: another process holds the isolation lock, and this one waits for it (sent once
    /// per wait).
    WaitingForLock {
        /// Who holds it, `HOST (pid N)`, when the ledger knows.
        holder: Option<String>,
        /// The longest it waits, in seconds; `None`: until the lock is free.
        at_most_secs: Option<u64>,
    },
    /// `work`: the worker has nothing to run and waits for jobs on its queue (and for due deferred operations):
    /// said when it first has nothing to do, then at most once a minute while it stays idle.
    WorkerWaiting {
        /// The queue it serves.
        queue: String,
        /// Seconds it has had nothing to do.
        idle_secs: u64,
    },
    /// A member of a recorded batch or chain ended: how far the batch is.
    BatchProgress {
        /// The batch's id.
        id: i64,
        /// Its name, if it has one.
        name: Option<String>,
        /// Members that ended.
        done: i64,
        /// Members in all.
        total: i64,
        /// Members that failed.
        failed: i64,
    },
    /// Every member of a recorded batch or chain ended; its `then` / `finally` callbacks run now.
    BatchEnded {
        /// The batch's id.
        id: i64,
        /// Its name, if it has one.
        name: Option<String>,
        /// Members in all.
        total: i64,
        /// Members that failed.
        failed: i64,
        /// Members not run or skipped.
        skipped: i64,
        /// It was cancelled (by a member, or by a failure without `allow_failures`).
        cancelled: bool,
    },
    /// `process --dispatch`: no worker has taken the operation's job yet (first after 10 s, then every minute).
    WaitingForWorker {
        /// Ledger name.
        name: String,
        /// The queue it waits on.
        queue: String,
        /// Seconds since it was queued.
        waited_secs: u64,
    },
}

/// How a run of operations was started, as every operation event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `process` (`Sequencer::process`, `execute_all`, `scheduled`).
    Process,
    /// `migrate`, between the schema migrations.
    Migrate,
    /// A `work` process, from the queue.
    Worker,
    /// `execute NAME` (`Sequencer::execute`).
    Execute,
    /// `retry NAME`.
    Retry,
    /// `rollback` (or `migrate revert`).
    Rollback,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Process => "process",
            Via::Migrate => "migrate",
            Via::Worker => "worker",
            Via::Execute => "execute",
            Via::Retry => "retry",
            Via::Rollback => "rollback",
        })
    }
}
