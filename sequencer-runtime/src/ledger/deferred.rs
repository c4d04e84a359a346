//! The deferred table: operations deferred with a payload, run by `process_deferred` when due.

use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::connection::Ledger;
use super::dialect::{parsed, stored_by_name, text, Dialect};
use super::error::{q, LedgerError};

/// The state of a deferred operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeferredStatus {
    /// Waiting for its due time (again, after a failed attempt with attempts left).
    Pending,
    /// Claimed by a process, which holds a lease on it.
    Running,
    /// Its handler succeeded.
    Completed,
    /// Out of attempts, or it cannot run: kept for a human.
    Failed,
}

stored_by_name!(DeferredStatus, "deferred status", {
    Pending => "pending",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
});

/// One deferred operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeferredRow {
    /// Its id.
    pub id: i64,
    /// The handler's name.
    pub handler: String,
    /// The payload, JSON.
    pub payload: String,
    /// When it is due, Unix milliseconds.
    pub due_at: i64,
    /// Tries so far.
    pub attempts: i64,
    /// Tries allowed.
    pub max_attempts: i64,
    /// Its state.
    pub status: DeferredStatus,
    /// The last error.
    pub last_error: Option<String>,
}

/// The columns of a [`DeferredRow`], in the order [`deferred_rows`] reads them.
const DEFERRED_COLUMNS: &str =
    "id, handler, payload, due_at, attempts, max_attempts, status, last_error";

fn deferred_rows(rows: &[AnyRow]) -> Result<Vec<DeferredRow>, LedgerError> {
    rows.iter()
        .map(|r| {
            Ok(DeferredRow {
                id: r.try_get(0)?,
                handler: r.try_get(1)?,
                payload: text(r, 2)?.unwrap_or_default(),
                due_at: r.try_get(3)?,
                attempts: r.try_get(4)?,
                max_attempts: r.try_get(5)?,
                status: parsed(r, 6)?,
                last_error: text(r, 7)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(q("decode a deferred operation"))
}

impl Ledger {
    /// Stores a deferred operation and returns its id; `payload` makes the stored payload from the id (to seal it
    /// for its row).
    pub async fn defer(
        &self,
        handler: &str,
        payload: impl FnOnce(i64) -> String,
        due_at: i64,
        max_attempts: u32,
    ) -> Result<i64, LedgerError> {
        use DeferredStatus::Pending;
        let deferred = self.table("deferred");
        let insert = format!(
            "INSERT INTO {deferred} (handler, payload, due_at, attempts, max_attempts, status, created_at) VALUES (?, '', ?, 0, ?, '{Pending}', {now})",
            now = self.dialect.now()
        );
        let mysql = self.dialect == Dialect::MySql;
        let sql = self.dialect.sql(if mysql {
            insert
        } else {
            format!("{insert} RETURNING id")
        });
        // The payload is written once the row has its id, in the same transaction: a sealed payload is bound to
        // its row.
        let mut tx = self.pool.begin().await.map_err(q("defer an operation"))?;
        let query = sqlx::query(&sql)
            .bind(handler)
            .bind(due_at)
            .bind(i64::from(max_attempts.max(1)));
        let id: i64 = if mysql {
            let done = query
                .execute(&mut *tx)
                .await
                .map_err(q("defer an operation"))?;
            done.last_insert_id()
                .ok_or_else(|| q("defer an operation")(sqlx::Error::RowNotFound))?
        } else {
            let row = query
                .fetch_one(&mut *tx)
                .await
                .map_err(q("defer an operation"))?;
            row.try_get(0).map_err(q("defer an operation"))?
        };
        let set = self
            .dialect
            .sql(format!("UPDATE {deferred} SET payload = ? WHERE id = ?"));
        sqlx::query(&set)
            .bind(payload(id))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(q("defer an operation"))?;
        tx.commit().await.map_err(q("defer an operation"))?;
        Ok(id)
    }

    /// Deletes ended deferred operations (`completed`, `failed`) deferred more than `older_than` ago. Returns how
    /// many.
    pub async fn prune_deferred(&self, older_than: Duration) -> Result<u64, LedgerError> {
        use DeferredStatus::{Completed, Failed};
        let (deferred, now) = (self.table("deferred"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "DELETE FROM {deferred} WHERE status IN ('{Completed}', '{Failed}') AND created_at < {now} - ?"
        ));
        Ok(sqlx::query(&sql)
            .bind(older_than.as_millis().min(i64::MAX as u128) as i64)
            .execute(&self.pool)
            .await
            .map_err(q("prune deferred operations"))?
            .rows_affected())
    }

    /// Rewrites a deferred row's stored `payload` and `last_error` (for `reseal`).
    pub async fn rewrite_deferred(
        &self,
        id: i64,
        payload: &str,
        last_error: Option<&str>,
    ) -> Result<(), LedgerError> {
        let deferred = self.table("deferred");
        let sql = self.dialect.sql(format!(
            "UPDATE {deferred} SET payload = ?, last_error = ? WHERE id = ?"
        ));
        sqlx::query(&sql)
            .bind(payload)
            .bind(last_error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("reseal a deferred operation"))?;
        Ok(())
    }

    /// Ids of due deferred operations (and of ones whose processor died, with attempts left), oldest first, at
    /// most `limit`.
    pub async fn deferred_due(&self, limit: usize) -> Result<Vec<i64>, LedgerError> {
        use DeferredStatus::{Pending, Running};
        let (deferred, now) = (self.table("deferred"), self.dialect.now());
        let limit = limit.clamp(1, i64::MAX as usize);
        let sql = self.dialect.sql(format!(
            "SELECT id FROM {deferred} WHERE ((status = '{Pending}' AND due_at <= {now}) OR (status = '{Running}' AND locked_until < {now})) \
             AND attempts < max_attempts ORDER BY due_at, id LIMIT {limit}"
        ));
        sqlx::query_scalar(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read deferred operations"))
    }

    /// Claims one deferred operation for `lease` with the claim `token`, counting the attempt now (so that an
    /// attempt whose process dies counts too); `false` when another process has it or it has no attempts left.
    pub async fn claim_deferred(
        &self,
        id: i64,
        lease: Duration,
        token: &str,
    ) -> Result<bool, LedgerError> {
        use DeferredStatus::{Pending, Running};
        let (deferred, now) = (self.table("deferred"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {deferred} SET status = '{Running}', attempts = attempts + 1, locked_until = {now} + ?, claim_token = ? \
             WHERE id = ? AND ((status = '{Pending}' AND due_at <= {now}) OR (status = '{Running}' AND locked_until < {now})) \
             AND attempts < max_attempts"
        ));
        let done = sqlx::query(&sql)
            .bind(lease.as_millis() as i64)
            .bind(token)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("claim a deferred operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps a running deferred operation's claim for another `lease`.
    pub async fn renew_deferred(
        &self,
        id: i64,
        lease: Duration,
        token: &str,
    ) -> Result<bool, LedgerError> {
        use DeferredStatus::Running;
        let deferred = self.table("deferred");
        let sql = self.dialect.sql(format!(
            "UPDATE {deferred} SET locked_until = {now} + ? WHERE id = ? AND status = '{Running}' AND claim_token = ?",
            now = self.dialect.now()
        ));
        let done = sqlx::query(&sql)
            .bind(lease.as_millis() as i64)
            .bind(id)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("renew a deferred operation's claim"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends the attempt the claim `token` holds: `completed`, `failed`, or `pending` again at `due_at`. `false`
    /// if the claim was lost (its lease ran out and another processor took the row): nothing is written.
    pub async fn end_deferred(
        &self,
        id: i64,
        token: &str,
        status: DeferredStatus,
        due_at: i64,
        error: Option<&str>,
    ) -> Result<bool, LedgerError> {
        use DeferredStatus::Running;
        let deferred = self.table("deferred");
        let sql = self.dialect.sql(format!(
            "UPDATE {deferred} SET status = ?, due_at = ?, last_error = ?, locked_until = NULL \
             WHERE id = ? AND status = '{Running}' AND claim_token = ?"
        ));
        let done = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(due_at)
            .bind(error)
            .bind(id)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("record a deferred operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Fails the rows whose processor died on their last attempt (a handler that kills its process is not run
    /// again past `max_attempts`, even across crashes). Returns how many.
    pub async fn expire_deferred(&self) -> Result<u64, LedgerError> {
        use DeferredStatus::{Failed, Running};
        let (deferred, now) = (self.table("deferred"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {deferred} SET status = '{Failed}', locked_until = NULL, last_error = ? \
             WHERE status = '{Running}' AND locked_until < {now} AND attempts >= max_attempts"
        ));
        Ok(sqlx::query(&sql)
            .bind("interrupted: its processor died (or lost its lease) on its last attempt")
            .execute(&self.pool)
            .await
            .map_err(q("expire deferred operations"))?
            .rows_affected())
    }

    /// One deferred operation.
    pub async fn deferred_row(&self, id: i64) -> Result<Option<DeferredRow>, LedgerError> {
        let deferred = self.table("deferred");
        let sql = self.dialect.sql(format!(
            "SELECT {DEFERRED_COLUMNS} FROM {deferred} WHERE id = ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read a deferred operation"))?;
        Ok(deferred_rows(&rows)?.into_iter().next())
    }

    /// Every deferred operation.
    pub async fn deferred(&self) -> Result<Vec<DeferredRow>, LedgerError> {
        let deferred = self.table("deferred");
        let sql = self.dialect.sql(format!(
            "SELECT {DEFERRED_COLUMNS} FROM {deferred} ORDER BY id"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read deferred operations"))?;
        deferred_rows(&rows)
    }
}
