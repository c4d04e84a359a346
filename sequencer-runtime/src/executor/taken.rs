//! A run a worker claimed together with its job: run here, its completion left for the worker to acknowledge
//! with others (see [`crate::ledger::acks`]).

use std::time::Duration;

use tracing::Instrument;

use crate::events::Event;
use crate::executor::{Env, OpRun, Ran};
use crate::lease::HeldGuard;
use crate::ledger::error::LedgerError;
use crate::ledger::runs::Finish;
use crate::ledger::runs::Status;
use crate::registry::OperationDef;
use crate::report::Outcome;

/// What a run claimed with its job came to.
pub(crate) enum Taken {
    /// Recorded already (failed, skipped, cancelled, lost its claim): its job ends as ever.
    Ended(Outcome),
    /// The function returned `Ok`: the row is still `running` under the claim, which `held` keeps renewed until
    /// the worker acknowledges it.
    ToAck {
        /// How long it ran.
        duration: Duration,
        /// Keeps the claim renewed by the worker until it is acknowledged.
        held: HeldGuard,
    },
}

impl Env {
    /// Runs the run `run` of `def`, which this worker claimed with its job under `token` (the claim is held and
    /// renewed from here on). Its `completed` row is not written here: see [`Taken::ToAck`].
    pub(crate) async fn run_taken(
        &self,
        def: &'static OperationDef,
        run: i64,
        batch: i64,
        token: String,
    ) -> Result<Taken, LedgerError> {
        let span = tracing::info_span!("operation", name = def.meta.name, run, batch, tags = "");
        let op = OpRun {
            run: Some(run),
            token,
            cancel: self.cancel.child_token(),
            batch: None,
            task: None,
            first: 1,
            ack: true,
        };
        let (held, heartbeat) = self.hold(def.meta.name, run, &op);
        let ran = self.run_claimed(def, run, &op).instrument(span).await;
        drop(heartbeat);
        Ok(match ran? {
            Ran::ToAck { duration } => Taken::ToAck { duration, held },
            Ran::Ended(outcome) => {
                if let Outcome::Skipped { .. } = &outcome {
                    // Queue the jobs that waited for this operation (as `run` does).
                    if let Err(e) = self.ledger.unblock_jobs_after(def.meta.name).await {
                        tracing::warn!(
                            operation = def.meta.name,
                            "cannot queue the jobs behind it: {e}"
                        );
                    }
                }
                Taken::Ended(outcome)
            }
        })
    }

    /// Records the completion of a run whose function returned, on the pool (not batched).
    pub(super) async fn record_completed(
        &self,
        def: &OperationDef,
        run: i64,
        token: &str,
        duration: Duration,
    ) -> Result<Outcome, LedgerError> {
        let end = Finish {
            token,
            name: def.meta.name,
            run,
            status: Status::Completed,
            duration,
            skip_reason: None,
            error: None,
        };
        if !self.ledger.finish_on_pool(&end).await? {
            return Ok(self.lost_claim(def, ""));
        }
        Ok(self.succeeded(def, duration))
    }

    /// Announces a completion recorded in the ledger, and says it.
    pub(crate) fn succeeded(&self, def: &OperationDef, duration: Duration) -> Outcome {
        self.emit(Event::OperationSucceeded {
            via: self.via,
            name: def.meta.name.to_owned(),
            duration_ms: duration.as_millis() as u64,
        });
        Outcome::Completed {
            duration_ms: duration.as_millis() as u64,
        }
    }

    /// The outcome of a run whose acknowledgement found its claim taken over: announced, nothing written.
    pub(crate) fn lost_ack(&self, def: &OperationDef) -> Outcome {
        self.lost_claim(def, "")
    }
}
