//! What the dashboard reads a page at a time, each statement bounded by `LIMIT` and read through an index, so a
//! page costs about the same at 100 ledger rows as at 100,000: recorded batches newest first, one batch's members
//! in order, task runs (rows with `args`) by task and state, task runs counted by task and state, the latest
//! run's status and duration of every operation (the graph and the plan: two columns, not whole rows) and the
//! columns of the latest runs the plan reads (`process --dry-run`), each in one scan without a join, deferred
//! operations counted by state; and the pruning of old progress samples.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sqlx::Row;

use super::batches::{batch_row, BatchId, BatchInfo, BatchMemberRow, BATCH_COLUMNS};
use super::connection::Ledger;
use super::dialect::{parsed, text, Dialect};
use super::error::{q, LedgerError};
use super::outline::{plan_row, PLAN_COLUMNS};
use super::runs::{row, LedgerRow, Status, ROW_COLUMNS};

/// One page of task runs: see [`Ledger::task_runs_page`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskRunsPage<'a> {
    /// Only the runs of this task.
    pub task: Option<&'a str>,
    /// Only runs in this status.
    pub status: Option<Status>,
    /// Only runs after this `(task, run)` in the page's order (task names ascending, runs newest first).
    pub after: Option<(&'a str, i64)>,
    /// At most this many.
    pub limit: usize,
}

/// A task run as the dashboard lists it: its row and its stored arguments (sealed for an `encrypted` task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRunRow {
    /// The run's row of the operations table.
    pub row: LedgerRow,
    /// Its arguments as stored: JSON, or sealed.
    pub args: Option<String>,
}

/// The name column in the order of a page: byte by byte on SQLite and PostgreSQL (where the `_listing` index is
/// in that order), the column's collation on MySQL (where its index is).
fn name_order(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "name COLLATE \"C\"",
        Dialect::Sqlite | Dialect::MySql => "name",
    }
}

impl Ledger {
    /// Recorded batches and chains, newest first: those with an id below `before`, at most `limit`.
    pub async fn batches_page(
        &self,
        before: Option<BatchId>,
        limit: usize,
    ) -> Result<Vec<BatchInfo>, LedgerError> {
        let batches = self.table("job_batches");
        let below = if before.is_some() {
            " WHERE id < ?"
        } else {
            ""
        };
        let sql = self.dialect.sql(format!(
            "SELECT {BATCH_COLUMNS} FROM {batches}{below} ORDER BY id DESC LIMIT {limit}"
        ));
        let mut query = sqlx::query(&sql);
        if let Some(b) = before {
            query = query.bind(b.0);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(q("read a page of batches"))?;
        rows.iter()
            .map(batch_row)
            .collect::<Result<_, _>>()
            .map_err(q("read a page of batches"))
    }

    /// A batch's members in order, those after `position`, at most `limit` (through the `_position` index,
    /// schema version 15).
    pub async fn batch_members_page(
        &self,
        id: BatchId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<BatchMemberRow>, LedgerError> {
        const WHAT: &str = "read a page of a batch's members";
        let members = self.table("batch_members");
        let sql = self.dialect.sql(format!(
            "SELECT position, name, run, state, reason, ended_at FROM {members} \
             WHERE batch_id = ? AND position > ? ORDER BY position LIMIT {limit}"
        ));
        let rows = sqlx::query(&sql)
            .bind(id.0)
            .bind(after.unwrap_or(-1))
            .fetch_all(&self.pool)
            .await
            .map_err(q(WHAT))?;
        rows.iter()
            .map(|r| {
                Ok(BatchMemberRow {
                    position: r.try_get(0)?,
                    name: r.try_get(1)?,
                    run: r.try_get(2)?,
                    state: parsed(r, 3)?,
                    reason: text(r, 4)?,
                    ended_at: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(WHAT))
    }

    /// Which of these runs are task runs (their rows carry arguments): what a batch member links to.
    pub async fn task_runs_among(
        &self,
        runs: &[(&str, i64)],
    ) -> Result<std::collections::HashSet<(String, i64)>, LedgerError> {
        const WHAT: &str = "read which runs are task runs";
        let ops = self.table("operations");
        let mut out = std::collections::HashSet::new();
        for chunk in runs.chunks(super::listing::NAMES_PER_STATEMENT) {
            let which = vec!["(name = ? AND run = ?)"; chunk.len()].join(" OR ");
            let sql = self.dialect.sql(format!(
                "SELECT name, run FROM {ops} WHERE args IS NOT NULL AND ({which})"
            ));
            let mut query = sqlx::query(&sql);
            for (name, run) in chunk {
                query = query.bind(*name).bind(*run);
            }
            for r in query.fetch_all(&self.pool).await.map_err(q(WHAT))? {
                out.insert((
                    r.try_get::<String, _>(0).map_err(q(WHAT))?,
                    r.try_get::<i64, _>(1).map_err(q(WHAT))?,
                ));
            }
        }
        Ok(out)
    }

    /// A page of task runs matching `page`, by task name, newest run first. Task runs are the rows with
    /// arguments, all recorded at timestamp 0 (no one-time operation has it): the statement names that timestamp
    /// so that it reads the `_listing` or `_by_status` index (schema version 13), not the whole table.
    pub async fn task_runs_page(
        &self,
        page: &TaskRunsPage<'_>,
    ) -> Result<Vec<TaskRunRow>, LedgerError> {
        const WHAT: &str = "read a page of task runs";
        let ops = self.table("operations");
        let name = name_order(self.dialect);
        let mut sql = format!(
            "SELECT {ROW_COLUMNS}, args FROM {ops} WHERE op_timestamp = 0 AND args IS NOT NULL"
        );
        if page.task.is_some() {
            sql.push_str(" AND name = ?");
        }
        if page.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if page.after.is_some() {
            sql.push_str(&format!(" AND ({name} > ? OR (name = ? AND run < ?))"));
        }
        sql.push_str(&format!(" ORDER BY {name}, run DESC LIMIT {}", page.limit));
        let sql = self.dialect.sql(sql);
        let mut query = sqlx::query(&sql);
        if let Some(t) = page.task {
            query = query.bind(t);
        }
        if let Some(s) = page.status {
            query = query.bind(s.as_str());
        }
        if let Some((after, run)) = page.after {
            query = query.bind(after).bind(after).bind(run);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(q(WHAT))?;
        let args_at = ROW_COLUMNS.split(',').count();
        // An unreadable row is left out, as `rows` leaves it out (a status written by a newer version).
        Ok(rows
            .iter()
            .filter_map(|r| {
                let read = || -> Result<TaskRunRow, sqlx::Error> {
                    Ok(TaskRunRow {
                        row: row(r)?,
                        args: text(r, args_at)?,
                    })
                };
                read()
                    .map_err(|e| tracing::warn!("a task run cannot be read and is not listed: {e}"))
                    .ok()
            })
            .collect())
    }

    /// How many runs of each task are in each status, `task → status → count`, read through the index of
    /// timestamp 0 (task runs) rather than the whole table.
    pub async fn task_run_counts(
        &self,
    ) -> Result<BTreeMap<String, HashMap<Status, i64>>, LedgerError> {
        const WHAT: &str = "count task runs";
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT name, status, COUNT(*) FROM {ops} WHERE op_timestamp = 0 AND args IS NOT NULL GROUP BY name, status"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q(WHAT))?;
        let mut out: BTreeMap<String, HashMap<Status, i64>> = BTreeMap::new();
        for r in &rows {
            let decode = || -> Result<(String, Status, i64), sqlx::Error> {
                Ok((r.try_get(0)?, parsed(r, 1)?, r.try_get(2)?))
            };
            // A status this version cannot read is left out of the counts.
            if let Ok((name, status, count)) = decode() {
                *out.entry(name).or_default().entry(status).or_default() += count;
            }
        }
        Ok(out)
    }

    /// The status and duration of every operation's latest run (task runs left out), by name: what the graph and
    /// the plan color and weigh their nodes with. One streamed scan of the rows without arguments, each name
    /// keeping its highest run: no join.
    pub async fn latest_outlines(
        &self,
    ) -> Result<HashMap<String, (Status, Option<i64>)>, LedgerError> {
        let what = "read the latest runs' statuses";
        self.latest_by_name("status, duration_ms", what, false, |r| {
            Ok((parsed(r, 2)?, r.try_get(3)?))
        })
        .await
    }

    /// Every operation's latest run (task runs left out), by name, with only the columns the plan reads (name,
    /// run, timestamp, status, start, duration, host, pid, due time): the others are left empty (no batch, no
    /// attempts, no error…). What `process --dry-run` plans from; never shown nor written back.
    pub(crate) async fn plan_rows(&self) -> Result<HashMap<String, LedgerRow>, LedgerError> {
        self.latest_by_name(PLAN_COLUMNS, "read the ledger", true, plan_row)
            .await
    }

    /// `columns` (after `name, run`, at positions 2…) of every operation's latest run (the highest run without
    /// arguments), decoded by `decode`, by name. One scan of the rows without arguments, streamed, each name
    /// keeping its highest run: no anti-join nor sort, which cost more than the scan at 100,000 rows. A latest
    /// run that cannot be decoded (a status written by a newer version) leaves its operation out, as
    /// [`Ledger::rows`] leaves its row out: an older run never stands in for it. `loud`: also say so on stderr,
    /// as `rows` does (the plan), not only in the log (the graph).
    async fn latest_by_name<T>(
        &self,
        columns: &str,
        what: &'static str,
        loud: bool,
        decode: impl Fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<HashMap<String, T>, LedgerError> {
        use futures_util::TryStreamExt;
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT name, run, {columns} FROM {ops} WHERE args IS NULL"
        ));
        let mut latest: HashMap<String, (i64, Option<T>)> = HashMap::new();
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        while let Some(r) = rows.try_next().await.map_err(q(what))? {
            let name: String = r.try_get(0).map_err(q(what))?;
            let run: i64 = r.try_get(1).map_err(q(what))?;
            if latest.get(&name).is_some_and(|(seen, _)| *seen > run) {
                continue;
            }
            let value = decode(&r)
                .map_err(|e| {
                    tracing::warn!("ledger row `{name}` cannot be read and is left alone: {e}");
                    if loud {
                        eprintln!(
                            "warning: ledger row `{name}` cannot be read and is left alone: {e}"
                        );
                    }
                })
                .ok();
            latest.insert(name, (run, value));
        }
        Ok(latest
            .into_iter()
            .filter_map(|(name, (_, value))| Some((name, value?)))
            .collect())
    }

    /// Deferred operations (`<p>deferred`) by state: `state → count`.
    pub async fn deferred_counts(&self) -> Result<BTreeMap<String, i64>, LedgerError> {
        const WHAT: &str = "count deferred operations";
        let deferred = self.table("deferred");
        let sql = self.dialect.sql(format!(
            "SELECT status, COUNT(*) FROM {deferred} GROUP BY status"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q(WHAT))?;
        let mut out = BTreeMap::new();
        for r in &rows {
            out.insert(
                r.try_get::<String, _>(0).map_err(q(WHAT))?,
                r.try_get::<i64, _>(1).map_err(q(WHAT))?,
            );
        }
        Ok(out)
    }

    /// Deletes the progress samples taken more than `older_than` ago (the database's clock) of runs that are not
    /// running (nor rolling back): a running run keeps its whole history (its ETA and its progress line), an ended
    /// one keeps it for `older_than`. Returns how many were deleted.
    pub async fn prune_progress_samples(&self, older_than: Duration) -> Result<u64, LedgerError> {
        let (samples, ops, now) = (
            self.table("progress_samples"),
            self.table("operations"),
            self.dialect.now(),
        );
        let (running, rolling_back) = (Status::Running, Status::RollingBack);
        let sql = format!(
            "DELETE FROM {samples} WHERE at < {now} - ? AND NOT EXISTS (SELECT 1 FROM {ops} o \
             WHERE o.name = {samples}.name AND o.run = {samples}.run AND o.status IN ('{running}', '{rolling_back}'))"
        );
        Ok(sqlx::query(&self.dialect.sql(sql))
            .bind(older_than.as_millis().min(i64::MAX as u128) as i64)
            .execute(&self.pool)
            .await
            .map_err(q("prune progress samples"))?
            .rows_affected())
    }
}
