//! Orchestrators: how a run's due operations are scheduled. Every built-in one is the same ready-queue scheduler
//! with a different concurrency, priority and failure policy, and every one runs operations through the shared
//! executor, so every policy (retries, timeouts, hooks, conditions, transactions) applies on every path.
//!
//! | orchestrator | concurrency | on a failure |
//! |---|---|---|
//! | [`Sequential`] (default) | 1, timestamp order | stop; roll back this run's Rollbackable operations, in reverse |
//! | [`Batch`] | `--concurrency` | start nothing more; let running ones finish |
//! | [`TransactionalBatch`] | `--concurrency` | stop; roll back *every* operation this run completed, in reverse completion order; report what could not be undone |
//! | [`AllowedToFailBatch`] | `--concurrency` | go on; the run fails if an operation that is not `allowed_to_fail` failed |
//! | [`DependencyGraph`] | `--concurrency` | go on with other branches; the failed operation's dependents do not run |
//! | [`Scheduled`] | 1 | as [`Sequential`]; runs due `execute_at` / `delay` operations |
//!
//! All of them start an operation the moment its last dependency has finished (a ready queue, not waves) and
//! never before. [`DependencyGraph`] picks, among ready operations, the one with the longest chain of dependents
//! first, which keeps a bounded pool close to the critical path. A failed operation's dependents stay pending in
//! the ledger, so that they run once it has been fixed; the report lists them as skipped, with the reason.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::events::Event;
use crate::executor::{Env, Outcome, Target};
use crate::sequencer::{OutcomeKind, RunReport, SequencerError};
use crate::{BoxFuture, Dependency, OperationDef};

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
}

/// One due operation of a run.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    def: &'static OperationDef,
    run: i64,
    new_run: bool,
    scheduled: bool,
}

impl Due {
    pub(crate) fn new(
        def: &'static OperationDef,
        run: i64,
        new_run: bool,
        scheduled: bool,
    ) -> Self {
        Due {
            def,
            run,
            new_run,
            scheduled,
        }
    }

    /// The operation.
    pub fn def(&self) -> &'static OperationDef {
        self.def
    }

    /// Whether this is a new run of a completed operation (`--repeat`).
    pub(crate) fn is_new_run(&self) -> bool {
        self.new_run
    }

    /// Its ledger run number.
    pub fn run(&self) -> i64 {
        self.run
    }
}

/// A run in progress: its batch, its due operations (in plan order) and the means to execute them.
#[derive(Clone)]
pub struct Run {
    inner: Arc<RunInner>,
}

struct RunInner {
    dispatch: Option<crate::worker::Dispatch>,
    env: Env,
    batch: i64,
    due: Vec<Due>,
    satisfied: HashSet<String>,
    concurrency: usize,
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
                env,
                batch,
                due,
                satisfied,
                concurrency: concurrency.max(1),
            }),
        }
    }

    /// A run whose operations are executed by the workers: each is queued when it is ready and awaited.
    pub(crate) fn dispatching(self, dispatch: crate::worker::Dispatch) -> Self {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(arc) => RunInner {
                dispatch: None,
                env: arc.env.clone(),
                batch: arc.batch,
                due: arc.due.clone(),
                satisfied: arc.satisfied.clone(),
                concurrency: arc.concurrency,
            },
        };
        Run {
            inner: Arc::new(RunInner {
                dispatch: Some(dispatch),
                ..inner
            }),
        }
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

    /// Whether the run was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.inner.env.cancel.is_cancelled()
    }

    /// Claims and runs one due operation with every policy, recording it in the ledger.
    pub async fn execute(&self, due: &Due) -> Result<Outcome, SequencerError> {
        if let Some(dispatch) = &self.inner.dispatch {
            return dispatch
                .run_on_worker(due.def, due.run, &self.inner.env.events)
                .await;
        }
        let target = Target {
            run: due.run,
            new_run: due.new_run,
            batch: self.inner.batch,
            scheduled: due.scheduled,
        };
        Ok(self.inner.env.run(due.def, target).await?)
    }

    /// Rolls back an operation this run completed. `Ok(Err(message))` when its rollback failed or it has none.
    pub async fn roll_back(&self, due: &Due) -> Result<Result<(), String>, SequencerError> {
        Ok(self.inner.env.roll_back(due.def, due.run).await?)
    }

    fn emit(&self, e: Event) {
        let _ = self.inner.env.events.send(e);
    }
}

/// Runs one operation at a time in plan order; a failure stops the run and rolls back, in reverse, the
/// Rollbackable operations this run completed. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequential;

/// Runs operations in parallel, bounded by `--concurrency`; a failure starts nothing more.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch;

/// All or nothing: parallel, and on a failure every operation this run completed is rolled back, in reverse
/// completion order; the report says which could not be undone.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransactionalBatch;

/// Parallel; every operation runs whatever fails, and the run fails only if an operation that is not
/// `allowed_to_fail` failed.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowedToFailBatch;

/// Parallel along the dependency graph: each operation starts the moment its last dependency finishes, the ready
/// operation with the longest chain of dependents first; a failure holds back only its dependents.
#[derive(Debug, Clone, Copy, Default)]
pub struct DependencyGraph;

/// Runs the due `execute_at` / `delay` operations (and any other due ones) one at a time, as [`Sequential`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Scheduled;

#[derive(Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    /// Stop starting operations; roll back this run's Rollbackable ones (sequential).
    StopRollBackRollbackable,
    /// Stop starting operations.
    Stop,
    /// Stop; roll back everything this run completed, reporting what cannot be undone.
    StopRollBackAll,
    /// Go on with everything but the failed operation's dependents.
    Continue,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Priority {
    PlanOrder,
    LongestChain,
}

macro_rules! builtin {
    ($ty:ty, $name:literal, $single:expr, $priority:expr, $failure:expr) => {
        impl Orchestrator for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn orchestrate<'a>(
                &'a self,
                run: &'a Run,
            ) -> BoxFuture<'a, Result<RunReport, SequencerError>> {
                Box::pin(ready_queue(
                    run,
                    if $single { 1 } else { run.concurrency() },
                    $priority,
                    $failure,
                ))
            }
        }
    };
}

builtin!(
    Sequential,
    "sequential",
    true,
    Priority::PlanOrder,
    OnFailure::StopRollBackRollbackable
);
builtin!(
    Scheduled,
    "scheduled",
    true,
    Priority::PlanOrder,
    OnFailure::StopRollBackRollbackable
);
builtin!(Batch, "batch", false, Priority::PlanOrder, OnFailure::Stop);
builtin!(
    TransactionalBatch,
    "transactional",
    false,
    Priority::PlanOrder,
    OnFailure::StopRollBackAll
);
builtin!(
    AllowedToFailBatch,
    "allowed-to-fail",
    false,
    Priority::PlanOrder,
    OnFailure::Continue
);
builtin!(
    DependencyGraph,
    "graph",
    false,
    Priority::LongestChain,
    OnFailure::Continue
);

/// The built-in orchestrator of a name: `sequential`, `batch`, `transactional`, `allowed-to-fail`, `graph`,
/// `scheduled`.
pub fn by_name(name: &str) -> Option<Arc<dyn Orchestrator>> {
    Some(match name {
        "sequential" => Arc::new(Sequential),
        "batch" => Arc::new(Batch),
        "transactional" | "transactional-batch" => Arc::new(TransactionalBatch),
        "allowed-to-fail" | "allowed-to-fail-batch" => Arc::new(AllowedToFailBatch),
        "graph" | "dependency-graph" => Arc::new(DependencyGraph),
        "scheduled" => Arc::new(Scheduled),
        _ => return None,
    })
}

/// The names [`by_name`] knows.
pub const NAMES: &[&str] = &[
    "sequential",
    "batch",
    "transactional",
    "allowed-to-fail",
    "graph",
    "scheduled",
];

/// The scheduler behind every built-in orchestrator.
async fn ready_queue(
    run: &Run,
    concurrency: usize,
    priority: Priority,
    on_failure: OnFailure,
) -> Result<RunReport, SequencerError> {
    let due = run.due();
    let n = due.len();
    let index: HashMap<&str, usize> = due
        .iter()
        .enumerate()
        .map(|(i, d)| (d.def.meta.name, i))
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting_on = vec![0usize; n];
    let mut report = RunReport {
        batch: Some(run.batch()),
        planned: due.iter().map(|d| d.def.meta.name.to_owned()).collect(),
        ..RunReport::default()
    };
    let mut blocked: Vec<Option<String>> = vec![None; n];
    for (i, d) in due.iter().enumerate() {
        for dep in d.def.meta.depends_on {
            let Dependency::Operation(dep) = dep else {
                continue;
            };
            match index.get(dep) {
                Some(&j) => {
                    dependents[j].push(i);
                    waiting_on[i] += 1;
                }
                None if run.satisfied_before(dep) => {}
                None => blocked[i] = Some(format!("dependency `{dep}` has not completed")),
            }
        }
    }
    // Longest chain of dependents below each operation (in operations), for the graph's priority.
    let mut chain = vec![1usize; n];
    for i in (0..n).rev() {
        for &c in &dependents[i] {
            chain[i] = chain[i].max(chain[c] + 1);
        }
    }
    let key = |i: usize| match priority {
        Priority::PlanOrder => (0, std::cmp::Reverse(i)),
        Priority::LongestChain => (chain[i], std::cmp::Reverse(i)),
    };
    let mut ready: BinaryHeap<((usize, std::cmp::Reverse<usize>), usize)> = BinaryHeap::new();
    let mut held: Vec<usize> = Vec::new();
    for i in 0..n {
        if let Some(reason) = blocked[i].take() {
            held.push(i);
            report
                .waiting
                .push((due[i].def.meta.name.to_owned(), reason));
        } else if waiting_on[i] == 0 {
            ready.push((key(i), i));
        }
    }
    let mut skipped = vec![false; n];
    for i in held {
        hold_back(i, &dependents, &mut skipped, due, &mut report, run, None);
    }

    let mut tasks: JoinSet<(usize, Result<Outcome, SequencerError>)> = JoinSet::new();
    let mut completed: Vec<usize> = Vec::new();
    let mut stop = false;
    let mut first_error = None;
    loop {
        while !stop && !run.is_cancelled() && tasks.len() < concurrency {
            let Some((_, i)) = ready.pop() else { break };
            let (run, d) = (run.clone(), due[i]);
            tasks.spawn(async move { (i, run.execute(&d).await) });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, outcome) = match joined {
            Ok(pair) => pair,
            // The executor catches the operation's own panics; this is the scheduler's task itself.
            Err(e) => {
                return Err(SequencerError::Usage(format!(
                    "an orchestrator task failed: {e}"
                )))
            }
        };
        let def = due[i].def;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // The ledger failed: start nothing more, and report it once the running operations end.
                stop = true;
                first_error.get_or_insert(e);
                continue;
            }
        };
        let kind = match outcome {
            Outcome::Cancelled { reason } => {
                // Asked to stop: start nothing more, roll nothing back.
                stop = true;
                let name = def.meta.name;
                for &c in &dependents[i] {
                    if !skipped[c] {
                        report.waiting.push((
                            due[c].def.meta.name.to_owned(),
                            format!("dependency `{name}` was cancelled"),
                        ));
                    }
                    hold_back(c, &dependents, &mut skipped, due, &mut report, run, None);
                }
                OutcomeKind::Cancelled { reason }
            }
            Outcome::Deferred { reason } => {
                let name = def.meta.name;
                report.waiting.push((name.to_owned(), reason.clone()));
                for &c in &dependents[i] {
                    if !skipped[c] {
                        report.waiting.push((
                            due[c].def.meta.name.to_owned(),
                            format!("dependency `{name}` is waiting"),
                        ));
                    }
                    hold_back(c, &dependents, &mut skipped, due, &mut report, run, None);
                }
                OutcomeKind::Deferred { reason }
            }
            Outcome::Completed { duration } => {
                completed.push(i);
                for &c in &dependents[i] {
                    waiting_on[c] -= 1;
                    if waiting_on[c] == 0 && !skipped[c] {
                        ready.push((key(c), c));
                    }
                }
                OutcomeKind::Completed {
                    duration_ms: duration.as_millis() as u64,
                }
            }
            Outcome::Skipped { reason } => {
                for &c in &dependents[i] {
                    waiting_on[c] -= 1;
                    if waiting_on[c] == 0 && !skipped[c] {
                        ready.push((key(c), c));
                    }
                }
                OutcomeKind::Skipped { reason }
            }
            Outcome::Failed { error } => {
                let allowed = def.meta.allowed_to_fail;
                if !allowed && on_failure != OnFailure::Continue {
                    stop = true;
                }
                let failed_name = def.meta.name;
                report.results.push((
                    failed_name.to_owned(),
                    OutcomeKind::Failed {
                        error,
                        allowed_to_fail: allowed,
                    },
                ));
                for &c in &dependents[i] {
                    hold_back(
                        c,
                        &dependents,
                        &mut skipped,
                        due,
                        &mut report,
                        run,
                        Some(failed_name),
                    );
                }
                continue;
            }
            Outcome::NotClaimed => OutcomeKind::NotClaimed,
        };
        report.results.push((def.meta.name.to_owned(), kind));
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let failed = !report.succeeded();
    if failed
        && matches!(
            on_failure,
            OnFailure::StopRollBackRollbackable | OnFailure::StopRollBackAll
        )
    {
        for &i in completed.iter().rev() {
            let d = &due[i];
            if !d.def.meta.rollbackable {
                if on_failure == OnFailure::StopRollBackAll {
                    report.rollback_failures.push((
                        d.def.meta.name.to_owned(),
                        "has no rollback: it could not be undone".into(),
                    ));
                }
                continue;
            }
            match run.roll_back(d).await? {
                Ok(()) => report.rolled_back.push(d.def.meta.name.to_owned()),
                Err(e) => report
                    .rollback_failures
                    .push((d.def.meta.name.to_owned(), e)),
            }
        }
    }
    Ok(report)
}

/// Holds back an operation whose dependency failed or is missing, and everything below it.
fn hold_back(
    i: usize,
    dependents: &[Vec<usize>],
    skipped: &mut [bool],
    due: &[Due],
    report: &mut RunReport,
    run: &Run,
    failed: Option<&str>,
) {
    let mut stack = vec![i];
    while let Some(k) = stack.pop() {
        if std::mem::replace(&mut skipped[k], true) {
            continue;
        }
        let name = due[k].def.meta.name.to_owned();
        match failed {
            Some(dep) => {
                let reason = format!("dependency `{dep}` failed; it stays pending");
                run.emit(Event::OperationSkipped {
                    name: name.clone(),
                    reason: reason.clone(),
                });
                report.results.push((name, OutcomeKind::Skipped { reason }));
            }
            None if k != i => report.waiting.push((
                name,
                format!("dependency `{}` is waiting", due[i].def.meta.name),
            )),
            None => {}
        }
        stack.extend(dependents[k].iter().copied());
    }
}
