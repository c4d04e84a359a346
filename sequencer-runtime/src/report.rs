//! What runs report: how each operation ended ([`Outcome`]) and what a run did ([`RunReport`]).

use serde::Serialize;

/// How an operation's run ended: what the executor returns, what [`RunReport::results`] lists, what
/// `process --json` prints (tagged `"outcome": "completed"`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It ran to the end.
    Completed {
        /// How long, all attempts included, in milliseconds.
        duration_ms: u64,
    },
    /// It failed (after every attempt).
    Failed {
        /// The last error, with its causes.
        error: String,
        /// The operation is `allowed_to_fail`: its failure does not fail the run.
        allowed_to_fail: bool,
    },
    /// It was skipped (it skipped itself, a condition or the environment said no, or a dependency failed).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Another process holds it, or it already ran: nothing was done.
    NotClaimed,
    /// Stopped at a checkpoint by `cancel NAME`; recorded `interrupted`, to resume from its checkpoint.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// Not started now and left pending: a `unique` key or a `without_overlapping` lock is held elsewhere.
    Deferred {
        /// Why.
        reason: String,
    },
    /// A try failed and the run went back to `pending`, its next try due on its queue after `retry_in_ms` (a
    /// deferred run: its tries are taken from the queue, one per claim, never slept through by the process).
    Retrying {
        /// The try's error, with its causes.
        error: String,
        /// When its next try is due, in milliseconds from now.
        retry_in_ms: u64,
    },
}

/// The former name of [`Outcome`], from when the executor's outcome and the report's were two types.
#[deprecated(
    since = "0.1.0",
    note = "use `Outcome`: the two outcome types are one now"
)]
pub type OutcomeKind = Outcome;

/// What a run did: returned by [`Sequencer::execute_all`](crate::Sequencer::execute_all), [`Sequencer::process`](crate::Sequencer::process), [`Sequencer::execute`](crate::Sequencer::execute),
/// [`Sequencer::rollback`](crate::Sequencer::rollback) and the batch and chain APIs; `process --json` prints it.
///
/// ```
/// use sequencer::Outcome;
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000")]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     #[operation(timestamp = "2024_01_15_120001", allowed_to_fail)]
///     async fn warm_cache(_ctx: &Ctx) -> Result<()> {
///         Err(Error::msg("cache is down"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let run = sequencer::testing::run(ops::registry()).await.unwrap();
/// let report = &run.report;
/// assert!(report.succeeded()); // an `allowed_to_fail` failure does not fail the run
/// assert_eq!(report.count(|o| matches!(o, Outcome::Completed { .. })), 1);
/// for (name, outcome) in &report.results {
///     if let Outcome::Failed { error, allowed_to_fail } = outcome {
///         println!("{name} failed (allowed: {allowed_to_fail}): {error}");
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// The batch number, if the run started one.
    pub batch: Option<i64>,
    /// Operations that were due, in order (with `dry_run`, what would run).
    pub planned: Vec<String>,
    /// Each operation run and how it ended.
    pub results: Vec<(String, Outcome)>,
    /// Operations of this run undone after a failure, in the order undone.
    pub rolled_back: Vec<String>,
    /// Rollbacks that failed, with their errors.
    pub rollback_failures: Vec<(String, String)>,
    /// Operations a person must decide on: interrupted ones that are neither idempotent nor retryable (`retry
    /// NAME` or `mark NAME`), and those whose rollback was interrupted (also in `rollbacks_interrupted`).
    pub needs_attention: Vec<String>,
    /// Operations whose rollback died before it returned (`undo_interrupted`): never run forward;
    /// `rollback --op NAME` finishes the undo, `mark NAME --completed` records it as it is.
    pub rollbacks_interrupted: Vec<String>,
    /// Operations recorded `stale` (also in `needs_attention`): an operation they depend on was rolled back under
    /// them with `rollback --cascade --force`. Never run forward; `retry NAME` or `mark NAME --completed`.
    pub stale: Vec<String>,
    /// Operations another process was running (or rolling back) when this run was planned: who, since when.
    pub running_elsewhere: Vec<(String, String)>,
    /// Operations left pending because a dependency did not complete.
    pub waiting: Vec<(String, String)>,
    /// Scheduled operations not due yet, with their due time (Unix milliseconds).
    pub scheduled: Vec<(String, i64)>,
    /// Operations put on a queue for the workers, with the queue.
    pub queued: Vec<(String, String)>,
    /// Queued operations that wait (`blocked`) for others to complete first, with their names: a worker or
    /// process that completes those queues them.
    pub queued_after: Vec<(String, String)>,
}

impl RunReport {
    /// Whether every operation that ran ended well (failures of `allowed_to_fail` operations excepted).
    pub fn succeeded(&self) -> bool {
        !self.results.iter().any(|(_, o)| {
            matches!(
                o,
                Outcome::Failed {
                    allowed_to_fail: false,
                    ..
                }
            )
        })
    }

    /// How many ended so.
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|(_, o)| f(o)).count()
    }
}
