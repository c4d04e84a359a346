//! The orchestrators on every backend: dependencies are never overtaken, concurrency is reached and bounded, and
//! each failure policy holds.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use common::{backends, prefix, rows, Backend};
use sequencer::ledger::{LedgerRow, Status};
use sequencer::{
    AllowedToFailBatch, Batch, Dependency, DependencyGraph, Outcome, ProcessOptions, Sequencer,
    TransactionalBatch,
};
use sequencer_tests::par_ops::{ops, ParKnobs};

async fn sequencer(b: &Backend, p: &str) -> (Sequencer, Arc<ParKnobs>) {
    let knobs = Arc::new(ParKnobs {
        prefix: p.to_owned(),
        ..ParKnobs::default()
    });
    let builder = common::builder(b, p, ops::registry()).state(knobs.clone());
    let seq = common::build(b, builder).await;
    (seq, knobs)
}

fn opts(concurrency: usize) -> ProcessOptions {
    ProcessOptions {
        concurrency: Some(concurrency),
        ..ProcessOptions::default()
    }
}

/// Every operation started at or after the end of each of its dependencies (ledger times, milliseconds).
fn assert_dependencies_respected(name: &str, rows: &HashMap<String, LedgerRow>) {
    for def in ops::registry().operations() {
        let me = &rows[def.meta.fn_name];
        let Some(started) = me.started_at else {
            continue;
        };
        for d in def.meta.depends_on {
            let Dependency::Operation(dep) = d else {
                continue;
            };
            let dep_row = &rows[dep.split_at(18).1];
            let finished = dep_row.finished_at.unwrap_or(i64::MAX);
            assert!(
                started >= finished,
                "{name}: {} started at {started}, before {dep} finished at {finished}",
                def.meta.fn_name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_starts_each_operation_after_its_dependencies_and_runs_wide() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs) = sequencer(&b, &p).await;
        let report = seq.using(DependencyGraph).process(&opts(8)).await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let r = rows(&seq).await;
        assert!(
            r.values().all(|row| row.status == Status::Completed),
            "{}",
            b.name
        );
        assert_dependencies_respected(b.name, &r);
        // After p_root, the six wide operations, p_fail and p_opt are ready together.
        let max = knobs.max_running.load(SeqCst);
        assert!(max >= 6, "{}: at most {max} ran at once", b.name);
        assert!(
            max <= 8,
            "{}: {max} ran at once, over the limit of 8",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_concurrency_is_reached_and_never_exceeded() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs) = sequencer(&b, &p).await;
        let report = seq.using(Batch).process(&opts(3)).await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(knobs.max_running.load(SeqCst), 3, "{}", b.name);
        assert_dependencies_respected(b.name, &rows(&seq).await);
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_holds_back_only_the_dependents_of_a_failure() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs) = sequencer(&b, &p).await;
        knobs.fail.store(true, SeqCst);
        let report = seq.using(DependencyGraph).process(&opts(8)).await.unwrap();
        assert!(!report.succeeded(), "{}", b.name);
        let skipped = report
            .results
            .iter()
            .find(|(n, _)| n.ends_with("p_after_fail"))
            .map(|(_, o)| o.clone());
        assert!(
            matches!(&skipped, Some(Outcome::Skipped { reason }) if reason.contains("p_fail` failed")),
            "{}: {skipped:?}",
            b.name
        );
        let r = rows(&seq).await;
        assert_eq!(r["p_fail"].status, Status::Failed, "{}", b.name);
        assert_eq!(
            r["p_after_fail"].status,
            Status::Pending,
            "{}: it stays pending, to run once p_fail is fixed",
            b.name
        );
        assert_eq!(
            r["p_join"].status,
            Status::Completed,
            "{}: other branches go on",
            b.name
        );
        assert!(
            knobs.rollbacks.lock().unwrap().is_empty(),
            "{}: the graph rolls nothing back",
            b.name
        );

        // Fixed: the next run runs the failed operation and then its dependent.
        knobs.fail.store(false, SeqCst);
        let report = seq.using(DependencyGraph).process(&opts(8)).await.unwrap();
        assert_eq!(report.planned.len(), 2, "{}: {report:?}", b.name);
        assert_eq!(rows(&seq).await["p_after_fail"].status, Status::Completed);
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transactional_batch_rolls_back_this_runs_operations_in_reverse() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs) = sequencer(&b, &p).await;
        // An earlier run: p_root completed before; it must not be rolled back.
        seq.process(&ProcessOptions {
            to: Some("2024_06_01_000001".parse().unwrap()),
            ..opts(1)
        })
        .await
        .unwrap();
        knobs.fail.store(true, SeqCst);
        let report = seq
            .using(TransactionalBatch)
            .process(&opts(8))
            .await
            .unwrap();
        assert!(!report.succeeded(), "{}", b.name);
        let completed: Vec<String> = report
            .results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Completed { .. }))
            .map(|(n, _)| n.split_at(18).1.to_owned())
            .collect();
        let undone = knobs.rollbacks.lock().unwrap().clone();
        let expected: Vec<String> = completed
            .iter()
            .rev()
            .filter(|n| *n == "p_w1" || *n == "p_w2")
            .cloned()
            .collect();
        assert_eq!(
            undone, expected,
            "{}: reverse completion order of this run's rollbackable ops",
            b.name
        );
        assert!(
            !undone.contains(&"p_root".to_owned()),
            "{}: an earlier run's op is left alone",
            b.name
        );
        let not_undone: Vec<&str> = report
            .rollback_failures
            .iter()
            .map(|(n, _)| n.split_at(18).1)
            .collect();
        for n in completed.iter().filter(|n| *n != "p_w1" && *n != "p_w2") {
            assert!(
                not_undone.contains(&n.as_str()),
                "{}: {n} is reported as not undone: {not_undone:?}",
                b.name
            );
        }
        let r = rows(&seq).await;
        assert_eq!(r["p_root"].status, Status::Completed);
        for n in &undone {
            assert_eq!(r[n.as_str()].status, Status::RolledBack, "{}: {n}", b.name);
        }
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_to_fail_batch_runs_everything_and_batch_stops_starting() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs) = sequencer(&b, &p).await;
        knobs.fail_opt.store(true, SeqCst);
        let report = seq
            .using(AllowedToFailBatch)
            .process(&opts(4))
            .await
            .unwrap();
        assert!(
            report.succeeded(),
            "{}: an allowed_to_fail failure does not fail the run",
            b.name
        );
        assert_eq!(rows(&seq).await["p_opt"].status, Status::Failed);
        common::cleanup(&seq, &p, &[]).await;

        let p = prefix();
        let (seq, knobs) = sequencer(&b, &p).await;
        knobs.fail.store(true, SeqCst);
        let report = seq
            .using(AllowedToFailBatch)
            .process(&opts(4))
            .await
            .unwrap();
        assert!(!report.succeeded(), "{}: another failure fails it", b.name);
        assert_eq!(
            rows(&seq).await["p_join"].status,
            Status::Completed,
            "{}: but everything else ran",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;

        // A plain batch starts nothing once an operation failed (one at a time, p_fail is first after the root).
        let p = prefix();
        let (seq, knobs) = sequencer(&b, &p).await;
        knobs.fail.store(true, SeqCst);
        let report = seq.using(Batch).process(&opts(1)).await.unwrap();
        assert!(!report.succeeded());
        let r = rows(&seq).await;
        assert_eq!(
            (r["p_root"].status, r["p_fail"].status),
            (Status::Completed, Status::Failed),
            "{}",
            b.name
        );
        assert_eq!(
            r["p_w1"].status,
            Status::Pending,
            "{}: nothing started after the failure",
            b.name
        );
        assert!(
            knobs.rollbacks.lock().unwrap().is_empty(),
            "{}: a batch rolls nothing back",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

/// `execute NAME` and `retry NAME` refuse an operation whose dependencies have not completed, say which and how
/// to fix it, and leave the ledger as it was; once the dependency has run, the same command runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_and_retry_wait_for_dependencies() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs) = sequencer(&b, &p).await;
        let name = |f: &str| {
            ops::registry()
                .operations()
                .iter()
                .find(|d| d.meta.fn_name == f)
                .map(|d| d.meta.name)
                .expect("operation")
        };
        let err = seq
            .execute(name("p_fail"))
            .await
            .expect_err("p_root never ran");
        let msg = err.to_string();
        assert!(
            msg.contains("depends on `2024_06_01_000001_p_root` (it never ran)"),
            "{}: {msg}",
            b.name
        );
        assert!(msg.contains("`execute 2024_06_01_000001_p_root`"), "{msg}");
        assert!(
            !rows(&seq).await.contains_key("p_fail")
                || rows(&seq).await["p_fail"].status == Status::Pending,
            "{}: a refused execute recorded nothing",
            b.name
        );
        seq.execute(name("p_root")).await.expect("p_root");
        // p_fail fails on purpose; its dependent p_after_fail is refused, and so is retrying it... until fixed.
        knobs.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let report = seq.execute(name("p_fail")).await.expect("runs");
        assert!(!report.succeeded(), "{}", b.name);
        let msg = seq
            .execute(name("p_after_fail"))
            .await
            .expect_err("p_fail failed")
            .to_string();
        assert!(msg.contains("(it is failed)"), "{}: {msg}", b.name);
        knobs.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(seq.retry(name("p_fail")).await.expect("retry").succeeded());
        assert!(seq
            .execute(name("p_after_fail"))
            .await
            .expect("now it may")
            .succeeded());
        let r = rows(&seq).await;
        assert_eq!(r["p_after_fail"].status, Status::Completed, "{}", b.name);
        common::cleanup(&seq, &p, &[]).await;
    }
}
