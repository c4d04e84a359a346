//! Workers: `asynchronous` operations (and `process --async`) and dispatched task runs are queued in the ledger database; `work`
//! processes on any number of machines claim them in batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL and
//! MySQL 8 / MariaDB 10.6+), hold a lease renewed by a heartbeat, wake on `LISTEN/NOTIFY` on PostgreSQL and on
//! adaptive polling elsewhere, and run each operation through the same executor as every other path, so the
//! operation's own atomic claim still guarantees it runs once. A worker that dies leaves its jobs with a lease
//! that runs out: another worker puts them back on the queue, and the operation is run again only if it is
//! idempotent or retryable, else recorded `interrupted` for a human.
//!
//! A plain operation's run (no lock to take first, no transaction of its own, not a member of a batch) is claimed
//! in the same transaction as its job, and its completion acknowledged with others by the [`completer`]: a batch
//! of such jobs costs two commits, not three per job.

mod completer;
mod finish;
mod trouble;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::deferred::DeferredReport;
use crate::error::SequencerError;
use crate::events::Event;
use crate::executor::taken::Taken;
use crate::executor::Env;
use crate::handlers::DEFERRED_QUEUE;
use crate::lease::{renew_every_third, Held};
use crate::ledger::acks::{RunClaim, Taking};
use crate::ledger::error::LedgerError;
use crate::ledger::jobs::{Job, JobStatus};
use crate::ledger::listen::{Heard, BLOCKED};
use crate::ledger::{new_claim_token, Ledger, MemberState};
use crate::options::{check_lease, check_queue, WorkOptions, DEFAULT_QUEUE};
use crate::plan::Due;
use crate::report::Outcome;
use crate::sequencer::batch_end::BATCH_CANCELLED;
use crate::sequencer::Sequencer;
use completer::{Completer, Flushed, Pending};
use trouble::{database_trouble, failed};

/// How often an idle worker says it still waits ([`Event::WorkerWaiting`]); it says so at once when it starts
/// idle.
const SAY_WAITING_EVERY: Duration = Duration::from_secs(60);

/// How long a free slot waits for others before a take fills it alone, while the worker's other jobs run.
const TAKE_WAIT: Duration = Duration::from_millis(5);

/// How a job's run ended on its task: recorded, or returned `Ok` and waiting for the completer.
enum Finished {
    Outcome(Outcome),
    ToAck(Pending),
}

type Joined = Result<(Job, Result<Finished, SequencerError>), tokio::task::JoinError>;

/// Whether a job's operation run may be claimed with the job and acknowledged in a batch: an operation (not a
/// task run) outside any recorded batch, with no lock to take before its claim (`unique`, `without_overlapping`)
/// and no transaction of its own (whose commit records its end).
fn claimed_with_job(def: &crate::registry::OperationDef, job: &Job) -> bool {
    let meta = &def.meta;
    job.batch.is_none()
        && !meta.transaction
        && meta.unique.is_none()
        && !meta
            .middleware
            .iter()
            .any(|m| matches!(m, sequencer_core::Middleware::WithoutOverlapping { .. }))
}

/// What a job runs: one-time operation or a task run.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    Operation(&'static crate::registry::OperationDef),
    Task(&'static crate::task_def::TaskDef),
}

/// What a worker did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkReport {
    /// Jobs taken.
    pub jobs: usize,
    /// Operations completed.
    pub completed: usize,
    /// Operations that failed.
    pub failed: usize,
    /// Jobs whose operation had run already, or was held by another process.
    pub not_run: usize,
    /// Jobs naming an operation this binary does not have (kept, failed, for a human).
    pub unknown: usize,
}

/// Runs a taken job's operation or task run through the executor (a member of a cancelled batch is not run:
/// recorded skipped, its operation pending).
pub(crate) async fn run_target(
    env: &Env,
    target: Target,
    job: &Job,
    batch: i64,
) -> Result<Outcome, SequencerError> {
    match job.batch {
        Some(id) if matches!(env.ledger.batch_cancelled(id).await, Ok(true)) => {
            Ok(Outcome::Skipped {
                reason: BATCH_CANCELLED.to_owned(),
            })
        }
        _ => match target {
            Target::Operation(def) => {
                env.run(
                    &Due::new(def, job.run, false, true).in_batch(job.batch),
                    batch,
                )
                .await
            }
            // A task run: its arguments from its row, its keys from them.
            Target::Task(task) => match env.task_data(task, job.run).await {
                Ok(data) => {
                    env.run_task(&task.op, job.run, batch, data, job.batch)
                        .await
                }
                Err(e) => Err(e),
            },
        }
        .map_err(SequencerError::from),
    }
}

/// The worker's heartbeat, every third of its lease: one statement renews every operation claim it holds, one
/// every job. A run whose claim was lost (recovered by another process after its lease ran out) or that
/// `cancel NAME` asked to stop is cancelled, and so is a job another worker took over.
async fn beat(ledger: &Ledger, claims: &Held, jobs: &Held, worker: &str, lease: Duration) {
    let tokens = claims.keys();
    match ledger.beat_claims(&tokens, lease).await {
        Ok(renewed) => {
            let renewed: HashMap<String, bool> = renewed.into_iter().collect();
            for t in &tokens {
                if renewed.get(t) != Some(&false) {
                    claims.cancel(t);
                }
            }
        }
        Err(e) => tracing::warn!("cannot renew the leases of the runs held: {e}"),
    }
    let ids: Vec<i64> = jobs.keys().iter().filter_map(|k| k.parse().ok()).collect();
    match ledger.beat_jobs(&ids, worker, lease).await {
        Ok(renewed) => {
            let renewed: HashSet<i64> = renewed.into_iter().collect();
            for id in ids.iter().filter(|id| !renewed.contains(id)) {
                jobs.cancel(&id.to_string());
            }
        }
        Err(e) => tracing::warn!("cannot renew the leases of the jobs held: {e}"),
    }
}

impl Sequencer {
    /// What a job runs, if this binary has it.
    pub(crate) fn target_of(&self, name: &str) -> Option<Target> {
        match (self.registry().get(name), self.registry().task(name)) {
            (Some(def), _) => Some(Target::Operation(def)),
            (None, Some(task)) => Some(Target::Task(task)),
            (None, None) => None,
        }
    }

    /// Fails a job naming an operation this binary does not have (kept for a human; its batch told). Returns
    /// the error.
    pub(crate) async fn unknown_job(&self, job: &Job, worker: &str) -> String {
        let error = format!("unknown operation `{}` in a queued job: this binary does not have it; the job is kept for a human", job.name);
        if let Some(id) = job.batch {
            if let Err(e) = self
                .member_ended(id, &job.name, job.run, MemberState::Failed, Some(&error))
                .await
            {
                tracing::warn!("{e}");
            }
        }
        if let Err(e) = self
            .ledger()
            .end_job(job.id, worker, JobStatus::Failed, Some(&error))
            .await
        {
            tracing::warn!("{e}");
        }
        error
    }

    /// Puts the operation's next run on its queue (`queue = "..."`, else `default`).
    pub async fn enqueue(&self, name: &str) -> Result<bool, SequencerError> {
        let def = self.find(name)?;
        let row = self
            .ledger()
            .rows()
            .await?
            .into_iter()
            .find(|r| r.name == def.meta.name);
        if row.is_none() {
            self.ledger()
                .insert_pending(&[(def.meta.name, def.meta.timestamp.version() as i64)])
                .await?;
        }
        let run = row.map_or(0, |r| r.run);
        Ok(self
            .ledger()
            .enqueue(def.meta.name, run, def.meta.queue.unwrap_or(DEFAULT_QUEUE))
            .await?)
    }

    /// Runs a worker until `shutdown` fires (or, with `until_idle`, until its queue is empty).
    pub async fn work(
        &self,
        opts: &WorkOptions,
        shutdown: CancellationToken,
    ) -> Result<WorkReport, SequencerError> {
        check_lease(opts.lease).map_err(SequencerError::Usage)?;
        check_queue(&opts.queue).map_err(SequencerError::Usage)?;
        let ledger = self.ledger().clone();
        // One lease drives the jobs and the claims of the operations they run.
        // One heartbeat renews every claim and job the worker holds (see [`beat`]).
        let env = Env {
            lease: opts.lease,
            via: crate::events::Via::Worker,
            worker_beats: true,
            ..self.env().clone()
        };
        let worker = format!(
            "{}:{}:{:08x}",
            env.owner.host,
            env.owner.pid,
            fastrand::u32(..)
        );
        let batch = ledger.new_batch(&env.owner).await?;
        let mut listener = ledger.listen(&ledger.notify_channel()).await?;
        let mut report = WorkReport::default();
        let mut tasks: JoinSet<(Job, Result<Finished, SequencerError>)> = JoinSet::new();
        let mut completer = Completer::new(opts.ack_batch, opts.ack_interval);
        let mut idle = Duration::from_millis(5);
        let mut last_rescue: Option<Instant> = None;
        let mut last_deferred: Option<Instant> = None;
        let mut last_moved: Option<Instant> = None;
        let mut last_trouble: Option<Instant> = None;
        let mut last_take = Instant::now();
        // Whether a job may be blocked behind the operations this worker completes: then each acknowledgement
        // looks for them. Off only on PostgreSQL, while the last look found no blocked job and no notification has
        // said one was queued since.
        let mut maybe_blocked = true;
        let jobs_held: Arc<Held> = Arc::default();
        let _beat = {
            let (ledger, claims, jobs, worker) = (
                ledger.clone(),
                env.held.clone(),
                jobs_held.clone(),
                worker.clone(),
            );
            let lease = opts.lease;
            renew_every_third(lease, move || {
                let (ledger, claims, jobs, worker) =
                    (ledger.clone(), claims.clone(), jobs.clone(), worker.clone());
                async move { beat(&ledger, &claims, &jobs, &worker, lease).await }
            })
        };
        // When the worker last said it waits, and since when it has had nothing to do.
        let mut said_waiting: Option<Instant> = None;
        let mut idle_since: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if last_rescue.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                let rescued = async {
                    // What this worker runs is renewed first: after an outage longer than the lease, its own live
                    // claims look expired too, and are never this worker's to rescue.
                    ledger.renew_claims(&env.held.keys(), opts.lease).await?;
                    let jobs: Vec<i64> = jobs_held
                        .keys()
                        .iter()
                        .filter_map(|k| k.parse().ok())
                        .collect();
                    ledger.renew_jobs(&jobs, &worker, opts.lease).await?;
                    // Other workers' heartbeats need their turn after an outage too: rescue only once a lease has
                    // passed without trouble.
                    if last_trouble.is_none_or(|t| t.elapsed() >= opts.lease) {
                        // Runs first: a job is rescued only once its run is no longer held (see `rescue_jobs`).
                        ledger.recover_interrupted(&env.owner).await?;
                        ledger.rescue_jobs().await?;
                        let (_, still) = ledger.unblock_jobs_and_see().await?;
                        // With no job blocked, the operations this worker completes release none: their looks are
                        // skipped until a notification says one was queued blocked (see `heard` below).
                        maybe_blocked = still || listener.is_none();
                    }
                    Ok::<(), LedgerError>(())
                }
                .await;
                // A deadlock victim (MariaDB's gap locks against another worker's rescue or take) is tried again at
                // once, as takes and acknowledgements are.
                if let Err(e) = rescued {
                    failed(&e, &shutdown, &mut last_trouble).await;
                    continue;
                }
                last_rescue = Some(Instant::now());
                // Batch callbacks whose claimer died mid-callback: run here.
                if last_trouble.is_none_or(|t| t.elapsed() >= opts.lease) {
                    if let Err(e) = self.run_orphaned_callbacks().await {
                        tracing::warn!("batch callbacks: {e}");
                    }
                }
            }
            // Jobs that have ended free their slots first, so that a take fills them all at once (a take costs a
            // commit, however many jobs it takes). Jobs spawned from this loop wait in this thread's queue until
            // the loop yields: it yields once, so that those about to end do.
            for round in 0..2 {
                while let Some(joined) = tasks.try_join_next() {
                    if let Err(e) = self
                        .joined(joined, &mut completer, &worker, &mut report)
                        .await
                    {
                        database_trouble(&e, &shutdown, &mut last_trouble).await;
                    }
                }
                if round > 0 || tasks.is_empty() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let free = opts.concurrency.max(1).saturating_sub(tasks.len());
            let mut took = 0;
            // A take fills at least half the slots while jobs run, unless a slot has waited `TAKE_WAIT`: a queue of
            // short jobs is taken in batches, not one job a statement.
            let batch_due = tasks.is_empty()
                || free * 2 >= opts.concurrency.max(1)
                || last_take.elapsed() >= TAKE_WAIT;
            // Waits for `TAKE_WAIT` (below) when a take was put off.
            let take_put_off = free > 0 && !batch_due;
            if free > 0 && batch_due {
                last_take = Instant::now();
                let registry = self.registry();
                let claims = |jobs: &[Job]| -> Vec<RunClaim> {
                    let eligible = jobs.iter().enumerate().filter_map(|(i, job)| {
                        let def = registry.get(&job.name)?;
                        claimed_with_job(def, job).then(|| RunClaim {
                            job: i,
                            name: job.name.clone(),
                            run: job.run,
                            checksum: format!("{:016x}", def.meta.checksum),
                            reclaim_interrupted: def.meta.runs_again_after_interruption(),
                            token: new_claim_token(),
                        })
                    });
                    eligible.collect()
                };
                let mut taken = match ledger
                    .take_and_claim(
                        &Taking {
                            queue: &opts.queue,
                            worker: &worker,
                            lease: opts.lease,
                            limit: free,
                            batch,
                            owner: &env.owner,
                        },
                        claims,
                    )
                    .await
                {
                    Ok(jobs) => jobs,
                    // A deadlock victim (MariaDB's gap locks against an acknowledgement): taken again at once.
                    Err(e) => {
                        failed(&e, &shutdown, &mut last_trouble).await;
                        continue;
                    }
                };
                // Deferred runs are taken beside the worker's own queue, into the same task set (so they run
                // concurrently, stop with the worker and its grace, and never hold up its loop): looked for about
                // once a second, at once again while there are some.
                let room = free.saturating_sub(taken.len());
                if room > 0
                    && opts.queue != DEFERRED_QUEUE
                    && last_deferred.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    match ledger
                        .take_jobs(DEFERRED_QUEUE, &worker, opts.lease, room)
                        .await
                    {
                        Ok(jobs) => {
                            last_deferred = jobs.is_empty().then(Instant::now);
                            taken.extend(jobs.into_iter().map(|job| (job, None)));
                        }
                        Err(e) => {
                            failed(&e, &shutdown, &mut last_trouble).await;
                            continue;
                        }
                    }
                }
                for (job, token) in taken {
                    took += 1;
                    report.jobs += 1;
                    let Some(target) = self.target_of(&job.name) else {
                        self.unknown_job(&job, &worker).await;
                        report.unknown += 1;
                        continue;
                    };
                    // A job whose lease another worker took over stops its operation.
                    let job_cancel = env.cancel.child_token();
                    let env = Env {
                        cancel: job_cancel.clone(),
                        ..env.clone()
                    };
                    // Renewed by the worker's heartbeat, which stops it should another worker have taken it over.
                    let held = jobs_held.hold_cancel(job.id.to_string(), job_cancel);
                    tasks.spawn(async move {
                        let finished = match (target, token) {
                            // Claimed with its job: its completion waits for the completer, the job still held.
                            (Target::Operation(def), Some(token)) => {
                                match env.run_taken(def, job.run, batch, token.clone()).await {
                                    Ok(Taken::ToAck {
                                        duration,
                                        held: claim,
                                    }) => Ok(Finished::ToAck(Pending {
                                        job: job.clone(),
                                        def,
                                        token,
                                        duration,
                                        _held: (claim, held),
                                    })),
                                    Ok(Taken::Ended(outcome)) => Ok(Finished::Outcome(outcome)),
                                    Err(e) => Err(SequencerError::from(e)),
                                }
                            }
                            _ => {
                                let _held = held;
                                run_target(&env, target, &job, batch)
                                    .await
                                    .map(Finished::Outcome)
                            }
                        };
                        (job, finished)
                    });
                }
            }
            if took > 0 {
                idle = Duration::from_millis(5);
                idle_since = None;
                continue;
            }
            if tasks.is_empty() && last_moved.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                // Rows an older version left in the old deferred table: moved into task runs, whose jobs are
                // taken as above. (No rescue here: that is the guarded step above.)
                if let Err(e) = self.move_old_deferred(&mut DeferredReport::default()).await {
                    tracing::warn!("deferred operations: {e}");
                }
                last_moved = Some(Instant::now());
            }
            if tasks.is_empty() && completer.is_empty() && opts.until_idle {
                let counts = match ledger.job_counts(&opts.queue).await {
                    Ok(c) => c,
                    Err(e) => {
                        database_trouble(&e, &shutdown, &mut last_trouble).await;
                        continue;
                    }
                };
                if counts.get(&JobStatus::Queued).copied().unwrap_or(0) == 0
                    && counts.get(&JobStatus::Running).copied().unwrap_or(0) == 0
                {
                    break;
                }
            }
            if tasks.is_empty() {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if said_waiting.is_none_or(|t| t.elapsed() >= SAY_WAITING_EVERY) {
                    said_waiting = Some(Instant::now());
                    let _ = env.events.send(Event::WorkerWaiting {
                        queue: opts.queue.clone(),
                        idle_secs: since.elapsed().as_secs(),
                    });
                }
            } else {
                idle_since = None;
            }
            if completer.due(tasks.is_empty()) {
                completer.start(&ledger, &worker);
            }
            let (ack_waits, ack_deadline) = (completer.waiting(), completer.deadline());
            tokio::select! {
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    // The others that have ended by now are collected at the top of the loop, before the next take.
                    if let Err(e) = self.joined(joined, &mut completer, &worker, &mut report).await {
                        // The job's lease runs out and it is rescued; its operation's row is recovered.
                        database_trouble(&e, &shutdown, &mut last_trouble).await;
                    }
                }
                Some(flushed) = completer.flushed(), if completer.in_flight() => {
                    if let Err(e) = self.acknowledged(flushed, &env, &worker, maybe_blocked, &mut report).await {
                        database_trouble(&e, &shutdown, &mut last_trouble).await;
                    }
                }
                _ = tokio::time::sleep_until(ack_deadline), if ack_waits => {}
                _ = tokio::time::sleep_until((last_take + TAKE_WAIT).into()), if take_put_off => {}
                heard = async { match listener.as_mut() { Some(l) => l.heard().await, None => std::future::pending().await } } => {
                    idle = Duration::from_millis(5);
                    // A job queued blocked (or a lost connection, which may have hidden one): acknowledgements look
                    // again, and one look now covers those that skipped theirs before this was heard.
                    if !matches!(heard, Ok(Heard::Payload(ref p)) if p != BLOCKED) && !maybe_blocked {
                        maybe_blocked = true;
                        if let Err(e) = ledger.unblock_jobs().await {
                            tracing::warn!("cannot queue the jobs blocked behind the operations completed: {e}");
                        }
                    }
                }
                _ = tokio::time::sleep(idle) => {
                    // Adaptive polling: quick while busy, up to once a second when idle.
                    idle = (idle * 2).min(Duration::from_secs(1));
                }
                _ = shutdown.cancelled() => {}
            }
        }
        // Graceful stop: let running jobs finish within the grace period, then cancel them.
        let deadline = tokio::time::sleep(opts.grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(joined) => {
                        if let Err(e) = self.joined(joined, &mut completer, &worker, &mut report).await {
                            tracing::warn!("{e}");
                        }
                    }
                    None => break,
                },
                _ = &mut deadline => {
                    self.cancel();
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // The completions still waiting are acknowledged (their functions returned) before the worker ends.
        while !completer.is_empty() {
            if completer.waiting() {
                completer.start(&ledger, &worker);
            }
            if let Some(flushed) = completer.flushed().await {
                if let Err(e) = self
                    .acknowledged(flushed, &env, &worker, maybe_blocked, &mut report)
                    .await
                {
                    tracing::warn!("{e}");
                }
            }
        }
        Ok(report)
    }

    /// A job's task has ended: its completion goes to the completer, or its job ends now.
    async fn joined(
        &self,
        joined: Joined,
        completer: &mut Completer,
        worker: &str,
        report: &mut WorkReport,
    ) -> Result<(), SequencerError> {
        match joined {
            Ok((_, Ok(Finished::ToAck(pending)))) => {
                completer.push(pending);
                Ok(())
            }
            Ok((job, Ok(Finished::Outcome(outcome)))) => {
                self.finish_job(Ok((job, Ok(outcome))), worker, report)
                    .await
            }
            Ok((job, Err(e))) => self.finish_job(Ok((job, Err(e))), worker, report).await,
            Err(e) => self.finish_job(Err(e), worker, report).await,
        }
    }

    /// An acknowledgement has ended: what it recorded is announced and counted; a run whose claim was taken over
    /// meanwhile ends its job as failed (as the ordinary path does); after a failure nothing was written, and the
    /// claims, released, are recovered as a death would leave them.
    async fn acknowledged(
        &self,
        (batch, done): Flushed,
        env: &Env,
        worker: &str,
        maybe_blocked: bool,
        report: &mut WorkReport,
    ) -> Result<(), SequencerError> {
        let recorded = done?;
        let mut names: Vec<&str> = Vec::new();
        let mut lost = Vec::new();
        for p in batch {
            if recorded.contains(&p.token) {
                report.completed += 1;
                names.push(p.def.meta.name);
                env.succeeded(p.def, p.duration);
            } else {
                lost.push(p);
            }
        }
        // Queue the jobs that waited for these operations (when one may); should this fail, idle workers release
        // them.
        if !maybe_blocked {
            names.clear();
        }
        if let Err(e) = self.ledger().unblock_jobs_after_any(&names).await {
            tracing::warn!("cannot queue the jobs behind the operations completed: {e}");
        }
        for p in lost {
            let outcome = env.lost_ack(p.def);
            self.finish_job(Ok((p.job, Ok(outcome))), worker, report)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{ProcessOptions, RollbackTarget};

    /// Compiles only if the futures users spawn on a multi-threaded runtime are `Send`.
    #[allow(dead_code)]
    fn futures_are_send(seq: &Sequencer) {
        fn send<T: Send>(_: T) {}
        send(seq.work(&WorkOptions::default(), CancellationToken::new()));
        send(seq.process(&ProcessOptions::default()));
        send(seq.process_deferred(None));
        send(seq.enqueue("x"));
        send(seq.execute("x"));
        send(seq.status());
        send(seq.migrate());
        send(seq.retry("x"));
        send(seq.rollback(&RollbackTarget::Step(1)));
        send(seq.batch(["x"]).dispatch());
        send(seq.chain(["x"]).dispatch());
    }
}
