//! Recorded batches and chains (`job_batches`) and their members (`batch_members`): one row per batch with its
//! counters and named callbacks, one row per member run. Each member names a run (`name`, `run`) of the
//! operations table; on the workers its job carries the batch's id (`jobs.batch_id`). Every change of a member's
//! state and of the batch's counters commits together, and every decision taken once (the batch ended, its first
//! failure was caught) is one conditional `UPDATE` that only one process wins.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::connection::Ledger;
use super::dialect::{parsed, stored_by_name, text, Dialect};
use super::error::{q, LedgerError};
use super::jobs::JobStatus;

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
}

const BATCH_COLUMNS: &str = "id, kind, name, queue, in_process, total, pending, failed, skipped, allow_failures, then_callback, catch_callback, finally_callback, created_at, cancelled_at, caught_at, failed_member, finished_at, callback_error";

fn batch_row(r: &AnyRow) -> Result<BatchInfo, sqlx::Error> {
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
    /// Records a batch and its first members in one transaction (and, on the workers, their jobs: queued, or
    /// `waiting` for a chain's links after the first), then wakes the workers.
    pub(crate) async fn create_batch(
        &self,
        batch: &NewBatch<'_>,
        members: &[NewMember],
    ) -> Result<BatchId, LedgerError> {
        const WHAT: &str = "record a batch";
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let [then, catch, finally] = batch.callbacks;
        let insert = format!(
            "INSERT INTO {batches} (kind, name, queue, in_process, total, pending, failed, skipped, allow_failures, then_callback, catch_callback, finally_callback, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, {now})"
        );
        let sql = self.dialect.sql(match self.dialect {
            Dialect::MySql => insert,
            _ => format!("{insert} RETURNING id"),
        });
        let mut tx = self.begin_on(&self.pool).await?;
        let query = sqlx::query(&sql)
            .bind(batch.kind.as_str())
            .bind(batch.name)
            .bind(batch.queue)
            .bind(i64::from(batch.in_process))
            .bind(members.len() as i64)
            .bind(members.len() as i64)
            .bind(i64::from(batch.allow_failures))
            .bind(then)
            .bind(catch)
            .bind(finally);
        let id = if self.dialect == Dialect::MySql {
            query
                .execute(&mut *tx)
                .await
                .map_err(q(WHAT))?
                .last_insert_id()
                .ok_or_else(|| q(WHAT)(sqlx::Error::RowNotFound))?
        } else {
            let r = query.fetch_one(&mut *tx).await.map_err(q(WHAT))?;
            r.try_get::<i64, _>(0).map_err(q(WHAT))?
        };
        let id = BatchId(id);
        let chain = batch.kind == BatchKind::Chain;
        let queues = self.insert_members(&mut tx, id, 0, chain, members).await?;
        tx.commit().await.map_err(q(WHAT))?;
        for queue in queues {
            self.wake(&queue).await?;
        }
        Ok(id)
    }

    /// Adds members to a batch that has not finished (its total and pending counts rise); `false` when it has
    /// finished already (nothing is added).
    pub(crate) async fn add_members(
        &self,
        id: BatchId,
        members: &[NewMember],
    ) -> Result<bool, LedgerError> {
        const WHAT: &str = "add members to a batch";
        let batches = self.table("job_batches");
        let n = members.len() as i64;
        let mut tx = self.begin_on(&self.pool).await?;
        // The write first: it takes the row's lock (SQLite: the database's), so that no process decides the
        // batch ended while members are being added.
        let grow = self.dialect.sql(format!(
            "UPDATE {batches} SET total = total + ?, pending = pending + ? WHERE id = ? AND finished_at IS NULL"
        ));
        let open = sqlx::query(&grow)
            .bind(n)
            .bind(n)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(q(WHAT))?
            .rows_affected()
            == 1;
        if !open {
            return Ok(false);
        }
        let read = self
            .dialect
            .sql(format!("SELECT kind, total FROM {batches} WHERE id = ?"));
        let r = sqlx::query(&read)
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        let kind: BatchKind = parsed(&r, 0).map_err(q(WHAT))?;
        let total: i64 = r.try_get(1).map_err(q(WHAT))?;
        let queues = self
            .insert_members(&mut tx, id, total - n, kind == BatchKind::Chain, members)
            .await?;
        tx.commit().await.map_err(q(WHAT))?;
        for queue in queues {
            self.wake(&queue).await?;
        }
        Ok(true)
    }

    /// Inserts members from `position` on (and their jobs), and raises the batch's counts; the queues to wake.
    async fn insert_members(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: BatchId,
        position: i64,
        chain: bool,
        members: &[NewMember],
    ) -> Result<Vec<String>, LedgerError> {
        const WHAT: &str = "record a batch's members";
        let (members_table, jobs, now) = (
            self.table("batch_members"),
            self.table("jobs"),
            self.dialect.now(),
        );
        let insert_member = self.dialect.sql(format!(
            "INSERT INTO {members_table} (batch_id, position, name, run, state) VALUES (?, ?, ?, ?, ?)"
        ));
        // A run's ended job is taken over; an open one (queued without a batch) joins the batch.
        let reuse = self.dialect.sql(format!(
            "UPDATE {jobs} SET status = ?, batch_id = ?, queue = ?, blocked_by = NULL, available_at = {now}, attempts = 0, worker = NULL, lease_until = NULL, last_error = NULL, finished_at = NULL \
             WHERE name = ? AND run = ? AND status IN ('{}', '{}')",
            JobStatus::Done,
            JobStatus::Failed
        ));
        let insert_job = self.dialect.insert_ignore(format!(
            "INSERT INTO {jobs} (name, run, queue, status, available_at, attempts, created_at, batch_id) VALUES (?, ?, ?, ?, {now}, 0, {now}, ?)"
        ));
        let join = self.dialect.sql(format!(
            "UPDATE {jobs} SET batch_id = ? WHERE name = ? AND run = ? AND batch_id IS NULL"
        ));
        let mut queues: Vec<String> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let position = position + i as i64;
            // A chain's links after its first wait for their turn.
            let waiting = chain && position > 0;
            let state = if waiting {
                MemberState::Waiting
            } else {
                MemberState::Pending
            };
            sqlx::query(&insert_member)
                .bind(id.0)
                .bind(position)
                .bind(m.name.as_str())
                .bind(m.run)
                .bind(state.as_str())
                .execute(&mut **tx)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => {
                        LedgerError::Refused(format!(
                            "`{}` (run {}) is in this batch already: a run is a member once",
                            m.name, m.run
                        ))
                    }
                    _ => q(WHAT)(e),
                })?;
            let Some(queue) = &m.queue else {
                continue;
            };
            let status = if waiting {
                JobStatus::Waiting
            } else {
                JobStatus::Queued
            };
            let mut written = sqlx::query(&reuse)
                .bind(status.as_str())
                .bind(id.0)
                .bind(queue.as_str())
                .bind(m.name.as_str())
                .bind(m.run)
                .execute(&mut **tx)
                .await
                .map_err(q(WHAT))?
                .rows_affected()
                == 1;
            if !written {
                written = sqlx::query(&insert_job)
                    .bind(m.name.as_str())
                    .bind(m.run)
                    .bind(queue.as_str())
                    .bind(status.as_str())
                    .bind(id.0)
                    .execute(&mut **tx)
                    .await
                    .map_err(q(WHAT))?
                    .rows_affected()
                    == 1;
            }
            if !written {
                written = sqlx::query(&join)
                    .bind(id.0)
                    .bind(m.name.as_str())
                    .bind(m.run)
                    .execute(&mut **tx)
                    .await
                    .map_err(q(WHAT))?
                    .rows_affected()
                    == 1;
            }
            if !written {
                return Err(LedgerError::Refused(format!(
                    "`{}` (run {}) is queued in another batch: a run belongs to one batch",
                    m.name, m.run
                )));
            }
            if !waiting && !queues.contains(queue) {
                queues.push(queue.clone());
            }
        }
        Ok(queues)
    }

    async fn wake(&self, queue: &str) -> Result<(), LedgerError> {
        if self.dialect == Dialect::Postgres {
            sqlx::query(&self.dialect.sql("SELECT pg_notify(?, ?)"))
                .bind(self.notify_channel())
                .bind(queue)
                .execute(&self.pool)
                .await
                .map_err(q("wake the workers"))?;
        }
        Ok(())
    }

    /// Ends a member (`completed`, `failed` or `skipped`) and counts it on its batch, in one transaction.
    /// `false` when it had ended already (another process counted it): nothing is counted twice.
    pub(crate) async fn end_member(
        &self,
        id: BatchId,
        name: &str,
        run: i64,
        state: MemberState,
        reason: Option<&str>,
    ) -> Result<bool, LedgerError> {
        const WHAT: &str = "end a batch member";
        let (batches, members, now) = (
            self.table("job_batches"),
            self.table("batch_members"),
            self.dialect.now(),
        );
        let end = self.dialect.sql(format!(
            "UPDATE {members} SET state = ?, reason = ?, ended_at = {now} \
             WHERE batch_id = ? AND name = ? AND run = ? AND state IN ('{}', '{}')",
            MemberState::Waiting,
            MemberState::Pending
        ));
        let count = self.dialect.sql(format!(
            "UPDATE {batches} SET pending = pending - 1, failed = failed + ?, skipped = skipped + ? WHERE id = ?"
        ));
        let mut tx = self.begin_on(&self.pool).await?;
        let ended = sqlx::query(&end)
            .bind(state.as_str())
            .bind(reason)
            .bind(id.0)
            .bind(name)
            .bind(run)
            .execute(&mut *tx)
            .await
            .map_err(q(WHAT))?
            .rows_affected()
            == 1;
        if ended {
            sqlx::query(&count)
                .bind(i64::from(state == MemberState::Failed))
                .bind(i64::from(state == MemberState::Skipped))
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(q(WHAT))?;
        }
        tx.commit().await.map_err(q(WHAT))?;
        Ok(ended)
    }

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
    pub(crate) async fn catch_batch(&self, id: BatchId, member: &str) -> Result<bool, LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET caught_at = {now}, failed_member = ?, cancelled_at = COALESCE(cancelled_at, {now}) \
             WHERE id = ? AND caught_at IS NULL AND failed > 0"
        ));
        Ok(sqlx::query(&sql)
            .bind(member)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("catch a batch's failure"))?
            .rows_affected()
            == 1)
    }

    /// Records that every member of the batch ended, once: `true` for the one process that does, which runs
    /// the `then` and `finally` callbacks.
    pub(crate) async fn finish_batch(&self, id: BatchId) -> Result<bool, LedgerError> {
        let (batches, now) = (self.table("job_batches"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {batches} SET finished_at = {now} WHERE id = ? AND finished_at IS NULL AND pending = 0"
        ));
        Ok(sqlx::query(&sql)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("finish a batch"))?
            .rows_affected()
            == 1)
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

    /// The chain's next link when its turn has come (every link before it completed or was skipped): its job is
    /// queued and the link is pending. Safe to call again: a link is released once.
    pub(crate) async fn release_next_link(
        &self,
        id: BatchId,
    ) -> Result<Option<BatchMemberRow>, LedgerError> {
        const WHAT: &str = "queue a chain's next link";
        let members = self.batch_members(id).await?;
        let Some(next) = members
            .iter()
            .find(|m| m.state == MemberState::Waiting)
            .cloned()
        else {
            return Ok(None);
        };
        let before_ok = members
            .iter()
            .filter(|m| m.position < next.position)
            .all(|m| matches!(m.state, MemberState::Completed | MemberState::Skipped));
        if !before_ok {
            return Ok(None);
        }
        let (jobs, members_table, now) = (
            self.table("jobs"),
            self.table("batch_members"),
            self.dialect.now(),
        );
        // The job first, then the link: should this process stop between the two, the next call finds the link
        // still waiting and its job already queued.
        let queue_job = self.dialect.sql(format!(
            "UPDATE {jobs} SET status = '{}', available_at = {now} WHERE batch_id = ? AND name = ? AND run = ? AND status = '{}'",
            JobStatus::Queued,
            JobStatus::Waiting
        ));
        sqlx::query(&queue_job)
            .bind(id.0)
            .bind(next.name.as_str())
            .bind(next.run)
            .execute(&self.pool)
            .await
            .map_err(q(WHAT))?;
        let release = self.dialect.sql(format!(
            "UPDATE {members_table} SET state = '{}' WHERE batch_id = ? AND name = ? AND run = ? AND state = '{}'",
            MemberState::Pending,
            MemberState::Waiting
        ));
        let released = sqlx::query(&release)
            .bind(id.0)
            .bind(next.name.as_str())
            .bind(next.run)
            .execute(&self.pool)
            .await
            .map_err(q(WHAT))?
            .rows_affected()
            == 1;
        if !released {
            return Ok(None);
        }
        let queue: Option<String> = sqlx::query_scalar(&self.dialect.sql(format!(
            "SELECT queue FROM {jobs} WHERE batch_id = ? AND name = ? AND run = ?"
        )))
        .bind(id.0)
        .bind(next.name.as_str())
        .bind(next.run)
        .fetch_optional(&self.pool)
        .await
        .map_err(q(WHAT))?;
        if let Some(queue) = queue {
            self.wake(&queue).await?;
        }
        Ok(Some(BatchMemberRow {
            state: MemberState::Pending,
            ..next
        }))
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

    /// Ends a member's job that will not run (its batch was cancelled, its chain stopped), with the reason.
    pub(crate) async fn drop_member_job(
        &self,
        id: BatchId,
        name: &str,
        run: i64,
        reason: &str,
    ) -> Result<(), LedgerError> {
        let (jobs, now) = (self.table("jobs"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {jobs} SET status = '{}', finished_at = {now}, last_error = ? WHERE batch_id = ? AND name = ? AND run = ? AND status IN ('{}', '{}')",
            JobStatus::Done,
            JobStatus::Waiting,
            JobStatus::Queued
        ));
        sqlx::query(&sql)
            .bind(format!("not run: {reason}"))
            .bind(id.0)
            .bind(name)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(q("end a batch member's job"))?;
        Ok(())
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
