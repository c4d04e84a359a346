//! The ledger's native pool (sqlx's `PgPool`, `MySqlPool` or `SqlitePool` beside its `AnyPool`), a `transaction`
//! operation's transaction of either kind, and [`Conn`]: where the few ledger statements that run inside such a
//! transaction (progress, checkpoint, the operation's end) are executed, on any of those connections.

use std::time::Duration;

#[cfg(feature = "mysql")]
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlPool};
use sqlx::pool::PoolOptions;
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, Postgres};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqlitePool};
#[cfg(feature = "sqlite")]
use sqlx::Executor;
use sqlx::{Any, AnyConnection, AnyPool, Pool, Transaction};

use super::connection::Ledger;
use super::dialect::Dialect;
use super::error::{q, LedgerError};

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!(
    "sequencer needs a database backend: enable at least one of the features `sqlite`, `postgres`, `mysql`"
);

/// What every SQLite connection of the ledger runs first, native or not: WAL survives a process crash;
/// `busy_timeout` makes concurrent writers wait, not fail.
pub(super) const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000;";

/// The ledger database's pool through its own sqlx driver, which decodes and encodes every type sqlx supports
/// for it (`TIMESTAMPTZ`, `NUMERIC`, `UUID`, `JSONB`, arrays, … with sqlx's features for them), where the
/// `AnyPool` only knows integers, floats, booleans, text and bytes. Connected lazily: it opens no connection
/// until used, then up to the ledger's `max_connections` of its own.
#[derive(Debug, Clone)]
pub enum NativePool {
    /// A PostgreSQL ledger.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(PgPool),
    /// A MySQL or MariaDB ledger.
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    MySql(MySqlPool),
    /// A SQLite ledger (the same settings as the ledger's own connections: WAL, a 30 s busy timeout).
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(SqlitePool),
}

impl NativePool {
    /// A lazily connected pool on `url`, of `dialect`'s driver (compiled in: [`Dialect::compiled`] was checked).
    pub(super) fn connect_lazy(
        url: &str,
        dialect: Dialect,
        max_connections: u32,
    ) -> Result<NativePool, sqlx::Error> {
        fn options<DB: sqlx::Database>(max: u32) -> PoolOptions<DB> {
            PoolOptions::new()
                .max_connections(max.max(1))
                .acquire_timeout(Duration::from_secs(10))
        }
        #[allow(unreachable_patterns)]
        Ok(match dialect {
            #[cfg(feature = "postgres")]
            Dialect::Postgres => NativePool::Postgres(
                options(max_connections).connect_lazy_with(url.parse::<PgConnectOptions>()?),
            ),
            #[cfg(feature = "mysql")]
            Dialect::MySql => NativePool::MySql(
                options(max_connections).connect_lazy_with(url.parse::<MySqlConnectOptions>()?),
            ),
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => NativePool::Sqlite(
                options::<Sqlite>(max_connections)
                    .after_connect(|conn: &mut SqliteConnection, _| {
                        Box::pin(async move {
                            conn.execute(SQLITE_PRAGMAS).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(url.parse::<SqliteConnectOptions>()?),
            ),
            other => return Err(sqlx::Error::Configuration(other.missing_feature().into())),
        })
    }

    /// The backend.
    pub fn dialect(&self) -> Dialect {
        match self {
            #[cfg(feature = "postgres")]
            NativePool::Postgres(_) => Dialect::Postgres,
            #[cfg(feature = "mysql")]
            NativePool::MySql(_) => Dialect::MySql,
            #[cfg(feature = "sqlite")]
            NativePool::Sqlite(_) => Dialect::Sqlite,
            // No backend: the build stops at the `compile_error!` above; this keeps its message the only one.
            #[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
            _ => unreachable!(),
        }
    }
}

/// A database whose transaction a `transaction` operation can hold: `sqlx::Any` (`ctx.tx()`, portable SQL) or
/// the ledger backend's own (`ctx.postgres_tx()`, `ctx.mysql_tx()`, `ctx.sqlite_tx()`).
pub(crate) trait OperationDb: sqlx::Database {
    /// The `ctx` method that gives this transaction, for messages.
    const ACCESSOR: &'static str;
    /// The backend it is bound to (`None`: `sqlx::Any`, any backend).
    const BACKEND: Option<Dialect>;
    /// The pool its transactions begin on, if the ledger's backend is this database.
    fn pool(ledger: &Ledger) -> Option<&Pool<Self>>;
    /// An open transaction of this database.
    fn get(tx: &OpTx) -> Option<&Transaction<'static, Self>>;
    /// An open transaction of this database.
    fn get_mut(tx: &mut OpTx) -> Option<&mut Transaction<'static, Self>>;
    /// The slot holding `tx`.
    fn wrap(tx: Transaction<'static, Self>) -> OpTx;
}

/// [`OperationDb`] for one database: its pool on a ledger, and its place in [`OpTx`].
macro_rules! operation_db {
    ($db:ty, $variant:ident, $accessor:literal, $backend:expr, |$ledger:ident| $pool:expr) => {
        impl OperationDb for $db {
            const ACCESSOR: &'static str = $accessor;
            const BACKEND: Option<Dialect> = $backend;
            #[allow(unreachable_patterns)]
            fn pool($ledger: &Ledger) -> Option<&Pool<Self>> {
                $pool
            }
            fn get(tx: &OpTx) -> Option<&Transaction<'static, Self>> {
                match tx {
                    OpTx::$variant(tx) => Some(tx),
                    _ => None,
                }
            }
            fn get_mut(tx: &mut OpTx) -> Option<&mut Transaction<'static, Self>> {
                match tx {
                    OpTx::$variant(tx) => Some(tx),
                    _ => None,
                }
            }
            fn wrap(tx: Transaction<'static, Self>) -> OpTx {
                OpTx::$variant(tx)
            }
        }
    };
}

operation_db!(Any, Any, "tx", None, |ledger| Some(&ledger.pool));
#[cfg(feature = "postgres")]
operation_db!(
    Postgres,
    Postgres,
    "postgres_tx",
    Some(Dialect::Postgres),
    |ledger| match &ledger.native {
        NativePool::Postgres(pool) => Some(pool),
        _ => None,
    }
);
#[cfg(feature = "mysql")]
operation_db!(
    MySql,
    MySql,
    "mysql_tx",
    Some(Dialect::MySql),
    |ledger| match &ledger.native {
        NativePool::MySql(pool) => Some(pool),
        _ => None,
    }
);
#[cfg(feature = "sqlite")]
operation_db!(
    Sqlite,
    Sqlite,
    "sqlite_tx",
    Some(Dialect::Sqlite),
    |ledger| match &ledger.native {
        NativePool::Sqlite(pool) => Some(pool),
        _ => None,
    }
);

/// A `transaction` operation's transaction: begun by the first `ctx.tx()` (or `ctx.postgres_tx()`, …), of that
/// kind, and taken by the executor when the attempt ends.
pub(crate) enum OpTx {
    /// Nothing asked for it yet.
    NotBegun,
    /// `ctx.tx()`.
    Any(Transaction<'static, Any>),
    /// `ctx.postgres_tx()`.
    #[cfg(feature = "postgres")]
    Postgres(Transaction<'static, Postgres>),
    /// `ctx.mysql_tx()`.
    #[cfg(feature = "mysql")]
    MySql(Transaction<'static, MySql>),
    /// `ctx.sqlite_tx()`.
    #[cfg(feature = "sqlite")]
    Sqlite(Transaction<'static, Sqlite>),
    /// Taken by the executor: the attempt is over.
    Ended,
}

impl OpTx {
    /// The open transaction's connection, for the ledger's own statements; `None` if none is open.
    pub(crate) fn conn(&mut self) -> Option<Conn<'_>> {
        match self {
            OpTx::Any(tx) => Some(Conn::Any(tx)),
            #[cfg(feature = "postgres")]
            OpTx::Postgres(tx) => Some(Conn::Postgres(tx)),
            #[cfg(feature = "mysql")]
            OpTx::MySql(tx) => Some(Conn::MySql(tx)),
            #[cfg(feature = "sqlite")]
            OpTx::Sqlite(tx) => Some(Conn::Sqlite(tx)),
            OpTx::NotBegun | OpTx::Ended => None,
        }
    }

    /// The accessor that opened it, for messages.
    pub(crate) fn accessor(&self) -> Option<&'static str> {
        match self {
            OpTx::Any(_) => Some(Any::ACCESSOR),
            #[cfg(feature = "postgres")]
            OpTx::Postgres(_) => Some(Postgres::ACCESSOR),
            #[cfg(feature = "mysql")]
            OpTx::MySql(_) => Some(MySql::ACCESSOR),
            #[cfg(feature = "sqlite")]
            OpTx::Sqlite(_) => Some(Sqlite::ACCESSOR),
            OpTx::NotBegun | OpTx::Ended => None,
        }
    }

    /// Commits an open transaction (nothing to do if none was begun).
    pub(crate) async fn commit(self) -> Result<(), LedgerError> {
        match self {
            OpTx::Any(tx) => tx.commit().await,
            #[cfg(feature = "postgres")]
            OpTx::Postgres(tx) => tx.commit().await,
            #[cfg(feature = "mysql")]
            OpTx::MySql(tx) => tx.commit().await,
            #[cfg(feature = "sqlite")]
            OpTx::Sqlite(tx) => tx.commit().await,
            OpTx::NotBegun | OpTx::Ended => Ok(()),
        }
        .map_err(q("commit the operation's transaction"))
    }
}

/// Where a ledger statement runs: the pool, or the connection of a `transaction` operation's transaction of
/// either kind (`&mut *tx` of an Any transaction converts, as does the pool).
pub enum Conn<'c> {
    /// The ledger's pool.
    Pool(&'c AnyPool),
    /// An `sqlx::Any` connection.
    Any(&'c mut AnyConnection),
    /// A PostgreSQL connection.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(&'c mut PgConnection),
    /// A MySQL / MariaDB connection.
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    MySql(&'c mut MySqlConnection),
    /// A SQLite connection.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(&'c mut SqliteConnection),
}

impl<'c> From<&'c AnyPool> for Conn<'c> {
    fn from(pool: &'c AnyPool) -> Self {
        Conn::Pool(pool)
    }
}

impl<'c> From<&'c mut AnyConnection> for Conn<'c> {
    fn from(conn: &'c mut AnyConnection) -> Self {
        Conn::Any(conn)
    }
}

/// A database whose transaction on the ledger's database can carry a checkpoint, so that a batch's writes and
/// its checkpoint commit together ([`Ctx::commit_with_checkpoint`](crate::Ctx::commit_with_checkpoint)):
/// `sqlx::Any` (a transaction of `ctx.pool()`), `Postgres` (`ctx.postgres()`), `MySql` and `Sqlite`.
/// Implemented for these four only.
pub trait CheckpointDb: sqlx::Database + sealed::Sealed {
    /// The connection as a [`Conn`], for the ledger's statement.
    #[doc(hidden)]
    fn conn(conn: &mut Self::Connection) -> Conn<'_>;
}

mod sealed {
    /// Only the databases the ledger runs on carry checkpoints.
    pub trait Sealed {}
}

macro_rules! checkpoint_db {
    ($db:ty, $variant:ident) => {
        impl sealed::Sealed for $db {}
        impl CheckpointDb for $db {
            fn conn(conn: &mut Self::Connection) -> Conn<'_> {
                Conn::$variant(conn)
            }
        }
    };
}

checkpoint_db!(Any, Any);
#[cfg(feature = "postgres")]
checkpoint_db!(Postgres, Postgres);
#[cfg(feature = "mysql")]
checkpoint_db!(MySql, MySql);
#[cfg(feature = "sqlite")]
checkpoint_db!(Sqlite, Sqlite);

/// A value bound to a statement run through [`Conn::execute`].
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(Option<&'a str>),
}

/// `query` with `args` bound, in order.
macro_rules! bound {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(*v),
            };
        }
        query
    }};
}

impl Conn<'_> {
    /// The same connection, borrowed again: for a second statement on it.
    pub(crate) fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Pool(pool) => Conn::Pool(pool),
            Conn::Any(c) => Conn::Any(c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => Conn::Postgres(c),
            #[cfg(feature = "mysql")]
            Conn::MySql(c) => Conn::MySql(c),
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => Conn::Sqlite(c),
        }
    }

    /// Runs a statement built by [`Dialect::sql`]; the number of rows it changed.
    pub(crate) async fn execute(self, sql: &str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Conn::Pool(pool) => bound!(sqlx::query(sql), args)
                .execute(pool)
                .await?
                .rows_affected(),
            Conn::Any(conn) => bound!(sqlx::query(sql), args)
                .execute(conn)
                .await?
                .rows_affected(),
            #[cfg(feature = "postgres")]
            Conn::Postgres(conn) => bound!(sqlx::query(sql), args)
                .execute(conn)
                .await?
                .rows_affected(),
            #[cfg(feature = "mysql")]
            Conn::MySql(conn) => bound!(sqlx::query(sql), args)
                .execute(conn)
                .await?
                .rows_affected(),
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(conn) => bound!(sqlx::query(sql), args)
                .execute(conn)
                .await?
                .rows_affected(),
        })
    }
}

impl Ledger {
    /// The ledger database's pool through its own driver (see [`NativePool`]): operations get it from
    /// `ctx.postgres()`, `ctx.mysql()` or `ctx.sqlite()`.
    pub fn native(&self) -> &NativePool {
        &self.native
    }

    /// Begins a `transaction` operation's transaction of kind `DB` (see [`Ledger::begin_operation`]); an error
    /// naming the ledger's backend if `DB` is another one.
    pub(crate) async fn begin_operation_as<DB: OperationDb>(
        &self,
    ) -> Result<Transaction<'static, DB>, crate::result::Error> {
        let Some(pool) = DB::pool(self) else {
            anyhow::bail!(
                "`ctx.{}()` needs a ledger of its backend; this ledger is {}",
                DB::ACCESSOR,
                self.dialect.name()
            )
        };
        Ok(self.begin_on(pool).await?)
    }

    /// Begins a `transaction` operation's transaction on `pool`. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`, waiting for it as for any write): a deferred transaction that reads and then writes
    /// fails with `SQLITE_BUSY_SNAPSHOT` when another process wrote in between, which no wait can cure.
    pub(super) async fn begin_on<DB: sqlx::Database>(
        &self,
        pool: &Pool<DB>,
    ) -> Result<Transaction<'static, DB>, LedgerError> {
        let begun = match self.dialect {
            Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres | Dialect::MySql => pool.begin().await,
        };
        begun.map_err(q("begin the operation's transaction"))
    }
}
