//! What the plan and the graph read of a large ledger: only the latest runs that still need something (neither
//! completed nor skipped: a few among 100,000, through the `_by_status` index), and the names the ledger has
//! (one narrow column through the `_listing` index), so that an operation never recorded is told from one
//! completed. Never whole rows of every operation.

use std::collections::HashMap;

use sqlx::Row;

use super::connection::Ledger;
use super::dialect::parsed;
use super::error::{q, LedgerError};
use super::runs::{LedgerRow, Status};

/// The columns the plan reads of a run, after `name, run` (see [`plan_row`]).
pub(super) const PLAN_COLUMNS: &str =
    "op_timestamp, status, started_at, duration_ms, host, pid, due_at";

/// A run with only the columns the plan reads (name, run, timestamp, status, start, duration, host, pid, due
/// time), from `SELECT name, run, {PLAN_COLUMNS}`: the others are left empty (no batch, no attempts, no
/// error…). Never shown whole nor written back.
pub(super) fn plan_row(r: &sqlx::any::AnyRow) -> Result<LedgerRow, sqlx::Error> {
    Ok(LedgerRow {
        name: r.try_get(0)?,
        run: r.try_get(1)?,
        timestamp: r.try_get(2)?,
        batch: None,
        status: parsed(r, 3)?,
        attempts: 0,
        started_at: r.try_get(4)?,
        finished_at: None,
        duration_ms: r.try_get(5)?,
        lease_until: None,
        host: r.try_get(6)?,
        pid: r.try_get(7)?,
        actor: None,
        checksum: None,
        skip_reason: None,
        last_error: None,
        due_at: r.try_get(8)?,
        progress_done: None,
        progress_total: None,
        cancel_requested: false,
        pause_requested: 0,
        throttled_since: None,
        throttled_ms: None,
    })
}

impl Ledger {
    /// The latest run of every operation whose latest run is neither completed nor skipped (task runs left out),
    /// by name, with the columns the plan reads (name, run, timestamp, status, start, duration, host, pid, due
    /// time); `None` for one that cannot be read (a status written by a newer version: an older run never stands
    /// in for it). Through the `_by_status` index (three
    /// ranges around `completed` and `skipped`, so that a status this version does not know is read too) and
    /// the primary key (no later run of the same name): it reads the rows that still need something, not the
    /// completed ones.
    pub async fn open_latest_runs(
        &self,
    ) -> Result<HashMap<String, Option<LedgerRow>>, LedgerError> {
        const WHAT: &str = "read the latest runs not completed";
        let ops = self.table("operations");
        let (completed, skipped) = (Status::Completed, Status::Skipped);
        let sql = self.dialect.sql(format!(
            "SELECT name, run, {PLAN_COLUMNS} FROM {ops} o \
             WHERE (status < '{completed}' OR (status > '{completed}' AND status < '{skipped}') OR status > '{skipped}') \
             AND args IS NULL \
             AND NOT EXISTS (SELECT 1 FROM {ops} l WHERE l.name = o.name AND l.run > o.run AND l.args IS NULL)"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q(WHAT))?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            let name: String = r.try_get(0).map_err(q(WHAT))?;
            let row = plan_row(r)
                .map_err(|e| {
                    tracing::warn!("ledger row `{name}` cannot be read and is left alone: {e}");
                })
                .ok();
            out.insert(name, row);
        }
        Ok(out)
    }

    /// Calls `each` with the name of every run of an operation in the ledger (task runs, recorded at timestamp
    /// 0, left out; a name once per run), streamed: one narrow column read through the `_listing` index, never
    /// held whole.
    pub async fn each_recorded_name(&self, mut each: impl FnMut(&str)) -> Result<(), LedgerError> {
        use futures_util::TryStreamExt;
        const WHAT: &str = "read the recorded names";
        let ops = self.table("operations");
        let sql = self
            .dialect
            .sql(format!("SELECT name FROM {ops} WHERE op_timestamp > 0"));
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        while let Some(r) = rows.try_next().await.map_err(q(WHAT))? {
            each(r.try_get::<&str, _>(0).map_err(q(WHAT))?);
        }
        Ok(())
    }
}
