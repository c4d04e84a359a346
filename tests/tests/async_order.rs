//! Asynchronous operations keep the run's order on every backend (issue 14, item 3): under the default
//! `sequential` orchestrator a queued operation never starts before the operations planned before it have
//! completed, an operation of the run that comes after a queued one waits for a worker to end it, and a worker
//! that completes an operation queues the ones it unblocked, so one `process` is enough.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{backends, prefix, rows, Backend};
use sequencer::ledger::Status;
use sequencer::{CancellationToken, ProcessOptions, Sequencer, WorkOptions};
use sequencer_tests::order_ops::{ops, OrderKnobs};

async fn sequencer(b: &Backend, p: &str, knobs: &Arc<OrderKnobs>) -> Sequencer {
    let builder = common::builder(b, p, ops::registry()).state(knobs.clone());
    common::build(b, builder).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_runs_queued_operations_in_plan_order() {
    for b in backends().await {
        let p = prefix();
        let knobs = Arc::new(OrderKnobs {
            prefix: p.clone(),
            ..OrderKnobs::default()
        });
        let seq = sequencer(&b, &p, &knobs).await;
        // A worker, as another process would run it: its own sequencer on the same ledger.
        let worker = sequencer(&b, &p, &knobs).await;
        let stop = CancellationToken::new();
        let work = tokio::spawn({
            let stop = stop.clone();
            async move {
                let opts = WorkOptions {
                    concurrency: 4,
                    ..WorkOptions::default()
                };
                worker.work(&opts, stop).await
            }
        });

        let report = seq
            .process(&ProcessOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        // `count_items` ran here after `fill_items` ended on the worker; the chain after it was queued behind it.
        let queued_after: Vec<(&str, &str)> = report
            .queued_after
            .iter()
            .map(|(n, a)| (n.split_at(18).1, a.as_str()))
            .collect();
        assert_eq!(
            queued_after,
            [
                ("fill_items", "2024_07_01_000001_create_items"),
                ("first_link", "2024_07_01_000003_count_items"),
                ("second_link", "2024_07_01_000004_first_link"),
            ],
            "{}",
            b.name
        );

        // No second `process`: the worker completes the chain.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = rows(&seq).await;
            if r.values().all(|r| r.status == Status::Completed) && r.len() == 5 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not every operation completed after one process: {:?}",
                b.name,
                r.iter().map(|(n, r)| (n, r.status)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        let work = work.await.expect("worker task");
        assert!(work.is_ok(), "{}: {work:?}", b.name);
        let log = knobs.log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "create_items",
                "fill_items",
                "count_items",
                "first_link",
                "second_link"
            ],
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &["order_items"]).await;
    }
}

/// `status` shows each operation's job while it has one: queued, or blocked behind the operation it waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_queued_and_blocked_jobs() {
    use sequencer::ledger::JobStatus;
    for b in backends().await {
        let p = prefix();
        let knobs = Arc::new(OrderKnobs {
            prefix: p.clone(),
            ..OrderKnobs::default()
        });
        let seq = sequencer(&b, &p, &knobs).await;
        let opts = ProcessOptions {
            only: vec![
                "2024_07_01_000004_first_link".into(),
                "2024_07_01_000005_second_link".into(),
            ],
            ..ProcessOptions::default()
        };
        seq.process(&opts)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        type Job = Option<(JobStatus, Vec<String>)>;
        let jobs: Vec<(String, Job)> = seq
            .status()
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.name.split_at(18).1.to_owned(),
                    e.job.map(|j| (j.status, j.blocked_by)),
                )
            })
            .collect();
        assert_eq!(
            jobs,
            [
                ("create_items".to_owned(), None),
                ("fill_items".to_owned(), None),
                ("count_items".to_owned(), None),
                ("first_link".to_owned(), Some((JobStatus::Queued, vec![]))),
                (
                    "second_link".to_owned(),
                    Some((
                        JobStatus::Blocked,
                        vec!["2024_07_01_000004_first_link".to_owned()]
                    ))
                ),
            ],
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}
