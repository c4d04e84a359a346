//! Deferred operations are tasks: `defer(name, payload, due_at, max_attempts)` records a run of the task
//! `deferred:<name>` (a row of the operations table with its payload, sealed when a key is configured) and queues
//! it on the `deferred` queue, available at `due_at`, in one transaction. Every `work` process takes the due ones
//! beside its own queue, into its task set; `process_deferred` (the `process-deferred` command) runs them once.
//! Each runs through the executor, with every policy: layers, events, hard timeouts, leases and recovery. A failed
//! try with tries left goes back on the queue, due after `deferred_retry_delay` times the tries so far: no
//! process sleeps through it; the tries are counted across crashes. Rows an older version left in the `<prefix>deferred` table
//! are moved into that representation first (see [`crate::ledger::DeferredStatus::Moved`]).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::SequencerError;
use crate::events::Via;
use crate::executor::Env;
use crate::handlers::{Envelope, DEFERRED_QUEUE};
use crate::lease::renew_every_third;
use crate::ledger::deferred::Move;
use crate::ledger::tasks::Available;
use crate::report::Outcome;
use crate::sequencer::Sequencer;
use crate::task_runs::{record_task_run, WhenHeld};
use crate::worker::{run_target, WorkReport};

/// What [`Sequencer::process_deferred`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeferredReport {
    /// Deferred runs that completed.
    pub completed: usize,
    /// Deferred runs that ended skipped (their handler skipped itself).
    pub skipped: usize,
    /// Runs put back on their queue, to be taken again: a try failed with tries left (due again after
    /// `deferred_retry_delay` times the tries so far), a lock is held, or a dead process's claim waits for its
    /// recovery.
    pub retrying: usize,
    /// Runs that failed for good (out of tries, malformed payload, unknown handler, interrupted on their last
    /// try): kept for a human. Each is `(run, error)`, `run` the run number of its task `deferred:<name>`.
    pub failed: Vec<(i64, String)>,
    /// Rows of the old `<prefix>deferred` table moved into task runs by this call.
    pub moved: usize,
    /// Rows of the old table failed there, not moved (their handler is not registered): `(id, error)`, kept
    /// for a human.
    pub rows_failed: Vec<(i64, String)>,
    /// Rows of the old table that could not be moved now (their task run's data could not be made): `(id, why)`;
    /// they stay `pending` there, and are tried again by the next call.
    pub not_moved: Vec<(i64, String)>,
}

impl Sequencer {
    /// Defers a run of `handler` (a name registered with `SequencerBuilder::deferred`): a run of the task
    /// `deferred:<handler>` with `payload`, run by a worker once `due_at` has come, up to `max_attempts` tries.
    ///
    /// Kept for the code that uses it: the same thing typed is a `#[task]` dispatched with
    /// `seq.dispatch::<ops::f>(args).at(due_at)` (its tries from its `retries = ..`).
    pub async fn defer<T: Serialize>(
        &self,
        handler: &str,
        payload: &T,
        due_at: SystemTime,
        max_attempts: u32,
    ) -> Result<(), SequencerError> {
        let handlers = self.deferred_handlers();
        let resolved = handlers
            .resolve(handler)
            .and_then(|(name, h)| h.def.map(|def| (name, def)));
        let Some((name, def)) = resolved else {
            let names = handlers.handlers.keys().map(String::as_str);
            return Err(SequencerError::UnknownOperation {
                name: handler.to_owned(),
                suggestion: sequencer_core::suggest::did_you_mean(handler, names)
                    .map(str::to_owned),
            });
        };
        let value = serde_json::to_value(payload).map_err(|e| {
            SequencerError::Usage(format!("cannot serialize the payload of `{name}`: {e}"))
        })?;
        let envelope = Envelope {
            max_attempts: max_attempts.max(1),
            payload: value,
            deferred_id: None,
        };
        let json = serde_json::to_string(&envelope).map_err(|e| {
            SequencerError::Usage(format!("cannot serialize the payload of `{name}`: {e}"))
        })?;
        let due = due_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64);
        // The run and its job commit together.
        let queue = Some((DEFERRED_QUEUE, Available::At(due)));
        let keys = &self.env().keys;
        record_task_run(self.ledger(), keys, def, json, WhenHeld::Drop, queue).await?;
        Ok(())
    }

    /// Runs the due deferred runs (at most `limit`), oldest first, each through the executor, one try each (a
    /// failed try with tries left is put back on the queue for later). Moves the pending rows an older version left
    /// in the `<prefix>deferred` table into task runs first, and recovers the claims of dead processes (as
    /// `process` does); `work` processes take deferred runs themselves and do not call this.
    pub async fn process_deferred(
        &self,
        limit: Option<usize>,
    ) -> Result<DeferredReport, SequencerError> {
        let ledger = self.ledger();
        let mut report = DeferredReport::default();
        self.move_old_deferred(&mut report).await?;
        let env = Env {
            via: Via::Worker,
            ..self.env().clone()
        };
        // Claims of processes that died: their runs `interrupted` (taken again while they have tries left), then
        // their jobs back on the queue (each once its run is no longer held: see `rescue_jobs`).
        ledger.recover_interrupted(&env.owner).await?;
        ledger.rescue_jobs().await?;
        let worker = format!(
            "{}:{}:{:08x}",
            env.owner.host,
            env.owner.pid,
            fastrand::u32(..)
        );
        let mut left = limit.unwrap_or(usize::MAX);
        let mut batch = None;
        while left > 0 {
            let Some(job) = ledger
                .take_jobs(DEFERRED_QUEUE, &worker, env.lease, 1)
                .await?
                .into_iter()
                .next()
            else {
                break;
            };
            left -= 1;
            let Some(target) = self.target_of(&job.name) else {
                let error = self.unknown_job(&job, &worker).await;
                report.failed.push((job.run, error));
                continue;
            };
            let batch = match batch {
                Some(b) => b,
                None => *batch.insert(ledger.new_batch(&env.owner).await?),
            };
            // The job's lease renewed while its run runs; a job another worker took over stops it.
            let cancel = env.cancel.child_token();
            let env = Env {
                cancel: cancel.clone(),
                ..env.clone()
            };
            let (hl, hw, id, lease) = (ledger.clone(), worker.clone(), job.id, env.lease);
            let beat = renew_every_third(lease, move || {
                let (hl, hw, cancel) = (hl.clone(), hw.clone(), cancel.clone());
                async move {
                    if let Ok(false) = hl.job_heartbeat(id, &hw, lease).await {
                        cancel.cancel();
                    }
                }
            });
            let outcome = run_target(&env, target, &job, batch).await;
            drop(beat);
            let run = job.run;
            // A ledger error: the job stays taken under its lease, and is rescued once that has run out.
            let outcome = outcome?;
            match &outcome {
                Outcome::Completed { .. } => report.completed += 1,
                Outcome::Skipped { .. } => report.skipped += 1,
                Outcome::Retrying { .. } | Outcome::Deferred { .. } => report.retrying += 1,
                Outcome::Failed { error, .. } => report.failed.push((run, error.clone())),
                Outcome::Cancelled { reason } => report.failed.push((run, reason.clone())),
                Outcome::NotClaimed => {}
            }
            let not_claimed = outcome == Outcome::NotClaimed;
            let mut work = WorkReport::default();
            self.finish_job(Ok((job, Ok(outcome))), &worker, &mut work)
                .await?;
            if not_claimed {
                // Held by a dead process's claim (put back, for its recovery), out of tries after its process died
                // (kept for a human), or ended elsewhere (nothing to count).
                let row = ledger.row_of(&target_name(target), run).await?;
                match row.map(|r| r.status) {
                    Some(crate::ledger::Status::Running) => report.retrying += 1,
                    Some(crate::ledger::Status::Interrupted) => report.failed.push((
                        run,
                        format!("run {run} was interrupted (its process died) on its last try: kept for a human"),
                    )),
                    _ => {}
                }
            }
        }
        Ok(report)
    }

    /// Moves the pending rows of the old `<prefix>deferred` table (and those whose old processor died with tries
    /// left) into task runs, each in one transaction that only one process wins. As before, a row naming a
    /// handler this process does not have (nor an alias of it) is failed with the reason, kept for a person; a row
    /// whose old processor died on its last try is failed.
    pub(crate) async fn move_old_deferred(
        &self,
        report: &mut DeferredReport,
    ) -> Result<(), SequencerError> {
        let ledger = self.ledger();
        ledger.expire_deferred().await?;
        let handlers = self.deferred_handlers();
        let keys = &self.env().keys;
        for row in ledger.deferred_movable().await? {
            let Some((_, handler)) = handlers.resolve(&row.handler) else {
                let error = format!(
                    "unknown deferred handler `{}`: register it with `.deferred(\"{}\", ..)`, or map the old name with `.deferred_alias(\"{}\", \"new_name\")`",
                    row.handler, row.handler, row.handler
                );
                if ledger.fail_deferred(&row, &error, keys).await? {
                    report.rows_failed.push((row.id, error));
                }
                continue;
            };
            let Some(def) = handler.def else { continue };
            let envelope = Envelope {
                max_attempts: u32::try_from((row.max_attempts - row.attempts).max(1))
                    .unwrap_or(u32::MAX),
                payload: serde_json::Value::Null,
                deferred_id: Some(row.id),
            };
            let json = serde_json::to_string(&envelope)
                .map_err(|e| SequencerError::Usage(format!("deferred row {}: {e}", row.id)))?;
            let name = def.name();
            let moved = ledger
                .move_deferred(&row, name, DEFERRED_QUEUE, |run| {
                    if def.op.meta.encrypted {
                        keys.seal_for(&json, &crate::crypto::place::task_args(name, run))
                            .map_err(|e| e.to_string())
                    } else {
                        Ok(json.clone())
                    }
                })
                .await?;
            match moved {
                Move::Moved(run) => {
                    tracing::info!(
                        deferred = row.id,
                        task = name,
                        run,
                        "moved a deferred row into a task run"
                    );
                    report.moved += 1;
                }
                Move::Taken => {}
                Move::Refused(why) => report.not_moved.push((row.id, why)),
            }
        }
        Ok(())
    }
}

/// The ledger name of a job's target.
fn target_name(target: crate::worker::Target) -> String {
    match target {
        crate::worker::Target::Operation(def) => def.meta.name.to_owned(),
        crate::worker::Target::Task(task) => task.name().to_owned(),
    }
}
