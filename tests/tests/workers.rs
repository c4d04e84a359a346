//! Workers on every backend, with real processes: queued `asynchronous` operations run exactly once across
//! several workers, through kill -9 of random workers at random moments; a non-idempotent operation caught
//! mid-run is left `interrupted`, never silently re-run; SIGTERM lets running jobs finish; a queued job naming an
//! unknown operation is kept with a clear error.

mod common;

use std::time::{Duration, Instant};

use common::work::{
    cleanup, drained, failures, job_count, log_counts, seqwork, setup, statuses, terminate,
    work_until_idle, Workers, N,
};
use common::{backends, pool, prefix};
use sequencer::sqlx;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_operations_run_once_across_workers() {
    for b in backends().await {
        let p = prefix();
        let pool = setup(&b, &p).await;
        // The queue holds the jobs on `{p}seq_jobs`.
        let jobs = format!("{p}seq_");
        assert_eq!(
            job_count(&pool, &jobs, "queued").await,
            N as i64,
            "{}",
            b.name
        );
        let mut workers = Workers::start(3, || {
            seqwork(&b, &p, &["work", "--until-idle", "--concurrency", "4"], "0")
        });
        for out in workers.wait() {
            assert!(
                out.status.success(),
                "{}: {}",
                b.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let counts = log_counts(&pool, &p).await;
        assert_eq!(counts.len(), N, "{}", b.name);
        assert!(
            counts.values().all(|c| *c == 1),
            "{}: an operation ran twice: {:?}",
            b.name,
            counts.iter().filter(|(_, c)| **c != 1).collect::<Vec<_>>()
        );
        assert!(
            statuses(&pool, &p).await.values().all(|s| s == "completed"),
            "{}",
            b.name
        );
        assert_eq!(
            job_count(&pool, &jobs, "done").await,
            N as i64,
            "{}",
            b.name
        );
        cleanup(&pool, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_nothing_and_rerun_nothing_unsafe() {
    for b in backends().await {
        let p = prefix();
        let pool = setup(&b, &p).await;
        let args = ["work", "--concurrency", "4", "--lease", "2"];
        let mut workers = Workers::new(
            (0..4)
                .map(|_| seqwork(&b, &p, &args, "15").spawn().unwrap())
                .collect(),
        );
        let mut rng = fastrand::Rng::with_seed(6);
        let mut kills = 0;
        while kills < 10 {
            tokio::time::sleep(Duration::from_millis(rng.u64(80..250))).await;
            let i = rng.usize(..workers.0.len());
            workers.0[i].kill().expect("kill -9");
            workers.0[i].wait().unwrap();
            kills += 1;
            workers.0[i] = drained(seqwork(&b, &p, &args, "15").spawn().unwrap());
        }
        // Let the survivors drain the queue (a dead worker's jobs return after its 2 s lease).
        let jobs = format!("{p}seq_");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let open =
                job_count(&pool, &jobs, "queued").await + job_count(&pool, &jobs, "running").await;
            let statuses = statuses(&pool, &p).await;
            let settled = statuses
                .values()
                .all(|s| s == "completed" || s == "interrupted");
            if open == 0 && settled {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {open} jobs still open",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for out in workers.stop() {
            assert!(
                out.status.success(),
                "{}: a worker did not stop cleanly on SIGTERM: {}",
                b.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let counts = log_counts(&pool, &p).await;
        let statuses = statuses(&pool, &p).await;
        let mut interrupted = 0;
        for i in 0..N {
            let name = format!("w_{i}");
            let count = counts.get(&name).copied().unwrap_or(0);
            let status = statuses.get(&name).map(String::as_str);
            if i % 2 == 0 {
                // Idempotent: always finished, possibly more than once.
                assert_eq!(status, Some("completed"), "{}: {name}", b.name);
                assert!(count >= 1, "{}: {name} never ran", b.name);
            } else {
                match status {
                    Some("completed") => assert_eq!(
                        count, 1,
                        "{}: non-idempotent {name} ran {count} times",
                        b.name
                    ),
                    Some("interrupted") => {
                        interrupted += 1;
                        assert!(
                            count <= 1,
                            "{}: interrupted {name} was re-run ({count} times)",
                            b.name
                        );
                    }
                    other => panic!("{}: {name} ended {other:?}", b.name),
                }
            }
        }
        eprintln!(
            "{}: 10 kills, {interrupted} non-idempotent operation(s) left interrupted for a human",
            b.name
        );
        cleanup(&pool, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_jobs_and_unknown_jobs_are_kept() {
    for b in backends().await {
        let p = prefix();
        let pool = setup(&b, &p).await;
        let jobs = format!("{p}seq_jobs");
        sqlx::query(&format!(
            "INSERT INTO {jobs} (name, run, queue, status, available_at, attempts, created_at) VALUES ('2020_01_01_000000_gone', 0, 'default', 'queued', 0, 0, 0)"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let worker = seqwork(
            &b,
            &p,
            &["work", "--concurrency", "2", "--grace", "30"],
            "300",
        )
        .spawn()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while log_counts(&pool, &p).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{}: the worker never started a job",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        terminate(&worker);
        let out = worker.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Stopping"),
            "{}: {stdout}",
            b.name
        );
        // The jobs it had started finished; nothing is left running.
        let statuses = statuses(&pool, &p).await;
        assert!(
            !statuses.values().any(|s| s == "running"),
            "{}: {statuses:?}",
            b.name
        );
        let started = log_counts(&pool, &p).await;
        assert!(
            started
                .keys()
                .all(|n| statuses.get(n).map(String::as_str) == Some("completed")),
            "{}",
            b.name
        );
        let row = sqlx::query(&format!(
            "SELECT status, last_error FROM {jobs} WHERE name = '2020_01_01_000000_gone'"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        let status: String = sqlx::Row::try_get(&row, 0).unwrap();
        // MariaDB's TEXT comes through sqlx's Any driver as bytes.
        let error: Option<String> = sqlx::Row::try_get::<Option<String>, _>(&row, 1)
            .or_else(|_| {
                sqlx::Row::try_get::<Option<Vec<u8>>, _>(&row, 1)
                    .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
            })
            .unwrap();
        assert_eq!(status, "failed", "{}", b.name);
        assert!(
            error
                .unwrap_or_default()
                .contains("unknown operation `2020_01_01_000000_gone`"),
            "{}",
            b.name
        );
        cleanup(&pool, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_runs_its_operations_on_the_workers_and_waits() {
    for b in backends().await {
        let p = prefix();
        let pool = pool(&b).await;
        sqlx::query(&format!(
            "CREATE TABLE {p}work_log (name VARCHAR(191) NOT NULL)"
        ))
        .execute(&pool)
        .await
        .expect("log table");
        let mut workers = Workers::new(
            (0..2)
                .map(|_| {
                    seqwork(&b, &p, &["work", "--concurrency", "8"], "2")
                        .spawn()
                        .unwrap()
                })
                .collect(),
        );
        let out = seqwork(
            &b,
            &p,
            &[
                "process",
                "--dispatch",
                "--orchestrator",
                "batch",
                "--concurrency",
                "16",
            ],
            "2",
        )
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{}\nfailed runs:\n{}",
            b.name,
            String::from_utf8_lossy(&out.stderr),
            failures(&pool, &p).await
        );
        assert!(
            stdout.contains(&format!(": {N} completed, 0 failed")),
            "{}: the dispatcher waited for every operation: {}",
            b.name,
            stdout.lines().last().unwrap_or_default()
        );
        workers.stop();
        let counts = log_counts(&pool, &p).await;
        assert_eq!(counts.len(), N, "{}", b.name);
        assert!(counts.values().all(|c| *c == 1), "{}", b.name);
        cleanup(&pool, &p).await;
    }
}

/// `process --dispatch` with no worker running says so (after 10 s) with the command that fixes it, and goes on
/// waiting rather than failing the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_without_workers_says_what_it_waits_for() {
    use std::io::BufRead;
    let b = &backends().await[0];
    let p = prefix();
    let pool = pool(b).await;
    let mut child = seqwork(b, &p, &["process", "--dispatch"], "0")
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut guard = Workers::new(vec![child]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let waiting = loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.starts_with("WAITING") => break Some(line),
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
        }
        if started.elapsed() > Duration::from_secs(30) {
            break None;
        }
    };
    let waited = started.elapsed();
    // Still waiting for a worker, not failed.
    let still_running = guard.0[0].try_wait().expect("try_wait").is_none();
    drop(guard);
    let line = waiting.expect("a WAITING line within 30 s");
    assert!(
        line.contains("no worker has taken it from queue `default`"),
        "{line}"
    );
    assert!(
        line.contains("start one with `work --queue default`"),
        "{line}"
    );
    assert!(waited >= Duration::from_secs(9), "said so after {waited:?}");
    assert!(still_running, "the dispatcher gave up instead of waiting");
    cleanup(&pool, &p).await;
}

/// A worker whose stdout nobody reads (a full pipe, a log driver that blocks) goes on running its jobs and
/// renewing its claims: it prints about 80 bytes per job, so without a printer of its own it would block in a
/// write after some 800 of these 1,000 jobs (Linux's pipe holds 64 KiB) and leave the rest queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_stdout_is_not_read_runs_every_job() {
    let b = &backends().await[0];
    let p = prefix();
    let pool = setup(b, &p).await;
    // Its pipes are never read (`Workers::new` would drain them).
    let child = seqwork(b, &p, &["work", "--concurrency", "8"], "0")
        .spawn()
        .expect("spawn");
    let mut worker = Workers(vec![child]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let statuses = statuses(&pool, &p).await;
        let completed = statuses.values().filter(|s| *s == "completed").count();
        if completed == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {completed} of {N} completed; the worker is stuck writing to its stdout",
            b.name
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    terminate(&worker.0[0]);
    drop(worker.0[0].stdout.take());
    assert!(worker.0[0].wait().expect("wait").success());
    worker.0.clear();
    assert!(log_counts(&pool, &p).await.values().all(|c| *c == 1));
    cleanup(&pool, &p).await;
}

/// A job taken while its idempotent operation's run is still held by a killed worker's claim (whose lease has not
/// run out yet) goes back on the queue: once recovery finds the run interrupted, the job is taken again, the run
/// claimed again, and it completes. Before, the job ended "not run: the operation is running", recovery then
/// recorded the run interrupted, and nothing ran it again (seen in CI as `w_816: interrupted` for an idempotent
/// operation after the kill -9 test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_run_a_dead_claim_still_holds_runs_after_recovery() {
    for b in backends().await {
        let p = prefix();
        let pool = setup(&b, &p).await;
        // w_0 is idempotent (even): its run is held for two more seconds by a worker that is gone.
        hold_w0(&pool, &b, &p, RUN_HELD_BY_THE_GONE, 2_000).await;
        work_until_idle(&b, &p);
        let statuses = statuses(&pool, &p).await;
        let counts = log_counts(&pool, &p).await;
        assert_eq!(
            (statuses.get("w_0").map(String::as_str), counts.get("w_0")),
            (Some("completed"), Some(&1)),
            "{}: {}",
            b.name,
            failures(&pool, &p).await
        );
        assert_eq!(counts.len(), N, "{}", b.name);
        cleanup(&pool, &p).await;
    }
}

/// w_0's run held by a worker that is gone (host `gone`, pid 999999: no recovery finds it dead before its lease
/// runs out).
const RUN_HELD_BY_THE_GONE: &str =
    "UPDATE {p}seq_operations SET status = 'running', lease_until = ?, \
     claim_token = 'gone', host = 'gone', pid = 999999 WHERE name LIKE ?";

/// w_0's job taken once by that worker.
const JOB_HELD_BY_THE_GONE: &str = "UPDATE {p}seq_jobs SET status = 'running', lease_until = ?, \
     worker = 'gone:999999:0', attempts = 1 WHERE name LIKE ?";

/// Runs `update` (one of the two above) on w_0, its lease running out `in_ms` milliseconds from now (by this
/// host's clock, the database's too here; negative: that long ago).
async fn hold_w0(pool: &sqlx::AnyPool, b: &common::Backend, p: &str, update: &str, in_ms: i64) {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        + in_ms;
    let update = update.replace("{p}", p);
    let update = if b.name == "PostgreSQL" {
        sequencer::ledger::number_placeholders(&update)
    } else {
        update
    };
    let held = sqlx::query(&update)
        .bind(until)
        .bind("%w_0")
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{}: hold w_0: {e}", b.name));
    assert_eq!(held.rows_affected(), 1, "{}", b.name);
}

/// A job whose worker died goes back on its queue only once its run is no longer `running`: the same step of a
/// live worker first records the run interrupted (its claim's lease has run out, or its process is seen dead),
/// and only a job whose run is no longer held is rescued. So the job is taken again once, and that take claims its
/// run. Before, the rescue came first and alone: a claim taken after its job outlives the job's lease (here by
/// four seconds, in life by the moments between the take and the claim), so the job was taken while the dead
/// claim still held its run, refused, and put back, a second at a time, until recovery found the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescued_job_finds_its_run_recovered_when_taken_again() {
    for b in backends().await {
        let p = prefix();
        let pool = setup(&b, &p).await;
        // The gone worker's job lease ran out a second ago; its claim of the run has three seconds left.
        hold_w0(&pool, &b, &p, JOB_HELD_BY_THE_GONE, -1_000).await;
        hold_w0(&pool, &b, &p, RUN_HELD_BY_THE_GONE, 3_000).await;
        work_until_idle(&b, &p);
        let takes: Vec<(i64, String)> = sqlx::query_as(&format!(
            "SELECT attempts, status FROM {p}seq_jobs WHERE name LIKE '%w_0'"
        ))
        .fetch_all(&pool)
        .await
        .expect("w_0's job");
        let counts = log_counts(&pool, &p).await;
        assert_eq!(
            (
                takes,
                statuses(&pool, &p).await.get("w_0").cloned(),
                counts.get("w_0")
            ),
            (
                vec![(2, "done".to_owned())],
                Some("completed".to_owned()),
                Some(&1)
            ),
            "{}: taken again once (attempts 2), by the take that ran it; {}",
            b.name,
            failures(&pool, &p).await
        );
        assert_eq!(counts.len(), N, "{}", b.name);
        cleanup(&pool, &p).await;
    }
}
