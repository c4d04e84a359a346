//! How a job whose run ended on the ordinary path (not acknowledged in a batch) ends: done, failed, or back on
//! the queue, its batch member counted first.

use std::time::Duration;

use super::WorkReport;
use crate::crypto::place;
use crate::error::SequencerError;
use crate::ledger::jobs::{Job, JobStatus};
use crate::ledger::runs::Status;
use crate::report::Outcome;
use crate::sequencer::batch_end::BATCH_CANCELLED;
use crate::sequencer::Sequencer;

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
            report.not_run += 1;
            let note = format!("its try failed: taken again in {retry_in_ms} ms");
            ledger
                .requeue_job(job.id, worker, Duration::from_millis(*retry_in_ms), &note)
                .await?;
            return Ok(());
        }
        if let Some(task) = task {
            // A task run that waits for a lock (`without_overlapping`), or whose row another claim holds (a dead
            // worker's, until recovery finds it), goes back on the queue: its job stays its only way to run.
            let wait = match &outcome {
                Outcome::Deferred { .. } => Some(1000),
                Outcome::NotClaimed => ledger
                    .row_of(&job.name, job.run)
                    .await?
                    .filter(|r| r.status == Status::Running)
                    .map(|_| 1000),
                _ => None,
            };
            if let Some(ms) = wait {
                report.not_run += 1;
                tracing::debug!(task = task.name(), run = job.run, "put back on the queue");
                ledger
                    .requeue_job(
                        job.id,
                        worker,
                        Duration::from_millis(ms),
                        "waits for a lock or for recovery: taken again in a second",
                    )
                    .await?;
                return Ok(());
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
                    report.not_run += 1;
                    ledger
                        .requeue_job(
                            job.id,
                            worker,
                            Duration::from_secs(1),
                            "held elsewhere: taken again in a second",
                        )
                        .await?;
                    return Ok(());
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
                report.not_run += 1;
                // This job's run, exactly (a task has many).
                let status = ledger.row_of(&job.name, job.run).await?.map(|r| r.status);
                // Not claimed because another claim holds the run (a killed worker's, until recovery finds it), or
                // recovery found it interrupted since while a new claim may take it again (idempotent, or tries
                // left): the job is its only way to run, so it goes back on the queue rather than ending.
                let reclaimable = self
                    .registry()
                    .get(&job.name)
                    .is_some_and(|d| d.meta.runs_again_after_interruption());
                if matches!(outcome, Outcome::NotClaimed)
                    && (status == Some(Status::Running)
                        || (status == Some(Status::Interrupted) && reclaimable))
                {
                    ledger
                        .requeue_job(
                            job.id,
                            worker,
                            Duration::from_secs(1),
                            "held elsewhere or interrupted: taken again in a second",
                        )
                        .await?;
                    return Ok(());
                }
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
