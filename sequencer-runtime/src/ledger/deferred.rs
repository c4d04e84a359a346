//! The old deferred table. Deferred operations are task runs now (`deferred:<handler>` rows of the operations
//! table, jobs on the `deferred` queue); this table keeps the rows older versions wrote: their history (completed
//! and failed rows stay), and the pending ones until `process_deferred` moves them into task runs, each once
//! (`moved`, with the task run it became), its payload left here, sealed for its row as it was.

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
    /// Moved into a task run (`deferred:<handler>`, run [`DeferredRow::task_run`]), which runs it: the row
    /// keeps its payload, which the run reads.
    Moved,
}

stored_by_name!(DeferredStatus, "deferred status", {
    Pending => "pending",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Moved => "moved",
});

/// What moving an old deferred row into a task run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Move {
    /// Moved: the run of its task it became.
    Moved(i64),
    /// Another process moved (or ran) it first.
    Taken,
    /// Its task run's data could not be made: the row is left as it was.
    Refused(String),
}

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
    /// For a `moved` row: the run of its task (`deferred:<handler>`) it became.
    pub task_run: Option<i64>,
}

/// The columns of a [`DeferredRow`], in the order [`deferred_rows`] reads them.
const DEFERRED_COLUMNS: &str =
    "id, handler, payload, due_at, attempts, max_attempts, status, last_error, task_run";

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
                task_run: r.try_get(8)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(q("decode a deferred operation"))
}

impl Ledger {
    /// Stores a row in the old deferred table, as versions before deferred operations were tasks did, and returns
    /// its id; `payload` makes the stored payload from the id (to seal it for its row). `process_deferred` moves
    /// it into a task run. [`Sequencer::defer`](crate::Sequencer::defer) records a task run directly.
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

impl Ledger {
    /// The old rows to move into task runs: `pending` ones, and those whose old processor died with tries left
    /// (their claim expired), by due time.
    pub(crate) async fn deferred_movable(&self) -> Result<Vec<DeferredRow>, LedgerError> {
        use DeferredStatus::{Pending, Running};
        let (deferred, now) = (self.table("deferred"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "SELECT {DEFERRED_COLUMNS} FROM {deferred} WHERE status = '{Pending}' \
             OR (status = '{Running}' AND locked_until < {now} AND attempts < max_attempts) ORDER BY due_at, id"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read deferred operations to move"))?;
        deferred_rows(&rows)
    }

    /// The condition under which an old row may be moved (or failed) still: as [`Ledger::deferred_movable`] read it.
    fn movable(&self) -> String {
        use DeferredStatus::{Pending, Running};
        format!(
            "(status = '{Pending}' OR (status = '{Running}' AND locked_until < {now} AND attempts < max_attempts))",
            now = self.dialect.now()
        )
    }

    /// Fails an old row that cannot be moved (its handler is unknown), with the error (sealed for its row when a
    /// key is configured). `false` when another process took it first.
    pub(crate) async fn fail_deferred(
        &self,
        row: &DeferredRow,
        error: &str,
        keys: &crate::crypto::Keyring,
    ) -> Result<bool, LedgerError> {
        use DeferredStatus::Failed;
        let stored = if keys.can_seal() {
            keys.seal_for(error, &crate::crypto::place::deferred(row.id, "last_error"))
                .unwrap_or_else(|e| format!("[not recorded: {e}]"))
        } else {
            error.to_owned()
        };
        let deferred = self.table("deferred");
        let sql = self.dialect.sql(format!(
            "UPDATE {deferred} SET status = '{Failed}', last_error = ?, locked_until = NULL WHERE id = ? AND {}",
            self.movable()
        ));
        let done = sqlx::query(&sql)
            .bind(stored)
            .bind(row.id)
            .execute(&self.pool)
            .await
            .map_err(q("fail a deferred operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves an old row into a run of task `name` queued on `queue` at the row's due time, in one transaction:
    /// the row becomes `moved` (only if it is movable still: of two processes, one wins), the task run is
    /// recorded with `args(run)` as its data, and its job queued. The row keeps its payload.
    pub(crate) async fn move_deferred(
        &self,
        row: &DeferredRow,
        name: &str,
        queue: &str,
        args: impl Fn(i64) -> Result<String, String>,
    ) -> Result<Move, LedgerError> {
        use DeferredStatus::Moved;
        let deferred = self.table("deferred");
        let take = self.dialect.sql(format!(
            "UPDATE {deferred} SET status = '{Moved}', locked_until = NULL WHERE id = ? AND {}",
            self.movable()
        ));
        let number = self.number_task_run_sql();
        let point = self
            .dialect
            .sql(format!("UPDATE {deferred} SET task_run = ? WHERE id = ?"));
        let what = "move a deferred operation into a task run";
        // Another process numbering a run of the same task at the same moment: take the next number.
        for _ in 0..100 {
            let mut tx = self.pool.begin().await.map_err(q(what))?;
            let taken = sqlx::query(&take)
                .bind(row.id)
                .execute(&mut *tx)
                .await
                .map_err(q(what))?
                .rows_affected();
            if taken != 1 {
                tx.rollback().await.map_err(q(what))?;
                return Ok(Move::Taken);
            }
            let run: i64 = sqlx::query_scalar(&number)
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(q(what))?;
            let data = match args(run) {
                Ok(data) => data,
                Err(why) => {
                    tx.rollback().await.map_err(q(what))?;
                    return Ok(Move::Refused(why));
                }
            };
            // The run and its job, queued at the row's due time, in this transaction.
            let due = Some((queue, super::tasks::Available::At(row.due_at)));
            if !self
                .insert_queued_run(&mut tx, name, run, &data, due)
                .await?
            {
                tx.rollback().await.map_err(q(what))?;
                continue;
            }
            sqlx::query(&point)
                .bind(run)
                .bind(row.id)
                .execute(&mut *tx)
                .await
                .map_err(q(what))?;
            tx.commit().await.map_err(q(what))?;
            self.wake_workers(queue).await?;
            return Ok(Move::Moved(run));
        }
        Ok(Move::Refused(format!(
            "cannot number a run of `{name}` for deferred row {}: other processes took every number tried",
            row.id
        )))
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::{Ledger, Move};

    /// Two processes that read the same movable row (as two upgraded processes starting together do): the first
    /// moves it, the second finds it taken and records nothing.
    #[tokio::test]
    async fn a_row_read_by_two_processes_is_moved_once() {
        let dir = std::env::temp_dir().join(format!(
            "seq-move-{}-{:08x}.db",
            std::process::id(),
            fastrand::u32(..)
        ));
        let url = format!("sqlite://{}?mode=rwc", dir.display());
        let ledger = Ledger::connect(&url, "seq_").await.unwrap();
        let id = ledger
            .defer("greet", |_| "\"ada\"".to_owned(), 0, 3)
            .await
            .unwrap();
        let row = ledger.deferred_movable().await.unwrap().remove(0);
        assert_eq!(row.id, id);
        let args = |_: i64| Ok("{}".to_owned());
        let first = ledger
            .move_deferred(&row, "deferred:greet", "deferred", args)
            .await
            .unwrap();
        let second = ledger
            .move_deferred(&row, "deferred:greet", "deferred", args)
            .await
            .unwrap();
        assert_eq!((first, second), (Move::Moved(1), Move::Taken));
        assert!(ledger.row_of("deferred:greet", 2).await.unwrap().is_none());
        drop(ledger);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", dir.display()));
        }
    }
}
