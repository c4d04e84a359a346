//! Checkpoints on every backend, with real processes: a run killed with SIGKILL mid-operation is recovered as
//! interrupted and, on `retry`, resumes after its last checkpoint; `cancel` stops a running operation at its
//! next checkpoint; `status` shows progress.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{backends, pool, prefix, run_ok, Backend};
use sequencer::sqlx;

fn seqckpt(b: &Backend, p: &str, args: &[&str], sleep_ms: &str) -> Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_seqckpt"), &b.url, p, args);
    c.env("SEQTEST_SLEEP_MS", sleep_ms);
    c
}

async fn row(pool: &sqlx::AnyPool, p: &str) -> Option<(String, Option<i64>)> {
    let q = format!("SELECT status, progress_done FROM {p}seq_operations WHERE name = '2024_08_01_000000_c_items'");
    let r: Option<(String, Option<i64>)> =
        sqlx::query_as(&q).fetch_optional(pool).await.ok().flatten();
    r
}

async fn items(pool: &sqlx::AnyPool, p: &str) -> Vec<i64> {
    let mut v: Vec<i64> = sqlx::query_scalar(&format!("SELECT item FROM {p}items"))
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Waits until the operation is running with at least `done` items done.
async fn wait_for_progress(pool: &sqlx::AnyPool, p: &str, done: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((status, Some(n))) = row(pool, p).await {
            if status == "running" && n >= done {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what}: no progress to {done}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_resumes_from_its_last_checkpoint() {
    for b in backends().await {
        let p = prefix();
        let pool = pool(&b).await;
        let mut child = seqckpt(&b, &p, &["process"], "40").spawn().expect("spawn");
        wait_for_progress(&pool, &p, 5, b.name).await;
        child.kill().expect("kill -9");
        child.wait().unwrap();
        let before = items(&pool, &p).await;
        assert!(
            before.len() >= 5 && before.len() < 40,
            "{}: {before:?}",
            b.name
        );

        // The next run sees the dead process: interrupted, not re-run by itself (it is not idempotent).
        let out = seqckpt(&b, &p, &["process"], "0").output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("interrupted: 2024_08_01_000000_c_items"),
            "{}",
            b.name
        );
        let status = seqckpt(&b, &p, &["status"], "0").output().unwrap();
        let status = String::from_utf8_lossy(&status.stdout);
        assert!(
            status.contains("interrupted")
                && status.contains(&format!("progress {}/40", before.len())),
            "{}: {status}",
            b.name
        );

        // `retry` resumes after the last checkpoint: every item exactly once.
        run_ok(&b, &mut seqckpt(&b, &p, &["retry", "c_items"], "0"));
        let after = items(&pool, &p).await;
        assert_eq!(
            after,
            (0..40).collect::<Vec<i64>>(),
            "{}: no item skipped or repeated",
            b.name
        );
        assert_eq!(row(&pool, &p).await.map(|r| r.0), Some("completed".into()));
        common::drop_tables(&pool, &p, &["items"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_operation_at_its_next_checkpoint() {
    for b in backends().await {
        let p = prefix();
        let pool = pool(&b).await;
        let child = seqckpt(&b, &p, &["process"], "40").spawn().expect("spawn");
        wait_for_progress(&pool, &p, 3, b.name).await;
        run_ok(&b, &mut seqckpt(&b, &p, &["cancel", "c_items"], "0"));
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("cancelled at a checkpoint"),
            "{}: {stdout}",
            b.name
        );
        // Said as cancelled, counted, and told by the exit code: not a failure, not a success.
        assert!(
            stdout.contains("CANCELLED   2024_08_01_000000_c_items")
                && !stdout.contains("FAILED")
                && stdout.contains("0 failed, 0 skipped, 1 cancelled"),
            "{}: {stdout}",
            b.name
        );
        assert_eq!(out.status.code(), Some(4), "{}: {stdout}", b.name);
        let done = items(&pool, &p).await.len();
        assert!(done < 40, "{}: it stopped early ({done} items)", b.name);
        assert_eq!(
            row(&pool, &p).await.map(|r| r.0),
            Some("interrupted".into()),
            "{}",
            b.name
        );
        let out = seqckpt(&b, &p, &["cancel", "c_items"], "0")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: nothing running to cancel",
            b.name
        );
        run_ok(&b, &mut seqckpt(&b, &p, &["retry", "c_items"], "0"));
        assert_eq!(
            items(&pool, &p).await,
            (0..40).collect::<Vec<i64>>(),
            "{}",
            b.name
        );
        common::drop_tables(&pool, &p, &["items"]).await;
    }
}
