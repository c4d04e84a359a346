//! [`SequencerBuilder`]: the registry, the ledger, state, guards and every setting that applies to all runs.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sequencer_core::{Middleware, Schedule};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::batches::{BatchCallback, BatchCallbacks, BatchCtx, Members};
use crate::crypto::Keyring;
use crate::ctx::{Ctx, StateMap};
use crate::error::SequencerError;
use crate::executor::layer::Layer;
use crate::executor::Env;
use crate::handlers::{erase, DeferredHandlers};
use crate::ledger::{Ledger, Owner, DEFAULT_MAX_CONNECTIONS};
use crate::options::{
    check_lease, check_lock_key, check_queue, AppInfo, Guard, Limit, DEFAULT_CONCURRENCY,
    DEFAULT_DATABASE_URL, DEFAULT_LEASE,
};
use crate::orchestrator::ready_queue::Sequential;
use crate::orchestrator::run::Orchestrator;
use crate::registry::{BoxFuture, Registry};
use crate::result::Result;
use crate::sequencer::{Inner, Sequencer};
use crate::strategy::Strategy;

impl Sequencer {
    /// Starts configuring a sequencer.
    pub fn builder() -> SequencerBuilder {
        SequencerBuilder::default()
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
    named_layers: HashMap<String, Arc<dyn Layer>>,
    jitter: f64,
    migrations: Option<Migrations>,
    strategy: Strategy,
    deferred: DeferredHandlers,
    keys: Option<Keyring>,
    max_connections: u32,
    rollback_on_failure: bool,
    app: Option<AppInfo>,
    concurrency: usize,
    hard_timeout_grace: Option<Duration>,
    batch_callbacks: BatchCallbacks,
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
            lease: DEFAULT_LEASE,
            actor: None,
            orchestrator: Arc::new(Sequential),
            limiters: HashMap::new(),
            layers: Vec::new(),
            named_layers: HashMap::new(),
            jitter: 0.0,
            migrations: None,
            strategy: Strategy::command(),
            deferred: DeferredHandlers {
                retry_delay: Duration::from_secs(30),
                ..Default::default()
            },
            keys: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            rollback_on_failure: false,
            app: None,
            concurrency: DEFAULT_CONCURRENCY,
            hard_timeout_grace: None,
            batch_callbacks: BatchCallbacks::new(),
        }
    }
}

impl SequencerBuilder {
    /// Turns hard timeouts on, with this grace period: an attempt of an operation with a `timeout` that has not
    /// ended within its timeout plus the larger of `grace` and a tenth of the timeout (stuck in blocking code,
    /// which the timeout cannot abort) is recorded `failed` and the process exits with code
    /// [`HARD_TIMEOUT_EXIT`](crate::HARD_TIMEOUT_EXIT), for its supervisor to restart it. Off by default in the
    /// library; the CLI turns it on with [`DEFAULT_HARD_TIMEOUT_GRACE`](crate::DEFAULT_HARD_TIMEOUT_GRACE)
    /// (10 s) unless set here.
    pub fn hard_timeout_grace(mut self, grace: Duration) -> Self {
        self.hard_timeout_grace = Some(grace);
        self
    }

    /// The grace set with [`SequencerBuilder::hard_timeout_grace`], if any.
    pub fn configured_hard_timeout_grace(&self) -> Option<Duration> {
        self.hard_timeout_grace
    }

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
    ///
    /// The handler is a task named `deferred:<name>`: its runs ([`Sequencer::defer`]) are task runs, run by the
    /// executor with the builder's layers, events, leases and recovery, and retries (each run's
    /// `max_attempts`, [`deferred_retry_delay`](Self::deferred_retry_delay) apart, times the tries so far). Kept
    /// for the code that uses it: a `#[task]` dispatched with [`Sequencer::dispatch`] is the same thing typed,
    /// with every key of the attribute (hooks, timeout, unique, tags, ..).
    pub fn deferred<T, F>(mut self, name: &str, handler: F) -> Self
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        F: for<'a> Fn(&'a Ctx, T) -> BoxFuture<'a, Result<()>> + Send + Sync + 'static,
    {
        self.deferred
            .handlers
            .insert(name.to_owned(), erase(handler));
        self
    }

    /// The encryption keys (default: `SEQUENCER_KEY` and `SEQUENCER_OLD_KEYS` from the environment).
    pub fn encryption_keys(mut self, keys: Keyring) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Registers a named batch callback, for `.then("name")`, `.catch("name")` and `.finally("name")` of
    /// [`Sequencer::batch`] and [`Sequencer::chain`]: `.batch_callback("notify_done", |ctx: BatchCtx| async move
    /// { .. })`. A batch on the workers runs its callbacks where its last member ended (or where its first
    /// failure was caught), so every process that runs `work` registers the same callbacks.
    pub fn batch_callback<F, Fut>(mut self, name: &str, callback: F) -> Self
    where
        F: Fn(BatchCtx) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let callback: BatchCallback = Arc::new(move |ctx| Box::pin(callback(ctx)));
        self.batch_callbacks.insert(name.to_owned(), callback);
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

    /// The schema migrations `migrate` applies on the ledger database, already loaded
    /// (`sqlx::migrate::Migrator::new(path).await?`). [`migrations`](Self::migrations) takes the directory
    /// instead; the last of the two called wins.
    pub fn migrator(mut self, migrator: sqlx::migrate::Migrator) -> Self {
        self.migrations = Some(Migrations::Loaded(Arc::new(migrator)));
        self
    }

    /// The directory of sqlx migrations (`<VERSION>_<description>.sql` files) that `migrate` applies on the
    /// ledger database: `.migrations("migrations")`. A relative path is taken from the working directory.
    /// [`build`](Self::build) reads it, and fails with a [`SequencerError::Usage`] naming the directory when it
    /// is missing or unreadable. [`migrator`](Self::migrator) takes an already loaded `Migrator` instead; the last
    /// of the two called wins.
    pub fn migrations(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.migrations = Some(Migrations::Dir(dir.as_ref().to_path_buf()));
        self
    }

    /// When operations run: [`Strategy::command()`] (default), [`Strategy::migration()`] to run them in
    /// chronological order between the schema migrations in `migrate`, [`Strategy::hybrid()`], or an
    /// [`ExecutionStrategy`](crate::ExecutionStrategy) of your own.
    pub fn strategy(mut self, strategy: impl Into<Strategy>) -> Self {
        self.strategy = strategy.into();
        self
    }

    /// The execution strategy set so far (for a front end that lets the environment override it).
    pub fn configured_strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// How many operations the parallel orchestrators run at once when a run does not say
    /// ([`ProcessOptions::concurrency`](crate::ProcessOptions), `--concurrency`, `SEQUENCER_CONCURRENCY`).
    /// Default [`DEFAULT_CONCURRENCY`]; at least 1.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
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

    /// Registers a [`Layer`] under a name, for the operations that list it: `middleware = [audit]` runs
    /// `.named_layer("audit", Audit)` around their attempts only, inside the layers added with
    /// [`SequencerBuilder::layer`], in the order listed. An operation naming a layer that is not registered is an
    /// error of [`SequencerBuilder::build`].
    ///
    /// ```
    /// use sequencer::{BoxFuture, Ctx, Layer, Next, Result};
    ///
    /// /// Writes a log line before and after each attempt.
    /// struct Audit;
    ///
    /// impl Layer for Audit {
    ///     fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, Result<()>> {
    ///         Box::pin(async move {
    ///             ctx.log("audit: starting").await?;
    ///             let result = next.run(ctx).await;
    ///             ctx.log(format!("audit: ended, ok = {}", result.is_ok())).await?;
    ///             result
    ///         })
    ///     }
    /// }
    ///
    /// #[sequencer::operations]
    /// mod ops {
    ///     use sequencer::prelude::*;
    ///
    ///     #[operation(timestamp = "2024_01_15_120000", middleware = [audit])]
    ///     async fn purge_sessions(_ctx: &Ctx) -> Result<()> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let builder = sequencer::Sequencer::builder()
    ///     .registry(ops::registry())
    ///     .named_layer("audit", Audit);
    /// # let ledger = sequencer::testing::ledger(builder).await.unwrap();
    /// # let report = ledger.sequencer.execute_all().await.unwrap();
    /// # assert!(report.succeeded(), "{report:?}");
    /// # let lines = ledger.sequencer.logs("purge_sessions", 0).await.unwrap();
    /// # assert_eq!(lines.len(), 2);
    /// # }
    /// ```
    pub fn named_layer(mut self, name: impl Into<String>, layer: impl Layer + 'static) -> Self {
        self.named_layers.insert(name.into(), Arc::new(layer));
        self
    }

    /// Who runs (recorded in the ledger).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The application's name, version and description, for the CLI's `--help` and `--version`:
    /// `.app(sequencer::app_info!())` takes them from the application's `Cargo.toml`.
    pub fn app(mut self, info: AppInfo) -> Self {
        self.app = Some(info);
        self
    }

    /// What [`SequencerBuilder::app`] set.
    pub fn app_info(&self) -> Option<&AppInfo> {
        self.app.as_ref()
    }

    /// The size of the ledger's connection pool (default 12; operations share it through `ctx.pool()`). Lower it
    /// when many processes share one server: eight `work` processes of 12 connections already fill PostgreSQL's
    /// default `max_connections = 100`.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Every `process` with the sequential or scheduled orchestrator rolls back, in reverse, the Rollbackable
    /// operations it completed when one fails (as `--rollback-on-failure` does for one run). Default: off, so that
    /// nothing is undone that was not asked to be.
    pub fn rollback_on_failure(mut self, yes: bool) -> Self {
        self.rollback_on_failure = yes;
        self
    }

    /// Validates the registry, connects to the ledger and applies its schema migrations.
    pub async fn build(self) -> std::result::Result<Sequencer, SequencerError> {
        let registry = self.registry.ok_or_else(|| {
            SequencerError::Usage("no registry: call `.registry(ops::registry())`".into())
        })?;
        registry.shared_plan()?;
        check_lease(self.lease).map_err(SequencerError::Usage)?;
        for def in registry.operations() {
            // What reaches SQL is checked here, with the operation named, not silently cut by the database.
            let refuse = |e: String| SequencerError::Usage(format!("`{}`: {e}", def.meta.name));
            if let Some(q) = def.meta.queue {
                check_queue(q).map_err(refuse)?;
            }
            if let Some(u) = def.meta.unique {
                check_lock_key(u.key).map_err(refuse)?;
            }
            if let Some(Schedule::TimeOfDayIn { zone, .. }) = def.meta.schedule {
                sequencer_core::check_time_zone(zone).map_err(|e| refuse(e.to_string()))?;
            }
            for m in def.meta.middleware {
                if let Middleware::WithoutOverlapping { key, .. } = m {
                    check_lock_key(key).map_err(refuse)?;
                }
            }
            for m in def.meta.middleware {
                if let Middleware::Named(name) = m {
                    if !self.named_layers.contains_key(*name) {
                        return Err(unknown_layer(def.meta.name, name, &self.named_layers));
                    }
                }
            }
            for m in def.meta.middleware {
                if let Middleware::RateLimited {
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
        let migrator = match self.migrations {
            None => None,
            Some(Migrations::Loaded(m)) => Some(m),
            Some(Migrations::Dir(dir)) => Some(Arc::new(load_migrations(&dir).await?)),
        };
        let keys = match self.keys {
            Some(k) => k,
            None => Keyring::from_env().map_err(|e| {
                SequencerError::Usage(format!("SEQUENCER_KEY / SEQUENCER_OLD_KEYS: {e}"))
            })?,
        };
        // Each deferred handler is a task: in the registry, so that workers, `task_status`, `retry_task` and the
        // dashboard find its runs.
        let mut deferred = self.deferred;
        let deferred_tasks = deferred.make_tasks(keys.can_seal());
        if let Some(clash) = deferred_tasks
            .iter()
            .find(|t| registry.task(t.name()).is_some())
        {
            return Err(SequencerError::Usage(format!(
                "the deferred handler `{}` is named like the task `{}` of the registry: rename one",
                clash.op.meta.fn_name,
                clash.name()
            )));
        }
        let registry = registry.with_tasks(deferred_tasks);
        let tasks = registry.tasks().iter().map(|t| &t.op);
        if let Some(op) = registry
            .operations()
            .iter()
            .copied()
            .chain(tasks)
            .find(|o| o.meta.encrypted)
        {
            if !keys.can_seal() {
                return Err(SequencerError::Usage(format!(
                    "`{}` is `encrypted`, but no key is configured: set SEQUENCER_KEY (32 bytes, base64, e.g. `openssl rand -base64 32`)",
                    op.meta.name
                )));
            }
        }
        // The embedded default: say once, when its file is made, where the ledger lives and how to choose another.
        let default_file = DEFAULT_DATABASE_URL.trim_start_matches("sqlite://");
        let creates_default =
            self.database.is_none() && !std::path::Path::new(default_file).exists();
        let url = self
            .database
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let ledger = Ledger::connect_with(&url, &self.prefix, self.max_connections).await?;
        if creates_default {
            eprintln!(
                "sequencer: created the ledger `{default_file}` (SQLite) in the working directory; choose another database with `--database URL`, SEQUENCER_DATABASE_URL or `.database(url)`"
            );
        }
        let (events, _) = broadcast::channel(1024);
        let keys = Arc::new(keys);
        let members = Arc::new(Members {
            ledger: ledger.clone(),
            keys: keys.clone(),
            registry: registry.clone(),
        });
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
            named_layers: Arc::new(self.named_layers),
            jitter: self.jitter,
            keys,
            held: Arc::default(),
            worker_beats: false,
            releases_jobs: registry.operations().iter().any(|d| d.meta.asynchronous),
            via: crate::events::Via::Process,
            hard_timeout_grace: self.hard_timeout_grace,
            members,
            deferred: Arc::new(deferred),
        };
        Ok(Sequencer {
            inner: Arc::new(Inner {
                registry,
                env,
                guards: self.guards,
                migrator,
                strategy: self.strategy,
                rollback_on_failure: self.rollback_on_failure,
                concurrency: self.concurrency,
                batch_callbacks: self.batch_callbacks,
            }),
            orchestrator: self.orchestrator,
        })
    }
}

/// The error of an operation whose `middleware = [name]` names no registered layer: the registered names, and the
/// closest one.
fn unknown_layer(
    op: &str,
    name: &str,
    registered: &HashMap<String, Arc<dyn Layer>>,
) -> SequencerError {
    let mut names: Vec<&str> = registered.keys().map(String::as_str).collect();
    names.sort_unstable();
    let known = if names.is_empty() {
        "no layer is registered by name".to_owned()
    } else {
        let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        format!("the registered ones are {}", list.join(", "))
    };
    let hint = sequencer_core::suggest::did_you_mean(name, names.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    SequencerError::Usage(format!(
        "`{op}` uses the middleware `{name}`, but no layer is registered by that name: add \
         `.named_layer(\"{name}\", layer)` to the builder ({known}){hint}"
    ))
}

/// Where the schema migrations come from: loaded by the caller, or a directory read by `build`.
enum Migrations {
    Loaded(Arc<sqlx::migrate::Migrator>),
    Dir(std::path::PathBuf),
}

/// Reads a directory of sqlx migrations; a missing or unreadable directory is named in the error.
async fn load_migrations(
    dir: &std::path::Path,
) -> std::result::Result<sqlx::migrate::Migrator, SequencerError> {
    let cannot = |why: String| {
        SequencerError::Usage(format!(
            "cannot read the migrations directory `{}`: {why}",
            dir.display()
        ))
    };
    // sqlx reports a missing directory without its path; check first to say which one and why.
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(cannot("it is not a directory".into())),
        Err(e) => return Err(cannot(e.to_string())),
    }
    sqlx::migrate::Migrator::new(dir.to_path_buf())
        .await
        .map_err(|e| cannot(e.to_string()))
}
