//! Execution strategies: when operations run. [`Command`] (the default: `process` runs them, `migrate` only
//! migrates), [`MigrationStrategy`] (`migrate` runs them in chronological order between the schema migrations) and
//! [`Hybrid`] (the operations tagged `with_migrations` go with `migrate`, the rest wait for `process`), or your own
//! [`ExecutionStrategy`].

use std::sync::Arc;

use sequencer_core::OperationMeta;

/// Decides when operations run: which ones `migrate` runs around the schema migrations, and which ones it leaves
/// to `process`. Implement it for a strategy of your own and pass it to
/// [`SequencerBuilder::strategy`](crate::SequencerBuilder::strategy):
///
/// ```
/// use sequencer::{ExecutionStrategy, OperationMeta};
///
/// /// `migrate` runs the operations of the `schema` queue between the migrations; `process` runs the rest.
/// struct SchemaQueue;
///
/// impl ExecutionStrategy for SchemaQueue {
///     fn name(&self) -> &str {
///         "schema-queue"
///     }
///
///     fn with_migrations(&self, op: &OperationMeta) -> bool {
///         op.queue == Some("schema")
///     }
/// }
///
/// let builder = sequencer::Sequencer::builder().strategy(SchemaQueue);
/// assert_eq!(builder.configured_strategy().name(), "schema-queue");
/// ```
pub trait ExecutionStrategy: Send + Sync + 'static {
    /// A short name, shown in messages.
    fn name(&self) -> &str;

    /// Whether `migrate` runs this pending operation, in chronological order between the schema migrations:
    /// before applying migration `V`, every such operation written before `V` runs and must complete. `process`
    /// leaves these to `migrate` and runs the others. The default: none (`migrate` only migrates).
    fn with_migrations(&self, op: &OperationMeta) -> bool {
        let _ = op;
        false
    }

    /// Whether `migrate` with no pending migration still runs the operations it runs. Default `true`, so that a
    /// release with operations but no migration runs them on deploy.
    fn run_on_no_pending_migrations(&self) -> bool {
        true
    }

    /// Whether `migrate` runs its `asynchronous` operations in the migrating process instead of queueing them
    /// for the workers (and waiting for them before the next migration). Default `false`.
    fn forces_sync(&self) -> bool {
        false
    }
}

/// The strategy a sequencer uses: one of the built-ins or an [`ExecutionStrategy`] of your own. Anything that
/// implements it converts: `.strategy(Strategy::migration())`, `.strategy(Strategy::hybrid())`,
/// `.strategy(MyStrategy)`.
#[derive(Clone)]
pub struct Strategy(Arc<dyn ExecutionStrategy>);

impl Strategy {
    /// `process` runs the operations; `migrate` only migrates. The default.
    pub fn command() -> Strategy {
        Strategy(Arc::new(Command))
    }

    /// `migrate` runs every operation, in chronological order between the schema migrations; `process` leaves
    /// them to it. Its options are builder methods of [`MigrationStrategy`].
    pub fn migration() -> MigrationStrategy {
        MigrationStrategy::default()
    }

    /// `migrate` runs the operations tagged `with_migrations` between the schema migrations; `process` runs the
    /// rest.
    pub fn hybrid() -> Hybrid {
        Hybrid::default()
    }

    /// Its name: `command`, `migration`, `hybrid` or your strategy's.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The strategy itself.
    pub fn get(&self) -> &dyn ExecutionStrategy {
        &*self.0
    }

    /// Whether `migrate` runs any operation of `ops` (when `false`, `migrate` only migrates).
    pub fn interleaves<'a>(&self, mut ops: impl Iterator<Item = &'a OperationMeta>) -> bool {
        ops.any(|m| self.0.with_migrations(m))
    }
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::command()
    }
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Strategy").field(&self.name()).finish()
    }
}

impl<T: ExecutionStrategy> From<T> for Strategy {
    fn from(s: T) -> Self {
        Strategy(Arc::new(s))
    }
}

/// `process` runs the operations; `migrate` only migrates. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Command;

impl ExecutionStrategy for Command {
    fn name(&self) -> &str {
        "command"
    }
}

/// `migrate` runs every operation in chronological order between the schema migrations: before applying
/// migration `V`, the pending operations written before `V` run and must complete; after the last one, the rest.
#[derive(Clone, Debug)]
pub struct MigrationStrategy {
    run_on_no_pending_migrations: bool,
    force_sync: bool,
}

impl Default for MigrationStrategy {
    /// Operations run on every `migrate`, with or without pending migrations; asynchronous ones go to the workers.
    fn default() -> Self {
        MigrationStrategy {
            run_on_no_pending_migrations: true,
            force_sync: false,
        }
    }
}

impl MigrationStrategy {
    /// Run pending operations when `migrate` finds no pending migration (default `true`: a release with
    /// operations but no migration still runs them on deploy; `false` leaves them until the next migration).
    pub fn run_on_no_pending_migrations(mut self, yes: bool) -> Self {
        self.run_on_no_pending_migrations = yes;
        self
    }

    /// Run every operation of `migrate` in the migrating process, `asynchronous` ones included (they would
    /// otherwise go to the workers' queue, and `migrate` would wait for them before the next migration). It applies
    /// to `migrate` only: `process` queues them as usual.
    pub fn force_sync(mut self, yes: bool) -> Self {
        self.force_sync = yes;
        self
    }
}

impl ExecutionStrategy for MigrationStrategy {
    fn name(&self) -> &str {
        "migration"
    }

    fn with_migrations(&self, _op: &OperationMeta) -> bool {
        true
    }

    fn run_on_no_pending_migrations(&self) -> bool {
        self.run_on_no_pending_migrations
    }

    fn forces_sync(&self) -> bool {
        self.force_sync
    }
}

/// The tag that puts an operation with `migrate` under [`Hybrid`].
pub const WITH_MIGRATIONS: &str = "with_migrations";

/// `migrate` runs the operations tagged `with_migrations` (`tags = ["with_migrations"]`) in chronological order
/// between the schema migrations, as [`MigrationStrategy`] does; `process` runs the rest.
#[derive(Clone, Debug, Default)]
pub struct Hybrid {
    inner: MigrationStrategy,
}

impl Hybrid {
    /// As [`MigrationStrategy::run_on_no_pending_migrations`].
    pub fn run_on_no_pending_migrations(mut self, yes: bool) -> Self {
        self.inner = self.inner.run_on_no_pending_migrations(yes);
        self
    }

    /// As [`MigrationStrategy::force_sync`].
    pub fn force_sync(mut self, yes: bool) -> Self {
        self.inner = self.inner.force_sync(yes);
        self
    }
}

impl ExecutionStrategy for Hybrid {
    fn name(&self) -> &str {
        "hybrid"
    }

    fn with_migrations(&self, op: &OperationMeta) -> bool {
        op.tags.contains(&WITH_MIGRATIONS)
    }

    fn run_on_no_pending_migrations(&self) -> bool {
        self.inner.run_on_no_pending_migrations
    }

    fn forces_sync(&self) -> bool {
        self.inner.force_sync
    }
}
