//! The jobs table, the workers' queue: enqueue, take, heartbeat, end, rescue, and PostgreSQL's `LISTEN`.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::batches::BatchId;
use super::connection::Ledger;
use super::dialect::{parsed, stored_by_name, text, Dialect};
use super::error::{q, retrying, LedgerError};
use super::listen::BLOCKED;
use super::runs::Status;

/// The state of a job of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for the operations named in its `blocked_by` to complete, then queued.
    Blocked,
    /// Waiting for a worker.
    Queued,
    /// A link of a chain waiting for the link before it to complete (then queued by whoever completed it).
    Waiting,
    /// Taken by a worker, which holds a lease on it.
    Running,
    /// Its operation ran (or was found not to need running).
    Done,
    /// Its operation failed, or it cannot run here: kept for a human.
    Failed,
}

stored_by_name!(JobStatus, "job status", {
    Blocked => "blocked",
    Queued => "queued",
    Waiting => "waiting",
    Running => "running",
    Done => "done",
    Failed => "failed",
});

/// How `jobs.blocked_by` stores the operations a job waits for: their names, one a line.
fn blocked_text(names: &[&str]) -> String {
    names.join("\n")
}

/// The operations a job waits for, read back from the `blocked_by` column at `i` (none when NULL).
fn blocked_names(r: &AnyRow, i: usize) -> Result<Vec<String>, sqlx::Error> {
    Ok(text(r, i)?
        .map(|b| b.lines().map(str::to_owned).collect())
        .unwrap_or_default())
}

/// A job not ended yet, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenJob {
    /// The operation's run.
    pub run: i64,
    /// `blocked`, `queued` or `running`.
    pub status: JobStatus,
    /// Its queue.
    pub queue: String,
    /// While `blocked`: the operations it waits for.
    pub blocked_by: Vec<String>,
}

/// A job a worker holds: see [`Ledger::running_jobs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningJob {
    /// The operation's ledger name.
    pub name: String,
    /// The operation's run.
    pub run: i64,
    /// Its queue.
    pub queue: String,
    /// `host:pid:<random>` of the worker holding it.
    pub worker: Option<String>,
    /// Until when the worker's claim holds without a heartbeat (Unix milliseconds, the database's clock).
    pub lease_until: Option<i64>,
    /// How often it was taken.
    pub attempts: i64,
}

/// One claimed job of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// The operation's ledger name.
    pub name: String,
    /// The operation's run.
    pub run: i64,
    /// The recorded batch or chain it is a member of.
    pub batch: Option<BatchId>,
}

impl Ledger {
    /// Puts an operation's run on a queue (once: a queued or running job for it is left alone) and wakes the
    /// workers. `true` when a job was queued.
    pub async fn enqueue(&self, name: &str, run: i64, queue: &str) -> Result<bool, LedgerError> {
        self.enqueue_after(name, run, queue, &[]).await
    }

    /// Puts an operation's run on a queue behind the operations `after` names: the job waits as `blocked` until
    /// each of them is `completed` or `skipped` (see [`Ledger::unblock_jobs`]), then is queued. A queued or running
    /// job for the run is left alone; an ended or blocked one is queued (or blocked) again. `true` when a job was
    /// written.
    pub async fn enqueue_after(
        &self,
        name: &str,
        run: i64,
        queue: &str,
        after: &[&str],
    ) -> Result<bool, LedgerError> {
        use JobStatus::{Blocked, Done, Failed, Queued};
        let (jobs, now) = (self.table("jobs"), self.dialect.now());
        let (status, blocked_by) = if after.is_empty() {
            (Queued, None)
        } else {
            (Blocked, Some(blocked_text(after)))
        };
        // A new job first (the usual case): on PostgreSQL its insert wakes the workers in the same statement.
        // Each statement is tried again on a deadlock or a busy database (workers taking and acknowledging jobs
        // lock the same index ranges on MySQL): a failed one changed nothing, and both are guarded.
        const WHAT: &str = "queue an operation";
        let insert = format!(
            "INSERT INTO {jobs} (name, run, queue, status, blocked_by, available_at, attempts, created_at) VALUES (?, ?, ?, ?, ?, {now}, 0, {now})"
        );
        // A blocked job is announced too: a worker skips the look for jobs blocked behind the operations it
        // completes while it knows of none (see [`BLOCKED`]).
        let notify_with_insert = self.dialect == Dialect::Postgres;
        let payload = if status == Blocked { BLOCKED } else { queue };
        let insert = if notify_with_insert {
            self.dialect.sql(format!(
                "WITH queued AS ({insert} ON CONFLICT DO NOTHING RETURNING id) SELECT pg_notify(?, ?) FROM queued"
            ))
        } else {
            self.dialect.insert_ignore(insert)
        };
        let inserted = retrying(WHAT, || async {
            let query = sqlx::query(&insert)
                .bind(name)
                .bind(run)
                .bind(queue)
                .bind(status.as_str())
                .bind(blocked_by.as_deref());
            Ok(if notify_with_insert {
                query
                    .bind(self.notify_channel())
                    .bind(payload)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(q(WHAT))?
                    .len()
                    == 1
            } else {
                query
                    .execute(&self.pool)
                    .await
                    .map_err(q(WHAT))?
                    .rows_affected()
                    == 1
            })
        })
        .await?;
        if inserted && notify_with_insert && status == Queued {
            return Ok(true);
        }
        let requeue = self.dialect.sql(format!(
            "UPDATE {jobs} SET status = ?, blocked_by = ?, available_at = {now}, attempts = 0, worker = NULL, lease_until = NULL, last_error = NULL, batch_id = NULL \
             WHERE name = ? AND run = ? AND status IN ('{Done}', '{Failed}', '{Blocked}')"
        ));
        let queued = inserted
            || retrying(WHAT, || async {
                sqlx::query(&requeue)
                    .bind(status.as_str())
                    .bind(blocked_by.as_deref())
                    .bind(name)
                    .bind(run)
                    .execute(&self.pool)
                    .await
                    .map_err(q(WHAT))
            })
            .await?
            .rows_affected()
                == 1;
        if queued && status == Blocked {
            if !inserted {
                self.wake_workers_with(BLOCKED).await?;
            }
            // What it waits for may have ended already.
            self.unblock_jobs().await?;
        } else if queued {
            self.wake_workers(queue).await?;
        }
        Ok(queued)
    }

    /// Queues the `blocked` jobs whose operations in `blocked_by` have all completed (or been skipped), and wakes
    /// the workers. Idle workers call it; see [`Ledger::unblock_jobs_after`] for the jobs one operation's end can
    /// release. Returns how many.
    pub async fn unblock_jobs(&self) -> Result<u64, LedgerError> {
        Ok(self.release_blocked(None).await?.0)
    }

    /// [`Ledger::unblock_jobs`], and whether jobs are still blocked after it (their operations have not ended
    /// well yet).
    pub(crate) async fn unblock_jobs_and_see(&self) -> Result<(u64, bool), LedgerError> {
        self.release_blocked(None).await
    }

    /// [`Ledger::unblock_jobs`] for the jobs that name `name` (which has just completed or been skipped).
    pub async fn unblock_jobs_after(&self, name: &str) -> Result<u64, LedgerError> {
        Ok(self.release_blocked(Some(&[name])).await?.0)
    }

    /// [`Ledger::unblock_jobs_after`] for several operations at once (a worker's batch of acknowledgements).
    pub async fn unblock_jobs_after_any(&self, names: &[&str]) -> Result<u64, LedgerError> {
        if names.is_empty() {
            return Ok(0);
        }
        Ok(self.release_blocked(Some(names)).await?.0)
    }

    /// Tried again when it loses a deadlock: it reads the blocked jobs afresh each time, and queues only those
    /// still blocked. Returns how many it queued, and whether some it read stay blocked.
    async fn release_blocked(&self, after: Option<&[&str]>) -> Result<(u64, bool), LedgerError> {
        retrying("queue blocked jobs", || self.release_blocked_once(after)).await
    }

    async fn release_blocked_once(
        &self,
        after: Option<&[&str]>,
    ) -> Result<(u64, bool), LedgerError> {
        use JobStatus::{Blocked, Queued};
        let (jobs, operations, now) = (
            self.table("jobs"),
            self.table("operations"),
            self.dialect.now(),
        );
        const WHAT: &str = "queue the jobs blocked behind an operation";
        // `LIKE` narrows (its `_` matches more than itself); the names are compared exactly below.
        let narrow = match after {
            Some(names) => format!(
                " AND ({})",
                vec!["blocked_by LIKE ?"; names.len()].join(" OR ")
            ),
            None => String::new(),
        };
        let sql = self.dialect.sql(format!(
            "SELECT id, queue, blocked_by FROM {jobs} WHERE status = '{Blocked}'{narrow}"
        ));
        let mut query = sqlx::query(&sql);
        for name in after.unwrap_or_default() {
            query = query.bind(format!("%{name}%"));
        }
        let mut blocked: Vec<(i64, String, Vec<String>)> = Vec::new();
        for r in query.fetch_all(&self.pool).await.map_err(q(WHAT))? {
            let by = blocked_names(&r, 2).map_err(q(WHAT))?;
            if after.is_none_or(|names| by.iter().any(|b| names.contains(&b.as_str()))) {
                blocked.push((
                    r.try_get(0).map_err(q(WHAT))?,
                    r.try_get(1).map_err(q(WHAT))?,
                    by,
                ));
            }
        }
        if blocked.is_empty() {
            return Ok((0, false));
        }
        // Whether each operation named has ended well, by its newest run.
        let mut names: Vec<&str> = blocked
            .iter()
            .flat_map(|(_, _, by)| by.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut newest: HashMap<String, (i64, String)> = HashMap::new();
        for chunk in names.chunks(200) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = self.dialect.sql(format!(
                "SELECT name, run, status FROM {operations} WHERE name IN ({marks})"
            ));
            let mut query = sqlx::query(&sql);
            for n in chunk {
                query = query.bind(*n);
            }
            for r in query.fetch_all(&self.pool).await.map_err(q(WHAT))? {
                let (name, run, status): (String, i64, String) = (
                    r.try_get(0).map_err(q(WHAT))?,
                    r.try_get(1).map_err(q(WHAT))?,
                    r.try_get(2).map_err(q(WHAT))?,
                );
                if newest.get(&name).is_none_or(|(n, _)| *n < run) {
                    newest.insert(name, (run, status));
                }
            }
        }
        let ended_well = |name: &String| {
            newest.get(name).is_some_and(|(_, s)| {
                s == Status::Completed.as_str() || s == Status::Skipped.as_str()
            })
        };
        let release = self.dialect.sql(format!(
            "UPDATE {jobs} SET status = '{Queued}', blocked_by = NULL, available_at = {now} WHERE id = ? AND status = '{Blocked}'"
        ));
        let (mut released, mut still) = (0, false);
        for (id, queue, by) in &blocked {
            if !by.iter().all(ended_well) {
                still = true;
                continue;
            }
            let done = sqlx::query(&release)
                .bind(*id)
                .execute(&self.pool)
                .await
                .map_err(q(WHAT))?;
            if done.rows_affected() == 1 {
                released += 1;
                self.wake_workers(queue).await?;
            }
        }
        Ok((released, still))
    }

    /// The jobs not ended yet (`blocked`, `queued`, `running`), by operation: the newest run's, with its status,
    /// queue and what it waits for.
    pub async fn open_jobs(&self) -> Result<HashMap<String, OpenJob>, LedgerError> {
        use JobStatus::{Blocked, Queued, Running};
        let jobs = self.table("jobs");
        let sql = self.dialect.sql(format!(
            "SELECT name, run, status, queue, blocked_by FROM {jobs} WHERE status IN ('{Blocked}', '{Queued}', '{Running}')"
        ));
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read the open jobs"))?;
        let mut open: HashMap<String, OpenJob> = HashMap::new();
        for r in &rows {
            let name: String = r.try_get(0).map_err(q("read the open jobs"))?;
            let job = OpenJob {
                run: r.try_get(1).map_err(q("read the open jobs"))?,
                status: parsed(r, 2).map_err(q("read the open jobs"))?,
                queue: r.try_get(3).map_err(q("read the open jobs"))?,
                blocked_by: blocked_names(r, 4).map_err(q("read the open jobs"))?,
            };
            if open.get(&name).is_none_or(|j| j.run < job.run) {
                open.insert(name, job);
            }
        }
        Ok(open)
    }

    /// What a blocked job of an operation's run waits for, if it is blocked.
    pub async fn blocked_by(&self, name: &str, run: i64) -> Result<Vec<String>, LedgerError> {
        let jobs = self.table("jobs");
        let sql = self.dialect.sql(format!(
            "SELECT blocked_by FROM {jobs} WHERE name = ? AND run = ? AND status = '{}'",
            JobStatus::Blocked
        ));
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a blocked job"))?;
        match row {
            Some(r) => blocked_names(&r, 0).map_err(q("read a blocked job")),
            None => Ok(Vec::new()),
        }
    }

    /// Puts the jobs of workers whose lease ran out back on the queue, each once its run is no longer `running`.
    /// Returns how many.
    ///
    /// Call it after [`Ledger::recover_interrupted`]: a dead worker's claim of a run is taken after its job and
    /// renewed in its own statement, so its lease may outlive the job's. Until recovery has found that run
    /// interrupted the job stays where it is, and a job taken again never finds its run still held by the claim of
    /// the worker that died (a run held by a live process keeps its job here until it ends: taken then, the job
    /// finds it ended).
    pub async fn rescue_jobs(&self) -> Result<u64, LedgerError> {
        use JobStatus::{Queued, Running};
        let (jobs, ops, now) = (
            self.table("jobs"),
            self.table("operations"),
            self.dialect.now(),
        );
        let sql = self.dialect.sql(format!(
            "UPDATE {jobs} SET status = '{Queued}', worker = NULL, lease_until = NULL WHERE status = '{Running}' AND lease_until < {now} \
             AND NOT EXISTS (SELECT 1 FROM {ops} o WHERE o.name = {jobs}.name AND o.run = {jobs}.run AND o.status = 'running')"
        ));
        Ok(sqlx::query(&sql)
            .execute(&self.pool)
            .await
            .map_err(q("rescue jobs"))?
            .rows_affected())
    }

    /// Deletes ended jobs (`done`, `failed`) that ended more than `older_than` ago. Returns how many.
    pub async fn prune_jobs(&self, older_than: Duration) -> Result<u64, LedgerError> {
        use JobStatus::{Done, Failed};
        let (jobs, now) = (self.table("jobs"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "DELETE FROM {jobs} WHERE status IN ('{Done}', '{Failed}') AND finished_at < {now} - ?"
        ));
        Ok(sqlx::query(&sql)
            .bind(older_than.as_millis().min(i64::MAX as u128) as i64)
            .execute(&self.pool)
            .await
            .map_err(q("prune jobs"))?
            .rows_affected())
    }

    /// Ends a job: `done`, `failed`, or `queued` again (released at shutdown).
    pub async fn end_job(
        &self,
        id: i64,
        worker: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        let jobs = self.table("jobs");
        let now = self.dialect.now();
        let end = format!("UPDATE {jobs} SET status = ?, finished_at = {now}, lease_until = NULL, last_error = ? WHERE id = ? AND worker = ?");
        let postgres = self.dialect == Dialect::Postgres;
        let sql = self.dialect.sql(if postgres {
            // End the job and tell the waiting dispatchers in one statement (one commit).
            format!("WITH ended AS ({end}) SELECT pg_notify(?, ?)")
        } else {
            end
        });
        let query = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(error)
            .bind(id)
            .bind(worker);
        let query = if postgres {
            query.bind(self.done_channel()).bind(status.as_str())
        } else {
            query
        };
        query.execute(&self.pool).await.map_err(q("end a job"))?;
        Ok(())
    }

    /// Puts a job this worker holds back on its queue, to be taken again after `after` (its operation was held
    /// elsewhere: a `unique` key, an overlap lock, another process's claim).
    pub async fn requeue_job(
        &self,
        id: i64,
        worker: &str,
        after: Duration,
        note: &str,
    ) -> Result<(), LedgerError> {
        let (jobs, now) = (self.table("jobs"), self.dialect.now());
        let sql = self.dialect.sql(format!(
            "UPDATE {jobs} SET status = '{}', worker = NULL, lease_until = NULL, available_at = {now} + ?, last_error = ? WHERE id = ? AND worker = ? AND status = '{}'",
            JobStatus::Queued,
            JobStatus::Running
        ));
        sqlx::query(&sql)
            .bind(after.as_millis().min(i64::MAX as u128) as i64)
            .bind(note)
            .bind(id)
            .bind(worker)
            .execute(&self.pool)
            .await
            .map_err(q("put a job back on its queue"))?;
        Ok(())
    }

    /// The jobs workers hold now (`running`), oldest first: who holds each, and until when.
    pub async fn running_jobs(&self) -> Result<Vec<RunningJob>, LedgerError> {
        let jobs = self.table("jobs");
        let sql = self.dialect.sql(format!(
            "SELECT name, run, queue, worker, lease_until, attempts FROM {jobs} WHERE status = ? ORDER BY id"
        ));
        let rows = sqlx::query(&sql)
            .bind(JobStatus::Running.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(q("read the running jobs"))?;
        rows.iter()
            .map(|r| {
                Ok(RunningJob {
                    name: r.try_get(0)?,
                    run: r.try_get(1)?,
                    queue: r.try_get(2)?,
                    worker: r.try_get(3)?,
                    lease_until: r.try_get(4)?,
                    attempts: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("read the running jobs"))
    }

    /// How many jobs of a queue are in each status.
    pub async fn job_counts(&self, queue: &str) -> Result<HashMap<JobStatus, i64>, LedgerError> {
        let jobs = self.table("jobs");
        let sql = self.dialect.sql(format!(
            "SELECT status, COUNT(*) FROM {jobs} WHERE queue = ? GROUP BY status"
        ));
        let rows = sqlx::query(&sql)
            .bind(queue)
            .fetch_all(&self.pool)
            .await
            .map_err(q("count jobs"))?;
        rows.iter()
            .map(|r| Ok((parsed(r, 0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("count jobs"))
    }

    /// The status of an operation run's job, if it has one.
    pub async fn job_status(&self, name: &str, run: i64) -> Result<Option<JobStatus>, LedgerError> {
        let jobs = self.table("jobs");
        let sql = self.dialect.sql(format!(
            "SELECT status FROM {jobs} WHERE name = ? AND run = ?"
        ));
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a job"))?;
        row.map(|r| parsed(&r, 0))
            .transpose()
            .map_err(q("read a job"))
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus;

    #[test]
    fn a_status_reads_back_as_written() {
        for s in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Done,
            JobStatus::Failed,
        ] {
            assert_eq!(s.as_str().parse(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(
            "lost".parse::<JobStatus>(),
            Err(String::from("unknown job status `lost`"))
        );
    }
}
