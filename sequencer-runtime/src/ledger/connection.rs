//! [`Ledger`]: the connection pool, its dialect and table prefix, and who is running.

use std::str::FromStr;
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
}
