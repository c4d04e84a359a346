//! `process`: read the ledger, plan the run ([`crate::plan`]), write what the plan says, and hand the due
//! operations to the orchestrator.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::error::SequencerError;
use crate::events::{Event, Via};
use crate::lease::sleep_or_cancel;
use crate::ledger::locks::IsolationLock;
use crate::ledger::runs::{LedgerRow, Status};
use crate::options::{LockWait, ProcessOptions};
use crate::orchestrator::dispatch::Dispatch;
use crate::orchestrator::run::Run;
use crate::outline::Outline;
use crate::plan::{needs_migrations, plan, Due, Inputs, LatestRuns, Plan};
use crate::report::{Outcome, RunReport};
use crate::sequencer::Sequencer;

impl Sequencer {
    /// Runs the due operations with this sequencer's orchestrator ([`Sequential`](crate::Sequential) unless set: a
    /// failure stops the run; with `rollback_on_failure` it also rolls back, in reverse, the Rollbackable
    /// operations this run completed).
    pub async fn process(&self, opts: &ProcessOptions) -> Result<RunReport, SequencerError> {
        self.check_guards()?;
        // When `migrate` runs operations, `process` never interleaves with it: it takes the same lock.
        let migrating = self.runs_with_migrations();
        let lock = if migrating && !opts.dry_run {
            let wait = match opts.lock_wait {
                LockWait::No => LockWait::Forever,
                other => other,
            };
            Some(
                self.isolation_lock(if opts.isolate { opts.lock_wait } else { wait })
                    .await?,
            )
        } else if opts.isolate && !opts.dry_run {
            Some(self.isolation_lock(opts.lock_wait).await?)
        } else {
            None
        };
        match lock {
            Some(lock) => self.holding(lock, self.process_share(opts, false)).await?,
            None => self.process_share(opts, false).await,
        }
    }

    /// Runs `work` while holding the isolation lock, renewing it (a SQLite lock row expires; server locks live
    /// with their connection), and releases it after. The lock is owned by this future (its connection is `Send`,
    /// not `Sync`), so the future stays `Send`.
    pub(crate) async fn holding<T>(
        &self,
        mut lock: IsolationLock,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, SequencerError> {
        let mut work = std::pin::pin!(work);
        let mut renew = tokio::time::interval(Duration::from_secs(15));
        renew.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => {
                    if let Err(e) = lock.renew().await {
                        tracing::warn!("cannot renew the isolation lock: {e}");
                    }
                }
            }
        };
        lock.release().await?;
        Ok(result)
    }

    /// Takes the `--isolate` lock; when another process holds it, fails at once or waits as `wait` says, polling
    /// (every 50 ms at first, then up to every second) until it is free, the time is up or the sequencer is
    /// cancelled.
    pub(crate) async fn isolation_lock(
        &self,
        wait: LockWait,
    ) -> Result<IsolationLock, SequencerError> {
        let env = &self.inner.env;
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut said = false;
        loop {
            if let Some(lock) = env.ledger.try_lock(&env.owner).await? {
                return Ok(lock);
            }
            let holder = env.ledger.isolation_holder().await?;
            let waited = started.elapsed();
            let limit = match wait {
                LockWait::No => {
                    return Err(SequencerError::LockHeld {
                        holder,
                        waited: None,
                    })
                }
                LockWait::Forever => None,
                LockWait::AtMost(d) => Some(d),
            };
            if limit.is_some_and(|d| waited >= d) || env.cancel.is_cancelled() {
                return Err(SequencerError::LockHeld {
                    holder,
                    waited: Some(waited),
                });
            }
            if !said {
                said = true;
                let _ = env.events.send(Event::WaitingForLock {
                    holder,
                    at_most_secs: limit.map(|d| d.as_secs()),
                });
            }
            let nap = limit.map_or(pause, |d| pause.min(d.saturating_sub(waited)));
            sleep_or_cancel(nap, &env.cancel).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Whether the execution strategy has `migrate` run any of the operations (then `process` runs only the
    /// others).
    pub fn runs_with_migrations(&self) -> bool {
        self.inner
            .strategy
            .interleaves(self.inner.registry.operations().iter().map(|d| &d.meta))
    }

    /// Plans and runs a share of the operations, holding whatever lock the caller holds: the execution strategy's
    /// share for `migrate` (`with_migrations`), or the rest, for `process`.
    pub(crate) async fn process_share(
        &self,
        opts: &ProcessOptions,
        for_migrate: bool,
    ) -> Result<RunReport, SequencerError> {
        self.plan_share(opts, for_migrate, None).await
    }

    /// [`Sequencer::process_share`]; a dry run plans from `outline` when given (read once by
    /// [`Sequencer::preview`] for the plan and the durations both).
    pub(crate) async fn plan_share(
        &self,
        opts: &ProcessOptions,
        for_migrate: bool,
        outline: Option<&Outline>,
    ) -> Result<RunReport, SequencerError> {
        let via = if for_migrate {
            Via::Migrate
        } else {
            Via::Process
        };
        let env = &crate::executor::Env {
            via,
            releases_jobs: self.inner.env.releases_jobs || opts.queue_all,
            ..self.inner.env.clone()
        };
        // The database's time before the ledger is read: due times are judged by it, and a failure recorded after
        // it is another process's, which this one does not retry.
        let now = env.ledger.db_now().await?;
        if !opts.dry_run {
            env.ledger.recover_interrupted(&env.owner).await?;
        }
        // A dry run reads only the runs that still need something and which operations were recorded (the
        // outline: never the completed rows); with `--repeat`, which runs the completed ones again, the columns
        // the plan reads of every latest run. A run reads every latest run whole.
        let outline = match outline {
            Some(o) if opts.dry_run && !opts.repeat => Some(std::borrow::Cow::Borrowed(o)),
            _ if opts.dry_run && !opts.repeat => {
                Some(std::borrow::Cow::Owned(self.outline().await?))
            }
            _ => None,
        };
        let rows: HashMap<String, LedgerRow> = match (&outline, opts.dry_run) {
            (Some(_), _) => HashMap::new(),
            (None, true) => env.ledger.plan_rows().await?,
            (None, false) => env
                .ledger
                .rows()
                .await?
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect(),
        };
        let latest = match &outline {
            Some(o) => LatestRuns::Outline(o),
            None => LatestRuns::Rows(&rows),
        };
        let ordered = self.inner.registry.ordered()?;
        if !opts.dry_run {
            let missing: Vec<(&str, i64)> = ordered
                .iter()
                .filter(|o| !rows.contains_key(o.meta.name))
                .map(|o| (o.meta.name, o.meta.timestamp.version() as i64))
                .collect();
            env.ledger.insert_pending(&missing).await?;
        }
        let applied = if needs_migrations(&ordered) {
            applied_migrations(env.ledger.pool()).await
        } else {
            HashSet::new()
        };
        // (The migration strategy's `force_sync` reaches here through `migrate`'s own options.)
        let force_sync = opts.sync;
        let inputs = Inputs {
            now,
            force_sync,
            applied: &applied,
            in_plan_order: self.orchestrator.in_plan_order(),
            share: &|meta| self.inner.strategy.get().with_migrations(meta) == for_migrate,
        };
        let Plan {
            due,
            to_queue,
            to_schedule,
            scheduled,
            waiting,
            needs_attention,
            rollbacks_interrupted,
            stale,
            running_elsewhere,
            satisfied,
        } = plan(&ordered, latest, opts, &inputs)?;
        let mut report = RunReport {
            needs_attention,
            rollbacks_interrupted,
            stale,
            running_elsewhere,
            scheduled,
            waiting,
            ..RunReport::default()
        };
        if !opts.dry_run {
            for (name, run, due_at) in to_schedule {
                env.ledger.schedule(name, run, due_at).await?;
            }
        }
        for (d, q, after) in &to_queue {
            if !opts.dry_run {
                env.ledger
                    .enqueue_after(d.def().meta.name, d.run(), q, after)
                    .await?;
            }
            let name = d.def().meta.name.to_owned();
            report.queued.push((name.clone(), (*q).to_owned()));
            if !after.is_empty() {
                report.queued_after.push((name, after.join(", ")));
            }
        }
        report.planned = due.iter().map(|d| d.def().meta.name.to_owned()).collect();
        if opts.dry_run {
            return Ok(report);
        }
        if due.is_empty() {
            if !opts.quiet && report.queued.is_empty() && report.running_elsewhere.is_empty() {
                let _ = env.events.send(Event::NoPendingOperations);
            }
            return Ok(report);
        }
        let batch = env.ledger.new_batch(&env.owner).await?;
        let _ = env.events.send(Event::OperationsStarted {
            via,
            batch,
            count: due.len(),
        });
        let concurrency = opts.concurrency.unwrap_or(self.inner.concurrency);
        let estimates = estimates(&due, &rows);
        let mut run = Run::new(env.clone(), batch, due, satisfied, concurrency)
            .rolling_back_on_failure(opts.rollback_on_failure || self.inner.rollback_on_failure)
            .estimating(estimates);
        if opts.dispatch {
            run =
                run.dispatching(Dispatch::new(env.ledger.clone(), env.cancel.child_token()).await?);
        } else if run.due().iter().any(|d| d.on_worker()) {
            run = run.waiting_on_workers(
                Dispatch::new(env.ledger.clone(), env.cancel.child_token()).await?,
            );
        }
        let orchestrated = self.orchestrator.orchestrate(&run).await?;
        let mut waiting = std::mem::take(&mut report.waiting);
        waiting.extend(orchestrated.waiting.iter().cloned());
        report = RunReport {
            needs_attention: report.needs_attention,
            rollbacks_interrupted: report.rollbacks_interrupted,
            stale: report.stale,
            running_elsewhere: report.running_elsewhere,
            scheduled: report.scheduled,
            queued: report.queued,
            queued_after: report.queued_after,
            waiting,
            ..orchestrated
        };
        report.waiting.sort();
        report.waiting.dedup_by(|a, b| a.0 == b.0);
        let _ = env.events.send(Event::OperationsEnded {
            via,
            batch,
            completed: report.count(|o| matches!(o, Outcome::Completed { .. })),
            failed: report.count(|o| matches!(o, Outcome::Failed { .. })),
            skipped: report.count(|o| matches!(o, Outcome::Skipped { .. })),
        });
        Ok(report)
    }
}

/// Versions of the schema migrations applied to the ledger database (empty when none ran).
pub(crate) async fn applied_migrations(pool: &sqlx::AnyPool) -> HashSet<i64> {
    match sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations")
        .fetch_all(pool)
        .await
    {
        Ok(v) => v.into_iter().collect(),
        Err(_) => HashSet::new(),
    }
}

/// How long each due operation is expected to take: the duration of its last completed run (the ledger's row
/// read by the plan, whose `--repeat` run is a new one), else its `estimate = ".."` key.
fn estimates(due: &[Due], rows: &HashMap<String, LedgerRow>) -> HashMap<String, Duration> {
    due.iter()
        .filter_map(|d| {
            let meta = &d.def().meta;
            let recorded = rows
                .get(meta.name)
                .filter(|r| r.status == Status::Completed)
                .and_then(|r| r.duration_ms)
                .map(|ms| Duration::from_millis(ms.max(0) as u64));
            Some((meta.name.to_owned(), recorded.or(meta.estimate)?))
        })
        .collect()
}
