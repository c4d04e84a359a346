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

impl Ledger {
    /// The run number the next run of task `name` would take: one more than its latest.
    pub async fn next_task_run(&self, name: &str) -> Result<i64, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT COALESCE(MAX(run), 0) + 1 FROM {ops} WHERE name = ?"
        ));
        sqlx::query_scalar(&sql)
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
        let ops = self.table("operations");
        let sql = self.dialect.insert_ignore(format!(
            "INSERT INTO {ops} (name, run, op_timestamp, status, attempts, args) VALUES (?, ?, 0, 'pending', 0, ?)"
        ));
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .bind(args)
            .execute(&self.pool)
            .await
            .map_err(q("record a task run"))?;
        Ok(done.rows_affected() == 1)
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
        let (jobs, now) = (self.table("jobs"), self.dialect.now());
        let (available, ms) = match when {
            Available::Now => (format!("{now} + ?"), 0),
            Available::After(ms) => (format!("{now} + ?"), ms.max(0)),
            Available::At(ms) => ("?".to_owned(), ms),
        };
        let queued = JobStatus::Queued;
        let sql = self.dialect.insert_ignore(format!(
            "INSERT INTO {jobs} (name, run, queue, status, available_at, attempts, created_at) VALUES (?, ?, ?, '{queued}', {available}, 0, {now})"
        ));
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .bind(queue)
            .bind(ms)
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
