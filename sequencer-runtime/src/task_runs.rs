//! Recording a run of a typed task: its number, its `unique` key taken, its arguments (sealed when the task is
//! `encrypted`) in its `pending` row. Shared by `seq.dispatch::<T>(..)` and by task members of batches.

use std::time::Duration;

use crate::crypto::{place, Keyring};
use crate::error::SequencerError;
use crate::executor::policy::unique_task_lock;
use crate::executor::TaskData;
use crate::ledger::runs::Status;
use crate::ledger::tasks::Available;
use crate::ledger::Ledger;
use crate::task_def::TaskDef;

/// How long a task's `unique` key holds without `unique_for`: a run whose worker died frees it after this.
const UNIQUE_HOLD: Duration = Duration::from_secs(3600);

/// Dispatches of one process take their run numbers one at a time (another process that takes the same number
/// is told so by the primary key, and takes the next).
static NUMBERING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What recording a task run did.
pub(crate) enum Recorded {
    /// A `pending` run, its `unique` key (if any) taken: run it or queue it.
    Run(i64, TaskData),
    /// Its `unique` key is held by another run: nothing recorded (`dispatch`).
    Dropped,
    /// Its `unique` key is held by another run: recorded `skipped` with the reason (a batch member), never run.
    Skipped(i64, String),
}

/// What to do with a run whose `unique` key another run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenHeld {
    /// Record nothing.
    Drop,
    /// Record the run `skipped`, with the reason.
    RecordSkipped,
}

/// Records a `pending` run of a task with its arguments (sealed when it is `encrypted`), its `unique` key taken
/// first, and with `queue` its job on that queue in the same transaction.
pub(crate) async fn record_task_run(
    ledger: &Ledger,
    keys: &Keyring,
    def: &'static TaskDef,
    json: String,
    when_held: WhenHeld,
    queue: Option<(&str, Available)>,
) -> Result<Recorded, SequencerError> {
    let name = def.name();
    let data = TaskData::from_json(def, json.clone());
    if let Err(why) = &data.args {
        return Err(SequencerError::Usage(why.to_string()));
    }
    if def.op.meta.encrypted && !keys.can_seal() {
        return Err(SequencerError::Usage(format!(
            "task `{name}` is `encrypted` but no key is configured: set SEQUENCER_KEY (see the workers guide) so that its arguments are sealed"
        )));
    }
    let hold = def
        .op
        .meta
        .unique
        .and_then(|u| u.hold_for)
        .unwrap_or(UNIQUE_HOLD);
    let _numbering = NUMBERING.lock().await;
    for _ in 0..100 {
        let run = ledger.next_task_run(name).await?;
        let unique = data
            .keys
            .unique
            .as_deref()
            .map(|k| (k, unique_task_lock(name, k, run)));
        let mut held = None;
        if let Some((key, (lock, owner))) = &unique {
            if !ledger.try_named_lock(lock, owner, hold).await? {
                if when_held == WhenHeld::Drop {
                    return Ok(Recorded::Dropped);
                }
                held = Some(format!(
                    "a run of `{name}` with the same `unique` key ({key}) is queued or running"
                ));
            }
        }
        let stored = if def.op.meta.encrypted {
            keys.seal_for(&json, &place::task_args(name, run))
                .map_err(|e| {
                    SequencerError::Usage(format!(
                        "cannot seal the arguments of task `{name}`: {e}"
                    ))
                })?
        } else {
            json.clone()
        };
        // A run skipped for its held key is recorded without a job; any other, with its job (with `queue`), in
        // one transaction.
        let queue = if held.is_some() { None } else { queue };
        if ledger.record_task_run(name, run, &stored, queue).await? {
            if let Some(reason) = held {
                ledger
                    .set_status(name, run, Status::Pending, Status::Skipped, Some(&reason))
                    .await?;
                return Ok(Recorded::Skipped(run, reason));
            }
            return Ok(Recorded::Run(run, data));
        }
        if let (None, Some((_, (lock, owner)))) = (&held, &unique) {
            ledger.release_named_lock(lock, owner).await?;
        }
    }
    Err(SequencerError::Usage(format!(
        "cannot number a run of task `{name}`: other processes took every number tried"
    )))
}
