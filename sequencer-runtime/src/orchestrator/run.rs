//! The interface between a run and its orchestrator: the [`Orchestrator`] trait and the [`Run`] it is handed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::error::SequencerError;
use crate::events::Event;
use crate::executor::Env;
use crate::orchestrator::dispatch::Dispatch;
use crate::plan::Due;
use crate::registry::BoxFuture;
use crate::report::{Outcome, RunReport};

/// Decides the order and concurrency of a run's due operations. Implement it to write your own and pass it to
/// [`Sequencer::using`](crate::Sequencer::using) or
/// [`SequencerBuilder::orchestrator`](crate::SequencerBuilder::orchestrator).
///
/// A custom orchestrator is responsible for order: [`Run::execute`] does not check dependencies. Wrapping a
/// built-in one is the easy way to add behaviour (the orchestrators guide, `sequencer::guides::orchestrators`,
/// has one written from scratch):
///
/// ```
/// use sequencer::orchestrator::{Orchestrator, Run};
/// use sequencer::{BoxFuture, DependencyGraph, RunReport, SequencerError};
///
/// /// The dependency-graph orchestrator, announcing each run.
/// struct Announced;
///
/// impl Orchestrator for Announced {
///     fn name(&self) -> &'static str {
///         "announced-graph"
///     }
///
///     fn orchestrate<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<RunReport, SequencerError>> {
///         Box::pin(async move {
///             println!("batch {}: {} due, {} at a time", run.batch(), run.due().len(), run.concurrency());
///             DependencyGraph.orchestrate(run).await
///         })
///     }
/// }
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000")]
///     async fn create_users(_ctx: &Ctx) -> Result<()> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), SequencerError> {
/// # let ledger = sequencer::testing::ledger(sequencer::Sequencer::builder().registry(ops::registry())).await?;
/// # let seq = &ledger.sequencer;
/// let report = seq.using(Announced).execute_all().await?;
/// assert!(report.succeeded());
/// # Ok(())
/// # }
/// ```
pub trait Orchestrator: Send + Sync {
    /// A short name, shown in reports.
    fn name(&self) -> &'static str;

    /// Runs the due operations of `run` (each through [`Run::execute`]) and reports what happened.
    fn orchestrate<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<RunReport, SequencerError>>;

    /// Whether an operation starts only once every operation planned before it has ended, as under
    /// [`Sequential`](crate::Sequential). Asynchronous operations that `process` queues for the workers keep that
    /// order too: each waits (`blocked`) for the operation planned before it. When `false`, they wait only for
    /// their dependencies. The default is `true`, the side that never starts an operation early.
    fn in_plan_order(&self) -> bool {
        true
    }
}

/// A run in progress: its batch, its due operations (in plan order) and the means to execute them.
#[derive(Clone)]
pub struct Run {
    inner: Arc<RunInner>,
}

#[derive(Clone)]
struct RunInner {
    dispatch: Option<Dispatch>,
    /// Waits for the queued operations the run must follow (see [`Due::on_worker`]).
    workers: Option<Dispatch>,
    env: Env,
    batch: i64,
    due: Vec<Due>,
    satisfied: HashSet<String>,
    /// Expected run times of due operations: recorded by their last completed run, else `estimate = ".."`.
    estimates: HashMap<String, Duration>,
    concurrency: usize,
    rollback_on_failure: bool,
}

impl Run {
    pub(crate) fn new(
        env: Env,
        batch: i64,
        due: Vec<Due>,
        satisfied: HashSet<String>,
        concurrency: usize,
    ) -> Self {
        Run {
            inner: Arc::new(RunInner {
                dispatch: None,
                workers: None,
                env,
                batch,
                due,
                satisfied,
                estimates: HashMap::new(),
                concurrency: concurrency.max(1),
                rollback_on_failure: false,
            }),
        }
    }

    /// A run whose orchestrator, if it is [`Sequential`](crate::Sequential) or [`Scheduled`](crate::Scheduled),
    /// rolls back this run's completed operations when one fails (`--rollback-on-failure`).
    pub(crate) fn rolling_back_on_failure(self, yes: bool) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.rollback_on_failure = yes;
        Run {
            inner: Arc::new(inner),
        }
    }

    /// Whether the run was asked to roll back its completed operations when one fails
    /// (`process --rollback-on-failure`, or the builder's `rollback_on_failure`). Only the
    /// [`TransactionalBatch`](crate::TransactionalBatch) rolls back without being asked.
    pub fn rollback_on_failure(&self) -> bool {
        self.inner.rollback_on_failure
    }

    /// A run whose operations are executed by the workers: each is queued when it is ready and awaited.
    pub(crate) fn dispatching(self, dispatch: Dispatch) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.dispatch = Some(dispatch);
        Run {
            inner: Arc::new(inner),
        }
    }

    /// A run that waits, through `dispatch`, for the queued operations among its due ones.
    pub(crate) fn waiting_on_workers(self, dispatch: Dispatch) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.workers = Some(dispatch);
        Run {
            inner: Arc::new(inner),
        }
    }

    /// A run that knows how long its operations are expected to take (see [`Run::estimate`]).
    pub(crate) fn estimating(self, estimates: HashMap<String, Duration>) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.estimates = estimates;
        Run {
            inner: Arc::new(inner),
        }
    }

    /// How long an operation of this run is expected to take: the duration the ledger recorded for its last
    /// completed run, else its `estimate = ".."` key; `None` when neither is known. The dependency-graph
    /// orchestrator starts the ready operation with the longest expected remaining work first.
    pub fn estimate(&self, name: &str) -> Option<Duration> {
        self.inner.estimates.get(name).copied()
    }

    /// The batch number.
    pub fn batch(&self) -> i64 {
        self.inner.batch
    }

    /// The due operations, in plan order (timestamp order, moved only where dependencies demand).
    pub fn due(&self) -> &[Due] {
        &self.inner.due
    }

    /// How many operations may run at once (`--concurrency`).
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// Whether an operation had completed (or been skipped) before this run began.
    pub fn satisfied_before(&self, name: &str) -> bool {
        self.inner.satisfied.contains(name)
    }

    /// How the run was started.
    pub fn via(&self) -> crate::events::Via {
        self.inner.env.via
    }

    /// Whether the run was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.inner.env.cancel.is_cancelled()
    }

    /// Claims and runs one due operation with every policy, recording it in the ledger.
    pub async fn execute(&self, due: &Due) -> Result<Outcome, SequencerError> {
        if due.on_worker() {
            // Queued by the plan (blocked until what it follows has completed): wait for a worker to end it.
            let Some(dispatch) = self.inner.workers.as_ref().or(self.inner.dispatch.as_ref())
            else {
                return Err(SequencerError::Usage(format!(
                    "`{}` is queued for the workers, but this run cannot wait for them",
                    due.def().meta.name
                )));
            };
            return dispatch
                .wait_for_worker(due.def(), due.run(), &self.inner.env.events)
                .await;
        }
        if let Some(dispatch) = &self.inner.dispatch {
            return dispatch
                .run_on_worker(due.def(), due.run(), &self.inner.env.events)
                .await;
        }
        Ok(self.inner.env.run(due, self.inner.batch).await?)
    }

    /// Rolls back an operation this run completed. `Ok(Err(message))` when its rollback failed or it has none.
    pub async fn roll_back(&self, due: &Due) -> Result<Result<(), String>, SequencerError> {
        Ok(self.inner.env.roll_back(due.def(), due.run()).await?)
    }

    pub(crate) fn emit(&self, e: Event) {
        let _ = self.inner.env.events.send(e);
    }
}
