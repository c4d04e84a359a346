//! Runs one operation: claim, conditions, hooks, attempts with retries and timeouts, panics caught, the end
//! recorded. Every orchestrator calls this, so every policy applies on every path.

mod deferred_data;
pub(crate) mod layer;
pub(crate) mod policy;
mod rollback;
pub(crate) mod taken;
pub(crate) mod task;
mod task_data;
pub(crate) mod watchdog;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sequencer_core::Middleware;
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::crypto::{place, Keyring};
use crate::ctx::batch::{AddMembers, BatchHandle};
use crate::ctx::{Cancelled, Ctx, Recorder, StateMap};
use crate::events::{Event, Via};
use crate::executor::layer::Layer;
use crate::executor::policy::{jittered, LockRefusal, Policies};
use crate::executor::task::{attempt_once, AttemptError};
use crate::executor::watchdog::HardTimeout;
use crate::lease::{renew_every_third, sleep_or_cancel, Held, HeldGuard};
use crate::ledger::batches::BatchId;
use crate::ledger::error::LedgerError;
use crate::ledger::runs::{Claim, Finish, Status};
use crate::ledger::{new_claim_token, Ledger, Owner};
use crate::plan::Due;
use crate::registry::OperationDef;
use crate::report::Outcome;
use crate::result::{describe, Error, Skipped};

pub(crate) use task_data::{run_tags, TaskData};

/// What every run of an operation shares.
#[derive(Clone)]
pub(crate) struct Env {
    pub ledger: Ledger,
    pub owner: Owner,
    pub state: Arc<StateMap>,
    pub events: broadcast::Sender<Event>,
    pub environment: Option<String>,
    pub lease: Duration,
    pub cancel: CancellationToken,
    /// Named rate limits defined on the builder: `(starts, per)`.
    pub limiters: Arc<HashMap<String, (u32, Duration)>>,
    /// Layers every operation runs through, outermost first.
    pub layers: Arc<Vec<Arc<dyn Layer>>>,
    /// Layers registered by name, run around the operations that list them (`middleware = [audit]`).
    pub named_layers: Arc<HashMap<String, Arc<dyn Layer>>>,
    /// Fraction of each backoff taken off at random (0 = none), so that many retries do not stampede.
    pub jitter: f64,
    /// Keys sealing deferred payloads and the recorded context of `encrypted` operations.
    pub keys: Arc<Keyring>,
    /// The operation claims this process is running, by token.
    pub held: Arc<Held>,
    /// A worker's heartbeat renews every claim held here in one statement: a run spawns no heartbeat of its own,
    /// its claim is held with its cancellation token instead (see [`Held::hold_cancel`]).
    pub worker_beats: bool,
    /// Whether a job may wait for the operations run here (`blocked` behind them): true when the registry has an
    /// `asynchronous` operation or `process` queues them all. Else their ends release nothing, and no statement
    /// looks (an idle worker still releases, within a second, what another registry queued).
    pub releases_jobs: bool,
    /// How the runs of this environment were started, as their events say.
    pub via: Via,
    /// Hard timeouts: the grace after an operation's `timeout` (see [`watchdog`]); `None`: off.
    pub hard_timeout_grace: Option<Duration>,
    /// What adds members to a recorded batch, for the `ctx.batch()` of its members.
    pub members: Arc<dyn AddMembers>,
    /// The deferred handlers registered on the builder, each a task.
    pub deferred: Arc<crate::handlers::DeferredHandlers>,
}

/// One claimed run: its ledger run number (none when unrecorded), its claim token, its cancellation token and,
/// for a task run, its data.
pub(crate) struct OpRun {
    run: Option<i64>,
    token: String,
    cancel: CancellationToken,
    batch: Option<BatchId>,
    task: Option<Arc<TaskData>>,
    /// The number of its first attempt here (a bounded run's tries go on from those its claim counted).
    first: u32,
    /// A worker acknowledges this run's completion with others ([`Ran::ToAck`]) instead of writing it here.
    ack: bool,
}

/// How a claimed run ended: recorded, or returned `Ok` and left for its worker to acknowledge (its row still
/// `running` under its claim).
pub(crate) enum Ran {
    Ended(Outcome),
    ToAck { duration: Duration },
}

impl Env {
    /// The layers around an attempt of `def`: every operation's, then those its `middleware` names, in order.
    /// (`build()` checked that each name is registered.)
    fn layers_for(&self, def: &OperationDef) -> Arc<Vec<Arc<dyn Layer>>> {
        let named = def.meta.middleware.iter().filter_map(|m| match m {
            Middleware::Named(name) => self.named_layers.get(*name).cloned(),
            _ => None,
        });
        let named: Vec<Arc<dyn Layer>> = named.collect();
        if named.is_empty() {
            return self.layers.clone();
        }
        Arc::new(self.layers.iter().cloned().chain(named).collect())
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Claims and runs one operation, recording everything in the ledger.
    pub async fn run(&self, due: &Due, batch: i64) -> Result<Outcome, LedgerError> {
        self.run_with(due, batch, None).await
    }

    pub(crate) async fn run_with(
        &self,
        due: &Due,
        batch: i64,
        task: Option<Arc<TaskData>>,
    ) -> Result<Outcome, LedgerError> {
        let def = due.def();
        // Locks first, claim second: while waiting for a lock no row is `running` without a heartbeat, and a held
        // lock leaves the row exactly as it was (pending, scheduled with its due time, or no new run).
        let keys = task.as_ref().map(|t| &t.keys);
        let locks = match self.policies().take_locks(def, keys).await {
            Ok(locks) => locks,
            Err(LockRefusal::Busy(reason)) => return Ok(Outcome::Deferred { reason }),
            Err(LockRefusal::Ledger(e)) => return Err(e),
        };
        let outcome = self.claim_and_run(due, batch, task).await;
        for (name, owner) in locks {
            self.ledger.release_named_lock(&name, &owner).await?;
        }
        if !self.releases_jobs {
            return outcome;
        }
        if let Ok(Outcome::Completed { .. } | Outcome::Skipped { .. }) = &outcome {
            // Queue the jobs that waited for this operation. Its own end is recorded already; should this fail,
            // idle workers and the next `process` release them.
            if let Err(e) = self.ledger.unblock_jobs_after(def.meta.name).await {
                tracing::warn!(
                    operation = def.meta.name,
                    "cannot queue the jobs behind it: {e}"
                );
            }
        }
        outcome
    }

    async fn claim_and_run(
        &self,
        due: &Due,
        batch: i64,
        task: Option<Arc<TaskData>>,
    ) -> Result<Outcome, LedgerError> {
        let def = due.def();
        let meta = &def.meta;
        let checksum = format!("{:016x}", meta.checksum);
        let token = new_claim_token();
        let bounded = task.as_ref().and_then(|t| t.tries);
        let claim = Claim {
            name: meta.name,
            run: due.run(),
            batch,
            owner: &self.owner,
            lease: self.lease,
            checksum: &checksum,
            // A run whose data bounds its tries (a deferred run) is taken again while it has tries left: the claim
            // counts them across crashes.
            reclaim_interrupted: bounded.is_some() || meta.runs_again_after_interruption(),
            due_scheduled: due.is_scheduled(),
            token: &token,
            failed_before: due.failures_until(),
            bounded,
        };
        let claimed = if due.is_new_run() {
            self.ledger
                .claim_new_run(&claim, meta.timestamp.version() as i64)
                .await?
        } else {
            self.ledger.claim(&claim).await?
        };
        if !claimed {
            return Ok(Outcome::NotClaimed);
        }
        // A bounded run's first try now is the one its claim counted (1 unless earlier tries failed or crashed).
        let first = match bounded {
            Some(_) => self
                .ledger
                .claimed_attempts(meta.name, due.run(), &token)
                .await?
                .map_or(1, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX)),
            None => 1,
        };
        let tags = task.as_ref().map(|t| run_tags(def, &t.keys).join(","));
        let span = tracing::info_span!(
            "operation",
            name = meta.name,
            run = due.run(),
            batch,
            tags = tags.as_deref().unwrap_or_default()
        );
        let op = OpRun {
            run: Some(due.run()),
            token,
            cancel: self.cancel.child_token(),
            batch: due.batch(),
            task,
            first,
            ack: false,
        };
        let (_held, heartbeat) = self.hold(meta.name, due.run(), &op);
        let ran = self.run_claimed(def, due.run(), &op).instrument(span).await;
        drop(heartbeat);
        match ran? {
            Ran::Ended(outcome) => Ok(outcome),
            Ran::ToAck { duration } => {
                self.record_completed(def, due.run(), &op.token, duration)
                    .await
            }
        }
    }

    /// The keyring to seal an operation's recorded context with, if it is `encrypted`.
    fn seal_for(&self, def: &OperationDef) -> Option<&Keyring> {
        def.meta.encrypted.then_some(&*self.keys)
    }

    /// Text as the ledger stores it: sealed for an `encrypted` operation.
    fn stored_text(&self, def: &OperationDef, run: i64, text: &str) -> String {
        match self.seal_for(def) {
            Some(keys) => keys
                .seal_for(text, &place::last_error(def.meta.name, run))
                .unwrap_or_else(|e| format!("[not recorded: {e}]")),
            None => text.to_owned(),
        }
    }

    /// Holds a claimed run's claim until the guard is dropped, renewed by its own heartbeat (the second guard), or
    /// by its worker's when the worker beats for all its claims.
    pub(crate) fn hold(
        &self,
        name: &'static str,
        run: i64,
        op: &OpRun,
    ) -> (HeldGuard, Option<DropGuard>) {
        if self.worker_beats {
            return (
                self.held.hold_cancel(op.token.clone(), op.cancel.clone()),
                None,
            );
        }
        (
            self.held.hold(op.token.clone()),
            Some(self.heartbeat(name, run, op)),
        )
    }

    /// Renews the lease every third of it until cancelled.
    fn heartbeat(&self, name: &'static str, run: i64, op: &OpRun) -> DropGuard {
        let (ledger, token, op_cancel) = (self.ledger.clone(), op.token.clone(), op.cancel.clone());
        let lease = self.lease;
        renew_every_third(lease, move || {
            let (ledger, token, op_cancel) = (ledger.clone(), token.clone(), op_cancel.clone());
            async move {
                match ledger.heartbeat(name, run, lease, &token).await {
                    Ok(true) => {}
                    // Another process recovered the row after the lease ran out: stop the operation.
                    Ok(false) => op_cancel.cancel(),
                    Err(e) => tracing::warn!(operation = name, "cannot renew the lease: {e}"),
                }
                // `cancel NAME` from any process: fire the operation's cancellation token.
                if ledger.cancel_requested(name, run).await.unwrap_or(false) {
                    op_cancel.cancel();
                }
            }
        })
    }

    async fn run_claimed(
        &self,
        def: &'static OperationDef,
        run: i64,
        op: &OpRun,
    ) -> Result<Ran, LedgerError> {
        let meta = &def.meta;
        let started = Instant::now();
        if let Some(reason) = self.environment_refusal(def) {
            return self
                .end_skipped(def, run, &op.token, started, reason)
                .await
                .map(Ran::Ended);
        }
        if let Some(cond) = def.should_run {
            let ctx = self.ctx(def, 1, false, op);
            if !cond(&ctx).await {
                return self
                    .end_skipped(
                        def,
                        run,
                        &op.token,
                        started,
                        "`should_run` returned false".to_owned(),
                    )
                    .await
                    .map(Ran::Ended);
            }
        }
        let policy = meta.retry;
        // A run's own bound on its tries (a deferred run's `max_attempts`, counted across claims), within its
        // task's. Such a run takes one try per claim: a failed try with tries left goes back on its queue.
        let bounded = op.task.as_ref().and_then(|t| t.tries);
        let mut tries = bounded.map_or(policy.tries, |t| t.clamp(1, policy.tries));
        if op.task.as_ref().is_some_and(|t| t.args.is_err()) && bounded.is_some() {
            // Data that cannot be read: this try is its last.
            tries = op.first;
        }
        let deadline = policy.retry_until.map(|d| started + d);
        let mut exceptions = 0u32;
        let mut attempt = op.first;
        loop {
            // A lost claim (the row was recovered by another process after this one's lease ran out) ends the
            // run here: no further attempt, and no write to a row that another process owns now.
            if attempt > op.first
                && !self
                    .ledger
                    .attempt(meta.name, run, attempt, self.lease, &op.token)
                    .await?
            {
                return Ok(Ran::Ended(self.lost_claim(def, "")));
            }
            self.emit(Event::OperationStarted {
                via: self.via,
                name: meta.name.to_owned(),
                attempt,
            });
            if let Some(task) = &op.task {
                self.emit(Event::TaskStarted {
                    via: self.via,
                    name: meta.name.to_owned(),
                    run,
                    attempt,
                    tags: run_tags(def, &task.keys),
                });
            }
            // Wait for rate limits and throttles before the attempt. A `transaction` operation's transaction is
            // begun when the operation asks for it (`ctx.tx()`, `ctx.postgres_tx()`, …), of that kind.
            let rate_key = op.task.as_ref().and_then(|t| t.keys.rate.as_deref());
            self.policies().before_attempt(def, rate_key).await?;
            let ctx = Arc::new(self.ctx(def, attempt, meta.transaction, op));
            let hard = self.hard_timeout(def, run, attempt, &op.token, started);
            let result = attempt_once(def, ctx.clone(), self.layers_for(def), hard).await;
            let error = match result {
                Ok(()) => {
                    let duration = started.elapsed();
                    let mut tx = ctx.take_tx().await;
                    if op.ack && tx.conn().is_none() {
                        // Its worker writes `completed` with others, once the function has returned: this one.
                        return Ok(Ran::ToAck { duration });
                    }
                    let end = Finish {
                        token: &op.token,
                        name: meta.name,
                        run,
                        status: Status::Completed,
                        duration,
                        skip_reason: None,
                        error: None,
                    };
                    // The operation's writes and its `completed` row commit together, and only while the row is
                    // still this process's claim. A transaction never begun holds nothing: the pool ends the run.
                    let in_tx = match tx.conn() {
                        Some(conn) => Some(self.ledger.finish(conn, &end).await?),
                        None => None,
                    };
                    let still_ours = match in_tx {
                        Some(true) => {
                            tx.commit().await?;
                            true
                        }
                        Some(false) => false,
                        None => self.ledger.finish_on_pool(&end).await?,
                    };
                    if !still_ours {
                        let tx = if in_tx.is_some() {
                            "; its transaction was rolled back"
                        } else {
                            ""
                        };
                        return Ok(Ran::Ended(self.lost_claim(def, tx)));
                    }
                    return Ok(Ran::Ended(self.succeeded(def, duration)));
                }
                Err(AttemptError::Failed(e)) => e,
                Err(AttemptError::TimedOut(e)) => {
                    if meta.fail_on_timeout {
                        attempt = tries;
                    }
                    e
                }
            };
            drop(ctx.take_tx().await);
            if error.downcast_ref::<Cancelled>().is_some() {
                let message = self
                    .end_with_error(def, run, &op.token, started, Status::Interrupted, &error)
                    .await?;
                return Ok(Ran::Ended(Outcome::Cancelled { reason: message }));
            }
            if let Some(skip) = error.downcast_ref::<Skipped>() {
                return self
                    .end_skipped(def, run, &op.token, started, skip.reason.clone())
                    .await
                    .map(Ran::Ended);
            }
            exceptions += 1;
            self.policies().after_failure(def).await?;
            self.ledger
                .record_error(meta.name, run, attempt, &error, self.seal_for(def))
                .await?;
            let out_of_exceptions = policy.max_exceptions.is_some_and(|m| exceptions >= m);
            let delay = if policy.retry_until.is_some()
                && matches!(policy.backoff, sequencer_core::Backoff::None)
            {
                // `retry_until` without a backoff: one try a second, not a tight loop.
                Duration::from_secs(1)
            } else {
                policy.delay_before(attempt + 1)
            };
            let delay = jittered(delay, self.jitter, fastrand::f64());
            let past_deadline = deadline.is_some_and(|d| Instant::now() + delay > d);
            if bounded.is_some() && attempt < tries && !out_of_exceptions && !past_deadline {
                return self
                    .retry_later(def, run, &op.token, started, attempt, delay, &error)
                    .await
                    .map(Ran::Ended);
            }
            if attempt < tries
                && !out_of_exceptions
                && !past_deadline
                && !self.cancel.is_cancelled()
            {
                self.emit(Event::OperationRetrying {
                    via: self.via,
                    name: meta.name.to_owned(),
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                    error: describe(&error),
                });
                sleep_or_cancel(delay, &self.cancel).await;
                attempt += 1;
                continue;
            }
            if let Some(failed) = def.failed {
                let ctx = self.ctx(def, attempt, false, op);
                if let Err(hook_error) = failed(&ctx, &error).await {
                    self.ledger
                        .record_error(
                            meta.name,
                            run,
                            attempt,
                            &hook_error.context("the `failed` hook failed"),
                            self.seal_for(def),
                        )
                        .await?;
                }
            }
            let message = self
                .end_with_error(def, run, &op.token, started, Status::Failed, &error)
                .await?;
            return Ok(Ran::Ended(Outcome::Failed {
                error: message,
                allowed_to_fail: meta.allowed_to_fail,
            }));
        }
    }

    /// Records the end of a run that stopped with an error (`failed`, or `interrupted` when cancelled), the error
    /// sealed for an `encrypted` operation, and announces it. Returns the message.
    async fn end_with_error(
        &self,
        def: &OperationDef,
        run: i64,
        token: &str,
        started: Instant,
        status: Status,
        error: &Error,
    ) -> Result<String, LedgerError> {
        let message = describe(error);
        let stored = self.stored_text(def, run, &message);
        let end = Finish {
            token,
            name: def.meta.name,
            run,
            status,
            duration: started.elapsed(),
            skip_reason: None,
            error: Some(&stored),
        };
        self.ledger.finish_on_pool(&end).await?;
        // Stopped by `cancel NAME` is said as such, not as a failure.
        self.emit(if status == Status::Interrupted {
            Event::OperationCancelled {
                via: self.via,
                name: def.meta.name.to_owned(),
                reason: message.clone(),
            }
        } else {
            Event::OperationFailed {
                via: self.via,
                name: def.meta.name.to_owned(),
                error: message.clone(),
                allowed_to_fail: def.meta.allowed_to_fail,
            }
        });
        Ok(message)
    }

    fn ctx(&self, def: &'static OperationDef, attempt: u32, transaction: bool, op: &OpRun) -> Ctx {
        let recorder = op.run.map(|run| Recorder {
            keys: self.keys.clone(),
            ledger: self.ledger.clone(),
            run,
            token: op.token.clone(),
            events: self.events.clone(),
            via: self.via,
            throttle_on: def.throttle_on,
        });
        Ctx::new(
            &def.meta,
            attempt,
            self.state.clone(),
            (self.ledger.pool().clone(), self.ledger.native().clone()),
            // Each attempt gets its own token: a timeout cancels that attempt only, `cancel NAME` all of them.
            op.cancel.child_token(),
            transaction.then(|| self.ledger.clone()),
            recorder,
        )
        .in_batch(
            op.batch
                .map(|id| BatchHandle::new(id, self.ledger.clone(), self.members.clone())),
        )
        .with_task_args(op.task.as_ref().map(|t| t.args.clone()))
        .with_deferred(op.task.as_ref().and_then(|t| t.handler.clone()))
    }

    /// The hard timeout of an attempt, when hard timeouts are on and the operation has a `timeout`.
    fn hard_timeout(
        &self,
        def: &'static OperationDef,
        run: i64,
        attempt: u32,
        token: &str,
        started: Instant,
    ) -> Option<HardTimeout> {
        let (timeout, grace) = (def.meta.timeout?, self.hard_timeout_grace?);
        Some(HardTimeout {
            limit: timeout + watchdog::grace_for(timeout, grace),
            url: self.ledger.url().to_owned(),
            prefix: self.ledger.prefix().to_owned(),
            name: def.meta.name,
            run,
            attempt,
            token: token.to_owned(),
            started,
            timeout,
        })
    }

    fn environment_refusal(&self, def: &OperationDef) -> Option<String> {
        let allowed = def.meta.environments;
        if allowed.is_empty() {
            return None;
        }
        match &self.environment {
            Some(env) if allowed.contains(&env.as_str()) => None,
            Some(env) => Some(format!("environment `{env}` is not one of {allowed:?}")),
            None => Some(format!(
                "no environment set (SEQUENCER_ENV); it runs only in {allowed:?}"
            )),
        }
    }

    async fn end_skipped(
        &self,
        def: &OperationDef,
        run: i64,
        token: &str,
        started: Instant,
        reason: String,
    ) -> Result<Outcome, LedgerError> {
        let end = Finish {
            token,
            name: def.meta.name,
            run,
            status: Status::Skipped,
            duration: started.elapsed(),
            skip_reason: Some(&reason),
            error: None,
        };
        self.ledger.finish_on_pool(&end).await?;
        self.emit(Event::OperationSkipped {
            via: self.via,
            name: def.meta.name.to_owned(),
            reason: reason.clone(),
        });
        Ok(Outcome::Skipped { reason })
    }

    fn policies(&self) -> Policies<'_> {
        Policies {
            ledger: &self.ledger,
            owner: &self.owner,
            cancel: &self.cancel,
            limiters: &self.limiters,
        }
    }

    /// Runs an operation's attempts without the ledger (`execute --no-record`).
    pub async fn run_unrecorded(&self, def: &'static OperationDef) -> Outcome {
        let started = Instant::now();
        let op = OpRun {
            run: None,
            token: String::new(),
            cancel: self.cancel.child_token(),
            batch: None,
            task: None,
            first: 1,
            ack: false,
        };
        let ctx = Arc::new(self.ctx(def, 1, false, &op));
        match attempt_once(def, ctx, self.layers_for(def), None).await {
            Ok(()) => Outcome::Completed {
                duration_ms: started.elapsed().as_millis() as u64,
            },
            Err(AttemptError::Failed(e) | AttemptError::TimedOut(e)) => {
                match e.downcast_ref::<Skipped>() {
                    Some(s) => Outcome::Skipped {
                        reason: s.reason.clone(),
                    },
                    None => Outcome::Failed {
                        error: describe(&e),
                        allowed_to_fail: def.meta.allowed_to_fail,
                    },
                }
            }
        }
    }

    /// The outcome of a run whose claim another process took over: reported, and nothing more written.
    fn lost_claim(&self, def: &OperationDef, note: &str) -> Outcome {
        let meta = &def.meta;
        let error = format!(
            "`{}` lost its claim: its lease ran out and another process recovered it{note}",
            meta.name
        );
        self.emit(Event::OperationFailed {
            via: self.via,
            name: meta.name.to_owned(),
            error: error.clone(),
            allowed_to_fail: meta.allowed_to_fail,
        });
        Outcome::Failed {
            error,
            allowed_to_fail: meta.allowed_to_fail,
        }
    }
}
