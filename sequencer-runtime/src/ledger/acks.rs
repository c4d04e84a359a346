//! The workers' batched path: a batch of jobs taken together with the claims of the operation runs they carry
//! (one transaction), and completions acknowledged many at a time (one statement on PostgreSQL, one transaction
//! elsewhere): the `completed` rows of the runs whose functions returned, and the end of their jobs.
//!
//! What each row says stays true: a run is `running` from the take until its acknowledgement, under the lease the
//! worker renews; it is written `completed` only once its function returned, and only while the claim is still
//! this worker's (its token). A worker that dies between the return and the acknowledgement leaves the run
//! `running` with a lease that runs out, exactly as a death mid-run does: recovery records it `interrupted`, and it
//! is run again only if it is idempotent or retryable.

use std::time::Duration;

use sqlx::{AnyConnection, Row};

use super::connection::{pid_namespace, Ledger, Owner};
use super::dialect::Dialect;
use super::error::{q, retrying, LedgerError};
use super::jobs::{Job, JobStatus};

/// The claim of a taken job's operation run, taken in the same transaction as the job.
#[derive(Debug, Clone)]
pub struct RunClaim {
    /// The job's index in the batch taken.
    pub job: usize,
    /// Ledger name.
    pub name: String,
    /// Which run.
    pub run: i64,
    /// Checksum of the source about to run, hex.
    pub checksum: String,
    /// Also claim an `interrupted` row (the operation is idempotent or retryable).
    pub reclaim_interrupted: bool,
    /// The claim's token.
    pub token: String,
}

/// A completion to acknowledge: the job, and the run its function ran to the end.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The job's id.
    pub job: i64,
    /// Ledger name.
    pub name: String,
    /// Which run.
    pub run: i64,
    /// The claim's token: only this claim is ended.
    pub token: String,
    /// How long it ran.
    pub duration: Duration,
}

/// The first column of each row, as text: the claim tokens a statement returned (or, for `EXPLAIN`, its plan's
/// lines).
pub(super) fn first_texts(rows: &[sqlx::any::AnyRow]) -> Result<Vec<String>, sqlx::Error> {
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}

/// `(name = ? AND run = ?[ AND claim_token = ?]) OR …`, one term per row.
fn each_run(count: usize, with_token: bool) -> String {
    let term = if with_token {
        "(name = ? AND run = ? AND claim_token = ?)"
    } else {
        "(name = ? AND run = ?)"
    };
    vec![term; count].join(" OR ")
}

/// Binds the acknowledgement's update of the runs: each run's claim token and duration (its `CASE`s), then its
/// name, run and token ([`each_run`]).
fn bind_acks<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    acks: &'q [Ack],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in acks {
        query = query
            .bind(a.token.as_str())
            .bind(a.duration.as_millis() as i64);
    }
    for a in acks {
        query = query
            .bind(a.name.as_str())
            .bind(a.run)
            .bind(a.token.as_str());
    }
    query
}

/// Who takes jobs, from which queue, how many, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Taking<'a> {
    /// The queue.
    pub queue: &'a str,
    /// The worker taking them (`host:pid:<random>`).
    pub worker: &'a str,
    /// How long the jobs and the claims of their runs are held without a heartbeat.
    pub lease: Duration,
    /// How many jobs at most.
    pub limit: usize,
    /// The worker's batch (process run), recorded on the runs it claims.
    pub batch: i64,
    /// The process claiming the runs.
    pub owner: &'a Owner,
}

impl Ledger {
    /// Claims up to `limit` queued jobs for `worker` and, in the same transaction, the operation runs `claims`
    /// picks among them (`claims` is given the jobs taken and returns the runs to claim with them). Returns the
    /// jobs and, for each, the token of its run's claim when that claim was taken (a run another process holds,
    /// or that has ended, is not claimed: its job goes the ordinary way).
    pub async fn take_and_claim(
        &self,
        t: &Taking<'_>,
        claims: impl FnOnce(&[Job]) -> Vec<RunClaim>,
    ) -> Result<Vec<(Job, Option<String>)>, LedgerError> {
        const WHAT: &str = "claim jobs and their runs";
        // One transaction: a commit costs a flush of the database's log (milliseconds on a slow disk), a
        // statement a round trip (a tenth of a millisecond): the take and the claims commit once.
        let mut tx = self.begin_keyed().await.map_err(q(WHAT))?;
        let jobs = self
            .take_on(&mut tx, t.queue, t.worker, t.lease, t.limit)
            .await?;
        let wanted = if jobs.is_empty() {
            Vec::new()
        } else {
            claims(&jobs)
        };
        let claimed = if wanted.is_empty() {
            Vec::new()
        } else {
            self.claim_runs_on(&mut tx, &wanted, t.batch, t.owner, t.lease)
                .await?
        };
        tx.commit().await.map_err(q(WHAT))?;
        let mut out: Vec<(Job, Option<String>)> = jobs.into_iter().map(|j| (j, None)).collect();
        for c in wanted {
            if claimed.contains(&c.token) {
                if let Some(slot) = out.get_mut(c.job) {
                    slot.1 = Some(c.token);
                }
            }
        }
        Ok(out)
    }

    /// Claims these runs in one statement, as [`Ledger::claim`] claims one for a worker (a due `scheduled` row and
    /// a `failed` one are claimed too). Returns the tokens of the claims taken.
    async fn claim_runs_on(
        &self,
        conn: &mut AnyConnection,
        runs: &[RunClaim],
        batch: i64,
        owner: &Owner,
        lease: Duration,
    ) -> Result<Vec<String>, LedgerError> {
        const WHAT: &str = "claim the runs of the jobs taken";
        if self.dialect == Dialect::Postgres {
            return self.claim_runs_pg(conn, runs, batch, owner, lease).await;
        }
        let (ops, now) = (self.table("operations"), self.dialect.now());
        let tokens = vec!["WHEN name = ? AND run = ? THEN ?"; runs.len()].join(" ");
        let checksums = vec!["WHEN name = ? AND run = ? THEN ?"; runs.len()].join(" ");
        let reclaim: Vec<&RunClaim> = runs.iter().filter(|r| r.reclaim_interrupted).collect();
        let interrupted = if reclaim.is_empty() {
            String::new()
        } else {
            format!(
                " OR (status = 'interrupted' AND ({}))",
                each_run(reclaim.len(), false)
            )
        };
        // MySQL assigns left to right, each seeing the ones before: `progress_done` reads the old status first.
        let update = format!(
            "UPDATE {ops} SET progress_done = CASE WHEN status = 'rolled_back' THEN NULL ELSE progress_done END, \
             status = 'running', batch = ?, attempts = 1, started_at = {now}, finished_at = NULL, \
             duration_ms = NULL, lease_until = {now} + ?, claim_token = CASE {tokens} END, host_ns = ?, host = ?, pid = ?, \
             actor = ?, checksum = CASE {checksums} END, skip_reason = NULL, cancel_requested = NULL, \
             pause_requested = NULL, throttled_since = NULL, throttled_ms = NULL, last_error = NULL \
             WHERE ({each}) AND (status IN ('pending', 'rolled_back', 'scheduled', 'failed'){interrupted})",
            each = each_run(runs.len(), false)
        );
        let returning = self.dialect != Dialect::MySql;
        let sql = self.dialect.sql(if returning {
            format!("{update} RETURNING claim_token")
        } else {
            update
        });
        let mut query = sqlx::query(&sql).bind(batch).bind(lease.as_millis() as i64);
        for r in runs {
            query = query
                .bind(r.name.as_str())
                .bind(r.run)
                .bind(r.token.as_str());
        }
        query = query
            .bind(pid_namespace())
            .bind(owner.host.as_str())
            .bind(owner.pid)
            .bind(owner.actor.as_deref());
        for r in runs {
            query = query
                .bind(r.name.as_str())
                .bind(r.run)
                .bind(r.checksum.as_str());
        }
        for r in runs {
            query = query.bind(r.name.as_str()).bind(r.run);
        }
        for r in &reclaim {
            query = query.bind(r.name.as_str()).bind(r.run);
        }
        if returning {
            let rows = query.fetch_all(&mut *conn).await.map_err(q(WHAT))?;
            return first_texts(&rows).map_err(q(WHAT));
        }
        let claimed = query.execute(&mut *conn).await.map_err(q(WHAT))?;
        // MySQL has no `UPDATE … RETURNING`: when every run was claimed (each row written is one of them, under a
        // new token), they are all ours; else read back, in the same transaction, which claims are.
        if claimed.rows_affected() == runs.len() as u64 {
            return Ok(runs.iter().map(|r| r.token.clone()).collect());
        }
        self.ours_on(
            conn,
            runs.iter().map(|r| (&*r.name, r.run, &*r.token)),
            "running",
        )
        .await
        .map_err(q(WHAT))
    }

    /// The tokens among `runs` whose row is in `status` under that token.
    async fn ours_on<'a>(
        &self,
        conn: &mut AnyConnection,
        runs: impl ExactSizeIterator<Item = (&'a str, i64, &'a str)> + Clone,
        status: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT claim_token FROM {ops} WHERE status = ? AND ({})",
            each_run(runs.len(), true)
        ));
        let mut query = sqlx::query(&sql).bind(status);
        for (name, run, token) in runs {
            query = query.bind(name).bind(run).bind(token);
        }
        first_texts(&query.fetch_all(&mut *conn).await?)
    }

    /// Acknowledges completions in one transaction: each run `completed` (only while its claim is still this
    /// worker's), and the jobs of those runs `done`; on PostgreSQL the waiting dispatchers are told. Transient
    /// failures (a restart, a deadlock victim) are retried for up to ten seconds. Returns the tokens of the runs
    /// recorded `completed`; a run missing from it lost its claim (its lease ran out and another process recovered
    /// it), and neither its row nor its job was written.
    pub async fn ack_completed(
        &self,
        worker: &str,
        acks: &[Ack],
    ) -> Result<Vec<String>, LedgerError> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        retrying("acknowledge completions", || self.ack_once(worker, acks)).await
    }

    async fn ack_once(&self, worker: &str, acks: &[Ack]) -> Result<Vec<String>, LedgerError> {
        const WHAT: &str = "acknowledge completed jobs";
        if self.dialect == Dialect::Postgres {
            return self.ack_pg(worker, acks).await;
        }
        let (ops, jobs, now) = (
            self.table("operations"),
            self.table("jobs"),
            self.dialect.now(),
        );
        let durations = vec!["WHEN claim_token = ? THEN ?"; acks.len()].join(" ");
        let update = format!(
            "UPDATE {ops} SET status = 'completed', finished_at = {now}, duration_ms = CASE {durations} END, \
             lease_until = NULL, skip_reason = NULL, last_error = NULL WHERE status = 'running' AND ({})",
            each_run(acks.len(), true)
        );
        let returning = self.dialect != Dialect::MySql;
        let sql = self.dialect.sql(if returning {
            format!("{update} RETURNING claim_token")
        } else {
            update
        });
        let query = bind_acks(sqlx::query(&sql), acks);
        let mut tx = self.pool.begin().await.map_err(q(WHAT))?;
        let finished: Vec<String> = if returning {
            first_texts(&query.fetch_all(&mut *tx).await.map_err(q(WHAT))?).map_err(q(WHAT))?
        } else {
            let written = query.execute(&mut *tx).await.map_err(q(WHAT))?;
            // Every run written `completed`: all of them (each row matches one token); else read back which.
            if written.rows_affected() == acks.len() as u64 {
                acks.iter().map(|a| a.token.clone()).collect()
            } else {
                let runs = acks.iter().map(|a| (&*a.name, a.run, &*a.token));
                self.ours_on(&mut tx, runs, "completed")
                    .await
                    .map_err(q(WHAT))?
            }
        };
        let ended: Vec<i64> = acks
            .iter()
            .filter(|a| finished.contains(&a.token))
            .map(|a| a.job)
            .collect();
        if !ended.is_empty() {
            let (done, running) = (JobStatus::Done, JobStatus::Running);
            let list = vec!["?"; ended.len()].join(", ");
            let end = format!(
                "UPDATE {jobs} SET status = '{done}', finished_at = {now}, lease_until = NULL, last_error = NULL \
                 WHERE worker = ? AND status = '{running}' AND id IN ({list})"
            );
            let sql = self.dialect.sql(end);
            let mut query = sqlx::query(&sql).bind(worker);
            for id in &ended {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await.map_err(q(WHAT))?;
        }
        tx.commit().await.map_err(q(WHAT))?;
        Ok(finished)
    }
}
