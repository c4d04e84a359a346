//! A `transaction` operation's transaction, of `sqlx::Any` or of the ledger backend's own driver, and the
//! backend's own pool.

use std::marker::PhantomData;

use sqlx::{Any, Transaction};
#[cfg(feature = "mysql")]
use sqlx::{MySql, MySqlPool};
#[cfg(feature = "postgres")]
use sqlx::{PgPool, Postgres};
#[cfg(feature = "sqlite")]
use sqlx::{Sqlite, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};

use super::Ctx;
use crate::ledger::dialect::Dialect;
use crate::ledger::native::{NativePool, OpTx, OperationDb};
use crate::ledger::Ledger;
use crate::result::Result;

/// A `transaction` operation's transaction, begun on the ledger when the operation first asks for it.
pub(super) struct TxSlot {
    ledger: Ledger,
    tx: Mutex<OpTx>,
}

impl TxSlot {
    pub(super) fn new(ledger: Ledger) -> TxSlot {
        TxSlot {
            ledger,
            tx: Mutex::new(OpTx::NotBegun),
        }
    }
}

/// The `ctx` method giving a backend's pool; its transaction's is this with `_tx`.
fn accessor(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "postgres",
        Dialect::MySql => "mysql",
        Dialect::Sqlite => "sqlite",
    }
}

impl Ctx {
    /// The error of asking for a backend other than the ledger's: what the ledger is, and what to call instead.
    fn wrong_backend(&self, wanted: Dialect, tx: bool) -> crate::result::Error {
        let actual = self.native.dialect();
        let (suffix, kind, portable) = if tx {
            ("_tx", "transaction", "tx")
        } else {
            ("", "pool", "pool")
        };
        anyhow::anyhow!(
            "`ctx.{}{suffix}()` needs a {} ledger; `{}` runs on a {} ledger, whose {kind} is `ctx.{}{suffix}()` (or `ctx.{portable}()`, for SQL that runs on every backend)",
            accessor(wanted),
            wanted.name(),
            self.meta.name,
            actual.name(),
            accessor(actual),
        )
    }

    /// The ledger's PostgreSQL pool (`sqlx::PgPool`): every type sqlx decodes for PostgreSQL (`TIMESTAMPTZ`,
    /// `NUMERIC`, `UUID`, `JSONB`, arrays, … with sqlx's features for them, enabled in the application's own
    /// `sqlx` dependency), where [`Ctx::pool`] knows only the types common to all backends. An error on another
    /// backend, naming it. Connected lazily, beside the ledger's `AnyPool`: it opens a connection only when used.
    /// In a `transaction` operation, [`Ctx::postgres_tx`] is the transaction that commits with the ledger row.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(&self) -> Result<&PgPool> {
        #[allow(unreachable_patterns)]
        match &self.native {
            NativePool::Postgres(pool) => Ok(pool),
            _ => Err(self.wrong_backend(Dialect::Postgres, false)),
        }
    }

    /// The ledger's MySQL / MariaDB pool (`sqlx::MySqlPool`), as [`Ctx::postgres`] is PostgreSQL's.
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    pub fn mysql(&self) -> Result<&MySqlPool> {
        #[allow(unreachable_patterns)]
        match &self.native {
            NativePool::MySql(pool) => Ok(pool),
            _ => Err(self.wrong_backend(Dialect::MySql, false)),
        }
    }

    /// The ledger's SQLite pool (`sqlx::SqlitePool`, with the ledger's settings: WAL, a 30 s busy timeout), as
    /// [`Ctx::postgres`] is PostgreSQL's.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(&self) -> Result<&SqlitePool> {
        #[allow(unreachable_patterns)]
        match &self.native {
            NativePool::Sqlite(pool) => Ok(pool),
            _ => Err(self.wrong_backend(Dialect::Sqlite, false)),
        }
    }

    /// The transaction of a `transaction` operation, as `sqlx::Any` (portable SQL): its writes commit together
    /// with the operation's ledger row, or not at all. Begun by the first call; later calls return it again.
    /// An attempt's transaction is of one kind: once begun by [`Ctx::postgres_tx`] (or the MySQL or SQLite one),
    /// this is an error.
    ///
    /// ```
    /// # use sequencer_runtime::{Ctx, Result};
    /// # async fn op(ctx: &Ctx) -> Result<()> {
    /// let mut tx = ctx.tx().await?;
    /// sqlx::query("UPDATE accounts SET plan = 'free' WHERE plan IS NULL").execute(&mut **tx).await?;
    /// # Ok(()) }
    /// ```
    pub async fn tx(&self) -> Result<TxGuard<'_>> {
        self.open_tx::<Any>().await
    }

    /// The transaction of a `transaction` operation on a PostgreSQL ledger, as `sqlx::Transaction<Postgres>`:
    /// every type sqlx decodes for PostgreSQL, and its writes commit together with the operation's ledger row,
    /// or not at all. Begun by the first call (an error on another backend, or once [`Ctx::tx`] began the
    /// attempt's transaction); later calls return it again.
    ///
    /// ```
    /// # use sequencer_runtime::{Ctx, Result};
    /// # async fn op(ctx: &Ctx) -> Result<()> {
    /// let mut tx = ctx.postgres_tx().await?;
    /// let tags: Vec<String> = sqlx::query_scalar("SELECT tags FROM posts WHERE id = $1") // a TEXT[] column
    ///     .bind(1_i64)
    ///     .fetch_one(&mut **tx)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn postgres_tx(&self) -> Result<TxGuard<'_, Postgres>> {
        self.open_tx::<Postgres>().await
    }

    /// The transaction of a `transaction` operation on a MySQL / MariaDB ledger, as `sqlx::Transaction<MySql>`;
    /// see [`Ctx::postgres_tx`].
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    pub async fn mysql_tx(&self) -> Result<TxGuard<'_, MySql>> {
        self.open_tx::<MySql>().await
    }

    /// The transaction of a `transaction` operation on a SQLite ledger, as `sqlx::Transaction<Sqlite>`; see
    /// [`Ctx::postgres_tx`].
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub async fn sqlite_tx(&self) -> Result<TxGuard<'_, Sqlite>> {
        self.open_tx::<Sqlite>().await
    }

    /// The attempt's transaction as `DB`, begun if it is not yet.
    async fn open_tx<DB: OperationDb>(&self) -> Result<TxGuard<'_, DB>> {
        let Some(slot) = &self.tx else {
            anyhow::bail!(
                "`ctx.{}()` needs `#[operation(transaction, ...)]` on `{}`",
                DB::ACCESSOR,
                self.meta.name
            )
        };
        if let Some(wanted) = DB::BACKEND {
            if wanted != self.native.dialect() {
                return Err(self.wrong_backend(wanted, true));
            }
        }
        let mut guard = slot.tx.lock().await;
        match &*guard {
            OpTx::Ended => {
                anyhow::bail!("the transaction of `{}` has already ended", self.meta.name)
            }
            OpTx::NotBegun => *guard = DB::wrap(slot.ledger.begin_operation_as::<DB>().await?),
            open => {
                if let (None, Some(began)) = (DB::get(open), open.accessor()) {
                    anyhow::bail!(
                        "`ctx.{}()`: `{}` began its transaction with `ctx.{began}()`; an attempt's transaction is of one kind",
                        DB::ACCESSOR,
                        self.meta.name
                    )
                }
            }
        }
        Ok(TxGuard {
            guard,
            db: PhantomData,
        })
    }

    /// The transaction, for the ledger's own writes (`None` outside a `transaction` operation); an error while
    /// the operation holds its guard.
    pub(super) fn tx_conn(&self) -> Result<Option<MutexGuard<'_, OpTx>>> {
        match &self.tx {
            None => Ok(None),
            Some(slot) => match slot.tx.try_lock() {
                Ok(guard) => Ok(Some(guard)),
                Err(_) => anyhow::bail!(
                    "`{}`: drop the `ctx.tx()` guard before `ctx.progress(..)` or `ctx.checkpoint(..)`: they write through the same transaction",
                    self.meta.name
                ),
            },
        }
    }

    /// Ends the attempt's transaction: the open one, for the executor to commit, or [`OpTx::NotBegun`].
    pub(crate) async fn take_tx(&self) -> OpTx {
        match &self.tx {
            Some(slot) => std::mem::replace(&mut *slot.tx.lock().await, OpTx::Ended),
            None => OpTx::NotBegun,
        }
    }
}

/// A `transaction` operation's transaction, borrowed from its [`Ctx`]; dereferences to
/// `sqlx::Transaction<'static, DB>`: `sqlx::Any` from [`Ctx::tx`], the backend's own from [`Ctx::postgres_tx`],
/// [`Ctx::mysql_tx`] or [`Ctx::sqlite_tx`].
pub struct TxGuard<'a, DB: sqlx::Database = Any> {
    guard: MutexGuard<'a, OpTx>,
    db: PhantomData<DB>,
}

/// `Deref` of [`TxGuard`] to each database's transaction.
macro_rules! deref_tx {
    ($($db:ty),+) => {$(
        impl std::ops::Deref for TxGuard<'_, $db> {
            type Target = Transaction<'static, $db>;
            fn deref(&self) -> &Self::Target {
                match <$db as OperationDb>::get(&self.guard) {
                    Some(tx) => tx,
                    None => unreachable!("a TxGuard is only made over a live transaction of its kind"),
                }
            }
        }

        impl std::ops::DerefMut for TxGuard<'_, $db> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                match <$db as OperationDb>::get_mut(&mut self.guard) {
                    Some(tx) => tx,
                    None => unreachable!("a TxGuard is only made over a live transaction of its kind"),
                }
            }
        }
    )+};
}

deref_tx!(Any);
#[cfg(feature = "postgres")]
deref_tx!(Postgres);
#[cfg(feature = "mysql")]
deref_tx!(MySql);
#[cfg(feature = "sqlite")]
deref_tx!(Sqlite);
