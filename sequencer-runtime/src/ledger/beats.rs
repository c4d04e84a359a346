//! A worker's heartbeat: one statement renews the leases of every operation claim it holds (and says which ones
//! `cancel NAME` asked to stop), one the leases of every job it holds. A claim or a job missing from what they
//! return was lost: its lease ran out and another process recovered it.

use std::time::Duration;

use sqlx::Row;

use super::connection::Ledger;
use super::dialect::Dialect;
use super::error::{q, LedgerError};
use super::jobs::JobStatus;

impl Ledger {
    /// Renews the leases of these claims (`running` or `rolling_back` under their token) in one statement.
    /// Returns the claims renewed, each with whether a cancellation was asked for; on MySQL, which has no
    /// `UPDATE … RETURNING`, a second statement reads them back.
    pub async fn beat_claims(
        &self,
        tokens: &[String],
        lease: Duration,
    ) -> Result<Vec<(String, bool)>, LedgerError> {
        const WHAT: &str = "renew the leases of a worker's claims";
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let (ops, now) = (self.table("operations"), self.dialect.now());
        let list = vec!["?"; tokens.len()].join(", ");
        let held = format!("status IN ('running', 'rolling_back') AND claim_token IN ({list})");
        let update = format!("UPDATE {ops} SET lease_until = {now} + ? WHERE {held}");
        let returning = self.dialect != Dialect::MySql;
        let sql = self.dialect.sql(if returning {
            format!("{update} RETURNING claim_token, cancel_requested")
        } else {
            update
        });
        let mut query = sqlx::query(&sql).bind(lease.as_millis() as i64);
        for t in tokens {
            query = query.bind(t.as_str());
        }
        let rows = if returning {
            query.fetch_all(&self.pool).await.map_err(q(WHAT))?
        } else {
            query.execute(&self.pool).await.map_err(q(WHAT))?;
            let sql = self.dialect.sql(format!(
                "SELECT claim_token, cancel_requested FROM {ops} WHERE {held}"
            ));
            let mut query = sqlx::query(&sql);
            for t in tokens {
                query = query.bind(t.as_str());
            }
            query.fetch_all(&self.pool).await.map_err(q(WHAT))?
        };
        rows.iter()
            .map(|r| {
                let token: String = r.try_get(0)?;
                let cancel: Option<i64> = r.try_get(1)?;
                Ok((token, cancel.unwrap_or(0) != 0))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(WHAT))
    }

    /// Renews the leases of these jobs of `worker` (those it is running) in one statement. Returns the jobs
    /// renewed; on MySQL a second statement reads them back.
    pub async fn beat_jobs(
        &self,
        ids: &[i64],
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<i64>, LedgerError> {
        const WHAT: &str = "renew the leases of a worker's jobs";
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let running = JobStatus::Running;
        let (jobs, now) = (self.table("jobs"), self.dialect.now());
        let list = vec!["?"; ids.len()].join(", ");
        let held = format!("worker = ? AND status = '{running}' AND id IN ({list})");
        let update = format!("UPDATE {jobs} SET lease_until = {now} + ? WHERE {held}");
        let returning = self.dialect != Dialect::MySql;
        let sql = self.dialect.sql(if returning {
            format!("{update} RETURNING id")
        } else {
            update
        });
        let mut query = sqlx::query(&sql)
            .bind(lease.as_millis() as i64)
            .bind(worker);
        for id in ids {
            query = query.bind(*id);
        }
        let rows = if returning {
            query.fetch_all(&self.pool).await.map_err(q(WHAT))?
        } else {
            query.execute(&self.pool).await.map_err(q(WHAT))?;
            let sql = self
                .dialect
                .sql(format!("SELECT id FROM {jobs} WHERE {held}"));
            let mut query = sqlx::query(&sql).bind(worker);
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(&self.pool).await.map_err(q(WHAT))?
        };
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()
            .map_err(q(WHAT))
    }

    /// Renews a job's lease; `false` when it is no longer this worker's.
    pub async fn job_heartbeat(
        &self,
        id: i64,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, LedgerError> {
        use JobStatus::Running;
        let jobs = self.table("jobs");
        let sql = self.dialect.sql(format!(
            "UPDATE {jobs} SET lease_until = {now} + ? WHERE id = ? AND worker = ? AND status = '{Running}'",
            now = self.dialect.now()
        ));
        let done = sqlx::query(&sql)
            .bind(lease.as_millis() as i64)
            .bind(id)
            .bind(worker)
            .execute(&self.pool)
            .await
            .map_err(q("renew a job's lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Renews the leases of these jobs of `worker` (those it is running), in one statement.
    pub async fn renew_jobs(
        &self,
        ids: &[i64],
        worker: &str,
        lease: Duration,
    ) -> Result<u64, LedgerError> {
        use JobStatus::Running;
        if ids.is_empty() {
            return Ok(0);
        }
        let (jobs, now) = (self.table("jobs"), self.dialect.now());
        let list = vec!["?"; ids.len()].join(", ");
        let sql = self.dialect.sql(format!(
            "UPDATE {jobs} SET lease_until = {now} + ? WHERE worker = ? AND status = '{Running}' AND id IN ({list})"
        ));
        let mut query = sqlx::query(&sql)
            .bind(lease.as_millis() as i64)
            .bind(worker);
        for id in ids {
            query = query.bind(*id);
        }
        Ok(query
            .execute(&self.pool)
            .await
            .map_err(q("renew job leases"))?
            .rows_affected())
    }
}
