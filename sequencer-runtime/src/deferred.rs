//! Deferred operations: `defer(name, payload, due_at, max_attempts)` stores a serde payload in the ledger
//! database; `process_deferred` (the `process-deferred` command, and every `work` process) runs the due ones
//! with their typed handler, retrying after a delay until `max_attempts`, then recording the error.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::crypto::place;
use crate::error::SequencerError;
use crate::executor::task::run_boxed;
use crate::handlers::MalformedPayload;
use crate::lease::renew_every_third;
use crate::ledger::deferred::DeferredStatus;
use crate::ledger::new_claim_token;
use crate::result::describe;
use crate::sequencer::Sequencer;

/// What [`Sequencer::process_deferred`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeferredReport {
    /// Deferred operations that completed.
    pub completed: usize,
    /// Ones that failed and will be tried again.
    pub retrying: usize,
    /// Ones that failed for good (out of attempts, malformed payload, unknown handler): kept for a human.
    pub failed: Vec<(i64, String)>,
}

impl Sequencer {
    /// Stores a deferred operation: `handler` (a name registered with `SequencerBuilder::deferred`) runs with
    /// `payload` once `due_at` has come, up to `max_attempts` times.
    pub async fn defer<T: Serialize>(
        &self,
        handler: &str,
        payload: &T,
        due_at: SystemTime,
        max_attempts: u32,
    ) -> Result<(), SequencerError> {
        let handlers = self.deferred_handlers();
        if handlers.resolve(handler).is_none() {
            let names = handlers.handlers.keys().map(String::as_str);
            return Err(SequencerError::UnknownOperation {
                name: handler.to_owned(),
                suggestion: sequencer_core::suggest::did_you_mean(handler, names)
                    .map(str::to_owned),
            });
        }
        let json = serde_json::to_string(payload).map_err(|e| {
            SequencerError::Usage(format!("cannot serialize the payload of `{handler}`: {e}"))
        })?;
        // Payloads are sealed at rest whenever a key is configured, each bound to its row.
        let keys = self.env().keys.clone();
        let due = due_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.ledger()
            .defer(
                handler,
                |id| {
                    if keys.can_seal() {
                        keys.seal_for(&json, &place::deferred(id, "payload"))
                            .unwrap_or_else(|e| format!("[not stored: {e}]"))
                    } else {
                        json.clone()
                    }
                },
                due,
                max_attempts,
            )
            .await?;
        Ok(())
    }

    /// Runs the due deferred operations (at most `limit`), oldest first.
    pub async fn process_deferred(
        &self,
        limit: Option<usize>,
    ) -> Result<DeferredReport, SequencerError> {
        let handlers = self.deferred_handlers();
        let ledger = self.ledger();
        let mut report = DeferredReport::default();
        // Held while the handler runs, renewed every third of it: a processor that dies leaves its rows to be
        // taken again once the lease runs out, while a handler that runs long keeps its own.
        let lease = self.env().lease;
        ledger.expire_deferred().await?;
        for id in ledger.deferred_due(limit.unwrap_or(usize::MAX)).await? {
            let token = new_claim_token();
            if !ledger.claim_deferred(id, lease, &token).await? {
                continue;
            }
            let Some(row) = ledger.deferred_row(id).await? else {
                continue;
            };
            // Errors may quote the payload: sealed like it, for this row, whenever a key is configured.
            let sealed = |text: &str| {
                let keys = &self.env().keys;
                if keys.can_seal() {
                    keys.seal_for(text, &place::deferred(id, "last_error"))
                        .unwrap_or_else(|e| format!("[not recorded: {e}]"))
                } else {
                    text.to_owned()
                }
            };
            let Some((_, (handler, meta))) = handlers.resolve(&row.handler) else {
                let error = format!(
                    "unknown deferred handler `{}`: register it with `.deferred(\"{}\", ..)`, or map the old name with `.deferred_alias(\"{}\", \"new_name\")`",
                    row.handler, row.handler, row.handler
                );
                ledger
                    .end_deferred(
                        id,
                        &token,
                        DeferredStatus::Failed,
                        row.due_at,
                        Some(&sealed(&error)),
                    )
                    .await?;
                report.failed.push((id, error));
                continue;
            };
            // With a key configured a payload must be sealed, for this row: plain text is an error, never run.
            let keys = &self.env().keys;
            let payload = match keys.open_at(&row.payload, &place::deferred(id, "payload"), true) {
                Ok(p) => p,
                Err(e) => {
                    // A missing or wrong key: a clear error, the row kept for a human, never garbage.
                    let error = format!("cannot open the payload of `{}`: {e}", row.handler);
                    ledger
                        .end_deferred(
                            id,
                            &token,
                            DeferredStatus::Failed,
                            row.due_at,
                            Some(&sealed(&error)),
                        )
                        .await?;
                    report.failed.push((id, error));
                    continue;
                }
            };
            let outcome = match serde_json::from_str::<serde_json::Value>(&payload) {
                Ok(value) => {
                    let ctx = Arc::new(self.deferred_ctx(meta, row.attempts.max(1) as u32));
                    let handler = handler.clone();
                    let renewal = {
                        let (ledger, token) = (ledger.clone(), token.clone());
                        renew_every_third(lease, move || {
                            let (ledger, token) = (ledger.clone(), token.clone());
                            async move {
                                if let Err(e) = ledger.renew_deferred(id, lease, &token).await {
                                    tracing::warn!(
                                        "cannot renew deferred operation {id}'s claim: {e}"
                                    );
                                }
                            }
                        })
                    };
                    let outcome = run_boxed(ctx, move |ctx| handler(ctx, value), None).await;
                    drop(renewal);
                    outcome
                }
                Err(e) => Err(anyhow::Error::new(MalformedPayload(format!(
                    "malformed payload (not JSON): {e}"
                )))),
            };
            // The end is recorded only while the claim holds: a processor that lost it (its lease ran out and
            // another took the row) writes nothing over the new claimer's result, and says so.
            let (recorded, result) = match outcome {
                Ok(()) => {
                    let done = ledger
                        .end_deferred(id, &token, DeferredStatus::Completed, row.due_at, None)
                        .await?;
                    (done, None)
                }
                Err(e) => {
                    let message = describe(&e);
                    let permanent = e.downcast_ref::<MalformedPayload>().is_some();
                    if !permanent && row.attempts < row.max_attempts {
                        let delay = handlers
                            .retry_delay
                            .saturating_mul(row.attempts.max(1) as u32);
                        let due = ledger.db_now().await? + delay.as_millis() as i64;
                        let done = ledger
                            .end_deferred(
                                id,
                                &token,
                                DeferredStatus::Pending,
                                due,
                                Some(&sealed(&message)),
                            )
                            .await?;
                        (done, Some((true, message)))
                    } else {
                        let done = ledger
                            .end_deferred(
                                id,
                                &token,
                                DeferredStatus::Failed,
                                row.due_at,
                                Some(&sealed(&message)),
                            )
                            .await?;
                        (done, Some((false, message)))
                    }
                }
            };
            match (recorded, result) {
                (false, _) => report.failed.push((
                    id,
                    format!(
                        "deferred operation {id} lost its claim: its lease ran out and another processor took it"
                    ),
                )),
                (true, None) => report.completed += 1,
                (true, Some((true, _))) => report.retrying += 1,
                (true, Some((false, message))) => report.failed.push((id, message)),
            }
        }
        Ok(report)
    }
}
