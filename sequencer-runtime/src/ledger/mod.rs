//! The ledger: one row per operation run, error records, batches and locks, through sqlx on SQLite (embedded,
//! WAL), PostgreSQL and MySQL / MariaDB. Its own schema migrations are applied on first use.

mod sql;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};

pub use sql::number_placeholders;
use sql::Sql;

/// Errors of the ledger: the statement's purpose, and sqlx's error as the cause.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database URL names a backend the ledger does not support.
    #[error("unsupported database URL `{0}`: use `sqlite://FILE`, `postgres://…` or `mysql://…` (MariaDB too)")]
    UnsupportedUrl(String),
    /// The database could not be reached.
    #[error("cannot connect to the ledger database `{url}`")]
    Connect {
        /// The URL, without password.
        url: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("ledger: cannot {what}")]
    Query {
        /// What the statement was for.
        what: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
}

/// The ledger's tables, each named with the table prefix in front (`sequencer_operations` by default).
pub const TABLES: &[&str] = &[
    "operations",
    "errors",
    "batches",
    "locks",
    "schema_versions",
    "rate_limits",
    "throttles",
    "deferred",
    "jobs",
];

/// The ledger pool's size unless set with `SequencerBuilder::max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 12;

/// Whether a statement may succeed if tried again: the connection or the pool failed, the server is starting or
/// has too many clients, or the transaction lost a deadlock / serialization race.
pub fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // PostgreSQL: connection exceptions, insufficient resources, operator intervention (shutdown,
            // starting up), serialization failures and deadlocks. MySQL: too many connections, lock wait
            // timeout, deadlock. SQLite: busy, locked.
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
                || c == "1040"
                || c == "1205"
                || c == "1213"
                || c == "5"
                || c == "6"
        }),
        _ => false,
    }
}

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> LedgerError {
    move |source| LedgerError::Query { what, source }
}

/// The database behind a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: embedded, single host.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL 8 or MariaDB 10.6+.
    MySql,
}

impl Dialect {
    /// The backend of a URL.
    pub fn of_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            _ => None,
        }
    }
}

/// The state of an operation's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not run yet.
    Pending,
    /// Waiting for its due time.
    Scheduled,
    /// Claimed by a process, which holds a lease on it.
    Running,
    /// Ran to the end.
    Completed,
    /// Ended with an error.
    Failed,
    /// Skipped, with a reason.
    Skipped,
    /// Undone by its rollback.
    RolledBack,
    /// Its process died while running it.
    Interrupted,
}

impl Status {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Scheduled => "scheduled",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::RolledBack => "rolled_back",
            Status::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Status::Pending,
            "scheduled" => Status::Scheduled,
            "running" => Status::Running,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "skipped" => Status::Skipped,
            "rolled_back" => Status::RolledBack,
            "interrupted" => Status::Interrupted,
            other => return Err(format!("unknown status `{other}`")),
        })
    }
}

/// The latest run of one operation, as the ledger records it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRow {
    /// Ledger name.
    pub name: String,
    /// 0 for the first run; `--repeat` adds runs.
    pub run: i64,
    /// The operation's timestamp, `YYYYMMDDHHMMSS`.
    pub timestamp: i64,
    /// The batch (process run) that ran it.
    pub batch: Option<i64>,
    /// Status.
    pub status: Status,
    /// Tries so far.
    pub attempts: i64,
    /// When it started.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// How long it ran.
    pub duration_ms: Option<i64>,
    /// Until when its process holds it.
    pub lease_until: Option<i64>,
    /// The host that ran it.
    pub host: Option<String>,
    /// The process that ran it.
    pub pid: Option<i64>,
    /// Who started the run (`--actor`).
    pub actor: Option<String>,
    /// Checksum of the source that ran, hex.
    pub checksum: Option<String>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// When a scheduled operation is due, Unix milliseconds.
    pub due_at: Option<i64>,
    /// `ctx.progress(done, _)`.
    pub progress_done: Option<i64>,
    /// `ctx.progress(_, total)`.
    pub progress_total: Option<i64>,
    /// `cancel NAME` asked it to stop.
    pub cancel_requested: bool,
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
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    /// The last error.
    pub last_error: Option<String>,
}

/// One recorded error of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorRecord {
    /// Ledger name.
    pub name: String,
    /// Run.
    pub run: i64,
    /// Attempt (0 for a rollback's error).
    pub attempt: i64,
    /// The error's message.
    pub message: String,
    /// Every cause, outermost first, one per line.
    pub chain: String,
    /// When, Unix milliseconds.
    pub created_at: i64,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Who is running: this host and process.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// `--actor`.
    pub actor: Option<String>,
}

impl Owner {
    /// This process.
    pub fn this_process(actor: Option<String>) -> Owner {
        Owner {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id() as i64,
            actor,
        }
    }
}

/// The ledger database: [`Sequencer::ledger`](crate::Sequencer::ledger) gives the one a sequencer uses. Most
/// methods are the executor's building blocks; [`Ledger::rows`], [`Ledger::errors`] and [`Ledger::deferred`]
/// read what was recorded, and [`Ledger::pool`] is the `sqlx::AnyPool` operations get from `ctx.pool()`.
///
/// ```
/// use sequencer::ledger::Status;
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000")]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Err(Error::msg("no database").context("creating users"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let run = sequencer::testing::run(ops::registry()).await?;
/// let ledger = run.ledger.sequencer.ledger();
/// assert_eq!(ledger.prefix(), "sequencer_");
///
/// let rows = ledger.rows().await?; // the latest run of every operation
/// assert_eq!(rows[0].status, Status::Failed);
/// assert_eq!(rows[0].attempts, 1);
/// assert_eq!(rows[0].last_error.as_deref(), Some("creating users: no database"));
///
/// let errors = ledger.errors(Some("2024_01_15_120000_create_users")).await?;
/// assert_eq!(errors[0].chain, "creating users\nno database", "{:?}", errors[0]); // the whole cause chain
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: AnyPool,
    dialect: Dialect,
    sql: std::sync::Arc<Sql>,
    prefix: String,
    url: String,
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
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Ledger {
    /// Connects with a pool of [`DEFAULT_MAX_CONNECTIONS`], and applies the ledger's schema migrations on first use.
    pub async fn connect(url: &str, prefix: &str) -> Result<Ledger, LedgerError> {
        Ledger::connect_with(url, prefix, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Connects with a pool of at most `max_connections`, and applies the ledger's schema migrations on first use.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        max_connections: u32,
    ) -> Result<Ledger, LedgerError> {
        sqlx::any::install_default_drivers();
        let dialect =
            Dialect::of_url(url).ok_or_else(|| LedgerError::UnsupportedUrl(redact(url)))?;
        let mut url = url.to_owned();
        if dialect == Dialect::Sqlite && !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let options = AnyConnectOptions::from_str(&url).map_err(|source| LedgerError::Connect {
            url: redact(&url),
            source,
        })?;
        // One direct connection first: its error says why (refused, unknown database, bad password), where the
        // pool would only say that it timed out.
        let connect_error = |source| LedgerError::Connect {
            url: redact(&url),
            source,
        };
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::AnyConnection::connect_with(&options),
        )
        .await
        .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
        .map_err(connect_error)?;
        probe.close().await.map_err(connect_error)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL survives a process crash; busy_timeout makes concurrent writers wait, not fail.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000;").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| LedgerError::Connect { url: redact(&url), source })?;
        let ledger = Ledger {
            pool,
            dialect,
            sql: std::sync::Arc::new(Sql::new(dialect, prefix)),
            prefix: prefix.to_owned(),
            url: url.clone(),
        };
        ledger.migrate().await?;
        Ok(ledger)
    }

    /// The pool, shared with operations through `ctx.pool()`.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The backend.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn migrate(&self) -> Result<(), LedgerError> {
        // Serialize the ledger's own migrations between processes starting together: an advisory lock
        // (PostgreSQL) or `GET_LOCK` (MySQL / MariaDB) on one held connection; SQLite serializes its writers.
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(q("migrate the ledger tables"))?;
        let key = format!("{}schema", self.prefix);
        let lock_id = sequencer_core::meta::checksum(key.as_bytes()) as i64;
        match self.dialect {
            Dialect::Postgres => {
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(lock_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(q("lock the ledger schema"))?;
            }
            Dialect::MySql => {
                sqlx::query("SELECT GET_LOCK(?, 60)")
                    .bind(key.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(q("lock the ledger schema"))?;
            }
            Dialect::Sqlite => {}
        }
        let result = self.migrate_on(&mut conn).await;
        let unlock = match self.dialect {
            Dialect::Postgres => sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(lock_id)
                .execute(&mut *conn)
                .await
                .map(drop),
            Dialect::MySql => sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(key.as_str())
                .execute(&mut *conn)
                .await
                .map(drop),
            Dialect::Sqlite => Ok(()),
        };
        result?;
        unlock.map_err(q("unlock the ledger schema"))
    }

    async fn migrate_on(&self, conn: &mut sqlx::AnyConnection) -> Result<(), LedgerError> {
        conn.execute(self.sql.create_version_table.as_str())
            .await
            .map_err(q("create the schema version table"))?;
        let applied: Vec<i64> = sqlx::query_scalar(&self.sql.versions)
            .fetch_all(&mut *conn)
            .await
            .map_err(q("read schema versions"))?;
        for (version, statements) in &self.sql.schema {
            if applied.contains(version) {
                continue;
            }
            for s in statements {
                if let Err(e) = conn.execute(s.as_str()).await {
                    // On SQLite another process may be applying this version at the same moment: wait for it.
                    let mut done = false;
                    for _ in 0..50 {
                        let now: Vec<i64> = sqlx::query_scalar(&self.sql.versions)
                            .fetch_all(&mut *conn)
                            .await
                            .map_err(q("read schema versions"))?;
                        if now.contains(version) {
                            done = true;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    if !done {
                        return Err(q("migrate the ledger tables")(e));
                    }
                }
            }
            sqlx::query(&self.sql.record_version)
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *conn)
                .await
                .map_err(q("record a schema version"))?;
        }
        Ok(())
    }

    /// The latest run of every operation in the ledger.
    pub async fn rows(&self) -> Result<Vec<LedgerRow>, LedgerError> {
        let rows = sqlx::query(&self.sql.rows)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read the ledger"))?;
        rows.iter()
            .map(row)
            .collect::<Result<_, _>>()
            .map_err(q("decode a ledger row"))
    }

    /// Inserts a `pending` row for each operation the ledger has never seen.
    pub async fn insert_pending(&self, ops: &[(&str, i64)]) -> Result<(), LedgerError> {
        if ops.is_empty() {
            return Ok(());
        }
        // Many rows per statement: a run of 10,000 operations starts with 20 statements, not 10,000.
        const ROWS: usize = 500;
        let mut tx = self.pool.begin().await.map_err(q("begin a transaction"))?;
        let full = self.sql.insert_pending_many(ROWS);
        for chunk in ops.chunks(ROWS) {
            let partial;
            let sql = if chunk.len() == ROWS {
                &full
            } else {
                partial = self.sql.insert_pending_many(chunk.len());
                &partial
            };
            let mut query = sqlx::query(sql);
            for (name, ts) in chunk {
                query = query.bind(*name).bind(*ts);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(q("record pending operations"))?;
        }
        tx.commit().await.map_err(q("record pending operations"))
    }

    /// Starts a batch (one process run) and returns its number.
    pub async fn new_batch(&self, owner: &Owner) -> Result<i64, LedgerError> {
        let query = sqlx::query(&self.sql.new_batch)
            .bind(now_ms())
            .bind(owner.host.as_str())
            .bind(owner.pid)
            .bind(owner.actor.as_deref());
        if self.dialect == Dialect::MySql {
            let done = query
                .execute(&self.pool)
                .await
                .map_err(q("start a batch"))?;
            return done
                .last_insert_id()
                .ok_or_else(|| q("start a batch")(sqlx::Error::RowNotFound));
        }
        let r = query
            .fetch_one(&self.pool)
            .await
            .map_err(q("start a batch"))?;
        r.try_get::<i64, _>(0).map_err(q("start a batch"))
    }

    /// Claims the run `run` of `name`: one atomic statement. `false` when another process has it, or it ran.
    pub async fn claim(&self, claim: &Claim<'_>) -> Result<bool, LedgerError> {
        let now = now_ms();
        let done = sqlx::query(&self.sql.claim)
            .bind(claim.batch)
            .bind(now)
            .bind(now + claim.lease.as_millis() as i64)
            .bind(claim.owner.host.as_str())
            .bind(claim.owner.pid)
            .bind(claim.owner.actor.as_deref())
            .bind(claim.checksum)
            .bind(claim.name)
            .bind(claim.run)
            .bind(if claim.reclaim_interrupted {
                "interrupted"
            } else {
                "pending"
            })
            .bind(if claim.due_scheduled {
                "scheduled"
            } else {
                "pending"
            })
            .execute(&self.pool)
            .await
            .map_err(q("claim an operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims a new run (`--repeat`) of a completed operation.
    pub async fn claim_new_run(
        &self,
        claim: &Claim<'_>,
        timestamp: i64,
    ) -> Result<bool, LedgerError> {
        let now = now_ms();
        let done = sqlx::query(&self.sql.insert_running)
            .bind(claim.name)
            .bind(claim.run)
            .bind(timestamp)
            .bind(claim.batch)
            .bind(now)
            .bind(now + claim.lease.as_millis() as i64)
            .bind(claim.owner.host.as_str())
            .bind(claim.owner.pid)
            .bind(claim.owner.actor.as_deref())
            .bind(claim.checksum)
            .execute(&self.pool)
            .await
            .map_err(q("claim a new run"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the start of another attempt and renews the lease.
    pub async fn attempt(
        &self,
        name: &str,
        run: i64,
        attempt: u32,
        lease: Duration,
        owner: &Owner,
    ) -> Result<(), LedgerError> {
        sqlx::query(&self.sql.attempt)
            .bind(attempt as i64)
            .bind(now_ms() + lease.as_millis() as i64)
            .bind(name)
            .bind(run)
            .bind(owner.host.as_str())
            .bind(owner.pid)
            .execute(&self.pool)
            .await
            .map_err(q("record an attempt"))?;
        Ok(())
    }

    /// Renews the lease of a running operation. `false` if the row is no longer ours to run.
    pub async fn heartbeat(
        &self,
        name: &str,
        run: i64,
        lease: Duration,
        owner: &Owner,
    ) -> Result<bool, LedgerError> {
        let done = sqlx::query(&self.sql.heartbeat)
            .bind(now_ms() + lease.as_millis() as i64)
            .bind(name)
            .bind(run)
            .bind(owner.host.as_str())
            .bind(owner.pid)
            .execute(&self.pool)
            .await
            .map_err(q("renew a lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a running operation (`completed`, `failed` or `skipped`), on the pool or inside the operation's
    /// transaction, so that its writes and its row commit together.
    pub async fn finish<'e, E>(&self, executor: E, end: &Finish<'_>) -> Result<bool, LedgerError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let done = sqlx::query(&self.sql.finish)
            .bind(end.status.as_str())
            .bind(now_ms())
            .bind(end.duration.as_millis() as i64)
            .bind(end.skip_reason)
            .bind(end.error)
            .bind(end.name)
            .bind(end.run)
            .bind(end.owner.host.as_str())
            .bind(end.owner.pid)
            .execute(executor)
            .await
            .map_err(q("record the end of an operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a running operation on the pool, riding out a short database outage (a restart, a full connection
    /// table, a deadlock victim): transient failures are retried for up to ten seconds, so that an operation that
    /// ran is recorded as it ended rather than left to be found `interrupted`. A retry that finds the row already
    /// ended as asked (the first try committed, its answer was lost) counts as done.
    pub async fn finish_on_pool(&self, end: &Finish<'_>) -> Result<bool, LedgerError> {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        let mut wait = Duration::from_millis(50);
        let mut retried = false;
        loop {
            match self.finish(&self.pool, end).await {
                Ok(false) if retried => {
                    let row = self.row_of(end.name, end.run).await?;
                    return Ok(row.is_some_and(|r| {
                        r.status == end.status
                            && r.host.as_deref() == Some(end.owner.host.as_str())
                            && r.pid == Some(end.owner.pid)
                    }));
                }
                Err(LedgerError::Query { source, .. })
                    if transient(&source) && std::time::Instant::now() < give_up =>
                {
                    tracing::warn!(
                        operation = end.name,
                        "cannot record the end of the operation yet, retrying: {source}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                    retried = true;
                }
                other => return other,
            }
        }
    }

    /// Records one attempt's error with its whole cause chain.
    pub async fn record_error(
        &self,
        name: &str,
        run: i64,
        attempt: u32,
        error: &crate::Error,
        seal: Option<&crate::crypto::Keyring>,
    ) -> Result<(), LedgerError> {
        let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
        // The recorded context of an `encrypted` operation is sealed; it is never stored in the clear.
        let stored = |text: String| match seal {
            Some(keys) => keys
                .seal(&text)
                .unwrap_or_else(|e| format!("[not recorded: {e}]")),
            None => text,
        };
        sqlx::query(&self.sql.record_error)
            .bind(name)
            .bind(run)
            .bind(attempt as i64)
            .bind(stored(error.to_string()))
            .bind(stored(chain.join("\n")))
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(q("record an error"))?;
        Ok(())
    }

    /// Marks `running` rows whose process died (on this host) or whose lease expired as `interrupted`.
    /// Returns how many.
    pub async fn recover_interrupted(&self, owner: &Owner) -> Result<u64, LedgerError> {
        let now = now_ms();
        let mut count = sqlx::query(&self.sql.expire_leases)
            .bind(now)
            .bind("interrupted: its lease expired (the process died or lost the database)")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(q("recover interrupted operations"))?
            .rows_affected();
        for r in self.rows().await? {
            let (Some(host), Some(pid)) = (&r.host, r.pid) else {
                continue;
            };
            if r.status == Status::Running
                && *host == owner.host
                && pid != owner.pid
                && !process_alive(pid)
            {
                count += sqlx::query(&self.sql.interrupt_one)
                    .bind(now)
                    .bind(format!(
                        "interrupted: process {pid} on {host} died while running it"
                    ))
                    .bind(r.name.as_str())
                    .bind(r.run)
                    .bind(host.as_str())
                    .bind(pid)
                    .execute(&self.pool)
                    .await
                    .map_err(q("recover interrupted operations"))?
                    .rows_affected();
            }
        }
        Ok(count)
    }

    /// Changes the status of the latest run from `from` to `to`. `false` if it was not in `from`.
    pub async fn set_status(
        &self,
        name: &str,
        run: i64,
        from: Status,
        to: Status,
        reason: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let done = sqlx::query(&self.sql.set_status)
            .bind(to.as_str())
            .bind(now_ms())
            .bind(reason)
            .bind(name)
            .bind(run)
            .bind(from.as_str())
            .execute(&self.pool)
            .await
            .map_err(q("change a status"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes a named lock (`unique`, `without_overlapping`) until `expires_at` unless a live holder has it.
    pub async fn try_named_lock(
        &self,
        name: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<bool, LedgerError> {
        sqlx::query(&self.sql.lock_expire)
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(q("expire a lock"))?;
        let done = sqlx::query(&self.sql.lock_insert)
            .bind(name)
            .bind(owner)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(q("take a lock"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases a named lock held by `owner`.
    pub async fn release_named_lock(&self, name: &str, owner: &str) -> Result<(), LedgerError> {
        sqlx::query(&self.sql.unlock_sqlite)
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(q("release a lock"))?;
        Ok(())
    }

    /// Counts one start against a fixed-window rate limit. `false` when the window is full.
    pub async fn rate_limit_hit(
        &self,
        name: &str,
        window_start: i64,
        limit: u32,
    ) -> Result<bool, LedgerError> {
        sqlx::query(&self.sql.window_insert)
            .bind(name)
            .bind(window_start)
            .execute(&self.pool)
            .await
            .map_err(q("open a rate-limit window"))?;
        let done = sqlx::query(&self.sql.window_hit)
            .bind(name)
            .bind(window_start)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(q("count against a rate limit"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Until when (Unix milliseconds) a `throttle_exceptions` key is closed; 0 when open.
    pub async fn throttle_until(&self, name: &str) -> Result<i64, LedgerError> {
        let until: Option<i64> = sqlx::query_scalar(&self.sql.throttle_state)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a throttle"))?;
        Ok(until.unwrap_or(0))
    }

    /// Records a failure against a `throttle_exceptions` key: `max` failures within `window_ms` close it for
    /// `window_ms`.
    pub async fn throttle_failure(
        &self,
        name: &str,
        max: u32,
        window_ms: i64,
    ) -> Result<(), LedgerError> {
        let now = now_ms();
        sqlx::query(&self.sql.throttle_insert)
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(q("record a throttled failure"))?;
        let window_start = now - window_ms;
        sqlx::query(&self.sql.throttle_failure)
            .bind(window_start)
            .bind(window_start)
            .bind(now)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("record a throttled failure"))?;
        sqlx::query(&self.sql.throttle_open)
            .bind(now + window_ms)
            .bind(now)
            .bind(name)
            .bind(i64::from(max))
            .execute(&self.pool)
            .await
            .map_err(q("close a throttle"))?;
        Ok(())
    }

    /// Records an operation's progress (on the pool, or inside the operation's transaction).
    pub async fn progress<'e, E>(
        &self,
        executor: E,
        name: &str,
        run: i64,
        done: u64,
        total: u64,
    ) -> Result<(), LedgerError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        sqlx::query(&self.sql.progress)
            .bind(done as i64)
            .bind(total as i64)
            .bind(name)
            .bind(run)
            .execute(executor)
            .await
            .map_err(q("record progress"))?;
        Ok(())
    }

    /// Stores an operation's checkpoint (JSON), on the pool or inside the operation's transaction.
    pub async fn checkpoint<'e, E>(
        &self,
        executor: E,
        name: &str,
        run: i64,
        json: &str,
    ) -> Result<(), LedgerError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        sqlx::query(&self.sql.checkpoint_write)
            .bind(json)
            .bind(name)
            .bind(run)
            .execute(executor)
            .await
            .map_err(q("store a checkpoint"))?;
        Ok(())
    }

    /// The operation's last checkpoint (JSON), if any.
    pub async fn last_checkpoint(
        &self,
        name: &str,
        run: i64,
    ) -> Result<Option<String>, LedgerError> {
        let row = sqlx::query(&self.sql.checkpoint_read)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a checkpoint"))?;
        match row {
            Some(r) => text(&r, 0).map_err(q("read a checkpoint")),
            None => Ok(None),
        }
    }

    /// Asks the running operation to stop at its next checkpoint. `false` if it is not running.
    pub async fn request_cancel(&self, name: &str) -> Result<bool, LedgerError> {
        let done = sqlx::query(&self.sql.cancel_request)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("request a cancellation"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether `cancel NAME` asked this run to stop.
    pub async fn cancel_requested(&self, name: &str, run: i64) -> Result<bool, LedgerError> {
        let v: Option<Option<i64>> = sqlx::query_scalar(&self.sql.cancel_state)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a cancellation"))?;
        Ok(v.flatten().unwrap_or(0) != 0)
    }

    /// Stores a deferred operation. Returns nothing: its id is internal.
    pub async fn defer(
        &self,
        handler: &str,
        payload: &str,
        due_at: i64,
        max_attempts: u32,
    ) -> Result<(), LedgerError> {
        sqlx::query(&self.sql.defer)
            .bind(handler)
            .bind(payload)
            .bind(due_at)
            .bind(i64::from(max_attempts.max(1)))
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(q("defer an operation"))?;
        Ok(())
    }

    /// Ids of due deferred operations (and of ones whose worker died), oldest first.
    pub async fn deferred_due(&self) -> Result<Vec<i64>, LedgerError> {
        let now = now_ms();
        sqlx::query_scalar(&self.sql.deferred_due)
            .bind(now)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read deferred operations"))
    }

    /// Claims one deferred operation for `lease`; `false` when another process has it.
    pub async fn claim_deferred(&self, id: i64, lease: Duration) -> Result<bool, LedgerError> {
        let now = now_ms();
        let done = sqlx::query(&self.sql.deferred_claim)
            .bind(now + lease.as_millis() as i64)
            .bind(id)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(q("claim a deferred operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps a running deferred operation's claim for another `lease`.
    pub async fn renew_deferred(&self, id: i64, lease: Duration) -> Result<bool, LedgerError> {
        let done = sqlx::query(&self.sql.deferred_renew)
            .bind(now_ms() + lease.as_millis() as i64)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("renew a deferred operation's claim"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a deferred operation's attempt: `completed`, `failed`, or `pending` again at `due_at`.
    pub async fn end_deferred(
        &self,
        id: i64,
        status: &str,
        due_at: i64,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        sqlx::query(&self.sql.deferred_end)
            .bind(status)
            .bind(due_at)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("record a deferred operation"))?;
        Ok(())
    }

    /// One deferred operation.
    pub async fn deferred_row(&self, id: i64) -> Result<Option<DeferredRow>, LedgerError> {
        let rows = sqlx::query(&self.sql.deferred_one)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read a deferred operation"))?;
        Ok(deferred_rows(&rows)?.into_iter().next())
    }

    /// Every deferred operation.
    pub async fn deferred(&self) -> Result<Vec<DeferredRow>, LedgerError> {
        let rows = sqlx::query(&self.sql.deferred_all)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read deferred operations"))?;
        deferred_rows(&rows)
    }

    /// One run of one operation.
    pub async fn row_of(&self, name: &str, run: i64) -> Result<Option<LedgerRow>, LedgerError> {
        let r = sqlx::query(&self.sql.row_of)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read the ledger"))?;
        r.as_ref()
            .map(row)
            .transpose()
            .map_err(q("decode a ledger row"))
    }

    /// The status of an operation run's job, if it has one.
    pub async fn job_status(&self, name: &str, run: i64) -> Result<Option<String>, LedgerError> {
        sqlx::query_scalar(&self.sql.job_status)
            .bind(name)
            .bind(run)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read a job"))
    }

    /// A PostgreSQL connection listening on `channel`.
    pub async fn listen(&self, channel: &str) -> Result<sqlx::postgres::PgListener, LedgerError> {
        let mut l = sqlx::postgres::PgListener::connect(&self.url)
            .await
            .map_err(|source| LedgerError::Connect {
                url: redact(&self.url),
                source,
            })?;
        l.listen(channel).await.map_err(q("listen for jobs"))?;
        Ok(l)
    }

    /// The channel a PostgreSQL dispatcher listens on for ended jobs.
    pub fn done_channel(&self) -> String {
        format!("{}jobs_done", self.prefix)
    }

    /// The channel PostgreSQL workers listen on.
    pub fn notify_channel(&self) -> String {
        format!("{}jobs", self.prefix)
    }

    /// The database URL (for a `LISTEN` connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Puts an operation's run on a queue (once: a queued or running job for it is left alone) and wakes the
    /// workers. `true` when a job was queued.
    pub async fn enqueue(&self, name: &str, run: i64, queue: &str) -> Result<bool, LedgerError> {
        let now = now_ms();
        let requeued = sqlx::query(&self.sql.job_requeue)
            .bind(now)
            .bind(name)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(q("queue an operation"))?;
        let queued = requeued.rows_affected() == 1
            || sqlx::query(&self.sql.job_insert)
                .bind(name)
                .bind(run)
                .bind(queue)
                .bind(now)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(q("queue an operation"))?
                .rows_affected()
                == 1;
        if queued && self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(self.notify_channel())
                .bind(queue)
                .execute(&self.pool)
                .await
                .map_err(q("wake the workers"))?;
        }
        Ok(queued)
    }

    /// Puts the jobs of workers whose lease ran out back on the queue. Returns how many.
    pub async fn rescue_jobs(&self) -> Result<u64, LedgerError> {
        Ok(sqlx::query(&self.sql.job_rescue)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(q("rescue jobs"))?
            .rows_affected())
    }

    /// Claims up to `limit` queued jobs for `worker`, holding them for `lease`.
    pub async fn take_jobs(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, LedgerError> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let limit = limit.max(1).to_string();
        let decode = |r: &AnyRow| -> Result<Job, sqlx::Error> {
            Ok(Job {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                run: r.try_get(2)?,
            })
        };
        if self.dialect != Dialect::MySql {
            let sql = self.sql.job_take_returning.replace("{limit}", &limit);
            let rows = sqlx::query(&sql)
                .bind(worker)
                .bind(until)
                .bind(queue)
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(q("claim jobs"))?;
            return rows
                .iter()
                .map(decode)
                .collect::<Result<_, _>>()
                .map_err(q("claim jobs"));
        }
        let mut tx = self.pool.begin().await.map_err(q("claim jobs"))?;
        let sql = self.sql.job_select.replace("{limit}", &limit);
        let rows = sqlx::query(&sql)
            .bind(queue)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("claim jobs"))?;
        let jobs: Vec<Job> = rows
            .iter()
            .map(decode)
            .collect::<Result<_, _>>()
            .map_err(q("claim jobs"))?;
        for j in &jobs {
            sqlx::query(&self.sql.job_take)
                .bind(worker)
                .bind(until)
                .bind(j.id)
                .execute(&mut *tx)
                .await
                .map_err(q("claim jobs"))?;
        }
        tx.commit().await.map_err(q("claim jobs"))?;
        Ok(jobs)
    }

    /// Renews a job's lease; `false` when it is no longer this worker's.
    pub async fn job_heartbeat(
        &self,
        id: i64,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, LedgerError> {
        let done = sqlx::query(&self.sql.job_heartbeat)
            .bind(now_ms() + lease.as_millis() as i64)
            .bind(id)
            .bind(worker)
            .execute(&self.pool)
            .await
            .map_err(q("renew a job's lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a job: `done`, `failed`, or `queued` again (released at shutdown).
    pub async fn end_job(
        &self,
        id: i64,
        worker: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        let postgres = self.dialect == Dialect::Postgres;
        let query = sqlx::query(if postgres {
            &self.sql.job_end_notify
        } else {
            &self.sql.job_end
        })
        .bind(status)
        .bind(now_ms())
        .bind(error)
        .bind(id)
        .bind(worker);
        let query = if postgres {
            query.bind(self.done_channel()).bind(status)
        } else {
            query
        };
        query.execute(&self.pool).await.map_err(q("end a job"))?;
        Ok(())
    }

    /// How many jobs of a queue are in each status.
    pub async fn job_counts(
        &self,
        queue: &str,
    ) -> Result<std::collections::HashMap<String, i64>, LedgerError> {
        let rows = sqlx::query(&self.sql.job_counts)
            .bind(queue)
            .fetch_all(&self.pool)
            .await
            .map_err(q("count jobs"))?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("count jobs"))
    }

    /// Records a pending operation as `scheduled`, due at `due_at` (Unix milliseconds).
    pub async fn schedule(&self, name: &str, run: i64, due_at: i64) -> Result<bool, LedgerError> {
        let done = sqlx::query(&self.sql.schedule)
            .bind(due_at)
            .bind(name)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(q("schedule an operation"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes every run of an operation, its recorded errors and its ended jobs, so that it runs again afresh.
    pub async fn forget(&self, name: &str) -> Result<u64, LedgerError> {
        // Its rows, its recorded errors and its ended jobs go together: `errors NAME` starts empty again.
        let mut tx = self.pool.begin().await.map_err(q("forget an operation"))?;
        let removed = sqlx::query(&self.sql.forget)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("forget an operation"))?
            .rows_affected();
        for sql in [&self.sql.forget_errors, &self.sql.forget_jobs] {
            sqlx::query(sql)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(q("forget an operation"))?;
        }
        tx.commit().await.map_err(q("forget an operation"))?;
        Ok(removed)
    }

    /// Recorded errors, of one operation or of all.
    pub async fn errors(&self, name: Option<&str>) -> Result<Vec<ErrorRecord>, LedgerError> {
        let rows = match name {
            Some(n) => {
                sqlx::query(&self.sql.errors_of)
                    .bind(n)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query(&self.sql.errors_all)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(q("read errors"))?;
        rows.iter()
            .map(|r| {
                Ok(ErrorRecord {
                    name: r.try_get(0)?,
                    run: r.try_get(1)?,
                    attempt: r.try_get(2)?,
                    message: text(r, 3)?.unwrap_or_default(),
                    chain: text(r, 4)?.unwrap_or_default(),
                    created_at: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("decode an error record"))
    }

    /// Takes the global `--isolate` lock: an advisory lock (PostgreSQL), `GET_LOCK` (MySQL / MariaDB) or a lock
    /// row (SQLite). `None` when another process holds it.
    pub async fn try_lock(&self, owner: &Owner) -> Result<Option<IsolationLock>, LedgerError> {
        let key = format!("{}isolate", self.prefix);
        match self.dialect {
            Dialect::Postgres => {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(q("take the isolation lock"))?;
                let id = sequencer_core::meta::checksum(key.as_bytes()) as i64;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(q("take the isolation lock"))?;
                Ok(got.then(|| IsolationLock {
                    ledger: self.clone(),
                    conn: Some(conn),
                    key,
                    owner: String::new(),
                }))
            }
            Dialect::MySql => {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(q("take the isolation lock"))?;
                let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
                    .bind(key.as_str())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(q("take the isolation lock"))?;
                Ok((got == Some(1)).then(|| IsolationLock {
                    ledger: self.clone(),
                    conn: Some(conn),
                    key,
                    owner: String::new(),
                }))
            }
            Dialect::Sqlite => {
                let who = format!("{}:{}", owner.host, owner.pid);
                let now = now_ms();
                // A holder on this host whose process died leaves a stale row: take it over.
                let stale: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT owner FROM {}locks WHERE name = ?",
                    self.prefix
                ))
                .bind(key.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(q("take the isolation lock"))?;
                let expire_now = stale
                    .as_deref()
                    .and_then(|o| o.rsplit_once(':'))
                    .is_some_and(|(h, p)| {
                        h == owner.host
                            && p.parse::<i64>()
                                .is_ok_and(|p| p != owner.pid && !process_alive(p))
                    });
                let threshold = if expire_now { i64::MAX } else { now };
                let done = sqlx::query(&self.sql.lock_sqlite)
                    .bind(key.as_str())
                    .bind(who.as_str())
                    .bind(now + LOCK_TTL.as_millis() as i64)
                    .bind(threshold)
                    .execute(&self.pool)
                    .await
                    .map_err(q("take the isolation lock"))?;
                Ok((done.rows_affected() == 1).then(|| IsolationLock {
                    ledger: self.clone(),
                    conn: None,
                    key,
                    owner: who,
                }))
            }
        }
    }
}

/// How long a SQLite lock row lives without renewal.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// The `--isolate` lock; released by [`IsolationLock::release`] (or when the process dies).
pub struct IsolationLock {
    ledger: Ledger,
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    key: String,
    owner: String,
}

impl IsolationLock {
    /// Keeps a SQLite lock row alive; a no-op on servers, whose locks live as long as the connection.
    pub async fn renew(&mut self) -> Result<(), LedgerError> {
        if self.conn.is_none() {
            sqlx::query(&self.ledger.sql.renew_lock_sqlite)
                .bind(now_ms() + LOCK_TTL.as_millis() as i64)
                .bind(self.key.as_str())
                .bind(self.owner.as_str())
                .execute(&self.ledger.pool)
                .await
                .map_err(q("renew the isolation lock"))?;
        }
        Ok(())
    }

    /// Releases the lock.
    pub async fn release(mut self) -> Result<(), LedgerError> {
        match self.conn.take() {
            Some(mut conn) => {
                let sql = if self.ledger.dialect == Dialect::Postgres {
                    "SELECT pg_advisory_unlock($1)"
                } else {
                    "SELECT RELEASE_LOCK(?)"
                };
                let query = sqlx::query(sql);
                let query = if self.ledger.dialect == Dialect::Postgres {
                    query.bind(sequencer_core::meta::checksum(self.key.as_bytes()) as i64)
                } else {
                    query.bind(self.key.clone())
                };
                query
                    .execute(&mut *conn)
                    .await
                    .map_err(q("release the isolation lock"))?;
            }
            None => {
                sqlx::query(&self.ledger.sql.unlock_sqlite)
                    .bind(self.key.as_str())
                    .bind(self.owner.as_str())
                    .execute(&self.ledger.pool)
                    .await
                    .map_err(q("release the isolation lock"))?;
            }
        }
        Ok(())
    }
}

/// What a claim writes.
#[derive(Debug)]
pub struct Claim<'a> {
    /// Ledger name.
    pub name: &'a str,
    /// Which run.
    pub run: i64,
    /// The batch claiming it.
    pub batch: i64,
    /// Who claims it.
    pub owner: &'a Owner,
    /// How long the claim holds without a heartbeat.
    pub lease: Duration,
    /// Checksum of the source about to run, hex.
    pub checksum: &'a str,
    /// Also claim an `interrupted` row (the operation is idempotent or retryable).
    pub reclaim_interrupted: bool,
    /// Also claim a `scheduled` row (it is due).
    pub due_scheduled: bool,
}

/// What the end of a run writes.
#[derive(Debug)]
pub struct Finish<'a> {
    /// Ledger name.
    pub name: &'a str,
    /// Which run.
    pub run: i64,
    /// `completed`, `failed` or `skipped`.
    pub status: Status,
    /// How long it ran.
    pub duration: Duration,
    /// Why it was skipped.
    pub skip_reason: Option<&'a str>,
    /// The last error.
    pub error: Option<&'a str>,
    /// The process that claimed it: only its own claim is ended.
    pub owner: &'a Owner,
}

fn row(r: &AnyRow) -> Result<LedgerRow, sqlx::Error> {
    let status: String = r.try_get(4)?;
    Ok(LedgerRow {
        name: r.try_get(0)?,
        run: r.try_get(1)?,
        timestamp: r.try_get(2)?,
        batch: r.try_get(3)?,
        status: status
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        attempts: r.try_get(5)?,
        started_at: r.try_get(6)?,
        finished_at: r.try_get(7)?,
        duration_ms: r.try_get(8)?,
        lease_until: r.try_get(9)?,
        host: r.try_get(10)?,
        pid: r.try_get(11)?,
        actor: r.try_get(12)?,
        checksum: r.try_get(13)?,
        skip_reason: text(r, 14)?,
        last_error: text(r, 15)?,
        due_at: r.try_get(16)?,
        progress_done: r.try_get(17)?,
        progress_total: r.try_get(18)?,
        cancel_requested: r.try_get::<Option<i64>, _>(19)?.unwrap_or(0) != 0,
    })
}

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
                status: r.try_get(6)?,
                last_error: text(r, 7)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(q("decode a deferred operation"))
}

/// A TEXT column. Through sqlx's `Any` driver MySQL / MariaDB report TEXT as a blob type, so that case is read
/// as bytes (always UTF-8: the ledger only writes strings).
fn text(r: &AnyRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    match r.try_get::<Option<String>, _>(i) {
        Ok(v) => Ok(v),
        Err(_) => Ok(r
            .try_get::<Option<Vec<u8>>, _>(i)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())),
    }
}

/// Whether a process of this host is alive (Linux: `/proc/PID`; elsewhere assumed alive, the lease decides).
pub fn process_alive(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod transient_tests {
    use super::transient;

    #[test]
    fn connection_trouble_is_retried_and_wrong_statements_are_not() {
        assert!(transient(&sqlx::Error::PoolTimedOut));
        assert!(transient(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(transient(&sqlx::Error::WorkerCrashed));
        assert!(!transient(&sqlx::Error::RowNotFound));
        assert!(!transient(&sqlx::Error::PoolClosed));
        assert!(!transient(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
