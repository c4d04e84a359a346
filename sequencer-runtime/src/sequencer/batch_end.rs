//! What happens when a member of a recorded batch or chain ends, wherever it ran (a worker, or the process that
//! dispatched an in-process batch): the member is counted once, a chain's next link is queued, the first failure
//! is caught once, and the batch ends once, and only the process that won each of these conditional updates runs
//! the callbacks, under a claim on them that a worker takes over should that process die mid-callback. Each step
//! is safe to repeat, so a process that dies half-way leaves nothing for good: whoever ends the member's job next
//! (the job is rescued and taken again) finishes the steps, and a worker runs the callbacks left behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::batches::BatchCtx;
use crate::error::SequencerError;
use crate::events::Event;
use crate::lease::renew_every_third;
use crate::ledger::new_claim_token;
use crate::ledger::{BatchId, BatchInfo, BatchKind, MemberState};
use crate::report::Outcome;
use crate::sequencer::Sequencer;

/// The reason recorded on the members a cancelled batch does not run.
pub(crate) const BATCH_CANCELLED: &str = "batch cancelled";

impl Sequencer {
    /// How a member's run ended, from its outcome: `None` when it has not ended (held elsewhere: a `unique` key,
    /// an overlap lock, another process's claim), and is to be tried again later.
    pub(crate) async fn member_state(
        &self,
        name: &str,
        run: i64,
        outcome: &Outcome,
    ) -> Result<Option<(MemberState, Option<String>)>, SequencerError> {
        Ok(match outcome {
            Outcome::Completed { .. } => Some((MemberState::Completed, None)),
            Outcome::Skipped { reason } => Some((MemberState::Skipped, Some(reason.clone()))),
            // The error is on the run's row (sealed there for an `encrypted` operation).
            Outcome::Failed { .. } => Some((MemberState::Failed, None)),
            Outcome::Cancelled { .. } => Some((
                MemberState::Failed,
                Some("interrupted: `retry` resumes it".to_owned()),
            )),
            Outcome::Deferred { .. } | Outcome::Retrying { .. } => None,
            Outcome::NotClaimed => {
                use crate::ledger::Status;
                let row = self.ledger().row_of(name, run).await?;
                match row.map(|r| r.status) {
                    Some(Status::Completed) => Some((
                        MemberState::Completed,
                        Some("had completed before".to_owned()),
                    )),
                    Some(Status::Skipped) => Some((
                        MemberState::Skipped,
                        Some("had been skipped before".to_owned()),
                    )),
                    Some(Status::Failed | Status::Interrupted) => {
                        Some((MemberState::Failed, Some("had failed before".to_owned())))
                    }
                    Some(
                        s @ (Status::RolledBack
                        | Status::RollingBack
                        | Status::RollbackInterrupted
                        | Status::Stale),
                    ) => Some((MemberState::Skipped, Some(format!("not run: it is {s}")))),
                    None => Some((
                        MemberState::Failed,
                        Some("the run has no ledger row".to_owned()),
                    )),
                    Some(Status::Pending | Status::Scheduled | Status::Running) => None,
                }
            }
        })
    }

    /// Counts a member's end on its batch (once), then settles the batch.
    pub(crate) async fn member_ended(
        &self,
        id: BatchId,
        name: &str,
        run: i64,
        state: MemberState,
        reason: Option<&str>,
    ) -> Result<(), SequencerError> {
        let counted = self
            .ledger()
            .end_member(id, name, run, state, reason)
            .await?;
        self.settle_batch(id, counted).await
    }

    /// Every step a member's end may call for, each taken once by whichever process wins it: catch the first
    /// failure, stop or go on with a chain, end the batch. Safe to call again.
    pub(crate) async fn settle_batch(
        &self,
        id: BatchId,
        counted: bool,
    ) -> Result<(), SequencerError> {
        let ledger = self.ledger();
        let Some(info) = ledger.batch_info(id).await? else {
            return Ok(());
        };
        if counted {
            let _ = self.events().send(Event::BatchProgress {
                id: id.0,
                name: info.name.clone(),
                done: info.done(),
                total: info.total,
                failed: info.failed,
            });
        }
        let chain = info.kind == BatchKind::Chain;
        let mut stopped: Option<String> = None;
        if info.failed > 0 && (chain || !info.allow_failures) {
            let mut first = info.failed_member.clone();
            if info.caught_at.is_none() {
                let members = ledger.batch_members(id).await?;
                let earliest = members
                    .iter()
                    .filter(|m| m.state == MemberState::Failed)
                    .min_by_key(|m| (m.ended_at, m.position))
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                let token = new_claim_token();
                if ledger
                    .catch_batch(id, &earliest, self.env().lease, &token)
                    .await?
                {
                    self.run_callbacks_claimed(id, Some(token)).await?;
                }
                first = Some(earliest);
            }
            let first = first.unwrap_or_default();
            stopped = Some(format!("{} stopped: {first} failed", info.kind));
        } else if info.cancelled_at.is_some() {
            stopped = Some(BATCH_CANCELLED.to_owned());
        }
        if chain {
            match &stopped {
                // The links whose turn never comes are recorded skipped, with the reason.
                Some(reason) => {
                    for m in ledger.batch_members(id).await? {
                        if m.state == MemberState::Waiting {
                            ledger.drop_member_job(id, &m.name, m.run, reason).await?;
                            ledger
                                .end_member(id, &m.name, m.run, MemberState::Skipped, Some(reason))
                                .await?;
                        }
                    }
                }
                None => {
                    ledger.release_next_link(id).await?;
                }
            }
        }
        let token = new_claim_token();
        if ledger.finish_batch(id, self.env().lease, &token).await? {
            let ended = ledger.batch_info(id).await?.unwrap_or(info);
            let _ = self.events().send(Event::BatchEnded {
                id: id.0,
                name: ended.name.clone(),
                total: ended.total,
                failed: ended.failed,
                skipped: ended.skipped,
                cancelled: ended.cancelled_at.is_some(),
            });
            self.run_callbacks_claimed(id, Some(token)).await?;
        }
        Ok(())
    }

    /// Runs the callbacks of batch `id` that are due (`catch` once its first failure was caught; `then` if it
    /// ended well, and `finally`, once it ended) and not recorded done, in that order, under a claim on them held
    /// for the lease and renewed while they run: a process that dies mid-callback leaves them to the next worker
    /// (callbacks run at least once: make them idempotent), and one recorded done never runs again. Does nothing
    /// while another process holds the claim.
    pub(crate) async fn run_due_callbacks(&self, id: BatchId) -> Result<(), SequencerError> {
        self.run_callbacks_claimed(id, None).await
    }

    /// [`Self::run_due_callbacks`], the claim perhaps taken already with `held` (by the statement that ended or
    /// caught the batch, unless another process held it then).
    async fn run_callbacks_claimed(
        &self,
        id: BatchId,
        mut held: Option<String>,
    ) -> Result<(), SequencerError> {
        let ledger = self.ledger();
        let lease = self.env().lease;
        loop {
            let token = match held.take() {
                // Taken with the batch's end: ours if the renewal finds it so.
                Some(token) if ledger.renew_batch_callbacks(id, lease, &token).await? => token,
                _ => {
                    let token = new_claim_token();
                    if !ledger.claim_batch_callbacks(id, lease, &token).await? {
                        return Ok(());
                    }
                    token
                }
            };
            // Set when a renewal finds the claim lost: no further callback is started under it.
            let lost = Arc::new(AtomicBool::new(false));
            let beat = {
                let (ledger, token, lost) = (ledger.clone(), token.clone(), lost.clone());
                renew_every_third(lease, move || {
                    let (ledger, token, lost) = (ledger.clone(), token.clone(), lost.clone());
                    async move {
                        match ledger.renew_batch_callbacks(id, lease, &token).await {
                            Ok(true) => {}
                            Ok(false) => lost.store(true, Ordering::SeqCst),
                            Err(e) => tracing::warn!(
                                batch = id.0,
                                "cannot renew the claim on its callbacks: {e}"
                            ),
                        }
                    }
                })
            };
            let Some(info) = ledger.batch_info(id).await? else {
                return Ok(());
            };
            let done = ledger.batch_callbacks_done(id).await?;
            let ended = info.finished_at.is_some();
            let well = info.cancelled_at.is_none() && (info.failed == 0 || info.allow_failures);
            let due = [
                ("catch", info.caught_at.is_some(), info.catch.as_deref()),
                ("then", ended && well, info.then.as_deref()),
                ("finally", ended, info.finally.as_deref()),
            ];
            for (which, is_due, name) in due {
                if !is_due || name.is_none() || done.iter().any(|d| d == which) {
                    continue;
                }
                if lost.load(Ordering::SeqCst) {
                    tracing::warn!(
                        batch = id.0,
                        "the claim on its callbacks was lost: another process runs `{which}` and the rest"
                    );
                    return Ok(());
                }
                self.run_batch_callback(&info, which, name).await;
                if !ledger.batch_callback_done(id, which, &token).await? {
                    tracing::warn!(
                        batch = id.0,
                        "the claim on its callbacks was lost while `{which}` ran: another process runs the rest"
                    );
                    return Ok(());
                }
            }
            drop(beat);
            ledger.release_batch_callbacks(id, &token, ended).await?;
            if ended {
                return Ok(());
            }
            // It had not ended when read: if it ended meanwhile (its finisher found the claim held), go on with it.
            match ledger.batch_info(id).await? {
                Some(now) if now.finished_at.is_some() => continue,
                _ => return Ok(()),
            }
        }
    }

    /// Runs the batch callbacks whose claimer died mid-callback (its lease ran out), or whose batch ended while
    /// another process held the claim: what every worker does about once a second.
    pub(crate) async fn run_orphaned_callbacks(&self) -> Result<(), SequencerError> {
        for id in self.ledger().batches_with_callbacks_due().await? {
            // One batch's trouble does not keep the others' callbacks from running.
            if let Err(e) = self.run_due_callbacks(id).await {
                tracing::warn!(batch = id.0, "batch callbacks: {e}");
            }
        }
        Ok(())
    }

    /// Runs a named callback (in a task of its own, so that a panic is caught); a failure is recorded on the
    /// batch's row.
    async fn run_batch_callback(&self, info: &BatchInfo, which: &str, name: Option<&str>) {
        let Some(name) = name else {
            return;
        };
        let owner = &self.env().owner;
        let failure = match self.inner.batch_callbacks.get(name) {
            None => Some(format!(
                "{which} callback `{name}` is not registered in this process ({}, pid {}): register it with `.batch_callback(\"{name}\", ..)` on the builder of every process that runs `work`",
                owner.host, owner.pid
            )),
            Some(callback) => {
                let ctx = BatchCtx {
                    info: info.clone(),
                    state: self.env().state.clone(),
                    pool: self.ledger().pool().clone(),
                };
                match tokio::spawn(callback(ctx)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("{which} callback `{name}` failed: {e:#}")),
                    Err(e) => Some(format!("{which} callback `{name}` panicked: {e}")),
                }
            }
        };
        if let Some(failure) = failure {
            tracing::warn!(batch = info.id.0, "{failure}");
            if let Err(e) = self.ledger().batch_callback_failed(info.id, &failure).await {
                tracing::warn!(batch = info.id.0, "cannot record it: {e}");
            }
        }
    }
}
