//! PostgreSQL's form of the workers' batched statements ([`super::acks`]): the runs of a batch travel as arrays
//! (one parameter per column, `unnest`ed into rows), so each statement's text is the same whatever the batch's
//! size. The server parses it once per connection and soon plans it once (a generic plan: the arrays' rows joined
//! to the ledger by its key), where one text per batch size was parsed and planned again for most batches: that
//! was a third of the server's time per job.

use super::acks::{first_texts, Ack, RunClaim};
use super::connection::{pid_namespace, Ledger, Owner};
use super::error::{q, LedgerError};
use super::jobs::JobStatus;

/// A PostgreSQL array literal of these texts (`{"a","b"}`), each quoted, its `"` and `\` escaped: bound as text,
/// cast to `TEXT[]` by the statement.
fn texts<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// A PostgreSQL array literal of these numbers or booleans (`{1,2}`, `{t,f}`).
fn plain<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|v| v.to_string()).collect();
    format!("{{{}}}", items.join(","))
}

impl Ledger {
    /// [`Ledger::take_and_claim`]'s claims of runs on PostgreSQL, in one statement of one text: as the generic
    /// form, a run `pending`, `rolled_back`, `scheduled` or `failed` (or `interrupted`, where the claim may take it
    /// again) becomes `running` under its new token. Returns the tokens of the claims taken.
    pub(super) async fn claim_runs_pg(
        &self,
        conn: &mut sqlx::AnyConnection,
        runs: &[RunClaim],
        batch: i64,
        owner: &Owner,
        lease: std::time::Duration,
    ) -> Result<Vec<String>, LedgerError> {
        const WHAT: &str = "claim the runs of the jobs taken";
        self.bind_claims(&self.claims_statement(), runs, batch, owner, lease)
            .fetch_all(&mut *conn)
            .await
            .map_err(q(WHAT))
            .and_then(|rows| first_texts(&rows).map_err(q(WHAT)))
    }

    /// The claims' statement. Each run is found by its key: the test of its status is a `CASE`, which no index
    /// serves, so that the planner never reads the runs by status instead (with statistics older than the rows
    /// they describe, it read every pending run of the ledger to claim eight); the take's transaction rules out
    /// whole-table scans ([`Ledger::begin_keyed`]).
    fn claims_statement(&self) -> String {
        let (ops, now) = (self.table("operations"), self.dialect.now());
        self.dialect.sql(format!(
            "UPDATE {ops} o SET progress_done = CASE WHEN o.status = 'rolled_back' THEN NULL ELSE o.progress_done END, \
             status = 'running', batch = ?, attempts = 1, started_at = {now}, finished_at = NULL, \
             duration_ms = NULL, lease_until = {now} + ?, claim_token = c.token, host_ns = ?, host = ?, pid = ?, \
             actor = ?, checksum = c.checksum, skip_reason = NULL, cancel_requested = NULL, \
             pause_requested = NULL, throttled_since = NULL, throttled_ms = NULL, last_error = NULL \
             FROM unnest(CAST(? AS TEXT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS BOOLEAN[])) \
             AS c(name, run, token, checksum, reclaim) \
             WHERE o.name = c.name AND o.run = c.run \
             AND CASE o.status WHEN 'pending' THEN TRUE WHEN 'rolled_back' THEN TRUE WHEN 'scheduled' THEN TRUE \
             WHEN 'failed' THEN TRUE WHEN 'interrupted' THEN c.reclaim ELSE FALSE END \
             RETURNING o.claim_token"
        ))
    }

    /// [`Ledger::claims_statement`] (or its `EXPLAIN`) with the claims' values bound.
    fn bind_claims<'q>(
        &self,
        sql: &'q str,
        runs: &[RunClaim],
        batch: i64,
        owner: &'q Owner,
        lease: std::time::Duration,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        sqlx::query(sql)
            .bind(batch)
            .bind(lease.as_millis() as i64)
            .bind(pid_namespace())
            .bind(owner.host.as_str())
            .bind(owner.pid)
            .bind(owner.actor.as_deref())
            .bind(texts(runs.iter().map(|r| r.name.as_str())))
            .bind(plain(runs.iter().map(|r| r.run)))
            .bind(texts(runs.iter().map(|r| r.token.as_str())))
            .bind(texts(runs.iter().map(|r| r.checksum.as_str())))
            .bind(plain(runs.iter().map(|r| r.reclaim_interrupted)))
    }

    /// How PostgreSQL would claim these runs of `names` (run 0 each): its plan of the claims' statement, one line
    /// per step. Nothing is claimed. For tests and diagnosis.
    #[doc(hidden)]
    pub async fn explain_claims(&self, names: &[&str]) -> Result<Vec<String>, LedgerError> {
        const WHAT: &str = "explain claims";
        let runs: Vec<RunClaim> = names
            .iter()
            .enumerate()
            .map(|(job, name)| RunClaim {
                job,
                name: (*name).to_owned(),
                run: 0,
                checksum: String::new(),
                reclaim_interrupted: false,
                token: String::new(),
            })
            .collect();
        let owner = Owner::this_process(None);
        let sql = format!("EXPLAIN {}", self.claims_statement());
        // Planned as the claims are: in a keyed transaction, rolled back.
        let mut tx = self.begin_keyed().await.map_err(q(WHAT))?;
        self.bind_claims(&sql, &runs, 0, &owner, std::time::Duration::ZERO)
            .fetch_all(&mut *tx)
            .await
            .map_err(q(WHAT))
            .and_then(|rows| first_texts(&rows).map_err(q(WHAT)))
    }

    /// [`Ledger::ack_completed`] on PostgreSQL, one statement of one text in a keyed transaction
    /// ([`Ledger::begin_keyed`]): the runs `completed` (only while their claims are this worker's), the jobs of
    /// those runs `done`, and the waiting dispatchers told. Returns the tokens of the runs recorded `completed`.
    pub(super) async fn ack_pg(
        &self,
        worker: &str,
        acks: &[Ack],
    ) -> Result<Vec<String>, LedgerError> {
        const WHAT: &str = "acknowledge completed jobs";
        // In a keyed transaction: the runs by their key, not by their status, whose index holds an entry for
        // every run completed since the table was last vacuumed (an acknowledgement of 100 read 13,000 of them).
        let mut tx = self.begin_keyed().await.map_err(q(WHAT))?;
        let sql = self.ack_statement();
        let finished: Vec<String> = self
            .bind_ack(&sql, worker, acks)
            .fetch_all(&mut *tx)
            .await
            .map_err(q(WHAT))
            .and_then(|rows| first_texts(&rows).map_err(q(WHAT)))?;
        tx.commit().await.map_err(q(WHAT))?;
        Ok(finished)
    }

    /// The acknowledgement's statement: each run found by its key (its status tested by a `CASE`, as the claims'
    /// is), each job by its id.
    fn ack_statement(&self) -> String {
        let (ops, jobs, now) = (
            self.table("operations"),
            self.table("jobs"),
            self.dialect.now(),
        );
        let (done, running) = (JobStatus::Done, JobStatus::Running);
        // The notification is an uncorrelated subquery: evaluated once, and only when a job ended.
        self.dialect.sql(format!(
            "WITH a AS (SELECT * FROM unnest(CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS BIGINT[]), \
             CAST(? AS TEXT[]), CAST(? AS BIGINT[])) AS a(job, name, run, token, ms)), \
             done AS (UPDATE {ops} o SET status = 'completed', finished_at = {now}, duration_ms = a.ms, \
             lease_until = NULL, skip_reason = NULL, last_error = NULL FROM a \
             WHERE o.name = a.name AND o.run = a.run AND o.claim_token = a.token \
             AND CASE o.status WHEN 'running' THEN TRUE ELSE FALSE END \
             RETURNING o.claim_token, a.job), \
             ended AS (UPDATE {jobs} j SET status = '{done}', finished_at = {now}, lease_until = NULL, last_error = NULL \
             FROM done d WHERE j.id = d.job AND j.worker = ? AND j.status = '{running}' RETURNING j.id) \
             SELECT claim_token FROM done WHERE (SELECT COUNT(*) FROM (SELECT pg_notify(?, ?) FROM ended LIMIT 1) n) >= 0"
        ))
    }

    /// [`Ledger::ack_statement`] (or its `EXPLAIN`) with the acknowledgements' values bound.
    fn bind_ack<'q>(
        &self,
        sql: &'q str,
        worker: &'q str,
        acks: &[Ack],
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        sqlx::query(sql)
            .bind(plain(acks.iter().map(|a| a.job)))
            .bind(texts(acks.iter().map(|a| a.name.as_str())))
            .bind(plain(acks.iter().map(|a| a.run)))
            .bind(texts(acks.iter().map(|a| a.token.as_str())))
            .bind(plain(acks.iter().map(|a| a.duration.as_millis() as i64)))
            .bind(worker)
            .bind(self.done_channel())
            .bind(JobStatus::Done.as_str())
    }

    /// How PostgreSQL would acknowledge the runs of `names` (run 0 each, job ids 1, 2, …): its plan of the
    /// acknowledgement's statement, one line per step. Nothing is written. For tests and diagnosis.
    #[doc(hidden)]
    pub async fn explain_ack(&self, names: &[&str]) -> Result<Vec<String>, LedgerError> {
        const WHAT: &str = "explain an acknowledgement";
        let acks: Vec<Ack> = names
            .iter()
            .zip(1..)
            .map(|(name, job)| Ack {
                job,
                name: (*name).to_owned(),
                run: 0,
                token: String::new(),
                duration: std::time::Duration::ZERO,
            })
            .collect();
        let sql = format!("EXPLAIN {}", self.ack_statement());
        let mut tx = self.begin_keyed().await.map_err(q(WHAT))?;
        self.bind_ack(&sql, "explain", &acks)
            .fetch_all(&mut *tx)
            .await
            .map_err(q(WHAT))
            .and_then(|rows| first_texts(&rows).map_err(q(WHAT)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_quote_and_escape_each_text() {
        assert_eq!(
            texts(["a", "b c", "x\"y", "p\\q", ""].into_iter()),
            r#"{"a","b c","x\"y","p\\q",""}"#
        );
        assert_eq!(texts(std::iter::empty()), "{}");
        assert_eq!(plain([1_i64, -2].into_iter()), "{1,-2}");
        assert_eq!(plain([true, false].into_iter()), "{true,false}");
    }
}
