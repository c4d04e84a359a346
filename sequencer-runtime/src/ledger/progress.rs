//! What a running operation writes and reads on its own row of the operations table besides its status: its
//! progress, its checkpoint, and whether `cancel NAME` asked it to stop.

use super::connection::Ledger;
use super::dialect::text;
use super::error::{q, LedgerError};

impl Ledger {
    /// Records an operation's progress (on the pool, or inside the operation's transaction). `false` if the claim
    /// `token` no longer holds the row.
    pub async fn progress<'e, E>(
        &self,
        executor: E,
        name: &str,
        run: i64,
        token: &str,
        done: u64,
        total: u64,
    ) -> Result<bool, LedgerError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET progress_done = ?, progress_total = ? WHERE name = ? AND run = ? AND claim_token = ?"
        ));
        let done = sqlx::query(&sql)
            .bind(done as i64)
            .bind(total as i64)
            .bind(name)
            .bind(run)
            .bind(token)
            .execute(executor)
            .await
            .map_err(q("record progress"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores an operation's checkpoint (JSON), on the pool or inside the operation's transaction. `false` if the
    /// claim `token` no longer holds the row.
    pub async fn checkpoint<'e, E>(
        &self,
        executor: E,
        name: &str,
        run: i64,
        token: &str,
        json: &str,
    ) -> Result<bool, LedgerError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET checkpoint = ? WHERE name = ? AND run = ? AND claim_token = ?"
        ));
        let done = sqlx::query(&sql)
            .bind(json)
            .bind(name)
            .bind(run)
            .bind(token)
            .execute(executor)
            .await
            .map_err(q("store a checkpoint"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The operation's last checkpoint (JSON), if any.
    pub async fn last_checkpoint(
        &self,
        name: &str,
        run: i64,
    ) -> Result<Option<String>, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "SELECT checkpoint FROM {ops} WHERE name = ? AND run = ?"
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
}
