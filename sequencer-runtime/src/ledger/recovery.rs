//! Claims that end otherwise than by their run: the recovery of dead claimers' runs and rollbacks, the renewal
//! of the claims a process runs, and the claims of rollbacks themselves.

use std::time::Duration;

use sqlx::Row;

use super::connection::{pid_namespace, process_alive, Ledger, Owner};
use super::dialect::text;
use super::error::{conflict, q, LedgerError};
use super::runs::Status;

impl Ledger {
    /// Marks `running` rows whose process died (on this host) or whose lease expired as `interrupted`, and
    /// `rolling_back` rows so as `undo_interrupted`. Returns how many.
    ///
    /// A deadlock victim (MariaDB's next-key locks on the claims' index, against another process's claim, as
    /// eight `process` runs starting at once take) tries again at once, for up to ten seconds: each step is a
    /// guarded `UPDATE` that another try leaves true. Any other failure is returned: a database that went away
    /// must be seen by the caller (a worker waits a lease after such trouble before it recovers others' claims).
    pub async fn recover_interrupted(&self, owner: &Owner) -> Result<u64, LedgerError> {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.recover_once(owner).await {
                Err(e) if conflict(&e) && std::time::Instant::now() < give_up => {
                    tracing::debug!("recover interrupted operations: lost a race, retrying: {e}");
                }
                other => return other,
            }
        }
    }

    async fn recover_once(&self, owner: &Owner) -> Result<u64, LedgerError> {
        let ops = self.table("operations");
        // A rollback that died is not an operation that died: the undo may be half done, so it gets its own state.
        let interrupted =
            "CASE WHEN status = 'rolling_back' THEN 'undo_interrupted' ELSE 'interrupted' END";
        let now = self.dialect.now();
        let expire_leases = self.dialect.sql(format!(
            "UPDATE {ops} SET status = {interrupted}, finished_at = {now}, last_error = ? \
             WHERE status IN ('running', 'rolling_back') AND lease_until < {now}"
        ));
        let mut count = sqlx::query(&expire_leases)
            .bind("interrupted: its lease expired (the process died or lost the database)")
            .execute(&self.pool)
            .await
            .map_err(q("recover interrupted operations"))?
            .rows_affected();
        // Without waiting for the lease: claims of this host and pid namespace whose process is provably dead.
        // (Another container with the same host name has another namespace: its pids mean nothing here.)
        let mine = self.dialect.sql(format!(
            "SELECT name, run, pid, claim_token FROM {ops} \
             WHERE status IN ('running', 'rolling_back') AND host = ? AND host_ns = ? AND pid <> ?"
        ));
        let claims = sqlx::query(&mine)
            .bind(owner.host.as_str())
            .bind(pid_namespace())
            .bind(owner.pid)
            .fetch_all(&self.pool)
            .await
            .map_err(q("recover interrupted operations"))?;
        let interrupt_one = self.dialect.sql(format!(
            "UPDATE {ops} SET status = {interrupted}, finished_at = {now}, last_error = ? \
             WHERE name = ? AND run = ? AND status IN ('running', 'rolling_back') AND claim_token = ?"
        ));
        for r in &claims {
            let decode = || -> Result<(String, i64, i64, Option<String>), sqlx::Error> {
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, text(r, 3)?))
            };
            let (name, run, pid, token) = decode().map_err(q("recover interrupted operations"))?;
            if !process_alive(pid) {
                let host = &owner.host;
                count += sqlx::query(&interrupt_one)
                    .bind(format!(
                        "interrupted: process {pid} on {host} died while running it"
                    ))
                    .bind(name.as_str())
                    .bind(run)
                    .bind(token)
                    .execute(&self.pool)
                    .await
                    .map_err(q("recover interrupted operations"))?
                    .rows_affected();
            }
        }
        Ok(count)
    }

    /// Renews the leases of the claims with these tokens (those this process is running), in one statement.
    pub async fn renew_claims(
        &self,
        tokens: &[String],
        lease: Duration,
    ) -> Result<u64, LedgerError> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let (ops, now) = (self.table("operations"), self.dialect.now());
        let list = vec!["?"; tokens.len()].join(", ");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET lease_until = {now} + ? WHERE status IN ('running', 'rolling_back') AND claim_token IN ({list})"
        ));
        let mut query = sqlx::query(&sql).bind(lease.as_millis() as i64);
        for t in tokens {
            query = query.bind(t.as_str());
        }
        Ok(query
            .execute(&self.pool)
            .await
            .map_err(q("renew leases"))?
            .rows_affected())
    }

    /// Claims a rollback: `from` (`completed`, or `undo_interrupted` to finish an undo that died) becomes
    /// `rolling_back`, held by `owner` under a lease. `false` if the row was not in `from`.
    pub async fn claim_rollback(
        &self,
        name: &str,
        run: i64,
        from: Status,
        lease: Duration,
        owner: &Owner,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET status = 'rolling_back', lease_until = {now} + ?, claim_token = ?, host_ns = ?, \
             host = ?, pid = ? WHERE name = ? AND run = ? AND status = ?",
            now = self.dialect.now()
        ));
        let done = sqlx::query(&sql)
            .bind(lease.as_millis() as i64)
            .bind(token)
            .bind(pid_namespace())
            .bind(owner.host.as_str())
            .bind(owner.pid)
            .bind(name)
            .bind(run)
            .bind(from.as_str())
            .execute(&self.pool)
            .await
            .map_err(q("claim a rollback"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a rollback this process claimed: `rolled_back` once it returned, `completed` when it failed.
    /// `false` if the claim was lost (its lease ran out and another process recovered it).
    pub async fn end_rollback(
        &self,
        name: &str,
        run: i64,
        to: Status,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let ops = self.table("operations");
        let sql = self.dialect.sql(format!(
            "UPDATE {ops} SET status = ?, finished_at = {now}, lease_until = NULL \
             WHERE name = ? AND run = ? AND status = 'rolling_back' AND claim_token = ?",
            now = self.dialect.now()
        ));
        let done = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(name)
            .bind(run)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(q("record the end of a rollback"))?;
        let ended = done.rows_affected() == 1;
        // The next run after a rollback starts afresh, without the undone run's checkpoint.
        if ended && to == Status::RolledBack {
            self.clear_checkpoint(name, run).await?;
        }
        Ok(ended)
    }
}
