//! The claim on a recorded batch's callbacks (`job_batches.callback_*`): whoever runs a batch's due callbacks
//! (`catch` once its first failure was caught, `then` and `finally` once it ended) holds a claim under a lease
//! renewed while they run, and records each one done as it returns. A claimer that dies mid-callback leaves a
//! claim whose lease runs out: another worker claims the batch and runs the callbacks not recorded done, so a
//! callback runs at least once, and never again once recorded done. Once the batch has ended and every callback
//! due was done, the batch is settled (`callbacks_settled_at`) and no worker looks at it again.

use std::time::Duration;

use super::batches::BatchId;
use super::connection::Ledger;
use super::dialect::{text, Dialect};
use super::error::{q, LedgerError};

impl Ledger {
    /// Claims the callbacks of batch `id` for `lease` with `token`: `false` when another process holds a live
    /// claim on them, or the batch is settled.
    pub(crate) async fn claim_batch_callbacks(
        &self,
        id: BatchId,
        lease: Duration,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET callback_token = ?, callback_lease_until = {now} + ? \
             WHERE id = ? AND callbacks_settled_at IS NULL AND (callback_lease_until IS NULL OR callback_lease_until < {now})"
        ));
        Ok(sqlx::query(&sql)
            .bind(token)
            .bind(lease.as_millis().min(i64::MAX as u128) as i64)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("claim a batch's callbacks"))?
            .rows_affected()
            == 1)
    }

    /// Keeps a claim on a batch's callbacks for another `lease`; `false` when it was lost.
    pub(crate) async fn renew_batch_callbacks(
        &self,
        id: BatchId,
        lease: Duration,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET callback_lease_until = {now} + ? WHERE id = ? AND callback_token = ?"
        ));
        Ok(sqlx::query(&sql)
            .bind(lease.as_millis().min(i64::MAX as u128) as i64)
            .bind(id.0)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("renew a claim on a batch's callbacks"))?
            .rows_affected()
            == 1)
    }

    /// The callbacks of batch `id` recorded done (`catch`, `then`, `finally`).
    pub(crate) async fn batch_callbacks_done(
        &self,
        id: BatchId,
    ) -> Result<Vec<String>, LedgerError> {
        let batches = self.table("job_batches");
        let sql = self
            .dialect
            .sql(format!("SELECT callbacks_done FROM {batches} WHERE id = ?"));
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a batch's callbacks"))?;
        let done = match row {
            Some(r) => text(&r, 0).map_err(q("read a batch's callbacks"))?,
            None => None,
        };
        Ok(done
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Records callback `which` of batch `id` done, under the claim `token`: `false` when the claim was lost
    /// (another process took the batch's callbacks over after its lease ran out).
    pub(crate) async fn batch_callback_done(
        &self,
        id: BatchId,
        which: &str,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let batches = self.table("job_batches");
        let appended = match self.dialect {
            Dialect::MySql => "CONCAT(callbacks_done, ',', ?)",
            Dialect::Sqlite | Dialect::Postgres => "callbacks_done || ',' || ?",
        };
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET callbacks_done = CASE WHEN callbacks_done IS NULL THEN ? ELSE {appended} END \
             WHERE id = ? AND callback_token = ?"
        ));
        Ok(sqlx::query(&sql)
            .bind(which)
            .bind(which)
            .bind(id.0)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("record a batch callback done"))?
            .rows_affected()
            == 1)
    }

    /// Ends the claim `token` on batch `id`'s callbacks; `settled`: the batch had ended and every callback due
    /// was done, so no process looks at it again.
    pub(crate) async fn release_batch_callbacks(
        &self,
        id: BatchId,
        token: &str,
        settled: bool,
    ) -> Result<(), LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET callback_token = NULL, callback_lease_until = NULL, \
             callbacks_settled_at = CASE WHEN ? = 1 THEN {now} ELSE callbacks_settled_at END \
             WHERE id = ? AND callback_token = ?"
        ));
        sqlx::query(&sql)
            .bind(i64::from(settled))
            .bind(id.0)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("release a claim on a batch's callbacks"))?;
        Ok(())
    }

    /// Batches with a callback due that no live claim holds: one whose claimer died mid-callback (its lease ran
    /// out), or one whose finisher could not claim it while another process held it.
    pub(crate) async fn batches_with_callbacks_due(&self) -> Result<Vec<BatchId>, LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "SELECT id FROM {batches} WHERE callbacks_settled_at IS NULL \
             AND (callback_lease_until IS NULL OR callback_lease_until < {now}) \
             AND ((finished_at IS NOT NULL AND (then_callback IS NOT NULL OR finally_callback IS NOT NULL)) \
               OR (caught_at IS NOT NULL AND catch_callback IS NOT NULL AND callbacks_done IS NULL)) \
             ORDER BY id LIMIT 100"
        ));
        let ids: Vec<i64> = sqlx::query_scalar(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read batches with callbacks due"))?;
        Ok(ids.into_iter().map(BatchId).collect())
    }
}
