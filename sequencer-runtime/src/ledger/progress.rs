//! What a running operation writes and reads on its own row of the operations table besides its status: its
//! progress, its checkpoint, whether `cancel NAME` asked it to stop or `pause NAME` to hold, and its throttling.

use super::connection::Ledger;
use super::dialect::{text, Dialect};
use super::error::{q, LedgerError};
use super::native::{Arg, Conn};
use sqlx::Row;

impl Ledger {
    /// Records an operation's progress (on the pool, or inside the operation's transaction of either kind) and
    /// its recent `rate` (units per hour; none while unknown). `false` if the claim `token` no longer holds the
    /// row.
    #[allow(clippy::too_many_arguments)]
    pub async fn progress<'c>(
        &self,
        on: impl Into<Conn<'c>>,
        name: &str,
        run: i64,
        token: &str,
        (done, total): (u64, u64),
        rate: Option<i64>,
    ) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET progress_done = ?, progress_total = ?, progress_rate = ? WHERE name = ? AND run = ? AND claim_token = ?"
        ));
        let args = [
            Arg::Int(done as i64),
            Arg::Int(total as i64),
            Arg::OptInt(rate),
            Arg::Text(Some(name)),
            Arg::Int(run),
            Arg::Text(Some(token)),
        ];
        let on: Conn<'_> = on.into();
        let changed = on
            .execute(&sql, &args)
            .await
            .map_err(q("record progress"))?;
        Ok(changed == 1)
    }

    /// Stores an operation's checkpoint (JSON) in the checkpoints table. On the pool (`in_transaction` false) it is
    /// written only while the claim `token` holds the run, and `false` says the claim was lost. Inside a
    /// `transaction` operation's transaction it commits, or rolls back, with the operation's work and its end,
    /// which the token guards; there it reads nothing of the operations row, so that the row its heartbeat
    /// renews is never locked by the transaction.
    pub async fn checkpoint<'c>(
        &self,
        on: impl Into<Conn<'c>>,
        name: &str,
        run: i64,
        token: Option<&str>,
        json: &str,
    ) -> Result<bool, LedgerError> {
        let (ops, checkpoints) = (self.table("operations"), self.table("checkpoints"));
        let guard = match token {
            Some(_) => format!(
                " WHERE EXISTS (SELECT 1 FROM {ops} WHERE name = ? AND run = ? AND claim_token = ?)"
            ),
            // SQLite needs a WHERE before `ON CONFLICT` in an `INSERT ... SELECT`.
            None => " WHERE 1 = 1".to_owned(),
        };
        let from_dual = if self.dialect == Dialect::MySql {
            " FROM DUAL"
        } else {
            ""
        };
        let upsert = match self.dialect {
            Dialect::MySql => "ON DUPLICATE KEY UPDATE checkpoint = VALUES(checkpoint)",
            Dialect::Sqlite | Dialect::Postgres => {
                "ON CONFLICT (name, run) DO UPDATE SET checkpoint = excluded.checkpoint"
            }
        };
        let sql = self.dialect.sql(format!(
            "INSERT INTO {checkpoints} (name, run, checkpoint) SELECT ?, ?, ?{from_dual}{guard} {upsert}"
        ));
        let mut args = vec![Arg::Text(Some(name)), Arg::Int(run), Arg::Text(Some(json))];
        if let Some(token) = token {
            args.extend([Arg::Text(Some(name)), Arg::Int(run), Arg::Text(Some(token))]);
        }
        let on: Conn<'_> = on.into();
        let changed = on
            .execute(&sql, &args)
            .await
            .map_err(q("store a checkpoint"))?;
        match token {
            None => Ok(true),
            Some(_) if changed > 0 => Ok(true),
            // MySQL counts an upsert that changed nothing as no row.
            Some(_) if self.dialect == Dialect::MySql => self.checkpoint_is(name, run, json).await,
            Some(_) => Ok(false),
        }
    }

    /// Whether the stored checkpoint is `json` (MySQL reports an upsert that changed nothing as no row).
    async fn checkpoint_is(&self, name: &str, run: i64, json: &str) -> Result<bool, LedgerError> {
        Ok(self.last_checkpoint(name, run).await?.as_deref() == Some(json))
    }

    /// The operation's last checkpoint (JSON), if any.
    pub async fn last_checkpoint(
        &self,
        name: &str,
        run: i64,
    ) -> Result<Option<String>, LedgerError> {
        let checkpoints = self.table("checkpoints");
        let sql = self.dialect.sql(format!(
            "SELECT checkpoint FROM {checkpoints} WHERE name = ? AND run = ?"
        ));
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a checkpoint"))?;
        match row {
            Some(r) => text(&r, 0).map_err(q("read a checkpoint")),
            None => Ok(None),
        }
    }

    /// Every stored checkpoint of an operation: `(run, checkpoint)`.
    pub async fn checkpoints_of(&self, name: &str) -> Result<Vec<(i64, String)>, LedgerError> {
        let checkpoints = self.table("checkpoints");
        let sql = self.dialect.sql(format!(
            "SELECT run, checkpoint FROM {checkpoints} WHERE name = ? AND checkpoint IS NOT NULL ORDER BY run"
        ));
        let rows = sqlx::query(&sql)
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read checkpoints"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, text(r, 1)?.unwrap_or_default())))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("read checkpoints"))
    }

    /// Rewrites a stored checkpoint as it is (for `reseal`).
    pub async fn rewrite_checkpoint(
        &self,
        name: &str,
        run: i64,
        stored: &str,
    ) -> Result<(), LedgerError> {
        let checkpoints = self.table("checkpoints");
        let sql = self.dialect.sql(format!(
            "UPDATE {checkpoints} SET checkpoint = ? WHERE name = ? AND run = ?"
        ));
        sqlx::query(&sql)
            .bind(stored)
            .bind(name)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(q("reseal a checkpoint"))?;
        Ok(())
    }

    /// Forgets the checkpoint of a run: a run after its rollback starts afresh.
    pub(super) async fn clear_checkpoint(&self, name: &str, run: i64) -> Result<(), LedgerError> {
        let checkpoints = self.table("checkpoints");
        let sql = self.dialect.sql(format!(
            "DELETE FROM {checkpoints} WHERE name = ? AND run = ?"
        ));
        sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(q("clear a checkpoint"))?;
        Ok(())
    }

    /// Asks the running operation to stop at its next checkpoint. `false` if it is not running.
    pub async fn request_cancel(&self, name: &str) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET cancel_requested = 1 WHERE name = ? AND status = 'running'"
        ));
        let done = sqlx::query(&sql)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("request a cancellation"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether `cancel NAME` asked this run to stop.
    pub async fn cancel_requested(&self, name: &str, run: i64) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT cancel_requested FROM {ops} WHERE name = ? AND run = ?"
        ));
        let v: Option<Option<i64>> = sqlx::query_scalar(&sql)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a cancellation"))?;
        Ok(v.flatten().unwrap_or(0) != 0)
    }

    /// Asks the running operation to hold at its next checkpoint (`pause NAME`). `false` if it is not running.
    pub async fn request_pause(&self, name: &str) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET pause_requested = 1 WHERE name = ? AND status = 'running' AND pause_requested IS NULL"
        ));
        let done = sqlx::query(&sql)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("request a pause"))?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        // Paused already: still a yes.
        let running = self.dialect.sql(format!(
            "SELECT COUNT(*) FROM {ops} WHERE name = ? AND status = 'running' AND pause_requested IS NOT NULL"
        ));
        let n: i64 = sqlx::query_scalar(&running)
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(q("request a pause"))?;
        Ok(n > 0)
    }

    /// Lets a paused (or pausing) operation go on (`resume NAME`). `false` if it was not paused.
    pub async fn request_resume(&self, name: &str) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET pause_requested = NULL WHERE name = ? AND pause_requested IS NOT NULL"
        ));
        let done = sqlx::query(&sql)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("resume an operation"))?;
        Ok(done.rows_affected() > 0)
    }

    /// What was asked of a run from outside: `(cancel NAME, pause NAME)`, the pause as stored (0 none, 1 asked,
    /// 2 holding).
    pub async fn control(&self, name: &str, run: i64) -> Result<(bool, i64), LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT cancel_requested, pause_requested FROM {ops} WHERE name = ? AND run = ?"
        ));
        let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(&sql)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a run's controls"))?;
        let (cancel, pause) = row.unwrap_or_default();
        Ok((cancel.unwrap_or(0) != 0, pause.unwrap_or(0)))
    }

    /// Records that the run holds at a checkpoint after `pause NAME` (1 → 2), while its claim `token` holds it.
    pub async fn pause_holding(
        &self,
        name: &str,
        run: i64,
        token: &str,
    ) -> Result<(), LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET pause_requested = 2 WHERE name = ? AND run = ? AND claim_token = ? AND pause_requested = 1"
        ));
        sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("record a pause"))?;
        Ok(())
    }

    /// Records a run's throttling (on the pool, or inside the operation's transaction): `throttled` starts (or
    /// keeps) its `throttled_since`, else clears it; `add_ms` adds to its `throttled_ms`.
    pub async fn throttled<'c>(
        &self,
        on: impl Into<Conn<'c>>,
        name: &str,
        run: i64,
        throttled: bool,
        add_ms: u64,
    ) -> Result<(), LedgerError> {
        let (ops, now) = (self.table("operations"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET throttled_since = CASE WHEN ? = 1 THEN COALESCE(throttled_since, {now}) ELSE NULL END, \
             throttled_ms = COALESCE(throttled_ms, 0) + ? WHERE name = ? AND run = ?"
        ));
        let args = [
            Arg::Int(i64::from(throttled)),
            Arg::Int(add_ms as i64),
            Arg::Text(Some(name)),
            Arg::Int(run),
        ];
        on.into()
            .execute(&sql, &args)
            .await
            .map_err(q("record throttling"))?;
        Ok(())
    }
}
