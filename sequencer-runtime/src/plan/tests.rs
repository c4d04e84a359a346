//! The planner's table-driven tests.
use std::time::Duration;

use sequencer_core::{OperationMeta, Timestamp};

use super::*;
use crate::ctx::Ctx;
use crate::outline::Outline;
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

/// A ledger row of run 3 (also for the status tests).
pub(crate) fn row(name: &str, status: Status, due_at: Option<i64>) -> LedgerRow {
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
        share: &|_| true,
    };
    plan(&case.ops, LatestRuns::Rows(&rows), &case.opts, &inputs)
}

/// [`run`] from an outline of the case's rows (as a dry run reads the ledger): which operations have a row, and
/// the rows neither completed nor skipped.
fn run_outline(case: &Case) -> Result<Plan, SequencerError> {
    let open = case
        .rows
        .iter()
        .filter(|r| !matches!(r.status, Status::Completed | Status::Skipped))
        .map(|r| (r.name.clone(), Some(r.clone())))
        .collect();
    let outline = Outline::of(
        case.ops.iter().map(|d| d.meta.name),
        case.rows.iter().map(|r| r.name.as_str()),
        open,
    );
    let applied = case.applied.iter().copied().collect();
    let inputs = Inputs {
        now: NOW,
        force_sync: case.force_sync,
        applied: &applied,
        in_plan_order: case.in_plan_order,
        share: &|_| true,
    };
    plan(
        &case.ops,
        LatestRuns::Outline(&outline),
        &case.opts,
        &inputs,
    )
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
    for (case, from) in cases
        .iter()
        .flat_map(|c| [(c, "rows"), (c, "outline")])
        .filter(|(c, from)| *from == "rows" || !c.opts.repeat)
    {
        let planned = match from {
            "rows" => run(case),
            _ => run_outline(case),
        };
        let plan = planned.unwrap_or_else(|e| panic!("{} ({from}): {e}", case.what));
        let what = format!("{} ({from})", case.what);
        let names = |ds: &[Due]| {
            ds.iter()
                .map(|d| match d.on_worker {
                    true => format!("{}@worker", d.def.meta.name),
                    false => d.def.meta.name.to_owned(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&plan.due), case.due, "{what}: due");
        let queued: Vec<_> = plan
            .to_queue
            .iter()
            .map(|(d, q, after)| (d.def.meta.name, *q, after.as_slice()))
            .collect();
        assert_eq!(queued, case.queued, "{what}: queued");
        let scheduled: Vec<_> = plan.scheduled.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(scheduled, case.scheduled, "{what}: scheduled");
        let to_schedule: Vec<_> = plan.to_schedule.iter().map(|(n, ..)| *n).collect();
        assert_eq!(to_schedule, case.to_schedule, "{what}: to schedule");
        let waiting: Vec<_> = plan.waiting.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(waiting, case.waiting, "{what}: waiting");
        assert_eq!(
            plan.needs_attention, case.attention,
            "{what}: needs attention"
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
    // 02:00 in Berlin (CET, UTC+1, in November) is 01:00 UTC, tomorrow; an unknown zone is never due, not due at
    // once.
    let berlin = Schedule::TimeOfDayIn {
        hour: 2,
        minute: 0,
        second: 0,
        zone: "Europe/Berlin",
    };
    assert_eq!(due_time(at(berlin), NOW), day + 86_400_000 + 3_600_000);
    let nowhere = Schedule::TimeOfDayIn {
        hour: 2,
        minute: 0,
        second: 0,
        zone: "Mars/Olympus",
    };
    assert_eq!(due_time(at(nowhere), NOW), i64::MAX);
}
