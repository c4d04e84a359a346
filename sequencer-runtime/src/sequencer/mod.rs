//! [`Sequencer`]: the programmatic API over the ledger, the executor and the orchestrators. Each concern adds
//! its own `impl Sequencer` block in a file of this module (building, processing, commands, status and its pages, batches),
//! and the features above it (workers, deferred operations, migrations) add theirs.

pub(crate) mod batch;
pub(crate) mod batch_end;
pub(crate) mod builder;
mod commands;
pub(crate) mod listing;
mod long_runs;
pub(crate) mod process;
pub(crate) mod status;

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::batches::BatchCallbacks;
use crate::error::SequencerError;
use crate::events::Event;
use crate::executor::Env;
use crate::handlers::DeferredHandlers;
use crate::ledger::Ledger;
use crate::options::{Guard, ProcessOptions};
use crate::orchestrator::run::Orchestrator;
use crate::registry::{OperationDef, Registry};
use crate::report::RunReport;
use crate::strategy::Strategy;

/// What every clone of a [`Sequencer`] shares.
pub(crate) struct Inner {
    pub(crate) registry: Registry,
    pub(crate) env: Env,
    pub(crate) guards: Vec<Box<dyn Guard>>,
    pub(crate) migrator: Option<Arc<sqlx::migrate::Migrator>>,
    pub(crate) strategy: Strategy,
    pub(crate) rollback_on_failure: bool,
    pub(crate) concurrency: usize,
    /// Named batch callbacks, registered on the builder.
    pub(crate) batch_callbacks: BatchCallbacks,
}

/// Runs a registry's operations exactly once, recording every run in the ledger.
///
/// Build one with [`Sequencer::builder`]; clones share the ledger connection. Every method that runs
/// operations goes through the same executor, so every policy of the operations applies.
///
/// ```
/// use sequencer::ledger::Status;
/// use sequencer::{Cascade, RollbackTarget, Sequencer};
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
///     #[operation(timestamp = "2024_01_15_120001", depends_on = [create_users], rollback = uninvite_users)]
///     async fn invite_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
///
///     async fn uninvite_users(_ctx: &Ctx) -> Result<()> {
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
/// // `invite_users` depends on it and is completed: refused, unless its dependents go first.
/// assert!(seq.rollback(&RollbackTarget::Op("create_users".into())).await.is_err());
/// let undone = seq.rollback_with(&RollbackTarget::Op("create_users".into()), Cascade::Dependents).await?;
/// assert_eq!(undone.rolled_back, ["2024_01_15_120001_invite_users", "2024_01_15_120000_create_users"]);
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
    pub(crate) inner: Arc<Inner>,
    pub(crate) orchestrator: Arc<dyn Orchestrator>,
}

impl Sequencer {
    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub(crate) fn env(&self) -> &Env {
        &self.inner.env
    }

    pub(crate) fn deferred_handlers(&self) -> &DeferredHandlers {
        &self.inner.env.deferred
    }

    pub(crate) fn migrator(&self) -> Option<Arc<sqlx::migrate::Migrator>> {
        self.inner.migrator.clone()
    }

    /// The execution strategy.
    pub fn strategy(&self) -> &Strategy {
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
        self.inner
            .registry
            .lookup(name)
            .map_err(|suggestion| SequencerError::UnknownOperation {
                name: name.to_owned(),
                suggestion,
            })
    }

    pub(crate) fn check_guards(&self) -> Result<(), SequencerError> {
        let env = &self.inner.env;
        for g in &self.inner.guards {
            g.check(&env.owner.host, env.environment.as_deref())
                .map_err(SequencerError::Refused)?;
        }
        Ok(())
    }
}
