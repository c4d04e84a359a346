//! Task runs: rows of the operations table with their arguments (`args`, JSON, sealed for an `encrypted` task),
//! numbered per task from 1, and their jobs on the workers' queue.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::connection::Ledger;
use super::dialect::{parsed, text};
use super::error::{q, LedgerError};
use super::jobs::JobStatus;
use super::runs::Status;

/// When a task run's job becomes available to the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Available {
    /// At once.
    Now,
    /// This many milliseconds from now (the database's clock).
    After(i64),
    /// At this time, Unix milliseconds.
    At(i64),
}

impl Available {
    /// The value bound for it: the time (`At`), or the delay from now in milliseconds.
    fn millis(self) -> i64 {
        match self {
            Available::Now => 0,
            Available::After(ms) => ms.max(0),
            Available::At(ms) => ms,
        }
    }
}

impl Ledger {
    /// The statement numbering the next run of a task (bind: its name): one more than its latest.
    pub(super) fn number_task_run_sql(&self) -> String {
        let ops = self.table("operations");
        self.dialect.sql(format!(
            "SELECT COALESCE(MAX(run), 0) + 1 FROM {ops} WHERE name = ?"
        ))
    }

    /// The statement recording a `pending` task run (binds: name, run, stored arguments), doing nothing when that
    /// run exists.
    pub(super) fn insert_task_run_sql(&self) -> String {
        let ops = self.table("operations");
        self.dialect.insert_ignore(format!(
            "INSERT INTO {ops} (name, run, op_timestamp, status, attempts, args) VALUES (?, ?, 0, 'pending', 0, ?)"
        ))
    }

    /// The statement queueing a task run's job, available `when` (binds: name, run, queue, then the time or the
    /// delay in milliseconds, as [`Available::millis`] gives it).
    fn enqueue_task_sql(&self, when: Available) -> String {
        let (jobs, now) = (self.table("jobs"), self.dialect.now());
        let available = match when {
            Available::Now | Available::After(_) => format!("{now} + ?"),
            Available::At(_) => "?".to_owned(),
        };
        let queued = JobStatus::Queued;
        self.dialect.insert_ignore(format!(
            "INSERT INTO {jobs} (name, run, queue, status, available_at, attempts, created_at) VALUES (?, ?, ?, '{queued}', {available}, 0, {now})"
        ))
    }

    /// Records run `run` of task `name`, `pending`, with its stored arguments and, with `queue`, its job on that
    /// queue, on `conn` (inside the caller's transaction: the run and its job commit together). `false` when that
    /// run exists (another process numbered its run the same: take the next number), and nothing was written.
    pub(super) async fn insert_queued_run(
        &self,
        conn: &mut sqlx::AnyConnection,
        name: &str,
        run: i64,
        args: &str,
        queue: Option<(&str, Available)>,
    ) -> Result<bool, LedgerError> {
        let inserted = sqlx::query(&self.insert_task_run_sql())
            .bind(name)
            .bind(run)
            .bind(args)
            .execute(&mut *conn)
            .await
            .map_err(q("record a task run"))?
            .rows_affected()
            == 1;
        if let (true, Some((queue, when))) = (inserted, queue) {
            sqlx::query(&self.enqueue_task_sql(when))
                .bind(name)
                .bind(run)
                .bind(queue)
                .bind(when.millis())
                .execute(&mut *conn)
                .await
                .map_err(q("queue a task run"))?;
        }
        Ok(inserted)
    }

    /// The run number the next run of task `name` would take: one more than its latest.
    pub async fn next_task_run(&self, name: &str) -> Result<i64, LedgerError> {
        sqlx::query_scalar(&self.number_task_run_sql())
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(q("number a task run"))
    }

    /// Records run `run` of task `name`, `pending`, with its stored arguments. `false` when that run exists
    /// (another process numbered its run the same: take the next number).
    pub async fn insert_task_run(
        &self,
        name: &str,
        run: i64,
        args: &str,
    ) -> Result<bool, LedgerError> {
        self.record_task_run(name, run, args, None).await
    }

    /// Records run `run` of task `name` with its stored arguments and, with `queue`, its job on that queue, in one
    /// transaction (a run is never recorded without the job that runs it), and wakes that queue's workers.
    /// `false` when that run exists, and nothing was written.
    pub(crate) async fn record_task_run(
        &self,
        name: &str,
        run: i64,
        args: &str,
        queue: Option<(&str, Available)>,
    ) -> Result<bool, LedgerError> {
        let what = "record a task run";
        let mut tx = self.pool.begin().await.map_err(q(what))?;
        let inserted = self
            .insert_queued_run(&mut tx, name, run, args, queue)
            .await?;
        if !inserted {
            tx.rollback().await.map_err(q(what))?;
            return Ok(false);
        }
        tx.commit().await.map_err(q(what))?;
        if let Some((queue, _)) = queue {
            self.wake_workers(queue).await?;
        }
        Ok(true)
    }

    /// A task run's stored arguments; `None` when the run does not exist or is not a task's.
    pub async fn task_args(&self, name: &str, run: i64) -> Result<Option<String>, LedgerError> {
        let ops = self.table("operations");
        let sql = self
            .dialect
            .sql(format!("SELECT args FROM {ops} WHERE name = ? AND run = ?"));
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a task run's arguments"))?;
        match row {
            Some(r) => text(&r, 0).map_err(q("read a task run's arguments")),
            None => Ok(None),
        }
    }

    /// Every run of task `name` with its stored arguments and last error, as stored (for `reseal`).
    pub(crate) async fn task_stored(
        &self,
        name: &str,
    ) -> Result<Vec<(i64, Option<String>, Option<String>)>, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT run, args, last_error FROM {ops} WHERE name = ? AND args IS NOT NULL ORDER BY run"
        ));
        let rows = sqlx::query(&sql)
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read a task's runs"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, text(r, 1)?, text(r, 2)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("read a task's runs"))
    }

    /// Rewrites a task run's stored arguments (for `reseal`).
    pub(crate) async fn rewrite_task_args(
        &self,
        name: &str,
        run: i64,
        args: &str,
    ) -> Result<(), LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET args = ? WHERE name = ? AND run = ?"
        ));
        sqlx::query(&sql)
            .bind(args)
            .bind(name)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(q("reseal a task run's arguments"))?;
        Ok(())
    }

    /// How many runs of each task are in each status: `task → status → count`.
    pub async fn task_counts(&self) -> Result<BTreeMap<String, HashMap<Status, i64>>, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT name, status, COUNT(*) FROM {ops} WHERE args IS NOT NULL GROUP BY name, status"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q("count task runs"))?;
        let mut out: BTreeMap<String, HashMap<Status, i64>> = BTreeMap::new();
        for r in &rows {
            let decode = || -> Result<(String, Status, i64), sqlx::Error> {
                Ok((r.try_get(0)?, parsed(r, 1)?, r.try_get(2)?))
            };
            let (name, status, count) = decode().map_err(q("count task runs"))?;
            *out.entry(name).or_default().entry(status).or_default() += count;
        }
        Ok(out)
    }

    /// Puts a task run on a queue, available `when`, and wakes the workers. `false` when it has a job already.
    pub async fn enqueue_task(
        &self,
        name: &str,
        run: i64,
        queue: &str,
        when: Available,
    ) -> Result<bool, LedgerError> {
        let done = sqlx::query(&self.enqueue_task_sql(when))
            .bind(name)
            .bind(run)
            .bind(queue)
            .bind(when.millis())
            .execute(&self.pool)
            .await
            .map_err(q("queue a task run"))?
            .rows_affected()
            == 1;
        if done {
            self.wake_workers(queue).await?;
        }
        Ok(done)
    }
}
