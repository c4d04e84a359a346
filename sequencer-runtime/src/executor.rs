//! Runs one operation: claim, conditions, hooks, attempts with retries and timeouts, panics caught, the end
//! recorded. Every orchestrator calls this, so every policy applies on every path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::ctx::StateMap;
use crate::events::Event;
use crate::ledger::{Claim, Finish, Ledger, LedgerError, Owner, Status};
use std::collections::HashMap;

use crate::{BoxFuture, Ctx, Error, Middleware, OperationDef, Skipped};

/// User middleware: wraps every attempt of every operation, on every path (register it with
/// [`SequencerBuilder::layer`](crate::SequencerBuilder::layer)). Call `next.run(ctx)` to go on, or return
/// without calling it to stop the attempt; an `Err` is treated like the operation's own (`Err(Skip(..))` skips).
/// Layers run inside the timeout, between the `before` and `after` hooks, outermost first in the order added.
///
/// ```
/// use sequencer::{BoxFuture, Ctx, Layer, Next, Result, Skip};
///
/// /// Logs every attempt.
/// struct Audit;
///
/// impl Layer for Audit {
///     fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, Result<()>> {
///         Box::pin(async move {
///             tracing::info!(operation = ctx.operation().name, "starting");
///             next.run(ctx).await
///         })
///     }
/// }
///
/// /// Skips operations tagged `paused` instead of running them.
/// struct Pause;
///
/// impl Layer for Pause {
///     fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, Result<()>> {
///         Box::pin(async move {
///             if ctx.operation().tags.contains(&"paused") {
///                 return Err(Skip("paused by the Pause layer"));
///             }
///             next.run(ctx).await
///         })
///     }
/// }
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000", tags = ["paused"])]
///     async fn reindex(_ctx: &Ctx) -> Result<()> {
///         unreachable!("the Pause layer skips it")
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let builder = sequencer::Sequencer::builder().registry(ops::registry()).layer(Audit).layer(Pause);
/// # let ledger = sequencer::testing::ledger(builder).await.unwrap();
/// # let report = ledger.sequencer.execute_all().await.unwrap();
/// # assert_eq!(report.count(|o| matches!(o, sequencer::OutcomeKind::Skipped { .. })), 1);
/// # }
/// ```
pub trait Layer: Send + Sync {
    /// Runs around one attempt.
    fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, crate::Result<()>>;
}

/// The rest of the chain: the next layer, then the operation. See [`Layer`] for an example.
pub struct Next<'a> {
    layers: &'a [Arc<dyn Layer>],
    def: &'static OperationDef,
}

impl<'a> Next<'a> {
    /// Runs the rest of the chain.
    pub fn run(self, ctx: &'a Ctx) -> BoxFuture<'a, crate::Result<()>> {
        match self.layers.split_first() {
            Some((layer, rest)) => layer.handle(
                ctx,
                Next {
                    layers: rest,
                    def: self.def,
                },
            ),
            None => (self.def.handler)(ctx),
        }
    }
}

/// How one operation's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran to the end.
    Completed {
        /// How long, all attempts included.
        duration: Duration,
    },
    /// It failed (after every attempt).
    Failed {
        /// The last error, with its causes.
        error: String,
    },
    /// It was skipped.
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
}

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
    /// Fraction of each backoff taken off at random (0 = none), so that many retries do not stampede.
    pub jitter: f64,
    /// Keys sealing deferred payloads and the recorded context of `encrypted` operations.
    pub keys: Arc<crate::crypto::Keyring>,
}

/// `delay` less a random part of up to `fraction` of it; `unit` is a random number in [0, 1).
pub(crate) fn jittered(delay: Duration, fraction: f64, unit: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    delay.mul_f64(1.0 - fraction * unit.clamp(0.0, 1.0))
}

/// One claimed run: its ledger run number (none when unrecorded) and its cancellation token.
pub(crate) struct OpRun {
    run: Option<i64>,
    cancel: CancellationToken,
}

/// Which run of the operation to claim.
pub(crate) struct Target {
    pub run: i64,
    /// `--repeat`: a new run, inserted rather than updated.
    pub new_run: bool,
    pub batch: i64,
    /// The row is `scheduled` and due.
    pub scheduled: bool,
}

impl Env {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Claims and runs one operation, recording everything in the ledger.
    pub async fn run(
        &self,
        def: &'static OperationDef,
        target: Target,
    ) -> Result<Outcome, LedgerError> {
        // Locks first, claim second: while waiting for a lock no row is `running` without a heartbeat, and a held
        // lock leaves the row exactly as it was (pending, scheduled with its due time, or no new run).
        let locks = match self.take_locks(def).await {
            Ok(locks) => locks,
            Err(Ok(reason)) => return Ok(Outcome::Deferred { reason }),
            Err(Err(e)) => return Err(e),
        };
        let outcome = self.claim_and_run(def, &target).await;
        for (name, owner) in locks {
            self.ledger.release_named_lock(&name, &owner).await?;
        }
        outcome
    }

    async fn claim_and_run(
        &self,
        def: &'static OperationDef,
        target: &Target,
    ) -> Result<Outcome, LedgerError> {
        let meta = &def.meta;
        let checksum = format!("{:016x}", meta.checksum);
        let claim = Claim {
            name: meta.name,
            run: target.run,
            batch: target.batch,
            owner: &self.owner,
            lease: self.lease,
            checksum: &checksum,
            reclaim_interrupted: meta.idempotent || meta.retry.tries > 1,
            due_scheduled: target.scheduled,
        };
        let claimed = if target.new_run {
            self.ledger
                .claim_new_run(&claim, meta.timestamp.version() as i64)
                .await?
        } else {
            self.ledger.claim(&claim).await?
        };
        if !claimed {
            return Ok(Outcome::NotClaimed);
        }
        let span = tracing::info_span!(
            "operation",
            name = meta.name,
            run = target.run,
            batch = target.batch
        );
        let op = OpRun {
            run: Some(target.run),
            cancel: self.cancel.child_token(),
        };
        let heartbeat = self.heartbeat(meta.name, target.run, op.cancel.clone());
        let outcome = self
            .run_claimed(def, target.run, &op)
            .instrument(span)
            .await;
        heartbeat.cancel();
        outcome
    }

    /// The keyring to seal an operation's recorded context with, if it is `encrypted`.
    fn seal_for(&self, def: &OperationDef) -> Option<&crate::crypto::Keyring> {
        def.meta.encrypted.then_some(&*self.keys)
    }

    /// Text as the ledger stores it: sealed for an `encrypted` operation.
    fn stored_text(&self, def: &OperationDef, text: &str) -> String {
        match self.seal_for(def) {
            Some(keys) => keys
                .seal(text)
                .unwrap_or_else(|e| format!("[not recorded: {e}]")),
            None => text.to_owned(),
        }
    }

    /// Takes the `unique` key and the `without_overlapping` locks. `Err(Ok(reason))` when one is held elsewhere.
    async fn take_locks(
        &self,
        def: &'static OperationDef,
    ) -> Result<Vec<(String, String)>, Result<String, LedgerError>> {
        let meta = &def.meta;
        let owner = format!("{}:{}:{}", self.owner.host, self.owner.pid, meta.name);
        let mut held: Vec<(String, String)> = Vec::new();
        let mut wanted: Vec<(String, Duration, Option<Duration>, String)> = Vec::new();
        if let Some(u) = meta.unique {
            let hold = u.hold_for.unwrap_or(Duration::from_secs(3600));
            wanted.push((
                format!("unique:{}", u.key),
                hold,
                None,
                format!("unique key `{}` is held by another run", u.key),
            ));
        }
        for m in meta.middleware {
            if let Middleware::WithoutOverlapping {
                key,
                release_after,
                expire_after,
            } = m
            {
                let expire = expire_after.unwrap_or(Duration::from_secs(3600));
                wanted.push((
                    format!("overlap:{key}"),
                    expire,
                    *release_after,
                    format!("`without_overlapping(\"{key}\")` is held by another run"),
                ));
            }
        }
        for (name, hold, retry_after, reason) in wanted {
            loop {
                let expires = crate::ledger::now_ms() + hold.as_millis() as i64;
                match self.ledger.try_named_lock(&name, &owner, expires).await {
                    Ok(true) => {
                        held.push((name.clone(), owner.clone()));
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => return Err(Err(e)),
                }
                let Some(wait) = retry_after.filter(|_| !self.cancel.is_cancelled()) else {
                    for (n, o) in &held {
                        self.ledger.release_named_lock(n, o).await.map_err(Err)?;
                    }
                    return Err(Ok(reason));
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.cancel.cancelled() => {}
                }
            }
        }
        Ok(held)
    }

    /// Waits for the operation's rate limits and closed throttles before an attempt.
    async fn before_attempt(&self, def: &'static OperationDef) -> Result<(), LedgerError> {
        for m in def.meta.middleware {
            match m {
                Middleware::RateLimited { limiter, limit } => {
                    let Some((count, per)) = limit.or_else(|| self.limiters.get(*limiter).copied())
                    else {
                        continue;
                    };
                    let per_ms = (per.as_millis() as i64).max(1);
                    loop {
                        let now = crate::ledger::now_ms();
                        let window = now - now.rem_euclid(per_ms);
                        if self.ledger.rate_limit_hit(limiter, window, count).await?
                            || self.cancel.is_cancelled()
                        {
                            break;
                        }
                        let wait = Duration::from_millis((window + per_ms - now).max(1) as u64);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.cancel.cancelled() => {}
                        }
                    }
                }
                Middleware::ThrottleExceptions { backoff, by, .. } => {
                    let key = by.unwrap_or(def.meta.name);
                    loop {
                        let until = self.ledger.throttle_until(key).await?;
                        let now = crate::ledger::now_ms();
                        if until <= now || self.cancel.is_cancelled() {
                            break;
                        }
                        let mut wait = Duration::from_millis((until - now) as u64);
                        if let Some(b) = backoff {
                            wait = wait.min(*b).max(Duration::from_millis(1));
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.cancel.cancelled() => {}
                        }
                    }
                }
                Middleware::WithoutOverlapping { .. } => {}
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against the operation's `throttle_exceptions`.
    async fn after_failure(&self, def: &'static OperationDef) -> Result<(), LedgerError> {
        for m in def.meta.middleware {
            if let Middleware::ThrottleExceptions {
                max, window, by, ..
            } = m
            {
                self.ledger
                    .throttle_failure(by.unwrap_or(def.meta.name), *max, window.as_millis() as i64)
                    .await?;
            }
        }
        Ok(())
    }

    /// Renews the lease every third of it until cancelled.
    fn heartbeat(
        &self,
        name: &'static str,
        run: i64,
        op_cancel: CancellationToken,
    ) -> CancellationToken {
        let (ledger, owner) = (self.ledger.clone(), self.owner.clone());
        let lease = self.lease;
        renew_every_third(lease, move || {
            let (ledger, owner, op_cancel) = (ledger.clone(), owner.clone(), op_cancel.clone());
            async move {
                match ledger.heartbeat(name, run, lease, &owner).await {
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
    ) -> Result<Outcome, LedgerError> {
        let meta = &def.meta;
        let started = Instant::now();
        if let Some(reason) = self.environment_refusal(def) {
            return self.end_skipped(def, run, started, reason).await;
        }
        if let Some(cond) = def.should_run {
            let ctx = self.ctx(def, 1, None, op);
            if !cond(&ctx).await {
                return self
                    .end_skipped(def, run, started, "`should_run` returned false".to_owned())
                    .await;
            }
        }
        let policy = meta.retry;
        let deadline = policy.retry_until.map(|d| started + d);
        let mut exceptions = 0u32;
        let mut attempt = 1u32;
        loop {
            if attempt > 1 {
                self.ledger
                    .attempt(meta.name, run, attempt, self.lease, &self.owner)
                    .await?;
            }
            self.emit(Event::OperationStarted {
                name: meta.name.to_owned(),
                attempt,
            });
            // Wait for rate limits and throttles before holding a connection for the transaction.
            self.before_attempt(def).await?;
            let tx = if meta.transaction {
                Some(
                    self.ledger
                        .pool()
                        .begin()
                        .await
                        .map_err(|source| LedgerError::Query {
                            what: "begin the operation's transaction",
                            source,
                        })?,
                )
            } else {
                None
            };
            let ctx = Arc::new(self.ctx(def, attempt, tx, op));
            let result = attempt_once(def, ctx.clone(), self.layers.clone()).await;
            let error = match result {
                Ok(()) => {
                    let duration = started.elapsed();
                    let end = Finish {
                        owner: &self.owner,
                        name: meta.name,
                        run,
                        status: Status::Completed,
                        duration,
                        skip_reason: None,
                        error: None,
                    };
                    let still_ours = match ctx.take_tx().await {
                        Some(mut tx) => {
                            // The operation's writes and its `completed` row commit together, and only while the
                            // row is still this process's claim.
                            let ours = self.ledger.finish(&mut *tx, &end).await?;
                            if ours {
                                tx.commit().await.map_err(|source| LedgerError::Query {
                                    what: "commit the operation's transaction",
                                    source,
                                })?;
                            }
                            ours
                        }
                        None => self.ledger.finish_on_pool(&end).await?,
                    };
                    if !still_ours {
                        let error = format!(
                            "`{}` lost its claim: its lease ran out and another process recovered it{}",
                            meta.name,
                            if meta.transaction { "; its transaction was rolled back" } else { "" }
                        );
                        self.emit(Event::OperationFailed {
                            name: meta.name.to_owned(),
                            error: error.clone(),
                            allowed_to_fail: meta.allowed_to_fail,
                        });
                        return Ok(Outcome::Failed { error });
                    }
                    self.emit(Event::OperationSucceeded {
                        name: meta.name.to_owned(),
                        duration_ms: duration.as_millis() as u64,
                    });
                    return Ok(Outcome::Completed { duration });
                }
                Err(AttemptError::Failed(e)) => e,
                Err(AttemptError::TimedOut(e)) => {
                    if meta.fail_on_timeout {
                        attempt = policy.tries;
                    }
                    e
                }
            };
            drop(ctx.take_tx().await);
            if error.downcast_ref::<crate::Cancelled>().is_some() {
                let message = self
                    .end_with_error(def, run, started, Status::Interrupted, &error)
                    .await?;
                return Ok(Outcome::Cancelled { reason: message });
            }
            if let Some(skip) = error.downcast_ref::<Skipped>() {
                return self
                    .end_skipped(def, run, started, skip.reason.clone())
                    .await;
            }
            exceptions += 1;
            self.after_failure(def).await?;
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
            if attempt < policy.tries
                && !out_of_exceptions
                && !past_deadline
                && !self.cancel.is_cancelled()
            {
                self.emit(Event::OperationRetrying {
                    name: meta.name.to_owned(),
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                    error: format!("{error:#}"),
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.cancel.cancelled() => {}
                }
                attempt += 1;
                continue;
            }
            if let Some(failed) = def.failed {
                let ctx = self.ctx(def, attempt, None, op);
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
                .end_with_error(def, run, started, Status::Failed, &error)
                .await?;
            return Ok(Outcome::Failed { error: message });
        }
    }

    /// Records the end of a run that stopped with an error (`failed`, or `interrupted` when cancelled), the error
    /// sealed for an `encrypted` operation, and announces it. Returns the message.
    async fn end_with_error(
        &self,
        def: &OperationDef,
        run: i64,
        started: Instant,
        status: Status,
        error: &Error,
    ) -> Result<String, LedgerError> {
        let message = format!("{error:#}");
        let stored = self.stored_text(def, &message);
        let end = Finish {
            owner: &self.owner,
            name: def.meta.name,
            run,
            status,
            duration: started.elapsed(),
            skip_reason: None,
            error: Some(&stored),
        };
        self.ledger.finish_on_pool(&end).await?;
        let allowed_to_fail = status == Status::Interrupted || def.meta.allowed_to_fail;
        self.emit(Event::OperationFailed {
            name: def.meta.name.to_owned(),
            error: message.clone(),
            allowed_to_fail,
        });
        Ok(message)
    }

    fn ctx(
        &self,
        def: &'static OperationDef,
        attempt: u32,
        tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
        op: &OpRun,
    ) -> Ctx {
        let recorder = op.run.map(|run| crate::ctx::Recorder {
            keys: self.keys.clone(),
            ledger: self.ledger.clone(),
            run,
            events: self.events.clone(),
        });
        Ctx::new(
            &def.meta,
            attempt,
            self.state.clone(),
            self.ledger.pool().clone(),
            // Each attempt gets its own token: a timeout cancels that attempt only, `cancel NAME` all of them.
            op.cancel.child_token(),
            tx,
            recorder,
        )
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
        started: Instant,
        reason: String,
    ) -> Result<Outcome, LedgerError> {
        let end = Finish {
            owner: &self.owner,
            name: def.meta.name,
            run,
            status: Status::Skipped,
            duration: started.elapsed(),
            skip_reason: Some(&reason),
            error: None,
        };
        self.ledger.finish_on_pool(&end).await?;
        self.emit(Event::OperationSkipped {
            name: def.meta.name.to_owned(),
            reason: reason.clone(),
        });
        Ok(Outcome::Skipped { reason })
    }

    /// Runs an operation's rollback and records the result. `Err` carries the rollback's error message.
    pub async fn roll_back(
        &self,
        def: &'static OperationDef,
        run: i64,
    ) -> Result<Result<(), String>, LedgerError> {
        let Some(rollback) = def.rollback else {
            return Ok(Err(format!("`{}` has no rollback", def.meta.name)));
        };
        // Claim the rollback first: of two processes rolling back the same operation, one runs it.
        if !self
            .ledger
            .set_status(
                def.meta.name,
                run,
                Status::Completed,
                Status::RolledBack,
                None,
            )
            .await?
        {
            return Ok(Err(format!(
                "`{}` is no longer completed: another process rolled it back or changed it",
                def.meta.name
            )));
        }
        let op = OpRun {
            run: Some(run),
            cancel: self.cancel.child_token(),
        };
        let ctx = Arc::new(self.ctx(def, 1, None, &op));
        match run_task(ctx.clone(), move |ctx| rollback(ctx), None).await {
            Ok(()) => {
                self.emit(Event::OperationRolledBack {
                    name: def.meta.name.to_owned(),
                });
                Ok(Ok(()))
            }
            Err(AttemptError::Failed(e) | AttemptError::TimedOut(e)) => {
                // Not undone: it stays completed, with the rollback's error recorded.
                self.ledger
                    .set_status(
                        def.meta.name,
                        run,
                        Status::RolledBack,
                        Status::Completed,
                        None,
                    )
                    .await?;
                let e = e.context(format!("rollback of `{}` failed", def.meta.name));
                self.ledger
                    .record_error(def.meta.name, run, 0, &e, self.seal_for(def))
                    .await?;
                Ok(Err(format!("{e:#}")))
            }
        }
    }
}

enum AttemptError {
    Failed(Error),
    TimedOut(Error),
}

/// One attempt: `before`, the operation, `after`, under the timeout, with panics caught.
async fn attempt_once(
    def: &'static OperationDef,
    ctx: Arc<Ctx>,
    layers: Arc<Vec<Arc<dyn Layer>>>,
) -> Result<(), AttemptError> {
    run_task(
        ctx,
        move |ctx| {
            Box::pin(async move {
                if let Some(before) = def.before {
                    before(ctx)
                        .await
                        .map_err(|e| e.context("the `before` hook failed"))?;
                }
                Next {
                    layers: &layers,
                    def,
                }
                .run(ctx)
                .await?;
                if let Some(after) = def.after {
                    after(ctx)
                        .await
                        .map_err(|e| e.context("the `after` hook failed"))?;
                }
                Ok(())
            })
        },
        def.meta.timeout,
    )
    .await
}

/// [`run_task`] with the error flattened, for callers outside the executor (deferred handlers).
pub(crate) async fn run_boxed<F>(
    ctx: Arc<Ctx>,
    f: F,
    timeout: Option<Duration>,
) -> crate::Result<()>
where
    F: for<'a> FnOnce(&'a Ctx) -> crate::BoxFuture<'a, crate::Result<()>> + Send + 'static,
{
    run_task(ctx, f, timeout)
        .await
        .map_err(|(AttemptError::Failed(e) | AttemptError::TimedOut(e))| e)
}

/// Runs `f(ctx)` on its own task so that a panic is caught and reported, under an optional timeout.
async fn run_task<F>(ctx: Arc<Ctx>, f: F, timeout: Option<Duration>) -> Result<(), AttemptError>
where
    F: for<'a> FnOnce(&'a Ctx) -> crate::BoxFuture<'a, crate::Result<()>> + Send + 'static,
{
    let cancel = ctx.cancellation().clone();
    let name = ctx.operation().name;
    let task = tokio::spawn(async move { f(&ctx).await });
    let abort = task.abort_handle();
    let joined = match timeout {
        Some(limit) => match tokio::time::timeout(limit, task).await {
            Ok(joined) => joined,
            Err(_) => {
                cancel.cancel();
                abort.abort();
                let d = humantime_secs(limit);
                return Err(AttemptError::TimedOut(anyhow::anyhow!(
                    "`{name}` timed out after {d}"
                )));
            }
        },
        None => task.await,
    };
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(AttemptError::Failed(e)),
        Err(join) if join.is_panic() => {
            let panic = join.into_panic();
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned());
            Err(AttemptError::Failed(anyhow::anyhow!(
                "`{name}` panicked: {msg}"
            )))
        }
        Err(join) => Err(AttemptError::Failed(anyhow::anyhow!(
            "`{name}` was cancelled: {join}"
        ))),
    }
}

fn humantime_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl Env {
    /// Runs an operation's attempts without the ledger (`execute --no-record`).
    pub async fn run_unrecorded(&self, def: &'static OperationDef) -> Outcome {
        let started = Instant::now();
        let op = OpRun {
            run: None,
            cancel: self.cancel.child_token(),
        };
        let ctx = Arc::new(self.ctx(def, 1, None, &op));
        match attempt_once(def, ctx, self.layers.clone()).await {
            Ok(()) => Outcome::Completed {
                duration: started.elapsed(),
            },
            Err(AttemptError::Failed(e) | AttemptError::TimedOut(e)) => {
                match e.downcast_ref::<Skipped>() {
                    Some(s) => Outcome::Skipped {
                        reason: s.reason.clone(),
                    },
                    None => Outcome::Failed {
                        error: format!("{e:#}"),
                    },
                }
            }
        }
    }
}

/// Calls `renew` every third of `lease` (the first time after a third) on its own task, until the returned token
/// is cancelled: the heartbeat of every claim the ledger holds under a lease (operations, jobs, deferred rows).
pub(crate) fn renew_every_third<F, Fut>(lease: Duration, mut renew: F) -> CancellationToken
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(lease / 3);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => renew().await,
            }
        }
    });
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let d = Duration::from_secs(10);
        assert_eq!(jittered(d, 0.0, 0.9), d);
        assert_eq!(jittered(d, 0.5, 0.0), d);
        assert_eq!(jittered(d, 0.5, 1.0), Duration::from_secs(5));
        assert_eq!(jittered(d, 0.2, 0.5), Duration::from_secs(9));
        assert_eq!(
            jittered(d, 7.0, 1.0),
            Duration::ZERO,
            "a fraction above 1 is clamped"
        );
    }
}
