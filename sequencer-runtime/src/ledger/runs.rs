//! The operations table, one row per run of an operation, and the batches that ran them: claims, heartbeats,
//! attempts, the end of a run, recovery of interrupted runs, status changes, scheduling and forgetting.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::connection::{pid_namespace, Ledger, Owner};
use super::dialect::{parsed, stored_by_name, text, Dialect};
use super::error::{q, retrying, LedgerError};
use super::jobs::JobStatus;
use super::native::{Arg, Conn};

/// The state of an operation's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not run yet.
    Pending,
    /// Waiting for its due time.
    Scheduled,
    /// Claimed by a process, which holds a lease on it.
    Running,
    /// Ran to the end.
    Completed,
    /// Ended with an error.
    Failed,
    /// Skipped, with a reason.
    Skipped,
    /// Undone by its rollback.
    RolledBack,
    /// Its process died while running it.
    Interrupted,
    /// Its rollback is running, claimed by a process that holds a lease on it.
    RollingBack,
    /// Its rollback's process died (or lost its lease) before the rollback returned: the undo may be half done.
    /// Never run forward by `process`; a person decides (`rollback --op NAME` again, or `mark NAME`).
    RollbackInterrupted,
    /// Completed, but an operation it depends on was rolled back under it (`rollback --cascade --force`, which
    /// undoes what this one cannot): its work may rest on undone work. Never run forward by `process`; a person
    /// decides (`retry NAME` runs it again, `mark NAME --completed` records it as it is).
    Stale,
}

stored_by_name!(Status, "status", {
    Pending => "pending",
    Scheduled => "scheduled",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Skipped => "skipped",
    RolledBack => "rolled_back",
    Interrupted => "interrupted",
    RollingBack => "rolling_back",
    RollbackInterrupted => "undo_interrupted",
    Stale => "stale",
});

/// The latest run of one operation, as the ledger records it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRow {
    /// Ledger name.
    pub name: String,
    /// 0 for the first run; `--repeat` adds runs.
    pub run: i64,
    /// The operation's timestamp, `YYYYMMDDHHMMSS`.
    pub timestamp: i64,
    /// The batch (process run) that ran it.
    pub batch: Option<i64>,
    /// Status.
    pub status: Status,
    /// Tries so far.
    pub attempts: i64,
    /// When it started.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// How long it ran.
    pub duration_ms: Option<i64>,
    /// Until when its process holds it.
    pub lease_until: Option<i64>,
    /// The host that ran it.
    pub host: Option<String>,
    /// The process that ran it.
    pub pid: Option<i64>,
    /// Who started the run (`--actor`).
    pub actor: Option<String>,
    /// Checksum of the source that ran, hex.
    pub checksum: Option<String>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// When a scheduled operation is due, Unix milliseconds.
    pub due_at: Option<i64>,
    /// `ctx.progress(done, _)`.
    pub progress_done: Option<i64>,
    /// `ctx.progress(_, total)`.
    pub progress_total: Option<i64>,
    /// `cancel NAME` asked it to stop.
    pub cancel_requested: bool,
    /// `pause NAME`: 1 asked (it holds at its next checkpoint), 2 holding; 0 not paused.
    pub pause_requested: i64,
    /// Since when its `throttle_on` condition holds it back, Unix milliseconds (none: not throttled now).
    pub throttled_since: Option<i64>,
    /// How long its `throttle_on` condition held this run back so far, milliseconds.
    pub throttled_ms: Option<i64>,
}

/// The columns of a [`LedgerRow`], in the order [`row`] reads them.
pub(super) const ROW_COLUMNS: &str =
    "name, run, op_timestamp, batch, status, attempts, started_at, finished_at, duration_ms, \
                           lease_until, host, pid, actor, checksum, skip_reason, last_error, due_at, \
                           progress_done, progress_total, cancel_requested, pause_requested, \
                           throttled_since, throttled_ms";

pub(super) fn row(r: &AnyRow) -> Result<LedgerRow, sqlx::Error> {
    Ok(LedgerRow {
        name: r.try_get(0)?,
        run: r.try_get(1)?,
        timestamp: r.try_get(2)?,
        batch: r.try_get(3)?,
        status: parsed(r, 4)?,
        attempts: r.try_get(5)?,
        started_at: r.try_get(6)?,
        finished_at: r.try_get(7)?,
        duration_ms: r.try_get(8)?,
        lease_until: r.try_get(9)?,
        host: r.try_get(10)?,
        pid: r.try_get(11)?,
        actor: r.try_get(12)?,
        checksum: r.try_get(13)?,
        skip_reason: text(r, 14)?,
        last_error: text(r, 15)?,
        due_at: r.try_get(16)?,
        progress_done: r.try_get(17)?,
        progress_total: r.try_get(18)?,
        cancel_requested: r.try_get::<Option<i64>, _>(19)?.unwrap_or(0) != 0,
        pause_requested: r.try_get::<Option<i64>, _>(20)?.unwrap_or(0),
        throttled_since: r.try_get(21)?,
        throttled_ms: r.try_get(22)?,
    })
}

/// What a claim writes.
#[derive(Debug)]
pub struct Claim<'a> {
    /// Ledger name.
    pub name: &'a str,
    /// Which run.
    pub run: i64,
    /// The batch claiming it.
    pub batch: i64,
    /// Who claims it.
    pub owner: &'a Owner,
    /// How long the claim holds without a heartbeat.
    pub lease: Duration,
    /// Checksum of the source about to run, hex.
    pub checksum: &'a str,
    /// Also claim an `interrupted` row (the operation is idempotent or retryable).
    pub reclaim_interrupted: bool,
    /// Also claim a `scheduled` row (it is due).
    pub due_scheduled: bool,
    /// The claim's token ([`new_claim_token`](crate::ledger::new_claim_token)): every later write of this claim
    /// presents it.
    pub token: &'a str,
    /// A `failed` row is claimed only if it failed no later than this time (the database's clock, in milliseconds: a
    /// failure in the very millisecond the plan read the clock was seen by it; `i64::MAX`: any).
    pub failed_before: i64,
    /// For a run whose data bounds its tries (a deferred run's `max_attempts`): the bound. Its tries are then
    /// counted across claims: claiming it again after a failed try or a crash (`pending` or `interrupted`) adds one
    /// to its `attempts` instead of starting over at 1, and a run that has used them all is not claimed.
    pub bounded: Option<u32>,
}

/// What the end of a run writes.
#[derive(Debug)]
pub struct Finish<'a> {
    /// Ledger name.
    pub name: &'a str,
    /// Which run.
    pub run: i64,
    /// `completed`, `failed` or `skipped`.
    pub status: Status,
    /// How long it ran.
    pub duration: Duration,
    /// Why it was skipped.
    pub skip_reason: Option<&'a str>,
    /// The last error.
    pub error: Option<&'a str>,
    /// The claim's token: only this claim is ended.
    pub token: &'a str,
}

impl Ledger {
    /// The latest run of every operation in the ledger. Task runs (rows with arguments) are not operations' runs:
    /// see [`Ledger::task_counts`] and [`Ledger::row_of`].
    pub async fn rows(&self) -> Result<Vec<LedgerRow>, LedgerError> {
        let mut out = Vec::new();
        self.each_row(|row| out.push(row)).await?;
        Ok(out)
    }

    /// The rows of [`Ledger::rows`], in `(timestamp, name)` order, each handed to `f` as it is read: the rows are
    /// streamed from the database, not read whole first, so that a caller that keeps only what it needs of each
    /// (`status` over a large ledger) holds one copy of the ledger at the most.
    pub async fn each_row(&self, mut f: impl FnMut(LedgerRow)) -> Result<(), LedgerError> {
        use futures_util::TryStreamExt;
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT {ROW_COLUMNS} FROM {ops} o WHERE args IS NULL AND run = (SELECT MAX(run) FROM {ops} i WHERE i.name = o.name AND i.args IS NULL) ORDER BY op_timestamp, name"
        ));
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        while let Some(r) = rows.try_next().await.map_err(q("read the ledger"))? {
            match row(&r) {
                Ok(row) => f(row),
                // One unreadable row (a status written by a newer version, a hand edit) must not stop every reader:
                // it is reported and left as it is, and the others are served.
                Err(e) => {
                    let name = text(&r, 0).ok().flatten().unwrap_or_default();
                    tracing::warn!("ledger row `{name}` cannot be read and is left alone: {e}");
                    eprintln!("warning: ledger row `{name}` cannot be read and is left alone: {e}");
                }
            }
        }
        Ok(())
    }

    /// The `attempts` of run `run` of `name` while the claim `token` holds it (`None`: it does not).
    pub(crate) async fn claimed_attempts(
        &self,
        name: &str,
        run: i64,
        token: &str,
    ) -> Result<Option<i64>, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT attempts FROM {ops} WHERE name = ? AND run = ? AND claim_token = ?"
        ));
        sqlx::query_scalar(&sql)
            .bind(name)
            .bind(run)
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read the attempts of a claimed run"))
    }

    /// One run of one operation.
    pub async fn row_of(&self, name: &str, run: i64) -> Result<Option<LedgerRow>, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT {ROW_COLUMNS} FROM {ops} WHERE name = ? AND run = ?"
        ));
        let r = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read the ledger"))?;
        r.as_ref()
            .map(row)
            .transpose()
            .map_err(q("decode a ledger row"))
    }

    /// Inserts a `pending` row for each operation the ledger has never seen.
    pub async fn insert_pending(&self, ops: &[(&str, i64)]) -> Result<(), LedgerError> {
        if ops.is_empty() {
            return Ok(());
        }
        // Many rows per statement: a run of 10,000 operations starts with 20 statements, not 10,000.
        const ROWS: usize = 500;
        // One statement inserting `count` pending rows (rows that exist are left alone).
        let table = self.table("operations");
        let insert_many = |count: usize| {
            let values = vec!["(?, 0, ?, 'pending', 0)"; count].join(", ");
            self.dialect.insert_ignore(format!(
                "INSERT INTO {table} (name, run, op_timestamp, status, attempts) VALUES {values}"
            ))
        };
        let mut tx = self.pool.begin().await.map_err(q("begin a transaction"))?;
        let full = insert_many(ROWS);
        for chunk in ops.chunks(ROWS) {
            let partial;
            let sql = if chunk.len() == ROWS {
                &full
            } else {
                partial = insert_many(chunk.len());
                &partial
            };
            let mut query = sqlx::query(sql);
            for (name, ts) in chunk {
                query = query.bind(*name).bind(*ts);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(q("record pending operations"))?;
        }
        tx.commit().await.map_err(q("record pending operations"))
    }

    /// Starts a batch (one process run) and returns its number.
    pub async fn new_batch(&self, owner: &Owner) -> Result<i64, LedgerError> {
        let batches = self.table("batches");
        let now = self.dialect.now();
        let insert =
            format!("INSERT INTO {batches} (started_at, host, pid, actor) VALUES ({now}, ?, ?, ?)");
        let sql = self.dialect.sql(match self.dialect {
            Dialect::MySql => insert,
            _ => format!("{insert} RETURNING id"),
        });
        let query = sqlx::query(&sql)
            .bind(owner.host.as_str())
            .bind(owner.pid)
            .bind(owner.actor.as_deref());
        if self.dialect == Dialect::MySql {
            let done = query
                .execute(&self.pool)
                .await
                .map_err(q("start a batch"))?;
            return done
                .last_insert_id()
                .ok_or_else(|| q("start a batch")(sqlx::Error::RowNotFound));
        }
        let r = query
            .fetch_one(&self.pool)
            .await
            .map_err(q("start a batch"))?;
        r.try_get::<i64, _>(0).map_err(q("start a batch"))
    }

    /// Claims the run `run` of `name`: one atomic statement. `false` when another process has it, or it ran.
    pub async fn claim(&self, claim: &Claim<'_>) -> Result<bool, LedgerError> {
        // The claim: one atomic statement; whoever changes the row owns the operation.
        let sql = self.statements.claim.get_or_init(|| {
            let (ops, now) = (self.table("operations"), self.dialect.now());
            self.dialect.sql(format!(
                "UPDATE {ops} SET attempts = CASE WHEN ? > 0 AND status IN ('pending', 'interrupted') THEN COALESCE(attempts, 0) + 1 ELSE 1 END, \
                 progress_done = CASE WHEN status = 'rolled_back' THEN NULL ELSE progress_done END, \
                 status = 'running', batch = ?, started_at = {now}, finished_at = NULL, \
                 duration_ms = NULL, lease_until = {now} + ?, claim_token = ?, host_ns = ?, host = ?, pid = ?, actor = ?, checksum = ?, skip_reason = NULL, cancel_requested = NULL, \
                 pause_requested = NULL, throttled_since = NULL, throttled_ms = NULL, \
                 last_error = NULL WHERE name = ? AND run = ? \
                 AND (status IN ('pending', 'rolled_back', ?, ?) OR (status = 'failed' AND (finished_at IS NULL OR finished_at <= ?))) \
                 AND (? = 0 OR COALESCE(attempts, 0) < ?)"
            ))
        });
        // (`attempts` is assigned first: MySQL evaluates the assignments in order, each seeing the ones before.)
        let bound = i64::from(claim.bounded.unwrap_or(0));
        let done = sqlx::query(sql)
            .bind(bound)
            .bind(claim.batch)
            .bind(claim.lease.as_millis() as i64)
            .bind(claim.token)
            .bind(pid_namespace())
            .bind(claim.owner.host.as_str())
            .bind(claim.owner.pid)
            .bind(claim.owner.actor.as_deref())
            .bind(claim.checksum)
            .bind(claim.name)
            .bind(claim.run)
            .bind(if claim.reclaim_interrupted {
                "interrupted"
            } else {
                "pending"
            })
            .bind(if claim.due_scheduled {
                "scheduled"
            } else {
                "pending"
            })
            .bind(claim.failed_before)
            .bind(bound)
            .bind(bound)
            .execute(self.run_writes())
            .await
            .map_err(q("claim an operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims a new run (`--repeat`) of a completed operation.
    pub async fn claim_new_run(
        &self,
        claim: &Claim<'_>,
        timestamp: i64,
    ) -> Result<bool, LedgerError> {
        // A new run of a completed operation; the primary key makes it atomic.
        let (ops, now) = (self.table("operations"), self.dialect.now());
        let sql = self.dialect.insert_ignore(format!(
            "INSERT INTO {ops} (name, run, op_timestamp, batch, status, attempts, started_at, lease_until, claim_token, host_ns, host, pid, actor, checksum) \
             VALUES (?, ?, ?, ?, 'running', 1, {now}, {now} + ?, ?, ?, ?, ?, ?, ?)"
        ));
        let done = sqlx::query(&sql)
            .bind(claim.name)
            .bind(claim.run)
            .bind(timestamp)
            .bind(claim.batch)
            .bind(claim.lease.as_millis() as i64)
            .bind(claim.token)
            .bind(pid_namespace())
            .bind(claim.owner.host.as_str())
            .bind(claim.owner.pid)
            .bind(claim.owner.actor.as_deref())
            .bind(claim.checksum)
            .execute(self.run_writes())
            .await
            .map_err(q("claim a new run"))?;
        Ok(done.rows_affected() == 1)
    }

    // Writes of a running operation name its owner: once another process has recovered the row after an
    // expired lease, they change nothing.

    /// Records the start of another attempt and renews the lease. `false` if the row is no longer this process's
    /// claim (its lease ran out and another process recovered it): the attempt must not run.
    pub async fn attempt(
        &self,
        name: &str,
        run: i64,
        attempt: u32,
        lease: Duration,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET attempts = ?, lease_until = {now} + ? WHERE name = ? AND run = ? AND status = 'running' AND claim_token = ?",
            now = self.dialect.now()
        ));
        let done = sqlx::query(&sql)
            .bind(attempt as i64)
            .bind(lease.as_millis() as i64)
            .bind(name)
            .bind(run)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("record an attempt"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Renews the lease of a running operation or rollback. `false` if the row is no longer ours.
    pub async fn heartbeat(
        &self,
        name: &str,
        run: i64,
        lease: Duration,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET lease_until = {now} + ? WHERE name = ? AND run = ? AND status IN ('running', 'rolling_back') \
             AND claim_token = ?",
            now = self.dialect.now()
        ));
        let done = sqlx::query(&sql)
            .bind(lease.as_millis() as i64)
            .bind(name)
            .bind(run)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("renew a lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Rewrites a run's stored `last_error` as it is (for `reseal`).
    pub async fn rewrite_last_error(
        &self,
        name: &str,
        run: i64,
        stored: &str,
    ) -> Result<(), LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET last_error = ? WHERE name = ? AND run = ?"
        ));
        sqlx::query(&sql)
            .bind(stored)
            .bind(name)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(q("reseal an error"))?;
        Ok(())
    }

    /// Ends a running operation (`completed`, `failed` or `skipped`), on the pool or inside the operation's
    /// transaction (of either kind), so that its writes and its row commit together.
    pub async fn finish<'c>(
        &self,
        on: impl Into<Conn<'c>>,
        end: &Finish<'_>,
    ) -> Result<bool, LedgerError> {
        let sql = self.statements.finish.get_or_init(|| {
            let ops = self.table("operations");
            self.dialect.sql(format!(
                "UPDATE {ops} SET status = ?, finished_at = {now}, duration_ms = ?, lease_until = NULL, skip_reason = ?, last_error = ? \
                 WHERE name = ? AND run = ? AND status = 'running' AND claim_token = ?",
                now = self.dialect.now()
            ))
        });
        let args = [
            Arg::Text(Some(end.status.as_str())),
            Arg::Int(end.duration.as_millis() as i64),
            Arg::Text(end.skip_reason),
            Arg::Text(end.error),
            Arg::Text(Some(end.name)),
            Arg::Int(end.run),
            Arg::Text(Some(end.token)),
        ];
        let on: Conn<'_> = on.into();
        let changed = on
            .execute(sql, &args)
            .await
            .map_err(q("record the end of an operation"))?;
        Ok(changed == 1)
    }

    /// Ends a running operation on the pool, riding out a short database outage (a restart, a full connection
    /// table, a deadlock victim): transient failures are retried for up to ten seconds, so that an operation that
    /// ran is recorded as it ended rather than left to be found `interrupted`. A retry that finds the row already
    /// ended as asked (the first try committed, its answer was lost) counts as done.
    pub async fn finish_on_pool(&self, end: &Finish<'_>) -> Result<bool, LedgerError> {
        let tries = AtomicU32::new(0);
        let done = retrying("record the end of an operation", || {
            tries.fetch_add(1, Ordering::Relaxed);
            self.finish(self.run_writes(), end)
        })
        .await?;
        // After a retry, a row already ended as asked is the first try's: committed, its answer lost.
        if done || tries.load(Ordering::Relaxed) == 1 {
            return Ok(done);
        }
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT status FROM {ops} WHERE name = ? AND run = ? AND claim_token = ?"
        ));
        let status: Option<String> = sqlx::query_scalar(&sql)
            .bind(end.name)
            .bind(end.run)
            .bind(end.token)
            .fetch_optional(self.run_writes())
            .await
            .map_err(q("record the end of an operation"))?;
        Ok(status.as_deref() == Some(end.status.as_str()))
    }

    /// Changes the status of the latest run from `from` to `to`. `false` if it was not in `from`.
    pub async fn set_status(
        &self,
        name: &str,
        run: i64,
        from: Status,
        to: Status,
        reason: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET status = ?, finished_at = {now}, skip_reason = ?, lease_until = NULL WHERE name = ? AND run = ? AND status = ?",
            now = self.dialect.now()
        ));
        let done = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(reason)
            .bind(name)
            .bind(run)
            .bind(from.as_str())
            .execute(&self.pool)
            .await
            .map_err(q("change a status"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Makes run `run` of `name` `pending` again from `from` (`failed` or `interrupted`) with its tries starting
    /// over (`attempts` 0). `false` if it was not in `from`.
    pub(crate) async fn retry_run(
        &self,
        name: &str,
        run: i64,
        from: Status,
    ) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET status = 'pending', attempts = 0, finished_at = {now}, skip_reason = NULL, lease_until = NULL \
             WHERE name = ? AND run = ? AND status = ?",
            now = self.dialect.now()
        ));
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .bind(from.as_str())
            .execute(&self.pool)
            .await
            .map_err(q("retry a run"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a pending operation as `scheduled`, due at `due_at` (Unix milliseconds).
    pub async fn schedule(&self, name: &str, run: i64, due_at: i64) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET status = 'scheduled', due_at = ? WHERE name = ? AND run = ? AND status = 'pending'"
        ));
        let done = sqlx::query(&sql)
            .bind(due_at)
            .bind(name)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(q("schedule an operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes every run of an operation, its recorded errors and its ended jobs, so that it runs again afresh.
    /// Refused (`Ok(None)`, nothing deleted) while a run or a rollback of it holds a claim: the check and the
    /// deletes are one transaction, and the rows' delete is guarded by the status, so a claim taken between the
    /// caller's look and this call is never deleted under its process.
    pub async fn forget(&self, name: &str) -> Result<Option<u64>, LedgerError> {
        // Its rows, its recorded errors and its ended jobs go together: `errors NAME` starts empty again. A
        // running job is left to its worker; its operation's row is gone, so it ends as not run.
        let (ops, errors, jobs) = (
            self.table("operations"),
            self.table("errors"),
            self.table("jobs"),
        );
        let job_running = JobStatus::Running;
        let held = self.dialect.sql(format!(
            "SELECT COUNT(*) FROM {ops} WHERE name = ? AND status IN ('running', 'rolling_back')"
        ));
        let delete_rows = self.dialect.sql(format!(
            "DELETE FROM {ops} WHERE name = ? AND NOT EXISTS \
             (SELECT 1 FROM (SELECT name FROM {ops} WHERE name = ? AND status IN ('running', 'rolling_back')) held)"
        ));
        let delete_errors = self
            .dialect
            .sql(format!("DELETE FROM {errors} WHERE name = ?"));
        let delete_checkpoints = self.dialect.sql(format!(
            "DELETE FROM {checkpoints} WHERE name = ?",
            checkpoints = self.table("checkpoints")
        ));
        let delete_logs = self.dialect.sql(format!(
            "DELETE FROM {logs} WHERE name = ?",
            logs = self.table("logs")
        ));
        let delete_samples = self.dialect.sql(format!(
            "DELETE FROM {samples} WHERE name = ?",
            samples = self.table("progress_samples")
        ));
        let delete_jobs = self.dialect.sql(format!(
            "DELETE FROM {jobs} WHERE name = ? AND status <> '{job_running}'"
        ));
        let mut tx = self.pool.begin().await.map_err(q("forget an operation"))?;
        let claimed: i64 = sqlx::query_scalar(&held)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("forget an operation"))?;
        if claimed > 0 {
            return Ok(None);
        }
        let removed = sqlx::query(&delete_rows)
            .bind(name)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("forget an operation"))?
            .rows_affected();
        for sql in [
            &delete_errors,
            &delete_checkpoints,
            &delete_logs,
            &delete_samples,
            &delete_jobs,
        ] {
            sqlx::query(sql)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(q("forget an operation"))?;
        }
        tx.commit().await.map_err(q("forget an operation"))?;
        Ok(Some(removed))
    }
}
