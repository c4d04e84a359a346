//! How a job whose run ended on the ordinary path (not acknowledged in a batch) ends: done, failed, or back on
//! the queue, its batch member counted first.

use std::time::Duration;

use super::WorkReport;
use crate::crypto::place;
use crate::error::SequencerError;
use crate::ledger::jobs::{Job, JobStatus};
use crate::ledger::runs::Status;
use crate::ledger::Ledger;
use crate::report::Outcome;
use crate::sequencer::batch_end::BATCH_CANCELLED;
use crate::sequencer::Sequencer;

/// How long a job whose run is held elsewhere waits on its queue before it is taken again.
const A_SECOND: Duration = Duration::from_secs(1);

/// Whether the run of a job whose claim was refused is still this job's to run, as the ledger has it now
/// (`status`): another claim holds it (`running`: a killed worker's, until recovery finds it), or recovery has
/// found it `interrupted` since and a new claim may take it again (`reclaimable`: see
/// `OperationMeta::runs_again_after_interruption`). The job is then the run's only way to run: it goes back on
/// the queue rather than ending.
fn still_to_run(status: Option<Status>, reclaimable: bool) -> bool {
    match status {
        Some(Status::Running) => true,
        Some(Status::Interrupted) => reclaimable,
        _ => false,
    }
}

/// Puts a job whose run did not end back on its queue, taken again `after` this long (`note` says why), and counts
/// it as not run.
async fn requeue(
    ledger: &Ledger,
    job: &Job,
    worker: &str,
    report: &mut WorkReport,
    after: Duration,
    note: &str,
) -> Result<(), SequencerError> {
    report.not_run += 1;
    ledger.requeue_job(job.id, worker, after, note).await?;
    Ok(())
}

impl Sequencer {
    /// Ends a job whose task ended with this outcome.
    pub(crate) async fn finish_job(
        &self,
        joined: Result<(Job, Result<Outcome, SequencerError>), tokio::task::JoinError>,
        worker: &str,
        report: &mut WorkReport,
    ) -> Result<(), SequencerError> {
        let Ok((job, outcome)) = joined else {
            return Ok(());
        };
        let ledger = self.ledger();
        let task = self.registry().task(&job.name);
        let outcome = outcome?;
        // A failed try whose next one is taken from the queue (a deferred run): its job waits there for it.
        if let Outcome::Retrying { retry_in_ms, .. } = &outcome {
            let note = format!("its try failed: taken again in {retry_in_ms} ms");
            let after = Duration::from_millis(*retry_in_ms);
            return requeue(ledger, &job, worker, report, after, &note).await;
        }
        if let Some(task) = task {
            // A task run that waits for a lock (`without_overlapping`), or whose row another claim holds (a dead
            // worker's, until recovery finds it), goes back on the queue: its job stays its only way to run.
            let waits = match &outcome {
                Outcome::Deferred { .. } => true,
                Outcome::NotClaimed => {
                    let status = ledger.row_of(&job.name, job.run).await?.map(|r| r.status);
                    // A task run found `interrupted` here ends its job below, as an operation's that may not
                    // be claimed again does.
                    still_to_run(status, false)
                }
                _ => false,
            };
            if waits {
                tracing::debug!(task = task.name(), run = job.run, "put back on the queue");
                let note = "waits for a lock or for recovery: taken again in a second";
                return requeue(ledger, &job, worker, report, A_SECOND, note).await;
            }
        }
        if let Some(id) = job.batch {
            // The member's end is counted (and its batch settled) before its job ends: should this process die
            // in between, the job is rescued, taken again, and the steps finished by whoever takes it.
            match self.member_state(&job.name, job.run, &outcome).await? {
                Some((state, reason)) => {
                    self.member_ended(id, &job.name, job.run, state, reason.as_deref())
                        .await?;
                }
                None => {
                    let note = "held elsewhere: taken again in a second";
                    return requeue(ledger, &job, worker, report, A_SECOND, note).await;
                }
            }
        }
        match outcome {
            // Not run: its batch was cancelled (its operation stays pending).
            Outcome::Skipped { reason } if job.batch.is_some() && reason == BATCH_CANCELLED => {
                report.not_run += 1;
                let note = format!("not run: {BATCH_CANCELLED}");
                ledger
                    .end_job(job.id, worker, JobStatus::Done, Some(&note))
                    .await?;
            }
            Outcome::Completed { .. } | Outcome::Skipped { .. } => {
                report.completed += 1;
                ledger
                    .end_job(job.id, worker, JobStatus::Done, None)
                    .await?;
            }
            Outcome::Failed { error, .. } => {
                report.failed += 1;
                // An `encrypted` operation's error is sealed in every copy the ledger keeps, this one too.
                let encrypted = self
                    .registry()
                    .get(&job.name)
                    .is_some_and(|d| d.meta.encrypted)
                    || task.is_some_and(|t| t.op.meta.encrypted);
                let error = if encrypted {
                    self.env()
                        .keys
                        .seal_for(&error, &place::job(&job.name, job.run))
                        .unwrap_or_else(|e| format!("[not recorded: {e}]"))
                } else {
                    error
                };
                ledger
                    .end_job(job.id, worker, JobStatus::Failed, Some(&error))
                    .await?;
            }
            Outcome::NotClaimed
            | Outcome::Deferred { .. }
            | Outcome::Retrying { .. }
            | Outcome::Cancelled { .. } => {
                // This job's run, exactly (a task has many).
                let status = ledger.row_of(&job.name, job.run).await?.map(|r| r.status);
                let reclaimable = self
                    .registry()
                    .get(&job.name)
                    .is_some_and(|d| d.meta.runs_again_after_interruption());
                if matches!(outcome, Outcome::NotClaimed) && still_to_run(status, reclaimable) {
                    let note = "held elsewhere or interrupted: taken again in a second";
                    return requeue(ledger, &job, worker, report, A_SECOND, note).await;
                }
                report.not_run += 1;
                let note = status
                    .map(|s| format!("not run: the operation is {s}"))
                    .unwrap_or_default();
                // An interrupted operation waits for `retry` or `mark`: its job is kept as failed, for a human.
                let status = if status == Some(Status::Interrupted) {
                    JobStatus::Failed
                } else {
                    JobStatus::Done
                };
                ledger.end_job(job.id, worker, status, Some(&note)).await?;
            }
        }
        Ok(())
    }
}
