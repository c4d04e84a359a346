//! Planning a run, with no database: from the ordered definitions, the ledger's rows, the options and the time,
//! which operations are due now, which wait (for their time, a dependency or a schema migration), which go to
//! the workers' queue and which need a person. `process` reads the ledger, plans, then writes what the plan says.

use std::collections::{HashMap, HashSet};

use sequencer_core::{Dependency, Schedule};

use crate::error::SequencerError;
use crate::ledger::runs::{LedgerRow, Status};
use crate::options::{ProcessOptions, DEFAULT_QUEUE};
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

/// Plans a run. `ordered` is the registry in plan order; a definition without a row is pending, run 0.
pub(crate) fn plan(
    ordered: &[&'static OperationDef],
    rows: &HashMap<String, LedgerRow>,
    opts: &ProcessOptions,
    inputs: &Inputs<'_>,
) -> Result<Plan, SequencerError> {
    let now = inputs.now;
    let mut plan = Plan {
        satisfied: rows
            .values()
            .filter(|r| matches!(r.status, Status::Completed | Status::Skipped))
            .map(|r| r.name.clone())
            .collect(),
        ..Plan::default()
    };
    let selected = ordered.iter().copied().filter(|o| {
        let ts = o.meta.timestamp;
        opts.from.is_none_or(|f| ts >= f)
            && opts.to.is_none_or(|t| ts <= t)
            && (opts.tags.is_empty()
                || o.meta.tags.iter().any(|t| opts.tags.iter().any(|x| x == t)))
    });
    let mut due: Vec<Due> = Vec::new();
    let mut never_ran = Vec::new();
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
            Status::Interrupted if def.meta.idempotent || def.meta.retry.tries > 1 => {
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
                    Dependency::Operation(n) if !plan.satisfied.contains(*n) => Some(*n),
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
mod tests {
    use std::time::Duration;

    use sequencer_core::{OperationMeta, Timestamp};

    use super::*;
    use crate::ctx::Ctx;
    use crate::registry::{BoxFuture, BLANK_META};
    use crate::result::Result;

    const NOW: i64 = 1_700_000_000_000;

    fn handler(_: &Ctx) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// An operation `name` at second `second` of 2024-01-01, with the keys `set` changes.
    fn op(
        name: &'static str,
        second: u64,
        set: impl FnOnce(&mut OperationMeta),
    ) -> &'static OperationDef {
        let mut meta = OperationMeta {
            name,
            fn_name: name,
            timestamp: Timestamp::from_version_unchecked(20240101000000 + second),
            ..BLANK_META
        };
        set(&mut meta);
        Box::leak(Box::new(OperationDef::new(meta, handler)))
    }

    fn plain(_: &mut OperationMeta) {}

    fn row(name: &str, status: Status, due_at: Option<i64>) -> LedgerRow {
        LedgerRow {
            name: name.to_owned(),
            run: 3,
            timestamp: 0,
            batch: None,
            status,
            attempts: 1,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            lease_until: None,
            host: None,
            pid: None,
            actor: None,
            checksum: None,
            skip_reason: None,
            last_error: None,
            due_at,
            progress_done: None,
            progress_total: None,
            cancel_requested: false,
            pause_requested: 0,
            throttled_since: None,
            throttled_ms: None,
        }
    }

    /// One case: the operations, the ledger's rows, the options, and what the plan must say.
    #[derive(Default)]
    struct Case {
        what: &'static str,
        ops: Vec<&'static OperationDef>,
        rows: Vec<LedgerRow>,
        opts: ProcessOptions,
        force_sync: bool,
        in_plan_order: bool,
        applied: Vec<i64>,
        /// Names; `name@worker` for a queued operation the run waits for.
        due: &'static [&'static str],
        /// Name, queue and what it waits for.
        queued: &'static [(&'static str, &'static str, &'static [&'static str])],
        scheduled: &'static [&'static str],
        to_schedule: &'static [&'static str],
        waiting: &'static [&'static str],
        attention: &'static [&'static str],
    }

    fn run(case: &Case) -> Result<Plan, SequencerError> {
        let rows = case
            .rows
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        let applied = case.applied.iter().copied().collect();
        let inputs = Inputs {
            now: NOW,
            force_sync: case.force_sync,
            applied: &applied,
            in_plan_order: case.in_plan_order,
        };
        plan(&case.ops, &rows, &case.opts, &inputs)
    }

    #[test]
    fn plans_by_status_schedule_dependency_queue_and_options() {
        let cases = vec![
            Case {
                what: "never-run, failed and rolled-back operations are due, in order; done and running ones are not",
                ops: vec![
                    op("a", 1, plain),
                    op("b", 2, plain),
                    op("c", 3, plain),
                    op("d", 4, plain),
                    op("e", 5, plain),
                    op("f", 6, plain),
                ],
                rows: vec![
                    row("b", Status::Completed, None),
                    row("c", Status::Failed, None),
                    row("d", Status::Skipped, None),
                    row("e", Status::RolledBack, None),
                    row("f", Status::Running, None),
                ],
                due: &["a", "c", "e"],
                ..Case::default()
            },
            Case {
                what: "an interrupted operation runs again only when idempotent or retryable; else it needs a person",
                ops: vec![
                    op("idem", 1, |m| m.idempotent = true),
                    op("retry", 2, |m| m.retry.tries = 3),
                    op("once", 3, plain),
                ],
                rows: vec![
                    row("idem", Status::Interrupted, None),
                    row("retry", Status::Interrupted, None),
                    row("once", Status::Interrupted, None),
                ],
                due: &["idem", "retry"],
                attention: &["once"],
                ..Case::default()
            },
            Case {
                what: "a pending scheduled operation is due once its time has come, else recorded as scheduled",
                ops: vec![
                    op("later", 1, |m| {
                        m.schedule = Some(Schedule::Delay(Duration::from_secs(600)))
                    }),
                    op("past", 2, |m| m.schedule = Some(Schedule::At(NOW / 1000 - 60))),
                ],
                due: &["past"],
                scheduled: &["later"],
                to_schedule: &["later"],
                ..Case::default()
            },
            Case {
                what: "a scheduled row is due when its due time has passed, and stays scheduled before",
                ops: vec![op("early", 1, plain), op("late", 2, plain)],
                rows: vec![
                    row("early", Status::Scheduled, Some(NOW - 1)),
                    row("late", Status::Scheduled, Some(NOW + 60_000)),
                ],
                due: &["early"],
                scheduled: &["late"],
                ..Case::default()
            },
            Case {
                what: "an operation waits for the schema migration it depends on",
                ops: vec![
                    op("needs_v1", 1, |m| m.depends_on = &[Dependency::Migration(1)]),
                    op("needs_v2", 2, |m| m.depends_on = &[Dependency::Migration(2)]),
                ],
                applied: vec![1],
                due: &["needs_v1"],
                waiting: &["needs_v2"],
                ..Case::default()
            },
            Case {
                what: "asynchronous operations are queued, blocked by the dependencies not done yet",
                ops: vec![
                    op("base", 1, plain),
                    op("mail", 2, |m| {
                        m.asynchronous = true;
                        m.queue = Some("mail");
                    }),
                    op("after_base", 3, |m| {
                        m.asynchronous = true;
                        m.depends_on = &[Dependency::Operation("base")];
                    }),
                    op("after_done", 4, |m| {
                        m.asynchronous = true;
                        m.depends_on = &[Dependency::Operation("done")];
                    }),
                    op("done", 0, plain),
                ],
                rows: vec![row("done", Status::Completed, None)],
                due: &["base"],
                queued: &[
                    ("mail", "mail", &[]),
                    ("after_base", DEFAULT_QUEUE, &["base"]),
                    ("after_done", DEFAULT_QUEUE, &[]),
                ],
                ..Case::default()
            },
            Case {
                what: "in plan order, a queued operation waits for the one before it, and the run waits for it \
                       when an operation of its own comes after it",
                ops: vec![
                    op("s1", 1, plain),
                    op("a", 2, |m| m.asynchronous = true),
                    op("s2", 3, plain),
                    op("b", 4, |m| m.asynchronous = true),
                    op("c", 5, |m| m.asynchronous = true),
                ],
                in_plan_order: true,
                due: &["s1", "a@worker", "s2"],
                queued: &[
                    ("a", DEFAULT_QUEUE, &["s1"]),
                    ("b", DEFAULT_QUEUE, &["s2"]),
                    ("c", DEFAULT_QUEUE, &["b"]),
                ],
                ..Case::default()
            },
            Case {
                what: "along the graph, the run waits only for the queued operations its own ones depend on",
                ops: vec![
                    op("s1", 1, plain),
                    op("a", 2, |m| {
                        m.asynchronous = true;
                        m.depends_on = &[Dependency::Operation("s1")];
                    }),
                    op("b", 3, |m| {
                        m.asynchronous = true;
                        m.depends_on = &[Dependency::Operation("a")];
                    }),
                    op("s2", 4, |m| m.depends_on = &[Dependency::Operation("b")]),
                    op("c", 5, |m| {
                        m.asynchronous = true;
                        m.depends_on = &[Dependency::Operation("a")];
                    }),
                    op("d", 6, |m| m.asynchronous = true),
                ],
                due: &["s1", "a@worker", "b@worker", "s2"],
                queued: &[
                    ("a", DEFAULT_QUEUE, &["s1"]),
                    ("b", DEFAULT_QUEUE, &["a"]),
                    ("c", DEFAULT_QUEUE, &["a"]),
                    ("d", DEFAULT_QUEUE, &[]),
                ],
                ..Case::default()
            },
            Case {
                what: "`--sync` (or the migration strategy's force_sync) runs asynchronous operations here",
                ops: vec![op("mail", 1, |m| m.asynchronous = true)],
                force_sync: true,
                due: &["mail"],
                ..Case::default()
            },
            Case {
                what: "`--dispatch` runs every due operation through the orchestrator, none queued ahead",
                ops: vec![op("mail", 1, |m| m.asynchronous = true)],
                opts: ProcessOptions {
                    dispatch: true,
                    ..ProcessOptions::default()
                },
                due: &["mail"],
                ..Case::default()
            },
            Case {
                what: "`--async` queues every due operation",
                ops: vec![op("a", 1, plain), op("b", 2, plain)],
                opts: ProcessOptions {
                    queue_all: true,
                    ..ProcessOptions::default()
                },
                queued: &[("a", DEFAULT_QUEUE, &[]), ("b", DEFAULT_QUEUE, &[])],
                ..Case::default()
            },
            Case {
                what: "`--from`, `--to` and `--tags` select",
                ops: vec![
                    op("before", 1, |m| m.tags = &["billing"]),
                    op("inside", 2, |m| m.tags = &["billing"]),
                    op("untagged", 3, plain),
                    op("after", 4, |m| m.tags = &["billing"]),
                ],
                opts: ProcessOptions {
                    from: Some(Timestamp::from_version_unchecked(20240101000002)),
                    to: Some(Timestamp::from_version_unchecked(20240101000003)),
                    tags: vec!["billing".into()],
                    ..ProcessOptions::default()
                },
                due: &["inside"],
                ..Case::default()
            },
            Case {
                what: "`only`, `up_to_version` and `only_scheduled` narrow further",
                ops: vec![
                    op("a", 1, plain),
                    op("b", 2, |m| m.schedule = Some(Schedule::At(0))),
                    op("c", 3, |m| m.schedule = Some(Schedule::At(0))),
                ],
                opts: ProcessOptions {
                    only: vec!["a".into(), "b".into(), "c".into()],
                    up_to_version: Some(20240101000002),
                    only_scheduled: true,
                    ..ProcessOptions::default()
                },
                due: &["b"],
                ..Case::default()
            },
            Case {
                what: "`--repeat` runs completed operations again as new runs, here, never queued",
                ops: vec![
                    op("a", 1, |m| m.asynchronous = true),
                    op("b", 2, plain),
                ],
                rows: vec![
                    row("a", Status::Completed, None),
                    row("b", Status::Running, None),
                ],
                opts: ProcessOptions {
                    repeat: true,
                    ..ProcessOptions::default()
                },
                due: &["a"],
                ..Case::default()
            },
        ];
        for case in &cases {
            let plan = run(case).unwrap_or_else(|e| panic!("{}: {e}", case.what));
            let names = |ds: &[Due]| {
                ds.iter()
                    .map(|d| match d.on_worker {
                        true => format!("{}@worker", d.def.meta.name),
                        false => d.def.meta.name.to_owned(),
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&plan.due), case.due, "{}: due", case.what);
            let queued: Vec<_> = plan
                .to_queue
                .iter()
                .map(|(d, q, after)| (d.def.meta.name, *q, after.as_slice()))
                .collect();
            assert_eq!(queued, case.queued, "{}: queued", case.what);
            let scheduled: Vec<_> = plan.scheduled.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(scheduled, case.scheduled, "{}: scheduled", case.what);
            let to_schedule: Vec<_> = plan.to_schedule.iter().map(|(n, ..)| *n).collect();
            assert_eq!(to_schedule, case.to_schedule, "{}: to schedule", case.what);
            let waiting: Vec<_> = plan.waiting.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(waiting, case.waiting, "{}: waiting", case.what);
            assert_eq!(
                plan.needs_attention, case.attention,
                "{}: needs attention",
                case.what
            );
        }
    }

    #[test]
    fn plan_details_runs_times_and_reasons() {
        let later = op("later", 1, |m| {
            m.schedule = Some(Schedule::Delay(Duration::from_secs(600)))
        });
        let repeat = op("again", 2, plain);
        let dep = op("dep_mig", 3, |m| m.depends_on = &[Dependency::Migration(7)]);
        let rows = vec![row("again", Status::Completed, None)];
        let case = Case {
            ops: vec![later],
            ..Case::default()
        };
        let p = run(&case).expect("plans");
        assert_eq!(p.to_schedule, [("later", 0, NOW + 600_000)]);
        assert_eq!(p.scheduled, [("later".to_owned(), NOW + 600_000)]);

        let case = Case {
            ops: vec![repeat],
            rows,
            opts: ProcessOptions {
                repeat: true,
                ..ProcessOptions::default()
            },
            ..Case::default()
        };
        let p = run(&case).expect("plans");
        assert_eq!((p.due[0].run(), p.due[0].is_new_run()), (4, true));
        assert!(p.satisfied.contains("again"));

        let case = Case {
            ops: vec![dep],
            ..Case::default()
        };
        let p = run(&case).expect("plans");
        assert_eq!(
            p.waiting,
            [(
                "dep_mig".to_owned(),
                "schema migration 7 is not applied yet".to_owned()
            )]
        );
        assert!(needs_migrations(&case.ops));
        assert!(!needs_migrations(&[later]));
    }

    #[test]
    fn repeat_refuses_operations_that_never_completed() {
        let case = Case {
            ops: vec![
                op("done", 1, plain),
                op("new", 2, plain),
                op("bad", 3, plain),
            ],
            rows: vec![
                row("done", Status::Completed, None),
                row("bad", Status::Failed, None),
            ],
            opts: ProcessOptions {
                repeat: true,
                ..ProcessOptions::default()
            },
            ..Case::default()
        };
        let err = run(&case).expect_err("refused").to_string();
        assert!(err.contains("never completed: new, bad"), "{err}");
    }

    #[test]
    fn due_times_of_each_schedule() {
        let at = |s| op("x", 0, move |m| m.schedule = Some(s));
        assert_eq!(due_time(op("x", 0, plain), NOW), NOW);
        assert_eq!(
            due_time(at(Schedule::Delay(Duration::from_secs(5))), NOW),
            NOW + 5_000
        );
        assert_eq!(due_time(at(Schedule::At(42)), NOW), 42_000);
        // 1_700_000_000_000 is 2023-11-14T22:13:20Z: 02:00 is tomorrow, 23:00 today.
        let day = NOW - NOW.rem_euclid(86_400_000);
        let two = Schedule::TimeOfDay {
            hour: 2,
            minute: 0,
            second: 0,
        };
        let eleven = Schedule::TimeOfDay {
            hour: 23,
            minute: 0,
            second: 0,
        };
        assert_eq!(due_time(at(two), NOW), day + 86_400_000 + 2 * 3_600_000);
        assert_eq!(due_time(at(eleven), NOW), day + 23 * 3_600_000);
    }
}
