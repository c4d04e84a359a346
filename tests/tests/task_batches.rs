//! Typed tasks as members of recorded batches (issue 16): task members mixed with operations run in this
//! process through the task path, a duplicate `unique` key is recorded `skipped`, `ctx.batch().add(..)` takes
//! task members; and the acceptance run: 1,000 `reprice` tasks as one batch on three worker processes, one
//! killed mid-way (PostgreSQL); a batch callback whose worker is killed mid-callback runs again on another worker.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::batch::{finished, members_done, status_line};
use common::work::Workers;
use common::{backends, prefix, Backend};
use sequencer::ledger::{MemberState, Status};
use sequencer::{sqlx, BatchMember, Sequencer};
use sequencer_tests::task_ops::{self, ops, ops::Reprice};

async fn setup(b: &Backend, p: &str) -> Sequencer {
    let seq = common::build(b, task_ops::builder(p).database(b.url.clone())).await;
    sqlx::query(&format!(
        "CREATE TABLE {p}task_log (what VARCHAR(191) NOT NULL, customer BIGINT NOT NULL, attempt BIGINT NOT NULL)"
    ))
    .execute(seq.ledger().pool())
    .await
    .expect("log table");
    seq
}

/// How many times each `(what, customer)` was logged.
async fn counts(seq: &Sequencer, p: &str) -> HashMap<(String, i64), i64> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT what, customer, COUNT(*) FROM {p}task_log GROUP BY what, customer"
    ))
    .fetch_all(seq.ledger().pool())
    .await
    .expect("read the log");
    rows.into_iter().map(|(w, c, n)| ((w, c), n)).collect()
}

fn reprice(customer_id: i64) -> BatchMember {
    BatchMember::task::<ops::reprice>(Reprice { customer_id })
}

/// In this process: a batch of an operation and task members runs the tasks with their data; a second member
/// for the same customer is recorded `skipped` (its `unique` key is held by the first) and counted as ended; a
/// task member adds a task member; `then` runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_members_run_in_process_with_unique_and_add() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let members = vec![
            BatchMember::from("queued_op"),
            reprice(1),
            reprice(2),
            reprice(1),
            BatchMember::task::<ops::fan_out>(Reprice { customer_id: 3 }),
        ];
        let info = seq
            .batch(members)
            .name("mixed")
            .concurrency(1)
            .then("reprice_done")
            .dispatch_and_wait()
            .await
            .unwrap();
        assert_eq!(
            (info.total, info.pending, info.failed, info.skipped),
            (6, 0, 0, 1),
            "{}: {info}",
            b.name
        );
        let log = counts(&seq, &p).await;
        for key in [
            ("queued_op", 0),
            ("reprice", 1),
            ("reprice", 2),
            ("fan_out", 3),
            ("reprice", 1003),
            ("then", 0),
        ] {
            assert_eq!(
                log.get(&(key.0.to_owned(), key.1)),
                Some(&1),
                "{}: {key:?} ran once: {log:?}",
                b.name
            );
        }
        let members = seq.ledger().batch_members(info.id).await.unwrap();
        let skipped: Vec<_> = members
            .iter()
            .filter(|m| m.state == MemberState::Skipped)
            .collect();
        assert_eq!(skipped.len(), 1, "{}: {members:?}", b.name);
        assert_eq!(skipped[0].position, 3, "{}: the duplicate", b.name);
        let reason = skipped[0].reason.as_deref().unwrap_or("");
        assert!(reason.contains("unique"), "{}: {reason}", b.name);
        let row = seq
            .ledger()
            .row_of("reprice", skipped[0].run)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.status, Status::Skipped, "{}: its run row", b.name);
        // The key was released once customer 1's run ended: a new dispatch is taken.
        assert!(seq
            .dispatch::<ops::reprice>(Reprice { customer_id: 1 })
            .await
            .unwrap()
            .is_some());
        common::cleanup(&seq, &p, &["task_log"]).await;
    }
}

/// Issue 16's acceptance run: 1,000 `reprice` tasks (per-customer `unique`, idempotent) as ONE batch on three
/// worker processes, one killed with `kill -9` mid-way. Every customer is re-priced, at least once, and more than
/// once only if the killed worker was running it; a duplicate customer in the batch and one dispatched during the
/// run are skipped / dropped; `status` shows the batch's progress while it runs; `then` runs once, after the last
/// member ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reprice_tasks_on_three_workers_one_killed() {
    const N: i64 = 1000;
    const CONCURRENCY: i64 = 8;
    for b in backends()
        .await
        .into_iter()
        .filter(|b| b.name == "PostgreSQL")
    {
        let p = prefix();
        let seq = setup(&b, &p).await;
        // Customer 0 twice: the second is recorded skipped.
        let members = (0..N).map(reprice).chain([reprice(0)]);
        let id = seq
            .batch(members)
            .name("reprice")
            .then("reprice_done")
            .dispatch()
            .await
            .unwrap();
        let info = seq.batch_info(id).await.unwrap().unwrap();
        assert_eq!(
            (info.total, info.pending, info.skipped),
            (N + 1, N, 1),
            "{}: {info}",
            b.name
        );
        let args = [
            "work",
            "--queue",
            "billing",
            "--concurrency",
            "8",
            "--lease",
            "2",
        ];
        let seqtask =
            |args: &[&str]| common::command(env!("CARGO_BIN_EXE_seqtask"), &b.url, &p, args);
        let mut workers = Workers::start(3, || {
            let mut c = seqtask(&args);
            c.env("SEQTEST_SLEEP_MS", "10");
            c
        });
        members_done(&seq, id, 300, b.name).await;
        workers.kill_first();
        // The last customer's run is still queued: a dispatch for that customer is dropped.
        let last = seq.ledger().batch_members(id).await.unwrap();
        let last = last
            .iter()
            .find(|m| m.position == N - 1)
            .expect("the last member");
        if last.state == MemberState::Pending {
            let again = seq
                .dispatch::<ops::reprice>(Reprice { customer_id: N - 1 })
                .await
                .unwrap();
            assert_eq!(again, None, "{}: customer {} is unique", b.name, N - 1);
        }
        let status = seqtask(&["status"]).output().unwrap();
        let line = status_line(&status, id, "reprice", b.name);
        assert!(
            line.contains(&format!(" of {} done", N + 1)) && line.ends_with("running"),
            "{}: {line}",
            b.name
        );
        let info = finished(&seq, id, b.name).await;
        workers.stop();
        assert_eq!(
            (info.total, info.pending, info.failed, info.skipped),
            (N + 1, 0, 0, 1),
            "{}: {info}",
            b.name
        );
        let log = counts(&seq, &p).await;
        assert_eq!(
            log.get(&("then".to_owned(), 0)),
            Some(&1),
            "{}: `then` ran once, after every member ended: {log:?}",
            b.name
        );
        let mut again = 0;
        for c in 0..N {
            let ran = log.get(&("reprice".to_owned(), c)).copied().unwrap_or(0);
            assert!(ran >= 1, "{}: customer {c} was not re-priced", b.name);
            again += ran - 1;
        }
        assert!(
            again <= CONCURRENCY,
            "{}: {again} runs again: only those the killed worker was running run twice",
            b.name
        );
        let members = seq.ledger().batch_members(id).await.unwrap();
        for m in &members {
            let row = seq
                .ledger()
                .row_of("reprice", m.run)
                .await
                .unwrap()
                .unwrap();
            let expected = if m.position == N {
                (MemberState::Skipped, Status::Skipped)
            } else {
                (MemberState::Completed, Status::Completed)
            };
            assert_eq!((m.state, row.status), expected, "{}: {m:?}", b.name);
        }
        println!(
            "{}: {again} run(s) again after the kill of one of three workers",
            b.name
        );
        common::cleanup(&seq, &p, &["task_log"]).await;
    }
}

/// A chain whose first link is a task member whose `unique` key a queued run holds: the link is recorded
/// `skipped` as the chain is recorded, and the next link's turn comes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_goes_on_past_a_first_link_skipped_for_its_unique_key() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let queued = seq
            .dispatch::<ops::reprice>(Reprice { customer_id: 6 })
            .await
            .unwrap();
        assert!(queued.is_some(), "{}: queued for a worker", b.name);
        let info = seq
            .chain([reprice(6), reprice(7)])
            .dispatch_and_wait()
            .await
            .unwrap();
        assert_eq!(
            (info.total, info.pending, info.failed, info.skipped),
            (2, 0, 0, 1),
            "{}: {info}",
            b.name
        );
        let log = counts(&seq, &p).await;
        assert_eq!(log.get(&("reprice".to_owned(), 7)), Some(&1), "{}", b.name);
        assert_eq!(log.get(&("reprice".to_owned(), 6)), None, "{}", b.name);
        common::cleanup(&seq, &p, &["task_log"]).await;
    }
}

/// A batch the ledger refuses (an operation twice) after its task members' runs were recorded: those runs are
/// recorded `skipped` with the reason, and their `unique` keys are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_leaves_no_task_run_waiting_nor_its_key_held() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let refused = seq
            .batch([
                reprice(8),
                BatchMember::from("queued_op"),
                BatchMember::from("queued_op"),
            ])
            .dispatch()
            .await;
        let err = refused.expect_err("a run is a member once").to_string();
        assert!(err.contains("a run is a member once"), "{}: {err}", b.name);
        let row = seq.ledger().row_of("reprice", 1).await.unwrap().unwrap();
        assert_eq!(row.status, Status::Skipped, "{}: {row:?}", b.name);
        let again = seq
            .dispatch::<ops::reprice>(Reprice { customer_id: 8 })
            .await
            .unwrap();
        assert!(again.is_some(), "{}: the key was released", b.name);
        common::cleanup(&seq, &p, &["task_log"]).await;
    }
}

/// A batch's `then` callback whose worker is killed with `kill -9` mid-callback is run again by another worker
/// once the claim's lease ran out, and only once more: a callback recorded done never runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_callback_killed_mid_way_runs_again_on_another_worker() {
    for b in backends().await.into_iter().filter(|b| b.name != "SQLite") {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let id = seq
            .batch([reprice(1)])
            .then("slow_then")
            .dispatch()
            .await
            .unwrap();
        let logged = |what: &'static str| {
            let (seq, p) = (seq.clone(), p.clone());
            async move {
                counts(&seq, &p)
                    .await
                    .get(&(what.to_owned(), id.0))
                    .copied()
                    .unwrap_or(0)
            }
        };
        let args = ["work", "--queue", "billing", "--lease", "2"];
        let worker = |sleep_ms: &str| {
            common::command(env!("CARGO_BIN_EXE_seqtask"), &b.url, &p, &args)
                .env("SEQTEST_CALLBACK_SLEEP_MS", sleep_ms)
                .spawn()
                .expect("start a worker")
        };
        // The first worker runs the member, then the callback, which sleeps: killed there.
        let mut first = Workers::new(vec![worker("600000")]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while logged("cb_start").await == 0 {
            assert!(
                Instant::now() < deadline,
                "{}: the callback never started",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        first.kill_first();
        assert_eq!(logged("cb_end").await, 0, "{}", b.name);
        // Another worker takes the callback over once the dead claim's lease ran out.
        let mut second = Workers::new(vec![worker("0")]);
        while logged("cb_end").await == 0 {
            assert!(
                Instant::now() < deadline,
                "{}: the callback of the killed worker never ran again",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        second.stop();
        // Another worker later (this process, until idle) finds nothing left to run.
        let work = sequencer::WorkOptions {
            queue: "billing".into(),
            until_idle: true,
            ..sequencer::WorkOptions::default()
        };
        seq.work(&work, sequencer::CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            (logged("cb_start").await, logged("cb_end").await),
            (2, 1),
            "{}: started by the killed worker, run again once",
            b.name
        );
        let info = seq.batch_info(id).await.unwrap().unwrap();
        assert_eq!(info.callback_error, None, "{}: {info}", b.name);
        let log = counts(&seq, &p).await;
        assert_eq!(log.get(&("reprice".to_owned(), 1)), Some(&1), "{}", b.name);
        common::cleanup(&seq, &p, &["task_log"]).await;
    }
}

/// A batch callback that runs three times as long as the lease, with a second live worker scanning for callbacks
/// left behind, runs once: the claim on it is renewed while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_batch_callback_keeps_its_claim_and_runs_once() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let id = seq
            .batch([reprice(1)])
            .then("slow_then")
            .dispatch()
            .await
            .unwrap();
        let logged = |what: &'static str| {
            let (seq, p) = (seq.clone(), p.clone());
            async move {
                counts(&seq, &p)
                    .await
                    .get(&(what.to_owned(), id.0))
                    .copied()
                    .unwrap_or(0)
            }
        };
        // A 2 s lease; the callback sleeps 6 s.
        let args = ["work", "--queue", "billing", "--lease", "2"];
        let worker = || {
            common::command(env!("CARGO_BIN_EXE_seqtask"), &b.url, &p, &args)
                .env("SEQTEST_CALLBACK_SLEEP_MS", "6000")
                .spawn()
                .expect("start a worker")
        };
        let mut workers = Workers::new(vec![worker(), worker()]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while logged("cb_end").await == 0 {
            assert!(
                Instant::now() < deadline,
                "{}: the callback never ended",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        workers.stop();
        assert_eq!(
            (logged("cb_start").await, logged("cb_end").await),
            (1, 1),
            "{}: the other worker took the callback over while it ran",
            b.name
        );
        common::cleanup(&seq, &p, &["task_log"]).await;
    }
}
