//! The logs table: the lines a run wrote with `ctx.log(..)`, the last [`LOG_LINES_KEPT`] of each run.

use serde::Serialize;
use sqlx::Row;

use super::connection::Ledger;
use super::dialect::text;
use super::error::{q, LedgerError};
use super::native::{Arg, Conn};

/// How many lines of each run the ledger keeps: older ones are deleted as the run writes (every 100th line, so
/// a run holds up to 1,099 for a moment).
pub const LOG_LINES_KEPT: u64 = 1_000;

/// Every how many lines a run's oldest are trimmed.
pub const LOG_TRIM_EVERY: u64 = 100;

/// One line a run wrote with `ctx.log(..)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Its position in the ledger (increasing): `logs --follow` reads the lines after the last one shown.
    pub id: i64,
    /// Ledger name.
    pub name: String,
    /// Run.
    pub run: i64,
    /// When, Unix milliseconds (the database's clock).
    pub at: i64,
    /// The line (sealed in the ledger for an `encrypted` operation; opened when read through the sequencer).
    pub line: String,
}

impl Ledger {
    /// Appends a line to a run's log (on the pool, or inside the operation's transaction).
    pub async fn append_log<'c>(
        &self,
        on: impl Into<Conn<'c>>,
        name: &str,
        run: i64,
        line: &str,
    ) -> Result<(), LedgerError> {
        let logs = self.table("logs");
        let sql = self.dialect.sql(format!(
            "INSERT INTO {logs} (name, run, at, line) VALUES (?, ?, {now}, ?)",
            now = self.dialect.now()
        ));
        let args = [Arg::Text(Some(name)), Arg::Int(run), Arg::Text(Some(line))];
        on.into()
            .execute(&sql, &args)
            .await
            .map_err(q("record a log line"))?;
        Ok(())
    }

    /// Deletes a run's lines but the last [`LOG_LINES_KEPT`]. One statement (the derived table lets MySQL read
    /// the table it deletes from), so that it runs inside the operation's transaction too.
    pub async fn trim_logs<'c>(
        &self,
        on: impl Into<Conn<'c>>,
        name: &str,
        run: i64,
    ) -> Result<(), LedgerError> {
        let logs = self.table("logs");
        let sql = self.dialect.sql(format!(
            "DELETE FROM {logs} WHERE name = ? AND run = ? AND id <= (SELECT id FROM \
             (SELECT id FROM {logs} WHERE name = ? AND run = ? ORDER BY id DESC LIMIT 1 OFFSET {LOG_LINES_KEPT}) oldest)"
        ));
        let args = [
            Arg::Text(Some(name)),
            Arg::Int(run),
            Arg::Text(Some(name)),
            Arg::Int(run),
        ];
        on.into()
            .execute(&sql, &args)
            .await
            .map_err(q("trim a run's log"))?;
        Ok(())
    }

    /// A run's log lines after `after` (an id; 0 for all), oldest first, as stored.
    pub async fn logs(
        &self,
        name: &str,
        run: i64,
        after: i64,
    ) -> Result<Vec<LogLine>, LedgerError> {
        let logs = self.table("logs");
        let sql = self.dialect.sql(format!(
            "SELECT id, name, run, at, line FROM {logs} WHERE name = ? AND run = ? AND id > ? ORDER BY id"
        ));
        let rows = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .bind(after)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read a run's log"))?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    run: r.try_get(2)?,
                    at: r.try_get(3)?,
                    line: text(r, 4)?.unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("read a run's log"))
    }
}
