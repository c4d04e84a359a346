//! Planning a run, with no database: from the ordered definitions, the ledger's rows, the options and the time,
//! which operations are due now, which wait (for their time, a dependency or a schema migration), which go to
//! the workers' queue and which need a person. `process` reads the ledger, plans, then writes what the plan says.

use std::collections::{HashMap, HashSet};

use sequencer_core::{Dependency, OperationMeta, Schedule};

use crate::error::SequencerError;
use crate::ledger::batches::BatchId;
use crate::ledger::runs::{LedgerRow, Status};
use crate::options::{ProcessOptions, DEFAULT_QUEUE};
use crate::outline::{LatestRun, Outline};
use crate::registry::OperationDef;

/// One operation due in a run, and which of its runs to claim. The orchestrators receive them in plan order.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    def: &'static OperationDef,
    run: i64,
    new_run: bool,
    scheduled: bool,
    failed_before: i64,
    on_worker: bool,
    batch: Option<BatchId>,
}

impl Due {
    /// `new_run`: `--repeat`, a new run inserted rather than updated; `scheduled`: the row is `scheduled` and due.
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
            failed_before: i64::MAX,
            on_worker: false,
            batch: None,
        }
    }

    /// A failed run is claimed only if it failed before `at` (the database's time when the plan read the ledger):
    /// of processes that start together, each retries only the failures it saw, never another's fresh one.
    pub(crate) fn failed_before(self, at: i64) -> Self {
        Due {
            failed_before: at,
            ..self
        }
    }

    /// An asynchronous operation queued for the workers, which this run waits for: operations of the run come
    /// after it (in plan order, or as its dependents).
    pub(crate) fn awaited_on_worker(self) -> Self {
        Due {
            on_worker: true,
            ..self
        }
    }

    /// A member of a recorded batch or chain: its `ctx.batch()` gives the batch.
    pub(crate) fn in_batch(self, batch: Option<BatchId>) -> Self {
        Due { batch, ..self }
    }

    /// The recorded batch or chain it is a member of.
    pub(crate) fn batch(&self) -> Option<BatchId> {
        self.batch
    }

    /// Whether a worker runs it: the run queued it and waits for its end.
    pub fn on_worker(&self) -> bool {
        self.on_worker
    }

    /// See [`Due::failed_before`].
    pub(crate) fn failures_until(&self) -> i64 {
        self.failed_before
    }

    /// The operation.
    pub fn def(&self) -> &'static OperationDef {
        self.def
    }

    /// The ledger run number this execution claims.
    pub fn run(&self) -> i64 {
        self.run
    }

    /// `--repeat`: a new run, inserted rather than updated.
    pub(crate) fn is_new_run(&self) -> bool {
        self.new_run
    }

    /// The row is `scheduled` and due.
    pub(crate) fn is_scheduled(&self) -> bool {
        self.scheduled
    }
}

/// What a plan reads besides the definitions, the rows and the options.
pub(crate) struct Inputs<'a> {
    /// Unix milliseconds.
    pub now: i64,
    /// Run `asynchronous` operations in this process (`--sync`, or the migration strategy's `force_sync`).
    pub force_sync: bool,
    /// The schema migrations applied, by version.
    pub applied: &'a HashSet<i64>,
    /// The orchestrator starts an operation only once every operation planned before it has ended
    /// ([`Orchestrator::in_plan_order`](crate::orchestrator::Orchestrator::in_plan_order)).
    pub in_plan_order: bool,
    /// Which operations this run may take (the execution strategy's share: `process` and `migrate` split them).
    pub share: &'a (dyn Fn(&OperationMeta) -> bool + Sync),
}

/// What a run does, decided before anything runs.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// To run in this process, in plan order.
    pub due: Vec<Due>,
    /// To put on the workers' queue, with the queue's name and the operations of this plan it must wait for
    /// (queued `blocked` until they have completed).
    pub to_queue: Vec<(Due, &'static str, Vec<&'static str>)>,
    /// Pending scheduled operations to record as `scheduled`: `(name, run, due_at)`.
    pub to_schedule: Vec<(&'static str, i64, i64)>,
    /// Scheduled operations not due yet, with their due time (both those to record and those recorded).
    pub scheduled: Vec<(String, i64)>,
    /// Operations left pending, with the reason: a schema migration, or a dependency of a queued operation.
    pub waiting: Vec<(String, String)>,
    /// Interrupted operations that are neither idempotent nor retryable, and rollbacks that were interrupted.
    pub needs_attention: Vec<String>,
    /// Operations whose rollback was interrupted (also in `needs_attention`).
    pub rollbacks_interrupted: Vec<String>,
    /// Operations recorded `stale` by `rollback --cascade --force` (also in `needs_attention`).
    pub stale: Vec<String>,
    /// Operations another process is running (or rolling back) now: who, since when.
    pub running_elsewhere: Vec<(String, String)>,
    /// Operations completed or skipped before this run: dependencies already met.
    pub satisfied: HashSet<String>,
}

/// Each operation's latest run, as a plan reads the ledger.
#[derive(Clone, Copy)]
pub(crate) enum LatestRuns<'a> {
    /// Every operation's latest run, by name: a definition without one never ran.
    Rows(&'a HashMap<String, LedgerRow>),
    /// Only the latest runs that still need something, and which operations were recorded (a dry run without
    /// `--repeat`, at any size: the completed rows are never read). [`Plan::satisfied`] is left empty.
    Outline(&'a Outline),
}

impl LatestRuns<'_> {
    /// The latest run of the operation named `name` (none when it never ran or cannot be read) and its status
    /// (pending then). A completed or skipped one in an outline has no row and counts as completed.
    fn get(&self, name: &str) -> (Option<&LedgerRow>, Status) {
        match self {
            LatestRuns::Rows(rows) => rows
                .get(name)
                .map_or((None, Status::Pending), |r| (Some(r), r.status)),
            LatestRuns::Outline(o) => match o.latest(name) {
                LatestRun::Never | LatestRun::Unreadable => (None, Status::Pending),
                LatestRun::Done => (None, Status::Completed),
                LatestRun::Open(r) => (Some(r), r.status),
            },
        }
    }
}

/// Plans a run. `ordered` is the registry in plan order; a definition without a row is pending, run 0.
pub(crate) fn plan(
    ordered: &[&'static OperationDef],
    latest: LatestRuns<'_>,
    opts: &ProcessOptions,
    inputs: &Inputs<'_>,
) -> Result<Plan, SequencerError> {
    let now = inputs.now;
    let mut plan = Plan {
        satisfied: match latest {
            LatestRuns::Rows(rows) => rows
                .values()
                .filter(|r| matches!(r.status, Status::Completed | Status::Skipped))
                .map(|r| r.name.clone())
                .collect(),
            LatestRuns::Outline(_) => HashSet::new(),
        },
        ..Plan::default()
    };
    let satisfied = |plan: &Plan, name: &str| match latest {
        LatestRuns::Rows(_) => plan.satisfied.contains(name),
        LatestRuns::Outline(o) => matches!(o.latest(name), LatestRun::Done),
    };
    let selected = ordered.iter().copied().filter(|o| {
        let ts = o.meta.timestamp;
        (inputs.share)(&o.meta)
            && opts.from.is_none_or(|f| ts >= f)
            && opts.to.is_none_or(|t| ts <= t)
            && (opts.tags.is_empty()
                || o.meta.tags.iter().any(|t| opts.tags.iter().any(|x| x == t)))
    });
    let mut due: Vec<Due> = Vec::new();
    let mut never_ran = Vec::new();
    for def in selected {
        let (row, status) = latest.get(def.meta.name);
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
                    plan.to_schedule.push((def.meta.name, run, due_at));
                    plan.scheduled.push((def.meta.name.to_owned(), due_at));
                }
            }
            Status::Scheduled => match row.and_then(|r| r.due_at) {
                Some(at) if at > now => plan.scheduled.push((def.meta.name.to_owned(), at)),
                _ => due.push(Due::new(def, run, false, true)),
            },
            Status::Pending | Status::Failed | Status::RolledBack => {
                due.push(Due::new(def, run, false, false))
            }
            Status::Interrupted if def.meta.runs_again_after_interruption() => {
                due.push(Due::new(def, run, false, false))
            }
            // A rollback that died may have undone half the work: a person decides, never `process`.
            Status::Interrupted => plan.needs_attention.push(def.meta.name.to_owned()),
            // Its work may rest on a rolled-back dependency: a person decides.
            Status::Stale => {
                plan.needs_attention.push(def.meta.name.to_owned());
                plan.stale.push(def.meta.name.to_owned());
            }
            Status::RollbackInterrupted => {
                plan.needs_attention.push(def.meta.name.to_owned());
                plan.rollbacks_interrupted.push(def.meta.name.to_owned());
            }
            Status::Running | Status::RollingBack => {
                let who = row.map(|r| {
                    let doing = if r.status == Status::RollingBack {
                        "rolling back"
                    } else {
                        "running"
                    };
                    let host = r.host.as_deref().unwrap_or("an unknown host");
                    let pid = r.pid.map_or_else(String::new, |p| format!(" (pid {p})"));
                    let since = r.started_at.map_or_else(String::new, |t| {
                        format!(", for {} s", (now - t).max(0) / 1000)
                    });
                    format!("{doing} on {host}{pid}{since}")
                });
                plan.running_elsewhere
                    .push((def.meta.name.to_owned(), who.unwrap_or_default()));
            }
            Status::Completed | Status::Skipped => {}
        }
    }
    let mut due: Vec<Due> = due.into_iter().map(|d| d.failed_before(now)).collect();
    if !never_ran.is_empty() {
        return Err(SequencerError::Usage(format!(
            "`--repeat` runs completed operations again, but these never completed: {}; run them without `--repeat` first",
            never_ran.join(", ")
        )));
    }
    // An operation that depends on a schema migration waits until it is applied.
    due.retain(|d| {
        let missing = d.def.meta.depends_on.iter().find_map(|x| match x {
            Dependency::Migration(v) if !inputs.applied.contains(v) => Some(*v),
            _ => None,
        });
        if let Some(v) = missing {
            plan.waiting.push((
                d.def.meta.name.to_owned(),
                format!("schema migration {v} is not applied yet"),
            ));
        }
        missing.is_none()
    });
    // `asynchronous` operations (all, with `--async`) go to the workers' queue, unless forced to run here. A
    // queued operation waits (`blocked`) for what it must follow: in plan order, the operation planned just
    // before it (which itself ran only after those before it); otherwise its dependencies. Whoever completes
    // those queues it.
    let queues = |d: &Due| {
        !inputs.force_sync
            && !opts.dispatch
            && !d.new_run
            && (opts.queue_all || d.def.meta.asynchronous)
    };
    let mut previous: Option<&'static str> = None;
    for d in &due {
        let name = d.def.meta.name;
        if queues(d) {
            let mut after: Vec<&'static str> = d
                .def
                .meta
                .depends_on
                .iter()
                .filter_map(|x| match x {
                    Dependency::Operation(n) if !satisfied(&plan, n) => Some(*n),
                    _ => None,
                })
                .collect();
            if inputs.in_plan_order {
                after.extend(previous.filter(|p| !after.contains(p)));
            }
            plan.to_queue
                .push((*d, d.def.meta.queue.unwrap_or(DEFAULT_QUEUE), after));
        }
        previous = Some(name);
    }
    // The run waits on the workers for the queued operations its own operations come after.
    let queued: HashSet<&str> = plan
        .to_queue
        .iter()
        .map(|(d, _, _)| d.def.meta.name)
        .collect();
    let awaited: HashSet<&str> = if opts.await_queued {
        queued.clone()
    } else if inputs.in_plan_order {
        let last_here = due.iter().rposition(|d| !queued.contains(d.def.meta.name));
        due[..last_here.map_or(0, |i| i + 1)]
            .iter()
            .map(|d| d.def.meta.name)
            .filter(|n| queued.contains(n))
            .collect()
    } else {
        // Every queued operation an operation run here depends on, directly or through other queued ones.
        let by_name: HashMap<&str, &Due> = due.iter().map(|d| (d.def.meta.name, d)).collect();
        let mut awaited = HashSet::new();
        let mut stack: Vec<&str> = due
            .iter()
            .filter(|d| !queued.contains(d.def.meta.name))
            .map(|d| d.def.meta.name)
            .collect();
        while let Some(n) = stack.pop() {
            let Some(d) = by_name.get(n) else { continue };
            for x in d.def.meta.depends_on {
                if let Dependency::Operation(dep) = x {
                    if queued.contains(dep) && awaited.insert(*dep) {
                        stack.push(dep);
                    }
                }
            }
        }
        awaited
    };
    for d in due {
        let name = d.def.meta.name;
        if !queued.contains(name) {
            plan.due.push(d);
        } else if awaited.contains(name) {
            plan.due.push(d.awaited_on_worker());
        }
    }
    Ok(plan)
}

/// Whether any operation depends on a schema migration: only then does a plan need the applied versions.
pub(crate) fn needs_migrations(ordered: &[&'static OperationDef]) -> bool {
    ordered.iter().any(|d| {
        d.meta
            .depends_on
            .iter()
            .any(|x| matches!(x, Dependency::Migration(_)))
    })
}

/// When a scheduled operation is due, Unix milliseconds; `now` for an operation without a schedule.
pub fn due_time(def: &OperationDef, now: i64) -> i64 {
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
        // The zone was checked by the macro and by `build()`; were it unknown, the operation is never due rather
        // than due at once.
        Some(Schedule::TimeOfDayIn {
            hour,
            minute,
            second,
            zone,
        }) => sequencer_core::next_time_of_day_in((hour, minute, second), zone, now)
            .unwrap_or(i64::MAX),
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

#[cfg(test)]
pub(crate) mod tests;
