//! Recorded batches and chains (`job_batches`) and their members (`batch_members`): one row per batch with its
//! counters and named callbacks, one row per member run. Each member names a run (`name`, `run`) of the
//! operations table; on the workers its job carries the batch's id (`jobs.batch_id`). Every change of a member's
//! state and of the batch's counters commits together, and every decision taken once (the batch ended, its first
//! failure was caught) is one conditional `UPDATE` that only one process wins.

use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::connection::Ledger;
use super::dialect::{parsed, stored_by_name, text, Dialect};
use super::error::{q, LedgerError};

/// A recorded batch's (or chain's) id: what `dispatch()` returns and `ctx.batch()` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BatchId(pub i64);

impl std::fmt::Display for BatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A batch runs its members side by side; a chain one after another, each queued when the one before completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKind {
    /// Members side by side.
    Batch,
    /// Links one after another.
    Chain,
}

stored_by_name!(BatchKind, "batch kind", {
    Batch => "batch",
    Chain => "chain",
});

/// Where a member of a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// A link of a chain whose turn has not come.
    Waiting,
    /// Queued or running: not ended yet.
    Pending,
    /// Its run completed (or had completed before).
    Completed,
    /// Its run failed.
    Failed,
    /// Not run (the batch was cancelled, the chain stopped) or its run was skipped; see its reason.
    Skipped,
}

stored_by_name!(MemberState, "batch member state", {
    Waiting => "waiting",
    Pending => "pending",
    Completed => "completed",
    Failed => "failed",
    Skipped => "skipped",
});

impl MemberState {
    /// Completed, failed or skipped.
    pub fn ended(self) -> bool {
        matches!(
            self,
            MemberState::Completed | MemberState::Failed | MemberState::Skipped
        )
    }
}

/// A recorded batch or chain, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchInfo {
    /// Its id.
    pub id: BatchId,
    /// A batch or a chain.
    pub kind: BatchKind,
    /// The name given with `.name(..)`.
    pub name: Option<String>,
    /// The queue given with `.on_queue(..)` (`None`: each member on its operation's own queue).
    pub queue: Option<String>,
    /// Run in the process that dispatched it (`dispatch_and_wait`), not on the workers.
    pub in_process: bool,
    /// Members, added ones included.
    pub total: i64,
    /// Members not ended yet.
    pub pending: i64,
    /// Members that failed.
    pub failed: i64,
    /// Members not run (cancelled, chain stopped) or skipped.
    pub skipped: i64,
    /// Failures do not cancel the batch, and `then` runs despite them.
    pub allow_failures: bool,
    /// The `then` callback's name.
    pub then: Option<String>,
    /// The `catch` callback's name.
    pub catch: Option<String>,
    /// The `finally` callback's name.
    pub finally: Option<String>,
    /// When it was dispatched (Unix milliseconds, the database's clock).
    pub created_at: i64,
    /// When it was cancelled (`cancel()`, or its first failure without `allow_failures`).
    pub cancelled_at: Option<i64>,
    /// When its first failure was caught (its `catch` callback ran, if it has one).
    pub caught_at: Option<i64>,
    /// The member whose failure was caught.
    pub failed_member: Option<String>,
    /// When every member had ended and its `then` / `finally` callbacks were started.
    pub finished_at: Option<i64>,
    /// What its callbacks' failures said, if one failed.
    pub callback_error: Option<String>,
}

impl BatchInfo {
    /// Members that ended (completed, failed or skipped).
    pub fn done(&self) -> i64 {
        self.total - self.pending
    }

    /// `running`, `cancelled` or `finished`.
    pub fn state(&self) -> &'static str {
        match (self.finished_at, self.cancelled_at) {
            (Some(_), _) => "finished",
            (None, Some(_)) => "cancelled",
            (None, None) => "running",
        }
    }
}

impl std::fmt::Display for BatchInfo {
    /// `batch 7 reprice: 640 of 1000 done, 2 failed, running`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.id)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        write!(f, ": {} of {} done", self.done(), self.total)?;
        if self.failed > 0 {
            write!(f, ", {} failed", self.failed)?;
        }
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        write!(f, ", {}", self.state())
    }
}

/// One member of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchMemberRow {
    /// Its place (a chain's links run in this order).
    pub position: i64,
    /// The ledger name of its run.
    pub name: String,
    /// Its run.
    pub run: i64,
    /// Where it is.
    pub state: MemberState,
    /// Why it was skipped, or how it ended when the batch's job did not run it.
    pub reason: Option<String>,
    /// When it ended (Unix milliseconds, the database's clock).
    pub ended_at: Option<i64>,
}

/// A new batch, as `dispatch` records it.
pub(crate) struct NewBatch<'a> {
    pub kind: BatchKind,
    pub name: Option<&'a str>,
    pub queue: Option<&'a str>,
    pub in_process: bool,
    pub allow_failures: bool,
    pub callbacks: [Option<&'a str>; 3],
}

/// A member to record: its run and, on the workers, the queue its job goes on.
#[derive(Debug, Clone)]
pub(crate) struct NewMember {
    pub name: String,
    pub run: i64,
    pub queue: Option<String>,
    /// Recorded ended, `skipped` with this reason (a task member whose `unique` key another run holds): no job.
    pub skipped: Option<String>,
}

pub(super) const BATCH_COLUMNS: &str = "id, kind, name, queue, in_process, total, pending, failed, skipped, allow_failures, then_callback, catch_callback, finally_callback, created_at, cancelled_at, caught_at, failed_member, finished_at, callback_error";

pub(super) fn batch_row(r: &AnyRow) -> Result<BatchInfo, sqlx::Error> {
    Ok(BatchInfo {
        id: BatchId(r.try_get(0)?),
        kind: parsed(r, 1)?,
        name: r.try_get(2)?,
        queue: r.try_get(3)?,
        in_process: r.try_get::<i64, _>(4)? != 0,
        total: r.try_get(5)?,
        pending: r.try_get(6)?,
        failed: r.try_get(7)?,
        skipped: r.try_get(8)?,
        allow_failures: r.try_get::<i64, _>(9)? != 0,
        then: r.try_get(10)?,
        catch: r.try_get(11)?,
        finally: r.try_get(12)?,
        created_at: r.try_get(13)?,
        cancelled_at: r.try_get(14)?,
        caught_at: r.try_get(15)?,
        failed_member: r.try_get(16)?,
        finished_at: r.try_get(17)?,
        callback_error: text(r, 18)?,
    })
}

impl Ledger {
    /// A batch's row.
    pub async fn batch_info(&self, id: BatchId) -> Result<Option<BatchInfo>, LedgerError> {
        let batches = self.table("job_batches");
        let sql = self.dialect.sql(format!(
            "SELECT {BATCH_COLUMNS} FROM {batches} WHERE id = ?"
        ));
        let r = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a batch"))?;
        r.as_ref()
            .map(batch_row)
            .transpose()
            .map_err(q("read a batch"))
    }

    /// The batches not finished yet, oldest first (with `all`, every batch).
    pub async fn batches(&self, all: bool) -> Result<Vec<BatchInfo>, LedgerError> {
        let batches = self.table("job_batches");
        let open = if all {
            ""
        } else {
            " WHERE finished_at IS NULL"
        };
        let sql = self.dialect.sql(format!(
            "SELECT {BATCH_COLUMNS} FROM {batches}{open} ORDER BY id"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read the batches"))?;
        rows.iter()
            .map(batch_row)
            .collect::<Result<_, _>>()
            .map_err(q("read the batches"))
    }

    /// A batch's members, in order.
    pub async fn batch_members(&self, id: BatchId) -> Result<Vec<BatchMemberRow>, LedgerError> {
        const WHAT: &str = "read a batch's members";
        let members = self.table("batch_members");
        let sql = self.dialect.sql(format!(
            "SELECT position, name, run, state, reason, ended_at FROM {members} WHERE batch_id = ? ORDER BY position"
        ));
        let rows = sqlx::query(&sql)
            .bind(id.0)
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

    /// Cancels a batch: members not started yet are recorded skipped when their turn comes. `false` when it
    /// was cancelled already.
    pub async fn cancel_batch(&self, id: BatchId) -> Result<bool, LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET cancelled_at = {now} WHERE id = ? AND cancelled_at IS NULL"
        ));
        Ok(sqlx::query(&sql)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("cancel a batch"))?
            .rows_affected()
            == 1)
    }

    /// Whether a batch was cancelled.
    pub async fn batch_cancelled(&self, id: BatchId) -> Result<bool, LedgerError> {
        let batches = self.table("job_batches");
        let sql = self
            .dialect
            .sql(format!("SELECT cancelled_at FROM {batches} WHERE id = ?"));
        let at: Option<Option<i64>> = sqlx::query_scalar(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a batch"))?;
        Ok(at.flatten().is_some())
    }

    /// Records the batch's first failure as caught (and cancels the batch), once: `true` for the one process
    /// that does, which runs the `catch` callback.
    pub(crate) async fn catch_batch(
        &self,
        id: BatchId,
        member: &str,
        lease: Duration,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let claim = self.callback_claim();
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET {claim}, caught_at = {now}, failed_member = ?, cancelled_at = COALESCE(cancelled_at, {now}) \
             WHERE id = ? AND caught_at IS NULL AND failed > 0"
        ));
        Ok(sqlx::query(&sql)
            .bind(token)
            .bind(lease.as_millis().min(i64::MAX as u128) as i64)
            .bind(member)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("catch a batch's failure"))?
            .rows_affected()
            == 1)
    }

    /// Records that every member of the batch ended, once: `true` for the one process that does, which runs
    /// the `then` and `finally` callbacks. A batch with no callback left to run is settled at once. The claim on
    /// its callbacks is taken in the same statement (with `token`, for `lease`) unless another process holds it:
    /// no worker's scan can take them between the end and the claim.
    pub(crate) async fn finish_batch(
        &self,
        id: BatchId,
        lease: Duration,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let claim = self.callback_claim();
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET {claim}, finished_at = {now}, callbacks_settled_at = CASE WHEN then_callback IS NULL \
             AND finally_callback IS NULL AND (catch_callback IS NULL OR caught_at IS NULL) THEN {now} END \
             WHERE id = ? AND finished_at IS NULL AND pending = 0"
        ));
        Ok(sqlx::query(&sql)
            .bind(token)
            .bind(lease.as_millis().min(i64::MAX as u128) as i64)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("finish a batch"))?
            .rows_affected()
            == 1)
    }

    /// The assignments that take the claim on a batch's callbacks (binds: the token, the lease in milliseconds)
    /// unless a live claim holds them. The token first: MySQL evaluates assignments in order, and the token's
    /// condition reads the lease as it was.
    fn callback_claim(&self) -> String {
        let now = self.dialect.now();
        let free = format!("(callback_lease_until IS NULL OR callback_lease_until < {now})");
        format!(
            "callback_token = CASE WHEN {free} THEN ? ELSE callback_token END, \
             callback_lease_until = CASE WHEN {free} THEN {now} + ? ELSE callback_lease_until END"
        )
    }

    /// Records what a failed callback said on its batch's row (after what an earlier one said).
    pub(crate) async fn batch_callback_failed(
        &self,
        id: BatchId,
        error: &str,
    ) -> Result<(), LedgerError> {
        let batches = self.table("job_batches");
        let appended = match self.dialect {
            Dialect::MySql => "CONCAT(callback_error, CHAR(10), ?)",
            Dialect::Sqlite => "callback_error || char(10) || ?",
            Dialect::Postgres => "callback_error || CHR(10) || ?",
        };
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET callback_error = CASE WHEN callback_error IS NULL THEN ? ELSE {appended} END WHERE id = ?"
        ));
        sqlx::query(&sql)
            .bind(error)
            .bind(error)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("record a batch callback's failure"))?;
        Ok(())
    }

    /// The newest run of each of these operations that has a row.
    pub(crate) async fn latest_runs(
        &self,
        names: &[&str],
    ) -> Result<std::collections::HashMap<String, i64>, LedgerError> {
        const WHAT: &str = "read the runs of a batch's members";
        let ops = self.table("operations");
        let mut out = std::collections::HashMap::new();
        for chunk in names.chunks(200) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = self.dialect.sql(format!(
                "SELECT name, MAX(run) FROM {ops} WHERE name IN ({marks}) GROUP BY name"
            ));
            let mut query = sqlx::query(&sql);
            for n in chunk {
                query = query.bind(*n);
            }
            for r in query.fetch_all(&self.pool).await.map_err(q(WHAT))? {
                out.insert(
                    r.try_get::<String, _>(0).map_err(q(WHAT))?,
                    r.try_get::<i64, _>(1).map_err(q(WHAT))?,
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_says_how_far_it_is() {
        let info = BatchInfo {
            id: BatchId(7),
            kind: BatchKind::Batch,
            name: Some("reprice".into()),
            queue: Some("default".into()),
            in_process: false,
            total: 1000,
            pending: 360,
            failed: 2,
            skipped: 0,
            allow_failures: true,
            then: None,
            catch: None,
            finally: None,
            created_at: 0,
            cancelled_at: None,
            caught_at: None,
            failed_member: None,
            finished_at: None,
            callback_error: None,
        };
        assert_eq!(
            info.to_string(),
            "batch 7 reprice: 640 of 1000 done, 2 failed, running"
        );
        for s in [
            MemberState::Waiting,
            MemberState::Pending,
            MemberState::Completed,
            MemberState::Failed,
            MemberState::Skipped,
        ] {
            assert_eq!(s.as_str().parse(), Ok(s));
        }
    }
}
