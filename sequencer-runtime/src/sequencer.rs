//! The builder, and the programmatic API over the ledger and the sequential orchestrator.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::ctx::StateMap;
use crate::events::Event;
use crate::executor::{Env, Layer, Outcome, Target};
use crate::ledger::{Ledger, LedgerError, LedgerRow, Owner, Status};
use crate::orchestrator::{Due, Orchestrator, Run, Sequential};
use crate::{Ctx, OperationDef, Registry, RegistryError, Timestamp};

/// The default ledger: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sequencer.db";

/// Errors of the runtime, each saying how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    /// The registry is invalid.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// No operation has this name.
    #[error("no operation named `{name}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownOperation {
        /// The name given.
        name: String,
        /// The closest known name.
        suggestion: Option<String>,
    },
    /// A guard refused the run.
    #[error("refused: {0}")]
    Refused(String),
    /// `--isolate`: another process holds the lock.
    #[error("another process holds the isolation lock; wait for it to finish, or run without `--isolate`")]
    LockHeld,
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
}

/// Decides whether a run may start: hostname, environment or anything else.
pub trait Guard: Send + Sync {
    /// `Err(reason)` refuses the run.
    fn check(&self, host: &str, environment: Option<&str>) -> Result<(), String>;
}

impl<F: Fn(&str, Option<&str>) -> Result<(), String> + Send + Sync> Guard for F {
    fn check(&self, host: &str, environment: Option<&str>) -> Result<(), String> {
        self(host, environment)
    }
}

/// Only these hosts may run operations.
pub fn only_hosts(hosts: &[&str]) -> impl Guard {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    move |host: &str, _: Option<&str>| {
        if hosts.iter().any(|h| h == host) {
            Ok(())
        } else {
            Err(format!("host `{host}` is not one of {hosts:?}"))
        }
    }
}

/// Only these environments may run operations.
pub fn only_environments(envs: &[&str]) -> impl Guard {
    let envs: Vec<String> = envs.iter().map(|e| (*e).to_owned()).collect();
    move |_: &str, env: Option<&str>| match env {
        Some(e) if envs.iter().any(|x| x == e) => Ok(()),
        other => Err(format!("environment {other:?} is not one of {envs:?}")),
    }
}

/// Configures a [`Sequencer`]: the registry (required), the ledger database, application state, guards and
/// the settings that apply to every run. [`SequencerBuilder::build`] validates the registry, connects and
/// applies the ledger's own schema migrations.
///
/// ```
/// use std::time::Duration;
///
/// use sequencer::{only_environments, Limit, Sequencer, Sequential};
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     pub struct Tenant(pub &'static str);
///
///     #[operation(timestamp = "2024_01_15_120000", middleware = [rate_limited("crm")])]
///     async fn sync_contacts(ctx: &Ctx) -> Result<()> {
///         let tenant = ctx.state::<Tenant>().expect("registered with .state(..)");
///         assert_eq!(tenant.0, "acme");
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sequencer::SequencerError> {
/// let builder = Sequencer::builder()
///     .registry(ops::registry())
///     .state(ops::Tenant("acme"))                    // ctx.state::<Tenant>()
///     .environment("staging")                        // default: $SEQUENCER_ENV
///     .guard(only_environments(&["staging", "production"]))
///     .rate_limiter("crm", Limit::per_minute(60))    // for `rate_limited("crm")`
///     .orchestrator(Sequential)                      // the default
///     .lease(Duration::from_secs(60))                // the default
///     .retry_jitter(0.2)                             // default 0
///     .table_prefix("sequencer_")                    // the default
///     .actor("deploy-bot");
/// # /*
/// let seq = builder.database("sqlite://sequencer.db").build().await?;
/// # */
/// # let ledger = sequencer::testing::ledger(builder).await?;
/// # let seq = &ledger.sequencer;
/// assert!(seq.execute_all().await?.succeeded());
/// # Ok(())
/// # }
/// ```
pub struct SequencerBuilder {
    registry: Option<Registry>,
    database: Option<String>,
    state: StateMap,
    prefix: String,
    environment: Option<String>,
    guards: Vec<Box<dyn Guard>>,
    lease: Duration,
    actor: Option<String>,
    orchestrator: Arc<dyn Orchestrator>,
    limiters: HashMap<String, (u32, Duration)>,
    layers: Vec<Arc<dyn Layer>>,
    jitter: f64,
    migrator: Option<Arc<sqlx::migrate::Migrator>>,
    strategy: crate::strategy::Strategy,
    deferred: crate::deferred::DeferredHandlers,
    keys: Option<crate::crypto::Keyring>,
    max_connections: u32,
}

/// A rate: at most `count` starts per `per`, for [`SequencerBuilder::rate_limiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Starts allowed per window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Limit {
    /// `count` starts per second.
    pub fn per_second(count: u32) -> Limit {
        Limit {
            count,
            per: Duration::from_secs(1),
        }
    }

    /// `count` starts per minute.
    pub fn per_minute(count: u32) -> Limit {
        Limit {
            count,
            per: Duration::from_secs(60),
        }
    }

    /// `count` starts per hour.
    pub fn per_hour(count: u32) -> Limit {
        Limit {
            count,
            per: Duration::from_secs(3600),
        }
    }
}

impl Default for SequencerBuilder {
    fn default() -> Self {
        SequencerBuilder {
            registry: None,
            database: None,
            state: StateMap::new(),
            prefix: "sequencer_".to_owned(),
            environment: std::env::var("SEQUENCER_ENV").ok(),
            guards: Vec::new(),
            lease: Duration::from_secs(60),
            actor: None,
            orchestrator: Arc::new(Sequential),
            limiters: HashMap::new(),
            layers: Vec::new(),
            jitter: 0.0,
            migrator: None,
            strategy: crate::strategy::Strategy::Command,
            deferred: crate::deferred::DeferredHandlers {
                retry_delay: Duration::from_secs(30),
                ..Default::default()
            },
            keys: None,
            max_connections: crate::ledger::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl SequencerBuilder {
    /// The operations (required).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The ledger database URL: `sqlite://FILE`, `postgres://…` or `mysql://…`. Default: `sqlite://sequencer.db`.
    pub fn database(mut self, url: impl Into<String>) -> Self {
        self.database = Some(url.into());
        self
    }

    /// Application state operations read with `ctx.state::<T>()`.
    pub fn state<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.state.insert(TypeId::of::<T>(), Box::new(value));
        self
    }

    /// Prefix of the ledger's tables (default `sequencer_`).
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The environment (default: `SEQUENCER_ENV`), matched against `environments = [...]`.
    pub fn environment(mut self, env: impl Into<String>) -> Self {
        self.environment = Some(env.into());
        self
    }

    /// A guard that may refuse every run.
    pub fn guard(mut self, guard: impl Guard + 'static) -> Self {
        self.guards.push(Box::new(guard));
        self
    }

    /// How long a claim holds without a heartbeat (default 60 s); a dead process's operations are recovered
    /// after this long (at once when it ran on this host).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The default orchestrator (default: [`Sequential`]).
    pub fn orchestrator(mut self, orchestrator: impl Orchestrator + 'static) -> Self {
        self.orchestrator = Arc::new(orchestrator);
        self
    }

    /// Defines a named rate limiter for `middleware = [rate_limited("name")]`, shared by every process on the
    /// same ledger database: `.rate_limiter("api-calls", Limit::per_minute(60))`.
    pub fn rate_limiter(mut self, name: impl Into<String>, limit: Limit) -> Self {
        self.limiters.insert(name.into(), (limit.count, limit.per));
        self
    }

    /// Registers a typed handler for deferred operations named `name`:
    /// `.deferred("send_welcome", |ctx, p: Welcome| Box::pin(send_welcome(ctx, p)))` where
    /// `async fn send_welcome(ctx: &Ctx, payload: Welcome) -> Result<()>`.
    pub fn deferred<T, F>(mut self, name: &str, handler: F) -> Self
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        F: for<'a> Fn(&'a Ctx, T) -> crate::BoxFuture<'a, crate::Result<()>>
            + Send
            + Sync
            + 'static,
    {
        self.deferred
            .handlers
            .insert(name.to_owned(), crate::deferred::erase(name, handler));
        self
    }

    /// The encryption keys (default: `SEQUENCER_KEY` and `SEQUENCER_OLD_KEYS` from the environment).
    pub fn encryption_keys(mut self, keys: crate::crypto::Keyring) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Keeps stored deferred operations valid after a handler was renamed: rows naming `old` run `new`.
    pub fn deferred_alias(mut self, old: &str, new: &str) -> Self {
        self.deferred.aliases.insert(old.to_owned(), new.to_owned());
        self
    }

    /// How long a failed deferred operation waits before its next try, times the tries so far (default 30 s).
    pub fn deferred_retry_delay(mut self, delay: Duration) -> Self {
        self.deferred.retry_delay = delay;
        self
    }

    /// The schema migrations `migrate` applies (`Migrator::new(path)`), on the ledger
    /// database.
    pub fn migrator(mut self, migrator: sqlx::migrate::Migrator) -> Self {
        self.migrator = Some(Arc::new(migrator));
        self
    }

    /// When operations run: [`crate::Strategy::Command`] (default) or `Strategy::migration()` to interleave them
    /// with schema migrations in `migrate`.
    pub fn strategy(mut self, strategy: impl Into<crate::strategy::Strategy>) -> Self {
        self.strategy = strategy.into();
        self
    }

    /// Takes a random part of up to `fraction` (0 to 1) off every retry's backoff, so that many operations
    /// failing together do not retry in lock-step. Default 0.
    pub fn retry_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// Wraps every attempt of every operation in a [`Layer`] (outermost first, in the order added).
    pub fn layer(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Who runs (recorded in the ledger).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The size of the ledger's connection pool (default 12; operations share it through `ctx.pool()`). Lower it
    /// when many processes share one server: eight `work` processes of 12 connections already fill PostgreSQL's
    /// default `max_connections = 100`.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Validates the registry, connects to the ledger and applies its schema migrations.
    pub async fn build(self) -> Result<Sequencer, SequencerError> {
        let registry = self.registry.ok_or_else(|| {
            SequencerError::Usage("no registry: call `.registry(ops::registry())`".into())
        })?;
        registry.plan()?;
        for def in registry.operations() {
            for m in def.meta.middleware {
                if let crate::Middleware::RateLimited {
                    limiter,
                    limit: None,
                } = m
                {
                    if !self.limiters.contains_key(*limiter) {
                        return Err(SequencerError::Usage(format!(
                            "`{}` uses `rate_limited(\"{limiter}\")`, but no such limiter is defined: add `.rate_limiter(\"{limiter}\", Limit::per_minute(60))` to the builder, or write the rate in the attribute: `rate_limited(\"{limiter}\", 60/min)`",
                            def.meta.name
                        )));
                    }
                }
            }
        }
        if !self
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SequencerError::Usage(format!(
                "table prefix `{}` may hold only ASCII letters, digits and `_`",
                self.prefix
            )));
        }
        let keys = match self.keys {
            Some(k) => k,
            None => crate::crypto::Keyring::from_env().map_err(|e| {
                SequencerError::Usage(format!("SEQUENCER_KEY / SEQUENCER_OLD_KEYS: {e}"))
            })?,
        };
        if let Some(op) = registry.operations().iter().find(|o| o.meta.encrypted) {
            if !keys.can_seal() {
                return Err(SequencerError::Usage(format!(
                    "`{}` is `encrypted`, but no key is configured: set SEQUENCER_KEY (32 bytes, base64, e.g. `openssl rand -base64 32`)",
                    op.meta.name
                )));
            }
        }
        let url = self
            .database
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let ledger = Ledger::connect_with(&url, &self.prefix, self.max_connections).await?;
        let (events, _) = broadcast::channel(1024);
        let env = Env {
            ledger,
            owner: Owner::this_process(self.actor),
            state: Arc::new(self.state),
            events,
            environment: self.environment,
            lease: self.lease,
            cancel: CancellationToken::new(),
            limiters: Arc::new(self.limiters),
            layers: Arc::new(self.layers),
            jitter: self.jitter,
            keys: Arc::new(keys),
        };
        Ok(Sequencer {
            inner: Arc::new(Inner {
                registry,
                env,
                guards: self.guards,
                migrator: self.migrator,
                strategy: self.strategy,
                deferred: self.deferred,
            }),
            orchestrator: self.orchestrator,
        })
    }
}

struct Inner {
    registry: Registry,
    env: Env,
    guards: Vec<Box<dyn Guard>>,
    migrator: Option<Arc<sqlx::migrate::Migrator>>,
    strategy: crate::strategy::Strategy,
    deferred: crate::deferred::DeferredHandlers,
}

/// Runs a registry's operations exactly once, recording every run in the ledger.
///
/// Build one with [`Sequencer::builder`]; clones share the ledger connection. Every method that runs
/// operations goes through the same executor, so every policy of the operations applies.
///
/// ```
/// use sequencer::ledger::Status;
/// use sequencer::{RollbackTarget, Sequencer};
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000", rollback = drop_users)]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     async fn drop_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     #[operation(timestamp = "2024_01_15_120001", depends_on = [create_users])]
///     async fn invite_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sequencer::SequencerError> {
/// # let dir = std::env::temp_dir().join(format!("sequencer-doc-seq-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let url = format!("sqlite://{}", dir.join("ledger.db").display());
/// let seq = Sequencer::builder()
///     .registry(ops::registry())
///     .database(url) // e.g. "sqlite://sequencer.db" (the default), "postgres://…", "mysql://…"
///     .build()
///     .await?;
///
/// let report = seq.execute_all().await?; // every pending operation, with the default orchestrator
/// assert!(report.succeeded());
/// assert_eq!(report.planned.len(), 2);
/// assert!(seq.execute_all().await?.planned.is_empty()); // exactly once
///
/// assert!(seq.has_executed("create_users").await?); // ledger name or function name
/// let undone = seq.rollback(&RollbackTarget::Op("create_users".into())).await?;
/// assert_eq!(undone.rolled_back, ["2024_01_15_120000_create_users"]);
///
/// for entry in seq.status().await? {
///     println!("{:<12} {}", entry.status.as_str(), entry.name);
/// }
/// assert_eq!(seq.status().await?[0].status, Status::RolledBack);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Sequencer {
    inner: Arc<Inner>,
    orchestrator: Arc<dyn Orchestrator>,
}

/// Operations run at once by the parallel orchestrators unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// What to run: the options of `process`, for [`Sequencer::process`] and [`Sequencer::preview`]. Start from
/// `ProcessOptions::default()` (every pending operation, as `process` without flags).
///
/// ```
/// use sequencer::{ProcessOptions, Timestamp};
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000", tags = ["billing"])]
///     async fn create_invoices(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     #[operation(timestamp = "2024_02_01_000000")]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sequencer::SequencerError> {
/// # let ledger = sequencer::testing::ledger(sequencer::Sequencer::builder().registry(ops::registry())).await?;
/// # let seq = &ledger.sequencer;
/// // `process --tags billing --to 2024_01_31_235959 --dry-run`:
/// let opts = ProcessOptions {
///     tags: vec!["billing".into()],
///     to: Some("2024_01_31_235959".parse::<Timestamp>().unwrap()),
///     dry_run: true,
///     ..ProcessOptions::default()
/// };
/// assert_eq!(seq.process(&opts).await?.planned, ["2024_01_15_120000_create_invoices"]);
///
/// // `process --repeat`: completed operations run again, as new runs.
/// seq.process(&ProcessOptions::default()).await?;
/// let again = seq.process(&ProcessOptions { repeat: true, ..ProcessOptions::default() }).await?;
/// assert_eq!(again.planned.len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Plan only.
    pub dry_run: bool,
    /// Only operations at or after this timestamp.
    pub from: Option<Timestamp>,
    /// Only operations at or before this timestamp.
    pub to: Option<Timestamp>,
    /// Only operations with one of these tags.
    pub tags: Vec<String>,
    /// Run completed operations again (new runs); refuses operations that never ran.
    pub repeat: bool,
    /// Hold the global lock for the whole run.
    pub isolate: bool,
    /// How many operations the parallel orchestrators run at once (default [`DEFAULT_CONCURRENCY`]).
    pub concurrency: Option<usize>,
    /// Only operations with `execute_at` / `delay` (the `scheduled` command).
    pub only_scheduled: bool,
    /// Only these operations (ledger names), when not empty.
    pub only: Vec<String>,
    /// Only operations whose timestamp, as a number, is at most this migration version (`migrate`).
    pub up_to_version: Option<i64>,
    /// Emit no `NoPendingOperations` event when nothing is due (`migrate` runs many small steps).
    pub quiet: bool,
    /// Run `asynchronous` operations in this process instead of queueing them (`--sync`).
    pub sync: bool,
    /// Queue every due operation for the workers (`--async`).
    pub queue_all: bool,
    /// Run every due operation on the workers, in the orchestrator's order, and wait for each (`--dispatch`):
    /// dependencies, concurrency and failure policies hold as in-process.
    pub dispatch: bool,
}

/// When a scheduled operation is due, Unix milliseconds; `now` for an operation without a schedule.
pub fn due_time(def: &OperationDef, now: i64) -> i64 {
    use crate::Schedule;
    match def.meta.schedule {
        None => now,
        Some(Schedule::Delay(d)) => now.saturating_add(d.as_millis() as i64),
        Some(Schedule::At(secs)) => secs.saturating_mul(1000),
        Some(Schedule::Computed) => match def.execute_at {
            Some(f) => f()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(now, |d| d.as_millis() as i64),
            None => now,
        },
        Some(Schedule::TimeOfDay {
            hour,
            minute,
            second,
        }) => {
            let day_ms = 86_400_000;
            let at = (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * 1000;
            let today = now - now.rem_euclid(day_ms);
            if today + at > now {
                today + at
            } else {
                today + day_ms + at
            }
        }
    }
}

/// What a run did: returned by [`Sequencer::execute_all`], [`Sequencer::process`], [`Sequencer::execute`],
/// [`Sequencer::rollback`] and the batch and chain APIs; `process --json` prints it.
///
/// ```
/// use sequencer::OutcomeKind;
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000")]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     #[operation(timestamp = "2024_01_15_120001", allowed_to_fail)]
///     async fn warm_cache(_ctx: &Ctx) -> Result<()> {
///         Err(Error::msg("cache is down"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let run = sequencer::testing::run(ops::registry()).await.unwrap();
/// let report = &run.report;
/// assert!(report.succeeded()); // an `allowed_to_fail` failure does not fail the run
/// assert_eq!(report.count(|o| matches!(o, OutcomeKind::Completed { .. })), 1);
/// for (name, outcome) in &report.results {
///     if let OutcomeKind::Failed { error, allowed_to_fail } = outcome {
///         println!("{name} failed (allowed: {allowed_to_fail}): {error}");
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// The batch number, if the run started one.
    pub batch: Option<i64>,
    /// Operations that were due, in order (with `dry_run`, what would run).
    pub planned: Vec<String>,
    /// Each operation run and how it ended.
    pub results: Vec<(String, OutcomeKind)>,
    /// Operations of this run undone after a failure, in the order undone.
    pub rolled_back: Vec<String>,
    /// Rollbacks that failed, with their errors.
    pub rollback_failures: Vec<(String, String)>,
    /// Interrupted operations that are neither idempotent nor retryable: `retry NAME` or `mark NAME`.
    pub needs_attention: Vec<String>,
    /// Operations left pending because a dependency did not complete.
    pub waiting: Vec<(String, String)>,
    /// Scheduled operations not due yet, with their due time (Unix milliseconds).
    pub scheduled: Vec<(String, i64)>,
    /// Operations put on a queue for the workers, with the queue.
    pub queued: Vec<(String, String)>,
}

/// How an operation ended, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Completed.
    Completed {
        /// Milliseconds.
        duration_ms: u64,
    },
    /// Failed.
    Failed {
        /// The error.
        error: String,
        /// `allowed_to_fail`.
        allowed_to_fail: bool,
    },
    /// Skipped.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Another process had it.
    NotClaimed,
    /// Stopped at a checkpoint by `cancel NAME`; recorded `interrupted`.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// Not started now, left pending: a `unique` key or `without_overlapping` lock is held elsewhere.
    Deferred {
        /// Why.
        reason: String,
    },
}

impl RunReport {
    /// Whether every operation that ran ended well (failures of `allowed_to_fail` operations excepted).
    pub fn succeeded(&self) -> bool {
        !self.results.iter().any(|(_, o)| {
            matches!(
                o,
                OutcomeKind::Failed {
                    allowed_to_fail: false,
                    ..
                }
            )
        })
    }

    /// How many ended so.
    pub fn count(&self, f: impl Fn(&OutcomeKind) -> bool) -> usize {
        self.results.iter().filter(|(_, o)| f(o)).count()
    }
}

/// One operation in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    /// Ledger name.
    pub name: String,
    /// Timestamp, `YYYY_MM_DD_HHMMSS`.
    pub timestamp: String,
    /// Status (`pending` when the ledger has no row yet).
    pub status: Status,
    /// Batch.
    pub batch: Option<i64>,
    /// Tries.
    pub attempts: i64,
    /// Start, Unix milliseconds.
    pub started_at: Option<i64>,
    /// End, Unix milliseconds.
    pub finished_at: Option<i64>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Last error.
    pub error: Option<String>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// Its source changed after it completed.
    pub edited: bool,
    /// In the ledger but no longer in the registry.
    pub orphaned: bool,
    /// Progress reported with `ctx.progress(done, total)`.
    pub progress_done: Option<i64>,
    /// See `progress_done`.
    pub progress_total: Option<i64>,
    /// Estimated time left of a running operation, from its progress so far.
    pub eta_ms: Option<i64>,
    /// Tags.
    pub tags: Vec<String>,
}

/// What a run would do: see [`Sequencer::preview`].
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The due operations, in plan order.
    pub planned: Vec<String>,
    /// The due operations grouped by wave (an operation's wave is one more than its deepest dependency's).
    pub waves: Vec<Vec<String>>,
    /// The heaviest chain of dependencies of the whole graph, first operation first.
    pub critical_path: Vec<String>,
    /// Its weight: milliseconds where every duration is known, else operations count 1 each.
    pub critical_weight: u64,
    /// The weight of all operations.
    pub total_work: u64,
}

/// Which operations `rollback` undoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTarget {
    /// Every operation completed in this batch.
    Batch(i64),
    /// The last N completed operations.
    Step(usize),
    /// One operation.
    Op(String),
}

impl Sequencer {
    /// Starts configuring a sequencer.
    pub fn builder() -> SequencerBuilder {
        SequencerBuilder::default()
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub(crate) fn env(&self) -> &Env {
        &self.inner.env
    }

    pub(crate) fn deferred_handlers(&self) -> &crate::deferred::DeferredHandlers {
        &self.inner.deferred
    }

    pub(crate) fn deferred_ctx(
        &self,
        meta: &'static crate::OperationMeta,
        attempt: u32,
    ) -> crate::Ctx {
        let env = &self.inner.env;
        crate::Ctx::new(
            meta,
            attempt,
            env.state.clone(),
            env.ledger.pool().clone(),
            env.cancel.child_token(),
            None,
            None,
        )
    }

    pub(crate) fn migrator(&self) -> Option<Arc<sqlx::migrate::Migrator>> {
        self.inner.migrator.clone()
    }

    /// The execution strategy.
    pub fn strategy(&self) -> &crate::strategy::Strategy {
        &self.inner.strategy
    }

    pub(crate) fn events(&self) -> &broadcast::Sender<Event> {
        &self.inner.env.events
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.env.ledger
    }

    /// Events of every run from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.env.events.subscribe()
    }

    /// Asks running operations to stop (their `ctx.cancellation()` fires) and no further ones to start.
    pub fn cancel(&self) {
        self.inner.env.cancel.cancel();
    }

    /// The same sequencer with another orchestrator: `seq.using(DependencyGraph).execute_all()`.
    pub fn using(&self, orchestrator: impl Orchestrator + 'static) -> Sequencer {
        self.using_arc(Arc::new(orchestrator))
    }

    /// [`Sequencer::using`] with a shared orchestrator (as [`crate::orchestrator::by_name`] returns).
    pub fn using_arc(&self, orchestrator: Arc<dyn Orchestrator>) -> Sequencer {
        Sequencer {
            inner: self.inner.clone(),
            orchestrator,
        }
    }

    /// The orchestrator `process` and `execute_all` use.
    pub fn orchestrator_name(&self) -> &'static str {
        self.orchestrator.name()
    }

    /// Runs every pending operation with this sequencer's orchestrator (sequential unless set).
    pub async fn execute_all(&self) -> Result<RunReport, SequencerError> {
        self.process(&ProcessOptions::default()).await
    }

    /// The operation with this name, or an error with the closest name.
    pub fn find(&self, name: &str) -> Result<&'static OperationDef, SequencerError> {
        let ops = self.inner.registry.operations();
        if let Some(def) = self.inner.registry.get(name) {
            return Ok(def);
        }
        // A function name is accepted when it names exactly one operation.
        let mut by_fn = ops.iter().copied().filter(|o| o.meta.fn_name == name);
        if let (Some(def), None) = (by_fn.next(), by_fn.next()) {
            return Ok(def);
        }
        let candidates = ops.iter().flat_map(|o| [o.meta.name, o.meta.fn_name]);
        let suggestion = sequencer_core::suggest::did_you_mean(name, candidates)
            .and_then(|s| ops.iter().find(|o| o.meta.name == s || o.meta.fn_name == s))
            .map(|o| o.meta.name.to_owned());
        Err(SequencerError::UnknownOperation {
            name: name.to_owned(),
            suggestion,
        })
    }

    fn check_guards(&self) -> Result<(), SequencerError> {
        let env = &self.inner.env;
        for g in &self.inner.guards {
            g.check(&env.owner.host, env.environment.as_deref())
                .map_err(SequencerError::Refused)?;
        }
        Ok(())
    }

    /// Runs the due operations with this sequencer's orchestrator ([`Sequential`] unless set: a failure stops
    /// the run and rolls back, in reverse, the Rollbackable operations this run completed).
    pub async fn process(&self, opts: &ProcessOptions) -> Result<RunReport, SequencerError> {
        self.check_guards()?;
        let env = &self.inner.env;
        let lock = if opts.isolate && !opts.dry_run {
            Some(
                env.ledger
                    .try_lock(&env.owner)
                    .await?
                    .ok_or(SequencerError::LockHeld)?,
            )
        } else {
            None
        };
        // The lock is owned by this future (its connection is `Send`, not `Sync`), so `process` stays `Send`.
        let (result, lock) = match lock {
            // Keep a SQLite lock row alive for as long as the run lasts (server locks live with their connection).
            Some(mut lock) => {
                let work = self.process_locked(opts);
                let mut work = std::pin::pin!(work);
                let mut renew = tokio::time::interval(Duration::from_secs(15));
                renew.tick().await;
                let result = loop {
                    tokio::select! {
                        result = &mut work => break result,
                        _ = renew.tick() => {
                            if let Err(e) = lock.renew().await {
                                tracing::warn!("cannot renew the isolation lock: {e}");
                            }
                        }
                    }
                };
                (result, Some(lock))
            }
            None => (self.process_locked(opts).await, None),
        };
        if let Some(lock) = lock {
            lock.release().await?;
        }
        result
    }

    async fn process_locked(&self, opts: &ProcessOptions) -> Result<RunReport, SequencerError> {
        let env = &self.inner.env;
        let mut report = RunReport::default();
        if !opts.dry_run {
            env.ledger.recover_interrupted(&env.owner).await?;
        }
        let rows: HashMap<String, LedgerRow> = env
            .ledger
            .rows()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let ordered = self.inner.registry.ordered()?;
        if !opts.dry_run {
            let missing: Vec<(&str, i64)> = ordered
                .iter()
                .filter(|o| !rows.contains_key(o.meta.name))
                .map(|o| (o.meta.name, o.meta.timestamp.version() as i64))
                .collect();
            env.ledger.insert_pending(&missing).await?;
        }
        let selected = ordered.into_iter().filter(|o| {
            let ts = o.meta.timestamp;
            opts.from.is_none_or(|f| ts >= f)
                && opts.to.is_none_or(|t| ts <= t)
                && (opts.tags.is_empty()
                    || o.meta.tags.iter().any(|t| opts.tags.iter().any(|x| x == t)))
        });
        let mut due: Vec<Due> = Vec::new();
        let mut never_ran = Vec::new();
        let now = crate::ledger::now_ms();
        for def in selected {
            let row = rows.get(def.meta.name);
            let status = row.map_or(Status::Pending, |r| r.status);
            let run = row.map_or(0, |r| r.run);
            if opts.repeat {
                match status {
                    Status::Completed => due.push(Due::new(def, run + 1, true, false)),
                    Status::Running => {}
                    _ => never_ran.push(def.meta.name),
                }
                continue;
            }
            if opts.only_scheduled && def.meta.schedule.is_none() {
                continue;
            }
            if !opts.only.is_empty() && !opts.only.iter().any(|n| n == def.meta.name) {
                continue;
            }
            if opts
                .up_to_version
                .is_some_and(|v| def.meta.timestamp.version() as i64 > v)
            {
                continue;
            }
            match status {
                Status::Pending if def.meta.schedule.is_some() => {
                    let due_at = due_time(def, now);
                    if due_at <= now {
                        due.push(Due::new(def, run, false, false));
                    } else {
                        if !opts.dry_run {
                            env.ledger.schedule(def.meta.name, run, due_at).await?;
                        }
                        report.scheduled.push((def.meta.name.to_owned(), due_at));
                    }
                }
                Status::Scheduled => match row.and_then(|r| r.due_at) {
                    Some(at) if at > now => report.scheduled.push((def.meta.name.to_owned(), at)),
                    _ => due.push(Due::new(def, run, false, true)),
                },
                Status::Pending | Status::Failed | Status::RolledBack => {
                    due.push(Due::new(def, run, false, false))
                }
                Status::Interrupted if def.meta.idempotent || def.meta.retry.tries > 1 => {
                    due.push(Due::new(def, run, false, false))
                }
                Status::Interrupted => report.needs_attention.push(def.meta.name.to_owned()),
                Status::Running | Status::Completed | Status::Skipped => {}
            }
        }
        if !never_ran.is_empty() {
            return Err(SequencerError::Usage(format!(
                "`--repeat` runs completed operations again, but these never completed: {}; run them without `--repeat` first",
                never_ran.join(", ")
            )));
        }
        if due.iter().any(|d| {
            d.def()
                .meta
                .depends_on
                .iter()
                .any(|x| matches!(x, crate::Dependency::Migration(_)))
        }) {
            let applied = crate::strategy::applied_migrations(env.ledger.pool()).await;
            due.retain(|d| {
                let missing = d.def().meta.depends_on.iter().find_map(|x| match x {
                    crate::Dependency::Migration(v) if !applied.contains(v) => Some(*v),
                    _ => None,
                });
                if let Some(v) = missing {
                    report.waiting.push((
                        d.def().meta.name.to_owned(),
                        format!("schema migration {v} is not applied yet"),
                    ));
                }
                missing.is_none()
            });
        }
        // `asynchronous` operations (all, with `--async`) go to the workers' queue, unless forced to run here.
        let force_sync = opts.sync
            || matches!(&self.inner.strategy, crate::strategy::Strategy::Migration(m) if m.forces_sync());
        let done_before: HashSet<String> = rows
            .values()
            .filter(|r| matches!(r.status, Status::Completed | Status::Skipped))
            .map(|r| r.name.clone())
            .collect();
        let mut queue: Vec<Due> = Vec::new();
        let mut in_process: Vec<Due> = Vec::new();
        for d in due {
            let to_queue = !force_sync
                && !opts.dispatch
                && !d.is_new_run()
                && (opts.queue_all || d.def().meta.asynchronous);
            if !to_queue {
                in_process.push(d);
                continue;
            }
            // A queued operation runs whenever a worker takes it: queue it only once its dependencies are done.
            let missing = d.def().meta.depends_on.iter().find_map(|x| match x {
                crate::Dependency::Operation(n) if !done_before.contains(*n) => Some(*n),
                _ => None,
            });
            match missing {
                Some(dep) => report.waiting.push((
                    d.def().meta.name.to_owned(),
                    format!("queued once its dependency `{dep}` has completed (or run with `--dispatch`)"),
                )),
                None => queue.push(d),
            }
        }
        let due = in_process;
        for d in &queue {
            let q = d.def().meta.queue.unwrap_or(crate::worker::DEFAULT_QUEUE);
            if !opts.dry_run {
                env.ledger.enqueue(d.def().meta.name, d.run(), q).await?;
            }
            report
                .queued
                .push((d.def().meta.name.to_owned(), q.to_owned()));
        }
        report.planned = due.iter().map(|d| d.def().meta.name.to_owned()).collect();
        if opts.dry_run {
            return Ok(report);
        }
        if due.is_empty() {
            if !opts.quiet && report.queued.is_empty() {
                let _ = env.events.send(Event::NoPendingOperations);
            }
            return Ok(report);
        }
        let batch = env.ledger.new_batch(&env.owner).await?;
        let _ = env.events.send(Event::OperationsStarted {
            batch,
            count: due.len(),
        });
        let satisfied: HashSet<String> = rows
            .values()
            .filter(|r| matches!(r.status, Status::Completed | Status::Skipped))
            .map(|r| r.name.clone())
            .collect();
        let concurrency = opts.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        let mut run = Run::new(env.clone(), batch, due, satisfied, concurrency);
        if opts.dispatch {
            run = run.dispatching(
                crate::worker::Dispatch::new(env.ledger.clone(), env.cancel.child_token()).await?,
            );
        }
        let orchestrated = self.orchestrator.orchestrate(&run).await?;
        let mut waiting = std::mem::take(&mut report.waiting);
        waiting.extend(orchestrated.waiting.iter().cloned());
        report = RunReport {
            needs_attention: report.needs_attention,
            scheduled: report.scheduled,
            queued: report.queued,
            waiting,
            ..orchestrated
        };
        report.waiting.sort();
        report.waiting.dedup_by(|a, b| a.0 == b.0);
        let _ = env.events.send(Event::OperationsEnded {
            batch,
            completed: report.count(|o| matches!(o, OutcomeKind::Completed { .. })),
            failed: report.count(|o| matches!(o, OutcomeKind::Failed { .. })),
            skipped: report.count(|o| matches!(o, OutcomeKind::Skipped { .. })),
        });
        Ok(report)
    }

    /// What `process` would run, grouped in waves, with the critical path (weighted by each operation's last
    /// recorded duration where known). Runs nothing.
    pub async fn preview(&self, opts: &ProcessOptions) -> Result<Preview, SequencerError> {
        let planned = self
            .process(&ProcessOptions {
                dry_run: true,
                ..opts.clone()
            })
            .await?
            .planned;
        let (statuses, durations) = self.graph_inputs().await?;
        let view = crate::render::analyze(&self.inner.registry, &durations)?;
        let _ = statuses;
        let ops = self.inner.registry.operations();
        let name = |i: usize| ops[i].meta.name.to_owned();
        let waves = view
            .waves
            .iter()
            .map(|w| {
                w.iter()
                    .map(|&i| name(i))
                    .filter(|n| planned.contains(n))
                    .collect::<Vec<_>>()
            })
            .filter(|w| !w.is_empty())
            .collect();
        Ok(Preview {
            critical_path: view.critical_path.iter().map(|&i| name(i)).collect(),
            critical_weight: view.critical_weight,
            total_work: view.total_work,
            planned,
            waves,
        })
    }

    /// The dependency graph with each operation's status: `text`, `dot` (Graphviz) or `mermaid`.
    pub async fn graph(
        &self,
        format: crate::render::GraphFormat,
    ) -> Result<String, SequencerError> {
        let (statuses, durations) = self.graph_inputs().await?;
        Ok(crate::render::render(
            &self.inner.registry,
            &statuses,
            &durations,
            format,
        )?)
    }

    async fn graph_inputs(
        &self,
    ) -> Result<(HashMap<String, Status>, HashMap<String, u64>), SequencerError> {
        let status = self.status().await?;
        let statuses = status.iter().map(|e| (e.name.clone(), e.status)).collect();
        let durations = status
            .iter()
            .filter_map(|e| Some((e.name.clone(), u64::try_from(e.duration_ms?).ok()?.max(1))))
            .collect();
        Ok((statuses, durations))
    }

    /// Every operation of the registry with its latest run, then orphaned ledger rows.
    pub async fn status(&self) -> Result<Vec<StatusEntry>, SequencerError> {
        let mut rows: HashMap<String, LedgerRow> = self
            .ledger()
            .rows()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut out = Vec::new();
        for def in self.inner.registry.ordered()? {
            let m = &def.meta;
            let row = rows.remove(m.name);
            let checksum = format!("{:016x}", m.checksum);
            out.push(StatusEntry {
                name: m.name.to_owned(),
                timestamp: m.timestamp.to_string(),
                status: row.as_ref().map_or(Status::Pending, |r| r.status),
                batch: row.as_ref().and_then(|r| r.batch),
                attempts: row.as_ref().map_or(0, |r| r.attempts),
                started_at: row.as_ref().and_then(|r| r.started_at),
                finished_at: row.as_ref().and_then(|r| r.finished_at),
                duration_ms: row.as_ref().and_then(|r| r.duration_ms),
                error: row
                    .as_ref()
                    .and_then(|r| r.last_error.as_deref().map(|e| self.inner.env.keys.show(e))),
                skip_reason: row.as_ref().and_then(|r| r.skip_reason.clone()),
                progress_done: row.as_ref().and_then(|r| r.progress_done),
                progress_total: row.as_ref().and_then(|r| r.progress_total),
                eta_ms: row.as_ref().and_then(eta),
                edited: row.as_ref().is_some_and(|r| {
                    r.status == Status::Completed
                        && r.checksum.as_deref().is_some_and(|c| c != checksum)
                }),
                orphaned: false,
                tags: m.tags.iter().map(|t| (*t).to_owned()).collect(),
            });
        }
        let mut orphans: Vec<LedgerRow> = rows.into_values().collect();
        orphans.sort_by(|a, b| (a.timestamp, &a.name).cmp(&(b.timestamp, &b.name)));
        for r in orphans {
            let ts = Timestamp::from_version(r.timestamp as u64)
                .map_or_else(|_| r.timestamp.to_string(), |t| t.to_string());
            out.push(StatusEntry {
                name: r.name,
                timestamp: ts,
                status: r.status,
                batch: r.batch,
                attempts: r.attempts,
                started_at: r.started_at,
                finished_at: r.finished_at,
                duration_ms: r.duration_ms,
                error: r.last_error,
                skip_reason: r.skip_reason,
                progress_done: r.progress_done,
                progress_total: r.progress_total,
                eta_ms: None,
                edited: false,
                orphaned: true,
                tags: Vec::new(),
            });
        }
        Ok(out)
    }

    /// Runs one operation now, in this process (an `asynchronous` one too: it is not queued), recording it in a
    /// new batch. An operation whose dependencies (`depends_on` operations and migrations) have not completed is
    /// refused, saying which, and so is a completed one ([`SequencerError::Usage`]); an unknown name is
    /// [`SequencerError::UnknownOperation`] with a suggestion.
    pub async fn execute(&self, name: &str) -> Result<RunReport, SequencerError> {
        let def = self.find(name)?;
        self.check_guards()?;
        let env = &self.inner.env;
        env.ledger.recover_interrupted(&env.owner).await?;
        let rows = env.ledger.rows().await?;
        self.check_dependencies(def, &rows).await?;
        let row = rows.into_iter().find(|r| r.name == def.meta.name);
        if row.is_none() {
            env.ledger
                .insert_pending(&[(def.meta.name, def.meta.timestamp.version() as i64)])
                .await?;
        }
        match row.as_ref().map(|r| r.status) {
            Some(Status::Completed) => {
                return Err(SequencerError::Usage(format!(
                "`{}` has completed already; `process --repeat --from {} --to {}` runs it again",
                def.meta.name, def.meta.timestamp, def.meta.timestamp
            )))
            }
            Some(Status::Running) => {
                return Err(SequencerError::Usage(format!(
                    "`{}` is running in another process",
                    def.meta.name
                )))
            }
            Some(Status::Interrupted) => {
                env.ledger
                    .set_status(
                        def.meta.name,
                        row.as_ref().map_or(0, |r| r.run),
                        Status::Interrupted,
                        Status::Pending,
                        None,
                    )
                    .await?;
            }
            _ => {}
        }
        let batch = env.ledger.new_batch(&env.owner).await?;
        // Asked for by name, a scheduled operation runs now.
        let scheduled = row.as_ref().is_some_and(|r| r.status == Status::Scheduled);
        let run = row.map_or(0, |r| r.run);
        let outcome = env
            .run(
                def,
                Target {
                    run,
                    new_run: false,
                    batch,
                    scheduled,
                },
            )
            .await?;
        Ok(RunReport {
            batch: Some(batch),
            planned: vec![def.meta.name.to_owned()],
            results: vec![(def.meta.name.to_owned(), kind(def, outcome))],
            ..RunReport::default()
        })
    }

    /// Refuses to run an operation by name before its dependencies: every operation it `depends_on` must have
    /// completed (or been skipped) and every schema migration it names must be applied.
    async fn check_dependencies(
        &self,
        def: &'static OperationDef,
        rows: &[LedgerRow],
    ) -> Result<(), SequencerError> {
        let latest: HashMap<&str, &LedgerRow> = rows.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut unmet = Vec::new();
        // The first operation to run before this one, for the hint.
        let mut first = None;
        let mut migrations = None;
        for dep in def.meta.depends_on {
            match dep {
                crate::Dependency::Operation(d) => {
                    match latest.get(d).map(|r| r.status) {
                        Some(Status::Completed | Status::Skipped) => continue,
                        Some(other) => unmet.push(format!("`{d}` (it is {other})")),
                        None => unmet.push(format!("`{d}` (it never ran)")),
                    }
                    first.get_or_insert(*d);
                }
                crate::Dependency::Migration(v) => {
                    if migrations.is_none() {
                        migrations = Some(
                            crate::strategy::applied_migrations(self.inner.env.ledger.pool()).await,
                        );
                    }
                    if migrations.as_ref().is_some_and(|m| !m.contains(v)) {
                        unmet.push(format!(
                            "schema migration {v} (not applied; `migrate` applies it)"
                        ));
                    }
                }
            }
        }
        if unmet.is_empty() {
            return Ok(());
        }
        Err(SequencerError::Usage(format!(
            "`{}` depends on {}, which has not completed; run it first{}, or run them in order with `process`",
            def.meta.name,
            unmet.join(", "),
            first.map(|d| format!(" (`execute {d}`)")).unwrap_or_default()
        )))
    }

    /// Runs one operation without touching the ledger (`execute NAME --no-record`).
    pub async fn execute_unrecorded(&self, name: &str) -> Result<OutcomeKind, SequencerError> {
        let def = self.find(name)?;
        self.check_guards()?;
        Ok(kind(def, self.inner.env.run_unrecorded(def).await))
    }

    /// Marks a failed or interrupted operation pending and runs it now.
    pub async fn retry(&self, name: &str) -> Result<RunReport, SequencerError> {
        let def = self.find(name)?;
        let env = &self.inner.env;
        env.ledger.recover_interrupted(&env.owner).await?;
        let rows = env.ledger.rows().await?;
        let row = rows.iter().find(|r| r.name == def.meta.name).cloned();
        match row {
            Some(r) if matches!(r.status, Status::Failed | Status::Interrupted) => {
                // Refuse before touching the row: a refused retry leaves it as it was.
                self.check_dependencies(def, &rows).await?;
                env.ledger
                    .set_status(&r.name, r.run, r.status, Status::Pending, None)
                    .await?;
                self.execute(def.meta.name).await
            }
            Some(r) => Err(SequencerError::Usage(format!(
                "`{}` is {}, not failed or interrupted: nothing to retry",
                r.name, r.status
            ))),
            None => Err(SequencerError::Usage(format!(
                "`{}` never ran: `process` or `execute` runs it",
                def.meta.name
            ))),
        }
    }

    /// Sets an operation's status by hand (`completed` or `skipped`), for one a human has dealt with.
    pub async fn mark(&self, name: &str, to: Status) -> Result<(), SequencerError> {
        if !matches!(to, Status::Completed | Status::Skipped) {
            return Err(SequencerError::Usage(
                "an operation can be marked `completed` or `skipped`".into(),
            ));
        }
        let def = self.find(name)?;
        let env = &self.inner.env;
        let row = env
            .ledger
            .rows()
            .await?
            .into_iter()
            .find(|r| r.name == def.meta.name);
        let row = match row {
            Some(r) => r,
            None => {
                env.ledger
                    .insert_pending(&[(def.meta.name, def.meta.timestamp.version() as i64)])
                    .await?;
                env.ledger
                    .rows()
                    .await?
                    .into_iter()
                    .find(|r| r.name == def.meta.name)
                    .ok_or_else(|| {
                        SequencerError::Usage("the ledger lost a row it just wrote".into())
                    })?
            }
        };
        if row.status == Status::Running {
            return Err(SequencerError::Usage(format!(
                "`{}` is running; wait for it or for its lease to expire",
                row.name
            )));
        }
        let reason = format!("marked {to} by hand");
        env.ledger
            .set_status(
                &row.name,
                row.run,
                row.status,
                to,
                (to == Status::Skipped).then_some(reason.as_str()),
            )
            .await?;
        Ok(())
    }

    /// Deletes an operation's rows from the ledger (it runs again next time). Works for orphans too.
    pub async fn forget(&self, name: &str) -> Result<u64, SequencerError> {
        let name = match self.find(name) {
            Ok(def) => def.meta.name.to_owned(),
            Err(e) => {
                // An orphaned row has no operation in the registry.
                if self.ledger().rows().await?.iter().any(|r| r.name == name) {
                    name.to_owned()
                } else {
                    return Err(e);
                }
            }
        };
        if self
            .ledger()
            .rows()
            .await?
            .iter()
            .any(|r| r.name == name && r.status == Status::Running)
        {
            return Err(SequencerError::Usage(format!("`{name}` is running: wait for it (or for its lease to expire) before forgetting it")));
        }
        Ok(self.ledger().forget(&name).await?)
    }

    /// Rolls back completed operations, latest first.
    pub async fn rollback(&self, target: &RollbackTarget) -> Result<RunReport, SequencerError> {
        self.check_guards()?;
        let env = &self.inner.env;
        let mut rows: Vec<LedgerRow> = env
            .ledger
            .rows()
            .await?
            .into_iter()
            .filter(|r| r.status == Status::Completed)
            .collect();
        rows.sort_by(|a, b| {
            (b.finished_at, b.timestamp, &b.name).cmp(&(a.finished_at, a.timestamp, &a.name))
        });
        let chosen: Vec<LedgerRow> = match target {
            RollbackTarget::Batch(n) => rows.into_iter().filter(|r| r.batch == Some(*n)).collect(),
            RollbackTarget::Step(n) => rows.into_iter().take(*n).collect(),
            RollbackTarget::Op(name) => {
                let def = self.find(name)?;
                let found: Vec<LedgerRow> = rows
                    .into_iter()
                    .filter(|r| r.name == def.meta.name)
                    .collect();
                if found.is_empty() {
                    return Err(SequencerError::Usage(format!(
                        "`{}` has not completed: nothing to roll back",
                        def.meta.name
                    )));
                }
                found
            }
        };
        let mut report = RunReport::default();
        for r in chosen {
            let Some(def) = self.inner.registry.get(&r.name) else {
                report
                    .rollback_failures
                    .push((r.name.clone(), "orphaned: no longer in the registry".into()));
                continue;
            };
            if !def.meta.rollbackable {
                report.rollback_failures.push((
                    r.name.clone(),
                    "has no rollback (add `rollback = fn` to undo it)".into(),
                ));
                continue;
            }
            match env.roll_back(def, r.run).await? {
                Ok(()) => report.rolled_back.push(r.name),
                Err(e) => report.rollback_failures.push((r.name, e)),
            }
        }
        Ok(report)
    }

    /// Asks a running operation (in any process) to stop at its next `ctx.checkpoint(..)`. `false` if it is not
    /// running.
    pub async fn cancel_operation(&self, name: &str) -> Result<bool, SequencerError> {
        let def = self.find(name)?;
        Ok(self.ledger().request_cancel(def.meta.name).await?)
    }

    /// Recorded errors, of one operation or of all.
    pub async fn errors(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<crate::ledger::ErrorRecord>, SequencerError> {
        let name = match name {
            Some(n) => Some(self.find(n).map(|d| d.meta.name).unwrap_or(n)),
            None => None,
        };
        let keys = &self.inner.env.keys;
        let mut errors = self.ledger().errors(name).await?;
        for e in &mut errors {
            e.message = keys.show(&e.message);
            e.chain = keys.show(&e.chain);
        }
        Ok(errors)
    }
    /// The same as [`Sequencer::execute`]: runs one operation now, in this process, and waits for it (an
    /// `asynchronous` operation is not queued). To hand operations to the workers, use `process` (or
    /// [`Sequencer::enqueue`]).
    pub async fn execute_sync(&self, name: &str) -> Result<RunReport, SequencerError> {
        self.execute(name).await
    }

    /// Runs the operation only when `condition` holds; `Ok(None)` otherwise.
    pub async fn execute_if(
        &self,
        condition: bool,
        name: &str,
    ) -> Result<Option<RunReport>, SequencerError> {
        if condition {
            self.execute(name).await.map(Some)
        } else {
            self.find(name)?;
            Ok(None)
        }
    }

    /// Runs the operation unless `condition` holds; `Ok(None)` otherwise.
    pub async fn execute_unless(
        &self,
        condition: bool,
        name: &str,
    ) -> Result<Option<RunReport>, SequencerError> {
        self.execute_if(!condition, name).await
    }

    /// Whether the operation's latest run completed.
    pub async fn has_executed(&self, name: &str) -> Result<bool, SequencerError> {
        Ok(self.latest_status(name).await? == Some(Status::Completed))
    }

    /// Whether the operation's latest run failed.
    pub async fn has_failed(&self, name: &str) -> Result<bool, SequencerError> {
        Ok(self.latest_status(name).await? == Some(Status::Failed))
    }

    async fn latest_status(&self, name: &str) -> Result<Option<Status>, SequencerError> {
        let def = self.find(name)?;
        Ok(self
            .ledger()
            .rows()
            .await?
            .into_iter()
            .find(|r| r.name == def.meta.name)
            .map(|r| r.status))
    }

    /// A batch of operations run together (in parallel, by [`crate::Batch`] unless `.using(..)` says otherwise),
    /// with callbacks: `seq.batch(["a", "b"]).then(|r| ..).catch(|name, err| ..).finally(|r| ..).dispatch().await`.
    pub fn batch<I, S>(&self, ops: I) -> PendingBatch
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PendingBatch {
            seq: self.using(crate::Batch),
            ops: ops.into_iter().map(Into::into).collect(),
            concurrency: None,
            then: None,
            catch: None,
            finally: None,
        }
    }

    /// A chain: the operations one after another in the given order, stopping at the first failure (completed
    /// ones are passed over): `seq.chain(["a", "b"]).catch(|name, err| ..).dispatch().await`.
    pub fn chain<I, S>(&self, ops: I) -> PendingChain
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PendingChain {
            seq: self.clone(),
            ops: ops.into_iter().map(Into::into).collect(),
            catch: None,
        }
    }
}

type ReportCallback = Box<dyn FnOnce(&RunReport) + Send>;
type FailureCallback = Box<dyn FnOnce(&str, &str) + Send>;

/// A batch waiting for [`PendingBatch::dispatch`]; see [`Sequencer::batch`].
#[must_use = "a batch does nothing until `.dispatch().await`"]
pub struct PendingBatch {
    seq: Sequencer,
    ops: Vec<String>,
    concurrency: Option<usize>,
    then: Option<ReportCallback>,
    catch: Option<FailureCallback>,
    finally: Option<ReportCallback>,
}

impl PendingBatch {
    /// Runs the batch with another orchestrator (`TransactionalBatch`, `AllowedToFailBatch`, …).
    pub fn using(mut self, orchestrator: impl Orchestrator + 'static) -> Self {
        self.seq = self.seq.using(orchestrator);
        self
    }

    /// How many run at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Called when every operation of the batch ended well.
    pub fn then(mut self, f: impl FnOnce(&RunReport) + Send + 'static) -> Self {
        self.then = Some(Box::new(f));
        self
    }

    /// Called with the first failed operation and its error.
    pub fn catch(mut self, f: impl FnOnce(&str, &str) + Send + 'static) -> Self {
        self.catch = Some(Box::new(f));
        self
    }

    /// Called at the end, whatever happened.
    pub fn finally(mut self, f: impl FnOnce(&RunReport) + Send + 'static) -> Self {
        self.finally = Some(Box::new(f));
        self
    }

    /// Runs the batch.
    pub async fn dispatch(self) -> Result<RunReport, SequencerError> {
        let mut only = Vec::with_capacity(self.ops.len());
        for name in &self.ops {
            only.push(self.seq.find(name)?.meta.name.to_owned());
        }
        let opts = ProcessOptions {
            only,
            concurrency: self.concurrency,
            ..ProcessOptions::default()
        };
        let report = self.seq.process(&opts).await?;
        if report.succeeded() {
            if let Some(then) = self.then {
                then(&report);
            }
        } else if let Some(catch) = self.catch {
            if let Some((name, OutcomeKind::Failed { error, .. })) =
                report.results.iter().find(|(_, o)| {
                    matches!(
                        o,
                        OutcomeKind::Failed {
                            allowed_to_fail: false,
                            ..
                        }
                    )
                })
            {
                catch(name, error);
            }
        }
        if let Some(finally) = self.finally {
            finally(&report);
        }
        Ok(report)
    }
}

/// A chain waiting for [`PendingChain::dispatch`]; see [`Sequencer::chain`].
#[must_use = "a chain does nothing until `.dispatch().await`"]
pub struct PendingChain {
    seq: Sequencer,
    ops: Vec<String>,
    catch: Option<FailureCallback>,
}

impl PendingChain {
    /// Called with the operation that failed and its error.
    pub fn catch(mut self, f: impl FnOnce(&str, &str) + Send + 'static) -> Self {
        self.catch = Some(Box::new(f));
        self
    }

    /// Runs the chain: one report per operation that ran.
    pub async fn dispatch(self) -> Result<Vec<RunReport>, SequencerError> {
        let defs = self
            .ops
            .iter()
            .map(|n| self.seq.find(n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reports = Vec::new();
        for def in defs {
            if self.seq.has_executed(def.meta.name).await? {
                continue;
            }
            let report = self.seq.execute(def.meta.name).await?;
            let failed = report.results.iter().find_map(|(n, o)| match o {
                OutcomeKind::Failed { error, .. } => Some((n.clone(), error.clone())),
                _ => None,
            });
            reports.push(report);
            if let Some((name, error)) = failed {
                if let Some(catch) = self.catch {
                    catch(&name, &error);
                }
                break;
            }
        }
        Ok(reports)
    }
}

/// Time left of a running operation at its rate so far.
fn eta(r: &LedgerRow) -> Option<i64> {
    let (done, total, started) = (r.progress_done?, r.progress_total?, r.started_at?);
    if r.status != Status::Running || done <= 0 || total < done {
        return None;
    }
    let elapsed = crate::ledger::now_ms() - started;
    Some(elapsed * (total - done) / done)
}

fn kind(def: &OperationDef, o: Outcome) -> OutcomeKind {
    match o {
        Outcome::Completed { duration } => OutcomeKind::Completed {
            duration_ms: duration.as_millis() as u64,
        },
        Outcome::Failed { error } => OutcomeKind::Failed {
            error,
            allowed_to_fail: def.meta.allowed_to_fail,
        },
        Outcome::Skipped { reason } => OutcomeKind::Skipped { reason },
        Outcome::NotClaimed => OutcomeKind::NotClaimed,
        Outcome::Deferred { reason } => OutcomeKind::Deferred { reason },
        Outcome::Cancelled { reason } => OutcomeKind::Cancelled { reason },
    }
}
