//! [`Ledger`]: the connection pool, its dialect and table prefix, and who is running.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

use super::dialect::Dialect;
use super::error::{q, LedgerError};
use super::native::{NativePool, SQLITE_PRAGMAS};

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
    "checkpoints",
    "audit",
    "logs",
    "job_batches",
    "batch_members",
    "progress_samples",
];

/// The ledger pool's size unless set with `SequencerBuilder::max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 12;

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

/// This process's pid namespace (Linux: `pid:[inode]`; empty elsewhere). Two containers that share a host name
/// have different ones, so a pid read from a claim is only looked up in `/proc` where the namespace is the same.
pub fn pid_namespace() -> &'static str {
    static NS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NS.get_or_init(|| {
        std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

/// A new random claim token: every claim carries one, and every later write of the claim presents it, so a
/// claim is never mistaken for another with the same host and pid.
pub fn new_claim_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Whether a process of this host is alive (Linux: `/proc/PID`; elsewhere assumed alive, the lease decides).
pub fn process_alive(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// The ledger database: [`Sequencer::ledger`](crate::Sequencer::ledger) gives the one a sequencer uses. Most
/// methods are the executor's building blocks; [`Ledger::rows`], [`Ledger::errors`] and [`Ledger::deferred`]
/// read what was recorded, [`Ledger::pool`] is the `sqlx::AnyPool` operations get from `ctx.pool()`, and
/// [`Ledger::native`] the backend's own pool they get from `ctx.postgres()`, `ctx.mysql()` or `ctx.sqlite()`.
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
    pub(super) pool: AnyPool,
    pub(super) native: NativePool,
    pub(super) dialect: Dialect,
    pub(super) prefix: String,
    pub(super) url: String,
    /// SQLite only: one connection that claims runs and records their ends, in turn (see [`Ledger::run_writes`]).
    pub(super) run_writer: Option<AnyPool>,
    /// The text of the statements every operation runs, built once (see [`RunStatements`]).
    pub(super) statements: Arc<RunStatements>,
}

/// The text of the statements each operation runs (its claim and its end), built on first use and kept: they
/// depend only on the dialect and the table prefix. Each is written beside the method that runs it.
#[derive(Debug, Default)]
pub(super) struct RunStatements {
    /// [`Ledger::claim`].
    pub(super) claim: OnceLock<String>,
    /// [`Ledger::finish`].
    pub(super) finish: OnceLock<String>,
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
        // The prefix is written into every statement: only a plain identifier is.
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(LedgerError::BadPrefix(prefix.to_owned()));
        }
        sqlx::any::install_default_drivers();
        let dialect =
            Dialect::of_url(url).ok_or_else(|| LedgerError::UnsupportedUrl(redact(url)))?;
        if !dialect.compiled() {
            return Err(LedgerError::MissingBackend {
                url: redact(url),
                message: dialect.missing_feature(),
            });
        }
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
        // SQLite: the claims and ends of runs take turns on one connection of their own. A SQLite connection
        // drops its page cache whenever another connection wrote since its last statement: spread over the
        // pool's connections (which it hands out in turn), every claim and every end read the table's pages
        // again (a sixth of the instructions of a no-op operation). Writes to one SQLite database are serial
        // anyway; the wait for this connection is bounded above SQLite's own busy timeout (30 s). (Not for a
        // database in memory: each connection to `sqlite::memory:` opens a database of its own.)
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let run_writer = (dialect == Dialect::Sqlite && !in_memory).then(|| {
            AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(options.clone())
        });
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        conn.execute(SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| LedgerError::Connect {
                url: redact(&url),
                source,
            })?;
        // Beside it, the backend's own pool for operations (`ctx.postgres()`, …): no connection until used.
        let native =
            NativePool::connect_lazy(&url, dialect, max_connections).map_err(connect_error)?;
        let ledger = Ledger {
            pool,
            native,
            dialect,
            prefix: prefix.to_owned(),
            url: url.clone(),
            run_writer,
            statements: Arc::default(),
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

    /// The database URL (for a `LISTEN` connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One of [`TABLES`], with the prefix: what a statement names.
    /// The database's clock, Unix milliseconds: what leases, lock expiries and due times are measured by, so that
    /// hosts whose clocks disagree agree on them.
    pub async fn db_now(&self) -> Result<i64, LedgerError> {
        let sql = format!("SELECT {}", self.dialect.now());
        sqlx::query_scalar(&sql)
            .fetch_one(&self.pool)
            .await
            .map_err(q("read the database's clock"))
    }

    /// Begins a `transaction` operation's transaction of `sqlx::Any` (what `ctx.tx()` gives). On SQLite it takes
    /// the write lock at once (`BEGIN IMMEDIATE`), as every operation's transaction does.
    pub async fn begin_operation(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, LedgerError> {
        self.begin_on(&self.pool).await
    }

    /// Where runs are claimed and their ends recorded: on SQLite one connection of their own (so that it keeps
    /// its page cache from one operation to the next), elsewhere the pool.
    pub(super) fn run_writes(&self) -> &AnyPool {
        self.run_writer.as_ref().unwrap_or(&self.pool)
    }

    pub(super) fn table(&self, name: &str) -> String {
        debug_assert!(TABLES.contains(&name), "`{name}` is not a ledger table");
        format!("{}{name}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::{Dialect, Ledger, LedgerError};

    /// A URL of a backend this build lacks is refused before any connection, naming the feature to enable.
    /// (`.ci/run` runs this suite with the SQLite backend alone, where the other two are missing.)
    #[tokio::test]
    async fn a_backend_not_compiled_in_is_refused_with_its_feature() {
        let urls = [
            (Dialect::Sqlite, "sqlite://missing-backend.db"),
            (Dialect::Postgres, "postgres://nobody@127.0.0.1:1/none"),
            (Dialect::MySql, "mysql://nobody@127.0.0.1:1/none"),
        ];
        for (dialect, url) in urls {
            if dialect.compiled() {
                continue;
            }
            match Ledger::connect(url, "seq_").await {
                Err(e @ LedgerError::MissingBackend { .. }) => {
                    let message = e.to_string();
                    let feature = format!("features = [\"{}\"]", dialect.feature());
                    assert!(message.contains(&feature), "{message}");
                    assert!(message.contains(dialect.name()), "{message}");
                }
                Err(other) => panic!("{url}: expected MissingBackend, got {other}"),
                Ok(_) => panic!("{url}: connected without its driver"),
            }
        }
    }

    /// SQLite: the claims and ends of runs are all written on one connection, so that it keeps its page cache
    /// from one run to the next (a connection drops it when another one wrote since). `PRAGMA data_version`
    /// changes on a connection when another connection committed: read on the connection runs are written on,
    /// it stays the same while only that connection writes.
    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn sqlite_runs_are_claimed_and_ended_on_one_connection() {
        use crate::ledger::{new_claim_token, Claim, Finish, Owner, Status};
        use std::time::Duration;

        let dir = std::env::temp_dir().join(format!("seq-run-writes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let url = format!("sqlite://{}", dir.join("ledger.db").display());
        let ledger = Ledger::connect(&url, "rw_").await.expect("connect");
        let names = ["rw_a", "rw_b", "rw_c", "rw_d"];
        let pending: Vec<(&str, i64)> = names.iter().map(|n| (*n, 0)).collect();
        ledger.insert_pending(&pending).await.expect("pending rows");
        // The pool holds several idle connections, as it does once operations ran side by side.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(ledger.pool().acquire().await.expect("a connection"));
        }
        drop(held);
        let data_version = || async {
            sqlx::query_scalar::<_, i64>("PRAGMA data_version")
                .fetch_one(ledger.run_writes())
                .await
                .expect("data_version")
        };
        let before = data_version().await;
        let owner = Owner::this_process(None);
        for name in names {
            let token = new_claim_token();
            let claim = Claim {
                name,
                run: 0,
                batch: 1,
                owner: &owner,
                lease: Duration::from_secs(30),
                checksum: "0",
                reclaim_interrupted: false,
                due_scheduled: false,
                token: &token,
                failed_before: i64::MAX,
                bounded: None,
            };
            assert!(ledger.claim(&claim).await.expect("claim"), "{name} claimed");
            let end = Finish {
                token: &token,
                name,
                run: 0,
                status: Status::Completed,
                duration: Duration::ZERO,
                skip_reason: None,
                error: None,
            };
            assert!(
                ledger.finish_on_pool(&end).await.expect("end"),
                "{name} ended"
            );
            assert_eq!(
                data_version().await,
                before,
                "{name}: another connection wrote a claim or an end"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
