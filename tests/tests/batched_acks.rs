//! Batched acknowledgements keep what a job promises, on every backend, with real worker processes: workers whose
//! completions wait to be acknowledged (a long `--ack-interval`, a large `--ack-batch`) are killed with kill -9
//! while acknowledgements are pending. No run is recorded `completed` that did not run, or whose acknowledgement
//! was lost; none runs twice unless it is idempotent; the idempotent ones are rescued and run again, the others
//! recorded `interrupted` for a human. A worker stopped with SIGTERM acknowledges what it ran before it ends.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::work::{
    cleanup, job_count, log_counts, seqwork, settled, setup, statuses, terminate, work_until_idle,
    Workers, N,
};
use common::{backends, prefix};
use sequencer::sqlx;

/// Acknowledgements that never come on their own while the queue is busy: only when no job runs.
const HOLD_ACKS: [&str; 4] = ["--ack-interval", "1h", "--ack-batch", "10000"];

/// Waits until at least `n` operations have logged that they ran.
async fn until_ran(pool: &sqlx::AnyPool, p: &str, n: usize, backend: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while log_counts(pool, p).await.len() < n {
        assert!(
            Instant::now() < deadline,
            "{backend}: fewer than {n} operations ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_acknowledgements_of_killed_workers_are_recovered_never_invented() {
    for b in backends().await {
        let p = prefix();
        let pool = setup(&b, &p).await;
        let mut args = vec!["work", "--concurrency", "4", "--lease", "2"];
        args.extend(HOLD_ACKS);
        let mut workers = Workers::new(
            (0..2)
                .map(|_| seqwork(&b, &p, &args, "2").spawn().unwrap())
                .collect(),
        );
        until_ran(&pool, &p, 60, b.name).await;
        for w in &mut workers.0 {
            w.kill().expect("kill -9");
            w.wait().unwrap();
        }
        // Killed with their acknowledgements pending: what ran is still `running`, nothing is `completed`. (Read
        // once the statements the workers had sent have ended: an operation's log `INSERT` in flight at the kill
        // commits after it, and that run would otherwise count as not run before, then twice.)
        let (ran_before, at_kill) = settled(&pool, &p).await;
        assert!(
            !at_kill.values().any(|s| s == "completed"),
            "{}: a completion was recorded though no acknowledgement was due",
            b.name
        );
        let unacked: Vec<&String> = ran_before
            .keys()
            .filter(|n| at_kill.get(*n).map(String::as_str) == Some("running"))
            .collect();
        assert_eq!(
            unacked.len(),
            ran_before.len(),
            "{}: every run that ran is left running: {at_kill:?}",
            b.name
        );
        // A worker with the default settings recovers them and drains the queue.
        work_until_idle(&b, &p);
        let jobs = format!("{p}seq_");
        assert_eq!(job_count(&pool, &jobs, "queued").await, 0, "{}", b.name);
        assert_eq!(job_count(&pool, &jobs, "running").await, 0, "{}", b.name);
        let counts = log_counts(&pool, &p).await;
        let end = statuses(&pool, &p).await;
        let (mut reran, mut interrupted) = (0, 0);
        for i in 0..N {
            let name = format!("w_{i}");
            let count = counts.get(&name).copied().unwrap_or(0);
            let status = end.get(&name).map(String::as_str);
            let before = ran_before.get(&name).copied().unwrap_or(0);
            if status == Some("completed") {
                assert!(count >= 1, "{}: {name} completed without running", b.name);
            }
            if i % 2 == 0 {
                // Idempotent: completed in the end; run again when its acknowledgement was lost.
                assert_eq!(status, Some("completed"), "{}: {name}", b.name);
                if before == 1 && count == 2 {
                    reran += 1;
                }
                assert!(count <= before + 1, "{}: {name} ran {count} times", b.name);
            } else {
                match status {
                    Some("completed") => {
                        assert_eq!(count, 1, "{}: {name} ran {count} times", b.name);
                        assert_eq!(
                            before, 0,
                            "{}: {name} ran before the kill, its acknowledgement lost, yet it is completed",
                            b.name
                        );
                    }
                    Some("interrupted") => {
                        interrupted += 1;
                        assert!(count <= 1, "{}: interrupted {name} ran again", b.name);
                    }
                    other => panic!("{}: {name} ended {other:?}", b.name),
                }
            }
        }
        let unacked_idempotent = unacked
            .iter()
            .filter(|n| n[2..].parse::<usize>().is_ok_and(|i| i % 2 == 0))
            .count();
        assert_eq!(
            reran, unacked_idempotent,
            "{}: every idempotent run whose acknowledgement was lost ran again, once",
            b.name
        );
        assert!(
            interrupted >= unacked.len() - unacked_idempotent,
            "{}: every non-idempotent run whose acknowledgement was lost is interrupted",
            b.name
        );
        eprintln!(
            "{}: {} acknowledgements lost; {reran} idempotent runs ran again, {interrupted} interrupted",
            b.name,
            unacked.len()
        );
        cleanup(&pool, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_acknowledges_what_ran_before_it_ends() {
    for b in backends().await {
        let p = prefix();
        let pool = setup(&b, &p).await;
        let mut args = vec!["work", "--concurrency", "4", "--grace", "30"];
        args.extend(HOLD_ACKS);
        let worker = seqwork(&b, &p, &args, "2").spawn().unwrap();
        until_ran(&pool, &p, 40, b.name).await;
        terminate(&worker);
        let out = worker.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            b.name,
            String::from_utf8_lossy(&out.stderr)
        );
        // Each run that ran was acknowledged on the way out: completed, exactly those.
        let counts = log_counts(&pool, &p).await;
        let end: HashMap<String, String> = statuses(&pool, &p).await;
        for (name, status) in &end {
            match counts.get(name) {
                Some(1) => assert_eq!(status, "completed", "{}: {name}", b.name),
                Some(n) => panic!("{}: {name} ran {n} times", b.name),
                None => assert_ne!(status, "completed", "{}: {name}", b.name),
            }
        }
        assert!(counts.len() >= 40, "{}", b.name);
        cleanup(&pool, &p).await;
    }
}
