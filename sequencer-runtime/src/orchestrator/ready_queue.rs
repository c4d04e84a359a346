//! The built-in orchestrators: one ready-queue scheduler with a different concurrency, priority and failure
//! policy each.

use std::collections::{BinaryHeap, HashMap};

use sequencer_core::Dependency;
use tokio::task::JoinSet;

use crate::error::SequencerError;
use crate::events::Event;
use crate::orchestrator::run::{Orchestrator, Run};
use crate::plan::Due;
use crate::registry::BoxFuture;
use crate::report::{Outcome, RunReport};

/// Runs one operation at a time in plan order; a failure stops the run. The default. It undoes nothing on its own:
/// asked to (`--rollback-on-failure`, [`ProcessOptions::rollback_on_failure`](crate::ProcessOptions)), it rolls
/// back, in reverse, the Rollbackable operations this run completed.
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
    /// Stop starting operations; roll back this run's Rollbackable ones when the run asks for it (sequential,
    /// scheduled: `--rollback-on-failure`).
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

            fn in_plan_order(&self) -> bool {
                $single
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
        .map(|(i, d)| (d.def().meta.name, i))
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting_on = vec![0usize; n];
    let mut report = RunReport {
        batch: Some(run.batch()),
        planned: due.iter().map(|d| d.def().meta.name.to_owned()).collect(),
        ..RunReport::default()
    };
    let mut blocked: Vec<Option<String>> = vec![None; n];
    for (i, d) in due.iter().enumerate() {
        for dep in d.def().meta.depends_on {
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
    // The longest remaining work below each operation (its own expected time and its heaviest chain of
    // dependents), for the graph's priority; counted in operations when no time is known.
    let remaining = remaining_work(due, &dependents, |name| run.estimate(name));
    let key = |i: usize| match priority {
        Priority::PlanOrder => (0, std::cmp::Reverse(i)),
        Priority::LongestChain => (remaining[i], std::cmp::Reverse(i)),
    };
    let mut ready: BinaryHeap<((u64, std::cmp::Reverse<usize>), usize)> = BinaryHeap::new();
    let mut held: Vec<usize> = Vec::new();
    for i in 0..n {
        if let Some(reason) = blocked[i].take() {
            held.push(i);
            report
                .waiting
                .push((due[i].def().meta.name.to_owned(), reason));
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
        let def = due[i].def();
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // The ledger failed: start nothing more, and report it once the running operations end.
                stop = true;
                first_error.get_or_insert(e);
                continue;
            }
        };
        match &outcome {
            Outcome::Cancelled { .. } => {
                // Asked to stop: start nothing more, roll nothing back.
                stop = true;
                let name = def.meta.name;
                for &c in &dependents[i] {
                    if !skipped[c] {
                        report.waiting.push((
                            due[c].def().meta.name.to_owned(),
                            format!("dependency `{name}` was cancelled"),
                        ));
                    }
                    hold_back(c, &dependents, &mut skipped, due, &mut report, run, None);
                }
            }
            Outcome::Deferred { reason } | Outcome::Retrying { error: reason, .. } => {
                let name = def.meta.name;
                report.waiting.push((name.to_owned(), reason.clone()));
                for &c in &dependents[i] {
                    if !skipped[c] {
                        report.waiting.push((
                            due[c].def().meta.name.to_owned(),
                            format!("dependency `{name}` is waiting"),
                        ));
                    }
                    hold_back(c, &dependents, &mut skipped, due, &mut report, run, None);
                }
            }
            Outcome::Completed { .. } => {
                completed.push(i);
                for &c in &dependents[i] {
                    waiting_on[c] -= 1;
                    if waiting_on[c] == 0 && !skipped[c] {
                        ready.push((key(c), c));
                    }
                }
            }
            Outcome::Skipped { .. } => {
                for &c in &dependents[i] {
                    waiting_on[c] -= 1;
                    if waiting_on[c] == 0 && !skipped[c] {
                        ready.push((key(c), c));
                    }
                }
            }
            Outcome::Failed { error, .. } => {
                let allowed = def.meta.allowed_to_fail;
                if !allowed && on_failure != OnFailure::Continue {
                    stop = true;
                }
                let failed_name = def.meta.name;
                report.results.push((
                    failed_name.to_owned(),
                    Outcome::Failed {
                        error: error.clone(),
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
            Outcome::NotClaimed => {}
        }
        report.results.push((def.meta.name.to_owned(), outcome));
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let failed = !report.succeeded();
    // Only the transactional batch undoes work on its own; sequential and scheduled runs do when asked.
    let rolls_back = match on_failure {
        OnFailure::StopRollBackAll => true,
        OnFailure::StopRollBackRollbackable => run.rollback_on_failure(),
        OnFailure::Stop | OnFailure::Continue => false,
    };
    if failed
        && rolls_back
        && matches!(
            on_failure,
            OnFailure::StopRollBackRollbackable | OnFailure::StopRollBackAll
        )
    {
        for &i in completed.iter().rev() {
            let d = &due[i];
            if !d.def().meta.rollbackable {
                if on_failure == OnFailure::StopRollBackAll {
                    report.rollback_failures.push((
                        d.def().meta.name.to_owned(),
                        "has no rollback: it could not be undone".into(),
                    ));
                }
                continue;
            }
            match run.roll_back(d).await? {
                Ok(()) => report.rolled_back.push(d.def().meta.name.to_owned()),
                Err(e) => report
                    .rollback_failures
                    .push((d.def().meta.name.to_owned(), e)),
            }
        }
    }
    Ok(report)
}

/// Holds back an operation whose dependency failed or is missing, and everything below it.
/// For each due operation (in plan order: dependencies first), the longest path of expected work from it to the
/// end of the graph, itself included. An operation's weight is its expected time in milliseconds (at least 1);
/// one with none takes the (lower) median of those known, and when none is known every weight is 1, so the priority is
/// the longest chain of dependents.
fn remaining_work(
    due: &[Due],
    dependents: &[Vec<usize>],
    estimate: impl Fn(&str) -> Option<std::time::Duration>,
) -> Vec<u64> {
    let known: Vec<Option<u64>> = due
        .iter()
        .map(|d| estimate(d.def().meta.name).map(|t| (t.as_millis() as u64).max(1)))
        .collect();
    let mut sorted: Vec<u64> = known.iter().flatten().copied().collect();
    sorted.sort_unstable();
    let fallback = sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(1);
    let mut remaining: Vec<u64> = known.iter().map(|k| k.unwrap_or(fallback)).collect();
    for i in (0..due.len()).rev() {
        let below = dependents[i]
            .iter()
            .map(|&c| remaining[c])
            .max()
            .unwrap_or(0);
        remaining[i] = remaining[i].saturating_add(below);
    }
    remaining
}

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
        let name = due[k].def().meta.name.to_owned();
        match failed {
            Some(dep) => {
                let reason = format!("dependency `{dep}` failed; it stays pending");
                run.emit(Event::OperationSkipped {
                    via: run.via(),
                    name: name.clone(),
                    reason: reason.clone(),
                });
                report.results.push((name, Outcome::Skipped { reason }));
            }
            None if k != i => report.waiting.push((
                name,
                format!("dependency `{}` is waiting", due[i].def().meta.name),
            )),
            None => {}
        }
        stack.extend(dependents[k].iter().copied());
    }
}
