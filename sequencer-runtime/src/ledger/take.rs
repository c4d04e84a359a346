//! Taking jobs from the queue: the due jobs of a queue in its order (`available_at`, then `id`), skipping those
//! another worker holds, read by the index that serves that order so a take stops after the jobs it takes,
//! however long the queue.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::batches::BatchId;
use super::connection::Ledger;
use super::dialect::Dialect;
use super::error::{q, LedgerError};
use super::jobs::{Job, JobStatus};

/// PostgreSQL: how the transaction of a take or of an acknowledgement begins. Its statements find their rows by
/// their keys (the queue's index, the jobs' and the runs' primary keys), whatever the statistics say: a ledger
/// filled by `process` and not yet analysed looks nearly empty to the planner, which then scanned and hashed whole
/// tables to take eight jobs. One round trip, as a plain `BEGIN`; the settings end with the transaction.
const BEGIN_KEYED_POSTGRES: &str = "BEGIN; SET LOCAL enable_seqscan = off; \
                                    SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

impl Ledger {
    /// Begins the transaction of a take or of a worker's acknowledgement ([`BEGIN_KEYED_POSTGRES`] on PostgreSQL:
    /// its statements find their rows by their keys).
    pub(super) async fn begin_keyed(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Postgres => self.pool.begin_with(BEGIN_KEYED_POSTGRES).await,
            Dialect::Sqlite | Dialect::MySql => self.pool.begin().await,
        }
    }

    /// Claims up to `limit` queued jobs for `worker`, holding them for `lease`.
    pub async fn take_jobs(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, LedgerError> {
        let mut tx = self.begin_keyed().await.map_err(q("claim jobs"))?;
        let taken = self.take_on(&mut tx, queue, worker, lease, limit).await?;
        tx.commit().await.map_err(q("claim jobs"))?;
        Ok(taken)
    }

    /// The statement of a take: one `UPDATE` with `returning` (SQLite, PostgreSQL; `?`: the worker, the lease,
    /// the queue, the limit), or on MySQL the `SELECT` that locks the jobs first (`?`: the queue, the limit). The
    /// clock is read once ([`Dialect::now_once`]) and the limit is a parameter, so the text is the same for every
    /// take and the database prepares it once per connection.
    fn take_statement(&self) -> String {
        use JobStatus::{Queued, Running};
        let (jobs, due) = (self.table("jobs"), self.dialect.now_once());
        let due = |columns: &str, skip_locked: &str| {
            format!(
                "SELECT {columns} FROM {jobs} WHERE queue = ? AND status = '{Queued}' AND available_at <= {due} \
                 ORDER BY available_at, id LIMIT ?{skip_locked}"
            )
        };
        // PostgreSQL and MySQL skip the rows another worker has locked; SQLite has one writer at a time.
        let skip_locked = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres | Dialect::MySql => " FOR UPDATE SKIP LOCKED",
        };
        let now = self.dialect.now();
        self.dialect.sql(match self.dialect {
            Dialect::Sqlite | Dialect::Postgres => format!(
                "UPDATE {jobs} SET status = '{Running}', worker = ?, lease_until = {now} + ?, attempts = attempts + 1 \
                 WHERE id IN ({}) RETURNING id, name, run, batch_id",
                due("id", skip_locked)
            ),
            // MySQL 8 and MariaDB 10.6+ have no `UPDATE ... RETURNING`: a take selects, then updates.
            Dialect::MySql => due("id, name, run, batch_id", skip_locked),
        })
    }

    /// [`Ledger::take_jobs`] on a connection (the caller's transaction).
    pub(super) async fn take_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, LedgerError> {
        const WHAT: &str = "claim jobs";
        let lease_ms = lease.as_millis() as i64;
        let limit = limit.max(1) as i64;
        let decode = |r: &AnyRow| -> Result<Job, sqlx::Error> {
            Ok(Job {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                run: r.try_get(2)?,
                batch: r.try_get::<Option<i64>, _>(3)?.map(BatchId),
            })
        };
        let sql = self.take_statement();
        if self.dialect != Dialect::MySql {
            let rows = sqlx::query(&sql)
                .bind(worker)
                .bind(lease_ms)
                .bind(queue)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
                .map_err(q(WHAT))?;
            return rows
                .iter()
                .map(decode)
                .collect::<Result<_, _>>()
                .map_err(q(WHAT));
        }
        let rows = sqlx::query(&sql)
            .bind(queue)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(q(WHAT))?;
        let taken: Vec<Job> = rows
            .iter()
            .map(decode)
            .collect::<Result<_, _>>()
            .map_err(q(WHAT))?;
        if taken.is_empty() {
            return Ok(taken);
        }
        let (jobs, now, running) = (self.table("jobs"), self.dialect.now(), JobStatus::Running);
        let list = vec!["?"; taken.len()].join(", ");
        let take = format!(
            "UPDATE {jobs} SET status = '{running}', worker = ?, lease_until = {now} + ?, attempts = attempts + 1 WHERE id IN ({list})"
        );
        let mut query = sqlx::query(&take).bind(worker).bind(lease_ms);
        for j in &taken {
            query = query.bind(j.id);
        }
        query.execute(&mut *conn).await.map_err(q(WHAT))?;
        Ok(taken)
    }

    /// How the database would take the next `limit` jobs of `queue`: its plan of the take's statement, one line
    /// per step (PostgreSQL's `EXPLAIN`, SQLite's `EXPLAIN QUERY PLAN`, MySQL's `EXPLAIN` of its `SELECT`, as
    /// `key: extra`). Nothing is run or taken. For tests and diagnosis: a take that sorts the queue costs as much
    /// as the queue is long.
    #[doc(hidden)]
    pub async fn explain_take(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<String>, LedgerError> {
        const WHAT: &str = "explain a take";
        let take = self.take_statement();
        let sql = match self.dialect {
            Dialect::Sqlite => format!("EXPLAIN QUERY PLAN {take}"),
            Dialect::Postgres | Dialect::MySql => format!("EXPLAIN {take}"),
        };
        let mut query = sqlx::query(&sql);
        if self.dialect != Dialect::MySql {
            query = query.bind("explain").bind(0_i64);
        }
        // Planned as a take is: in a take's transaction, rolled back.
        let mut tx = self.begin_keyed().await.map_err(q(WHAT))?;
        let rows = query
            .bind(queue)
            .bind(limit.max(1) as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(q(WHAT))?;
        rows.iter()
            .map(|r| match self.dialect {
                Dialect::Postgres => r.try_get::<String, _>(0),
                Dialect::Sqlite => r.try_get::<String, _>(3),
                Dialect::MySql => Ok(format!(
                    "{}: {}",
                    r.try_get::<Option<String>, _>("key")?.unwrap_or_default(),
                    r.try_get::<Option<String>, _>("Extra")?.unwrap_or_default()
                )),
            })
            .collect::<Result<_, _>>()
            .map_err(q(WHAT))
    }
}
