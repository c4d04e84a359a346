//! The context every operation receives.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;

use sequencer_core::OperationMeta;

use crate::crypto::{place, Keyring};
use crate::events::Event;
use crate::ledger::dialect::Dialect;
use crate::ledger::native::NativePool;
use crate::ledger::progress::ProgressUpdate;
use crate::ledger::Ledger;
use crate::result::{Result, Skip};

pub(crate) mod batch;
mod commit;
mod control;
mod tx;

pub use batch::{BatchHandle, BatchMember, TaskMember};
pub use tx::TxGuard;
use tx::TxSlot;

/// Application state registered on the builder, by type.
pub type StateMap = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// What an operation sees while it runs: its metadata, the attempt number, the application's typed state, the
/// ledger's database pools, a cancellation token and, for `transaction` operations, the transaction.
///
/// The ledger's database comes two ways: [`Ctx::pool`] and [`Ctx::tx`] through sqlx's `Any` driver, for SQL that
/// runs on every backend (integers, floats, booleans, text and bytes only), and the backend's own driver, which
/// decodes every type sqlx supports for it (`TIMESTAMPTZ`, `NUMERIC`, `UUID`, `JSONB`, …):
/// [`Ctx::postgres`], [`Ctx::mysql`] and [`Ctx::sqlite`] give its pool, and [`Ctx::postgres_tx`],
/// [`Ctx::mysql_tx`] and [`Ctx::sqlite_tx`] a `transaction` operation's transaction, which commits with the
/// ledger row just as `ctx.tx()` does.
///
/// ```
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///     use sequencer::sqlx;
///
///     pub struct Config {
///         pub batch_size: u64,
///     }
///
///     #[operation(timestamp = "2024_01_15_120000", retries = 2)]
///     async fn backfill(ctx: &Ctx) -> Result<()> {
///         let config = ctx.state::<Config>().ok_or_else(|| Error::msg("no Config"))?;
///         let start: u64 = ctx.last_checkpoint().await?.unwrap_or(0); // where an earlier attempt stopped
///         if ctx.attempt() == 1 {
///             ctx.checkpoint(&10u64).await?;
///             return Err(Error::msg("the first attempt fails after 10 rows"));
///         }
///         assert_eq!(start, 10);
///         for done in (start..100).step_by(config.batch_size as usize) {
///             if ctx.is_cancelled() {
///                 break; // timeout, `cancel NAME` or shutdown
///             }
///             ctx.progress(done + config.batch_size, 100).await?; // shown by `status`
///         }
///         let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(ctx.pool()).await?; // the ledger's pool
///         assert_eq!(one, 1);
///         println!("{} ran in attempt {}", ctx.operation().name, ctx.attempt());
///         Ok(())
///     }
///
///     #[operation(timestamp = "2024_01_15_120001")]
///     async fn maybe(ctx: &Ctx) -> Result<()> {
///         ctx.skip("nothing to do") // recorded `skipped` with the reason
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let builder = sequencer::Sequencer::builder()
///     .registry(ops::registry())
///     .state(ops::Config { batch_size: 30 });
/// # let ledger = sequencer::testing::ledger(builder).await.unwrap();
/// # let report = ledger.sequencer.execute_all().await.unwrap();
/// # assert!(report.succeeded(), "{report:?}");
/// # let status = ledger.sequencer.status().await.unwrap();
/// # assert_eq!(status[0].attempts, 2);
/// # assert_eq!(status[1].skip_reason.as_deref(), Some("nothing to do"));
/// # }
/// ```
pub struct Ctx {
    meta: &'static OperationMeta,
    attempt: u32,
    state: Arc<StateMap>,
    pool: AnyPool,
    native: NativePool,
    cancel: CancellationToken,
    tx: Option<TxSlot>,
    recorder: Option<Recorder>,
    /// When progress was last written, and last sampled (`<p>progress_samples`).
    last_progress: std::sync::Mutex<(Option<std::time::Instant>, Option<std::time::Instant>)>,
    /// Lines this attempt wrote with [`Ctx::log`] (the run's log is trimmed every so many).
    log_lines: std::sync::atomic::AtomicU64,
    /// The recorded batch or chain the run is a member of.
    batch: Option<BatchHandle>,
    /// A task run's data, as JSON (`Err`: why it could not be read, e.g. sealed without the key).
    task_args: Option<Result<Arc<str>, Arc<str>>>,
    /// A deferred run's registered handler (its task's handler calls it with the payload).
    deferred: Option<crate::handlers::ErasedHandler>,
}

/// How often a run's progress is sampled into `<p>progress_samples` at most.
const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a recorded run writes its progress and checkpoints.
pub(crate) struct Recorder {
    pub keys: Arc<Keyring>,
    pub ledger: Ledger,
    pub run: i64,
    /// The claim's token, which every write of the run presents.
    pub token: String,
    pub events: tokio::sync::broadcast::Sender<Event>,
    /// How the run was started, for its events.
    pub via: crate::events::Via,
    /// `throttle_on = f`: checked at each checkpoint.
    pub throttle_on: Option<crate::registry::Condition>,
}

/// The error [`Ctx::checkpoint`] returns once `cancel NAME` asked the operation to stop: return it (with `?`)
/// and the run is recorded `interrupted`, to resume from the checkpoint on `retry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// The operation.
    pub name: String,
}

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` was cancelled at a checkpoint; `retry` resumes it from there",
            self.name
        )
    }
}

impl std::error::Error for Cancelled {}

impl Ctx {
    /// A context outside any run, on a lazily opened in-memory SQLite pool: for calling an operation's
    /// function directly in a unit test. Call it inside a tokio runtime.
    /// `ctx.sqlite()` is another lazily opened in-memory SQLite database.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn detached(meta: &'static OperationMeta, attempt: u32, state: Arc<StateMap>) -> Self {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect_lazy("sqlite::memory:");
        let pool = match pool {
            Ok(p) => p,
            // The URL is a constant the SQLite driver always accepts.
            Err(e) => panic!("in-memory SQLite pool: {e}"),
        };
        let native = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
            .max_connections(1)
            .connect_lazy_with(sqlx::sqlite::SqliteConnectOptions::new().in_memory(true));
        Ctx::new(
            meta,
            attempt,
            state,
            (pool, NativePool::Sqlite(native)),
            CancellationToken::new(),
            None,
            None,
        )
    }

    /// A context on `pools` (the ledger's `AnyPool` and native pool); `transaction` is the ledger a `transaction`
    /// operation's transaction begins on, when it asks for it.
    pub(crate) fn new(
        meta: &'static OperationMeta,
        attempt: u32,
        state: Arc<StateMap>,
        pools: (AnyPool, NativePool),
        cancel: CancellationToken,
        transaction: Option<Ledger>,
        recorder: Option<Recorder>,
    ) -> Self {
        Ctx {
            meta,
            attempt,
            state,
            pool: pools.0,
            native: pools.1,
            cancel,
            tx: transaction.map(TxSlot::new),
            recorder,
            last_progress: std::sync::Mutex::new((None, None)),
            log_lines: std::sync::atomic::AtomicU64::new(0),
            batch: None,
            task_args: None,
            deferred: None,
        }
    }

    /// The context of a task run: its data, as JSON, or why it cannot be read.
    pub(crate) fn with_task_args(mut self, args: Option<Result<Arc<str>, Arc<str>>>) -> Self {
        self.task_args = args;
        self
    }

    /// The context of a deferred run: its registered handler.
    pub(crate) fn with_deferred(mut self, handler: Option<crate::handlers::ErasedHandler>) -> Self {
        self.deferred = handler;
        self
    }

    /// A deferred run's registered handler.
    pub(crate) fn deferred_handler(&self) -> Option<crate::handlers::ErasedHandler> {
        self.deferred.clone()
    }

    /// Why a task run's data could not be read, if it could not.
    pub(crate) fn task_args_error(&self) -> Option<&str> {
        match &self.task_args {
            Some(Err(why)) => Some(why),
            _ => None,
        }
    }

    /// A task run's data as stored, JSON (opened when it was sealed); `None` for an operation. Hooks of a task
    /// read its data here: `serde_json::from_str::<Reprice>(ctx.task_args_json().unwrap_or("null"))`.
    pub fn task_args_json(&self) -> Option<&str> {
        match &self.task_args {
            Some(Ok(json)) => Some(json),
            _ => None,
        }
    }

    /// The task run's data, of its type: the generated task handler calls this.
    pub(crate) fn task_args<T: crate::task_def::TaskArgs>(&self) -> crate::result::Result<T> {
        match &self.task_args {
            Some(Ok(json)) => T::from_json(json).map_err(|e| {
                anyhow::anyhow!(
                    "the stored arguments of task `{}` do not fit its argument type: {e}",
                    self.meta.name
                )
            }),
            Some(Err(why)) => Err(anyhow::anyhow!("{why}")),
            None => Err(anyhow::anyhow!(
                "task `{}` ran without its arguments: run it with `seq.dispatch::<ops::{}>(args)`",
                self.meta.name,
                self.meta.fn_name
            )),
        }
    }

    /// The same context, as a member of a recorded batch.
    pub(crate) fn in_batch(self, batch: Option<BatchHandle>) -> Self {
        Ctx { batch, ..self }
    }

    /// The recorded batch or chain this run is a member of (`seq.batch(..)`, `seq.chain(..)`), if any: its
    /// id, `cancelled()`, `cancel()` and `add(..)`. See [`BatchHandle`].
    pub fn batch(&self) -> Option<BatchHandle> {
        self.batch.clone()
    }

    /// The error of a write whose claim another process took over (after this one's lease ran out): the run
    /// stops, and nothing more is written for it.
    fn lost_claim(&self) -> crate::result::Error {
        self.cancel.cancel();
        anyhow::anyhow!(
            "`{}` lost its claim: its lease ran out and another process recovered it",
            self.meta.name
        )
    }

    /// Reports progress: shown by `status` (with an ETA from the recent rate) and the progress bars. Written to
    /// the ledger at most four times a second, and always when `done == total`; sampled (the progress history
    /// and the rate the ETA comes from) at most once every 10 seconds, and at the end.
    pub async fn progress(&self, done: u64, total: u64) -> Result<()> {
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        let (due, sample) = {
            let mut last = self.last_progress.lock().unwrap_or_else(|e| e.into_inner());
            let (written, sampled) = &mut *last;
            let end = done >= total;
            let due =
                end || written.is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(250));
            let sample = due && (end || sampled.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY));
            if due {
                *written = Some(std::time::Instant::now());
            }
            if sample {
                *sampled = *written;
            }
            (due, sample)
        };
        if due {
            // On the pool, not in the operation's transaction: progress shows while the operation runs, and the row
            // its heartbeat renews stays unlocked. (SQLite has one writer, the open transaction: there, through it.)
            // Before the operation opens its transaction, on the pool too.
            let update = ProgressUpdate {
                name: self.meta.name,
                run: rec.run,
                token: &rec.token,
                done,
                total,
                sample,
            };
            let through_tx = match self.tx_conn()? {
                Some(mut guard) if rec.ledger.dialect() == Dialect::Sqlite => match guard.conn() {
                    Some(conn) => Some(rec.ledger.progress(conn, &update).await?),
                    None => None,
                },
                _ => None,
            };
            let ours = match through_tx {
                Some(ours) => ours,
                None => rec.ledger.progress(rec.ledger.pool(), &update).await?,
            };
            if !ours {
                return Err(self.lost_claim());
            }
            let _ = rec.events.send(Event::OperationProgress {
                via: rec.via,
                name: self.meta.name.to_owned(),
                done,
                total,
            });
        }
        Ok(())
    }

    /// Stores a checkpoint (any serde value: a cursor, a last id) so that an interrupted run resumes from it with
    /// [`Ctx::last_checkpoint`]. Returns [`Cancelled`] once `cancel NAME` asked the operation to stop: pass it on
    /// with `?`. After `pause NAME` it holds here (its lease renewed) until `resume NAME` (or returns
    /// [`Cancelled`] if cancelled meanwhile); while the operation's `throttle_on` condition returns true it backs
    /// off here (100 ms, doubling up to 5 s between looks).
    pub async fn checkpoint<T: serde::Serialize + ?Sized>(&self, cursor: &T) -> Result<()> {
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        let json = self.stored_checkpoint(rec, cursor)?;
        // In a `transaction` operation the checkpoint commits, or rolls back, with the operation's writes; before
        // it opened its transaction (nothing written in one yet), on the pool, as in any operation.
        let in_tx = match self.tx_conn()? {
            Some(mut guard) => match guard.conn() {
                Some(conn) => Some(
                    rec.ledger
                        .checkpoint(conn, self.meta.name, rec.run, None, &json)
                        .await?,
                ),
                None => None,
            },
            None => None,
        };
        let ours = match in_tx {
            Some(ours) => ours,
            None => {
                rec.ledger
                    .checkpoint(
                        rec.ledger.pool(),
                        self.meta.name,
                        rec.run,
                        Some(&rec.token),
                        &json,
                    )
                    .await?
            }
        };
        if !ours {
            return Err(self.lost_claim());
        }
        self.at_checkpoint(rec).await
    }

    /// A checkpoint as stored: its JSON, sealed for an `encrypted` operation.
    fn stored_checkpoint<T: serde::Serialize + ?Sized>(
        &self,
        rec: &Recorder,
        cursor: &T,
    ) -> Result<String> {
        let json = serde_json::to_string(cursor)?;
        Ok(if self.meta.encrypted {
            rec.keys
                .seal_for(&json, &place::checkpoint(self.meta.name, rec.run))?
        } else {
            json
        })
    }

    /// The checkpoint the last interrupted (or failed) attempt of this run stored, if any.
    pub async fn last_checkpoint<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        let Some(rec) = &self.recorder else {
            return Ok(None);
        };
        match rec.ledger.last_checkpoint(self.meta.name, rec.run).await? {
            Some(json) => Ok(Some(
                serde_json::from_str(&rec.keys.open_at(
                    &json,
                    &place::checkpoint(self.meta.name, rec.run),
                    self.meta.encrypted,
                )?)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "the stored checkpoint of `{}` does not fit the type asked for: {e}",
                        self.meta.name
                    )
                })?,
            )),
            None => Ok(None),
        }
    }

    /// The running operation's metadata.
    pub fn operation(&self) -> &'static OperationMeta {
        self.meta
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Application state of type `T` registered on the builder with `.state(value)`, if any.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.state
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }

    /// The ledger's connection pool (`sqlx::AnyPool`), for SQL that runs on every backend. It decodes integers,
    /// floats, booleans, text and bytes only: for other column types (`TIMESTAMPTZ`, `NUMERIC`, `UUID`, `JSONB`,
    /// …) use the backend's own pool, [`Ctx::postgres`], [`Ctx::mysql`] or [`Ctx::sqlite`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Cancelled when the run is stopping (a timeout, or the process shutting down): long operations should
    /// check it between steps.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the run asked this operation to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Ends the operation as skipped with a reason: `return ctx.skip("nothing to do");`.
    pub fn skip(&self, reason: impl Into<String>) -> Result<()> {
        Err(Skip(reason))
    }
}
