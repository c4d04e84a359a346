//! Writing a recorded batch's members: the batch and its first members in one transaction (with their jobs on the
//! workers), members added later, a member's end counted once with the batch's counts, a chain's next link
//! queued, and the job of a member that will not run ended. See [`super::batches`] for the tables.

use sqlx::Row;

use super::batches::{BatchId, BatchKind, BatchMemberRow, MemberState, NewBatch, NewMember};
use super::connection::Ledger;
use super::dialect::{parsed, Dialect};
use super::error::{q, LedgerError};
use super::jobs::JobStatus;

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
            self.wake_workers(&queue).await?;
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
            self.wake_workers(&queue).await?;
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
        let insert_skipped = self.dialect.sql(format!(
            "INSERT INTO {members_table} (batch_id, position, name, run, state, reason, ended_at) VALUES (?, ?, ?, ?, ?, ?, {now})"
        ));
        let mut queues: Vec<String> = Vec::new();
        let mut skipped = 0i64;
        for (i, m) in members.iter().enumerate() {
            let position = position + i as i64;
            if let Some(reason) = &m.skipped {
                // Ended as it is recorded: counted skipped, never queued.
                sqlx::query(&insert_skipped)
                    .bind(id.0)
                    .bind(position)
                    .bind(m.name.as_str())
                    .bind(m.run)
                    .bind(MemberState::Skipped.as_str())
                    .bind(reason.as_str())
                    .execute(&mut **tx)
                    .await
                    .map_err(q(WHAT))?;
                skipped += 1;
                continue;
            }
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
        if skipped > 0 {
            let count = self.dialect.sql(format!(
                "UPDATE {} SET pending = pending - ?, skipped = skipped + ? WHERE id = ?",
                self.table("job_batches")
            ));
            sqlx::query(&count)
                .bind(skipped)
                .bind(skipped)
                .bind(id.0)
                .execute(&mut **tx)
                .await
                .map_err(q(WHAT))?;
        }
        Ok(queues)
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
            self.wake_workers(&queue).await?;
        }
        Ok(Some(BatchMemberRow {
            state: MemberState::Pending,
            ..next
        }))
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
