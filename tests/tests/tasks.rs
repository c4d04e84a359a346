//! Typed tasks on every backend: `seq.dispatch::<ops::reprice>(args)` records a run with its arguments and a
//! worker runs it through the executor (hooks, retries with backoff, timeouts, unique keys and tags from the
//! data, sealed arguments), and a worker killed mid-task re-runs an idempotent task and leaves a non-idempotent
//! one `interrupted`.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::work::Workers;
use common::{backends, prefix, Backend};
use sequencer::crypto::Keyring;
use sequencer::ledger::Status;
use sequencer::{CancellationToken, Event, Outcome, Sequencer, WorkOptions};
use sequencer_tests::task_ops::{ops, sealed, Prefix};

async fn setup(b: &Backend, p: &str) -> Sequencer {
    let seq = common::build(
        b,
        common::builder(b, p, ops::registry()).state(Prefix(p.to_owned())),
    )
    .await;
    create_log(&seq, p).await;
    seq
}

async fn create_log(seq: &Sequencer, p: &str) {
    sequencer::sqlx::query(&format!(
        "CREATE TABLE {p}task_log (what VARCHAR(191) NOT NULL, customer BIGINT NOT NULL, attempt BIGINT NOT NULL)"
    ))
    .execute(seq.ledger().pool())
    .await
    .expect("log table");
}

/// `(what, customer)` of every logged run, sorted.
async fn logged(seq: &Sequencer, p: &str) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> =
        sequencer::sqlx::query_as(&format!("SELECT what, customer FROM {p}task_log"))
            .fetch_all(seq.ledger().pool())
            .await
            .expect("read the log");
    rows.sort();
    rows
}

async fn drain(seq: &Sequencer, queue: &str) -> sequencer::WorkReport {
    let opts = WorkOptions {
        queue: queue.to_owned(),
        until_idle: true,
        ..WorkOptions::default()
    };
    seq.work(&opts, CancellationToken::new())
        .await
        .expect("work")
}

async fn cleanup(seq: &Sequencer, p: &str) {
    common::cleanup(seq, p, &["task_log"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatched_tasks_run_on_a_worker_with_their_arguments_hooks_and_tags() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let mut events = seq.subscribe();
        let mut runs = Vec::new();
        for customer_id in [1, 2, 3] {
            let run = seq
                .dispatch::<ops::reprice>(ops::Reprice { customer_id })
                .await
                .unwrap()
                .expect("queued");
            runs.push(run.run);
        }
        assert_eq!(runs, [1, 2, 3], "{}: runs are numbered per task", b.name);
        // Nothing runs before a worker takes them; the plan never sees them.
        assert!(logged(&seq, &p).await.is_empty());
        let status = seq.task_status().await.unwrap();
        let reprice = status.iter().find(|s| s.name == "reprice").unwrap();
        assert_eq!(reprice.queued, 3, "{}: {reprice}", b.name);
        let planned = seq
            .process(&sequencer::ProcessOptions {
                dry_run: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .planned;
        assert!(
            planned.iter().all(|n| !n.contains("reprice")),
            "{}: task runs are no pending operations: {planned:?}",
            b.name
        );

        let report = drain(&seq, "billing").await;
        assert_eq!(report.completed, 3, "{}: {report:?}", b.name);
        let log = logged(&seq, &p).await;
        for c in [1, 2, 3] {
            for what in ["before", "reprice", "after"] {
                assert_eq!(
                    log.iter().filter(|(w, n)| w == what && *n == c).count(),
                    1,
                    "{}: `{what}` ran once for customer {c}: {log:?}",
                    b.name
                );
            }
        }
        let status = seq.task_status().await.unwrap();
        let reprice = status.iter().find(|s| s.name == "reprice").unwrap();
        assert_eq!(reprice.to_string(), "reprice: 3 completed", "{}", b.name);
        let row = seq.ledger().row_of("reprice", 2).await.unwrap().unwrap();
        assert_eq!(row.status, Status::Completed);

        // The run's tags, from its data, in its events.
        let mut tags = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let Event::TaskStarted {
                name, run, tags: t, ..
            } = e
            {
                assert_eq!(name, "reprice");
                tags.push((run, t));
            }
        }
        tags.sort();
        assert_eq!(
            tags,
            [
                (1, vec!["customer:1".to_owned()]),
                (2, vec!["customer:2".to_owned()]),
                (3, vec!["customer:3".to_owned()]),
            ],
            "{}",
            b.name
        );
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_from_the_data_drops_a_second_dispatch_while_the_first_is_queued() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let first = seq
            .dispatch::<ops::reprice>(ops::Reprice { customer_id: 7 })
            .await
            .unwrap();
        assert!(first.is_some());
        // Same customer: dropped, nothing recorded. Another customer: queued.
        let second = seq
            .dispatch::<ops::reprice>(ops::Reprice { customer_id: 7 })
            .await
            .unwrap();
        assert_eq!(second, None, "{}: same key, dropped", b.name);
        let other = seq
            .dispatch::<ops::reprice>(ops::Reprice { customer_id: 8 })
            .await
            .unwrap();
        assert!(other.is_some(), "{}: another key", b.name);
        drain(&seq, "billing").await;
        let log = logged(&seq, &p).await;
        assert_eq!(
            log.iter().filter(|(w, _)| w == "reprice").count(),
            2,
            "{}: {log:?}",
            b.name
        );
        // Once the run ended, its key is free again.
        let again = seq
            .dispatch::<ops::reprice>(ops::Reprice { customer_id: 7 })
            .await
            .unwrap();
        assert_eq!(again.map(|r| r.run), Some(3), "{}", b.name);

        // `.delay(..)` and `.on_queue(..)`: the job waits on that queue for its time.
        let later = seq
            .dispatch::<ops::reprice>(ops::Reprice { customer_id: 9 })
            .delay(Duration::from_secs(3600))
            .on_queue("later")
            .await
            .unwrap()
            .expect("queued");
        let (queue, available_at): (String, i64) = sequencer::sqlx::query_as(&format!(
            "SELECT queue, available_at FROM {p}seq_jobs WHERE name = 'reprice' AND run = {}",
            later.run
        ))
        .fetch_one(seq.ledger().pool())
        .await
        .unwrap();
        let now = seq.ledger().db_now().await.unwrap();
        assert_eq!(queue, "later", "{}", b.name);
        assert!(
            available_at > now + 3_500_000,
            "{}: available at {available_at}, now {now}",
            b.name
        );
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_the_same_overlap_key_from_the_data_never_run_at_once() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        for _ in 0..2 {
            seq.dispatch::<ops::exclusive>(ops::Reprice { customer_id: 5 })
                .await
                .unwrap();
        }
        // One worker takes both jobs at once (concurrency 8): the second waits for the first's key.
        let report = drain(&seq, "tenants").await;
        assert_eq!(report.completed, 2, "{}: {report:?}", b.name);
        let mut spans: Vec<(i64, i64)> = logged(&seq, &p)
            .await
            .into_iter()
            .map(|(what, start)| (start, what["span:".len()..].parse().unwrap()))
            .collect();
        spans.sort();
        assert_eq!(spans.len(), 2, "{}", b.name);
        assert!(
            spans[0].1 <= spans[1].0,
            "{}: the runs overlapped: {spans:?}",
            b.name
        );
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_sync_retries_with_backoff_and_times_out_through_the_executor() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let outcome = seq
            .dispatch_sync::<ops::flaky>(ops::Flaky { succeed_on: 3 })
            .await
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Completed { .. }),
            "{}: {outcome:?}",
            b.name
        );
        let row = seq.ledger().row_of("flaky", 1).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.attempts),
            (Status::Completed, 3),
            "{}",
            b.name
        );
        let errors = seq.errors(Some("flaky")).await.unwrap();
        assert_eq!(errors.len(), 2, "{}: two failed attempts recorded", b.name);

        // Out of tries: failed, with its error.
        let outcome = seq
            .dispatch_sync::<ops::flaky>(ops::Flaky { succeed_on: 9 })
            .await
            .unwrap();
        assert!(
            matches!(&outcome, Outcome::Failed { error, .. } if error.contains("attempt 3 fails")),
            "{}: {outcome:?}",
            b.name
        );

        // `timeout = "200ms"` on a run that would sleep 30 s.
        let started = Instant::now();
        let outcome = seq
            .dispatch_sync::<ops::slow>(ops::Reprice { customer_id: 30 })
            .await
            .unwrap();
        assert!(
            matches!(&outcome, Outcome::Failed { error, .. } if error.contains("timed out")),
            "{}: {outcome:?}",
            b.name
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        let row = seq.ledger().row_of("slow", 1).await.unwrap().unwrap();
        assert_eq!(row.status, Status::Failed, "{}", b.name);
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_tasks_arguments_are_sealed_in_the_ledger() {
    let key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
    for b in backends().await {
        let p = prefix();
        let builder = common::builder(&b, &p, sealed::registry())
            .state(Prefix(p.clone()))
            .encryption_keys(Keyring::new(Some(&key), []).unwrap());
        let seq = common::build(&b, builder).await;
        create_log(&seq, &p).await;
        seq.dispatch::<sealed::secret>(sealed::Secret {
            ssn: "123-45-6789".into(),
        })
        .await
        .unwrap();
        // The `args` column as stored.
        let raw = seq
            .ledger()
            .task_args("secret", 1)
            .await
            .unwrap()
            .expect("stored");
        assert!(!raw.contains("123-45-6789"), "{}: {raw}", b.name);
        assert!(sequencer::crypto::is_sealed(&raw), "{}: {raw}", b.name);
        drain(&seq, "default").await;
        assert_eq!(
            logged(&seq, &p).await,
            [("123-45-6789".to_owned(), 0)],
            "{}: the worker opened them",
            b.name
        );
        // Without the key, a dispatch is refused rather than stored in the clear.
        let without = common::builder(&b, &p, sealed::registry())
            .encryption_keys(Keyring::default())
            .build()
            .await;
        assert!(without.is_err(), "{}", b.name);
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_sync_runs_an_asynchronous_operation_here_without_queueing_it() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        let report = seq
            .execute_sync("2024_06_01_000000_queued_op")
            .await
            .unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(logged(&seq, &p).await, [("queued_op".to_owned(), 0)]);
        let jobs: i64 = sequencer::sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {p}seq_jobs"))
            .fetch_one(seq.ledger().pool())
            .await
            .unwrap();
        assert_eq!(jobs, 0, "{}: nothing was queued", b.name);
        cleanup(&seq, &p).await;
    }
}

/// Waits until `what` was logged for `customer`, or panics after a minute.
async fn wait_logged(seq: &Sequencer, p: &str, what: &str, customer: i64) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !logged(seq, p)
        .await
        .iter()
        .any(|(w, c)| w == what && *c == customer)
    {
        assert!(Instant::now() < give_up, "`{what}` never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until run 1 of `task` has `status`, or panics after two minutes.
async fn wait_status(seq: &Sequencer, task: &str, status: Status) {
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let row = seq.ledger().row_of(task, 1).await.unwrap();
        if row.as_ref().is_some_and(|r| r.status == status) {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "`{task}` never became {status}: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_reruns_an_idempotent_task_and_leaves_another_interrupted() {
    for b in backends().await {
        let p = prefix();
        let seq = setup(&b, &p).await;
        seq.dispatch::<ops::reprice>(ops::Reprice { customer_id: 1 })
            .await
            .unwrap();
        seq.dispatch::<ops::once>(ops::Reprice { customer_id: 2 })
            .await
            .unwrap();
        let worker = |sleep_ms: &str| {
            common::command(
                env!("CARGO_BIN_EXE_seqtask"),
                &b.url,
                &p,
                &["work", "--queue", "billing", "--lease", "2"],
            )
            .env("SEQTEST_SLEEP_MS", sleep_ms)
            .spawn()
            .expect("start a worker")
        };
        // The first worker sleeps inside each run: kill -9 it while both run.
        let mut first = Workers::new(vec![worker("60000")]);
        wait_logged(&seq, &p, "reprice", 1).await;
        wait_logged(&seq, &p, "once", 2).await;
        first.0[0].kill().expect("kill -9");
        let _ = first.0[0].wait();

        let mut second = Workers::new(vec![worker("0")]);
        wait_status(&seq, "reprice", Status::Completed).await;
        wait_status(&seq, "once", Status::Interrupted).await;
        second.stop();
        let log = logged(&seq, &p).await;
        assert_eq!(
            log.iter().filter(|(w, _)| w == "reprice").count(),
            2,
            "{}: the idempotent task ran again: {log:?}",
            b.name
        );
        assert_eq!(
            log.iter().filter(|(w, _)| w == "once").count(),
            1,
            "{}: the other never ran twice: {log:?}",
            b.name
        );
        let status = seq.task_status().await.unwrap();
        let once = status.iter().find(|s| s.name == "once").unwrap();
        assert_eq!(once.to_string(), "once: 1 interrupted", "{}", b.name);
        // `status` shows the runs per task.
        let out = common::command(env!("CARGO_BIN_EXE_seqtask"), &b.url, &p, &["status"])
            .output()
            .expect("status");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("Tasks:\n  reprice: 1 completed\n  once: 1 interrupted\n"),
            "{}: {stdout}",
            b.name
        );
        // Its job is kept as failed, for a human, not ended as done.
        let job: String = sequencer::sqlx::query_scalar(&format!(
            "SELECT status FROM {p}seq_jobs WHERE name = 'once'"
        ))
        .fetch_one(seq.ledger().pool())
        .await
        .unwrap();
        assert_eq!(job, "failed", "{}", b.name);
        // A person decides: `retry_task` runs it again on the workers.
        assert!(seq.retry_task("once", 1).await.unwrap());
        drain(&seq, "billing").await;
        wait_status(&seq, "once", Status::Completed).await;
        cleanup(&seq, &p).await;
    }
}
