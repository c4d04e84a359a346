//! Hard timeouts on every backend, with real processes: an operation stuck in `std::thread::sleep` (which its
//! `timeout` cannot abort) is recorded `failed` and its process (`process`, `work`) exits with code 5, for its
//! supervisor to restart it; the restarted process loses nothing.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{backends, pool, prefix, Backend};
use sequencer::sqlx;

fn seqstuck(b: &Backend, p: &str, args: &[&str], stuck: &str) -> Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_seqstuck"), &b.url, p, args);
    c.env("SEQTEST_STUCK", stuck)
        .env("SEQTEST_GRACE_MS", "1000");
    c
}

/// `(status, last_error)` of an operation's latest run.
async fn row(pool: &sqlx::AnyPool, p: &str, name: &str) -> Option<(String, Option<String>)> {
    let text = if pool.connect_options().database_url.scheme() == "mysql" {
        "CHAR(2000)"
    } else {
        "TEXT"
    };
    let q = format!(
        "SELECT status, CAST(last_error AS {text}) FROM {p}seq_operations WHERE name = '{name}' ORDER BY run DESC"
    );
    sqlx::query_as(&q)
        .fetch_optional(pool)
        .await
        .expect("read the ledger")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_exits_when_an_operation_is_stuck_past_its_timeout() {
    for b in backends().await {
        let p = prefix();
        let pool = pool(&b).await;
        let started = Instant::now();
        let out = seqstuck(&b, &p, &["process"], "stuck")
            .output()
            .expect("run");
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{}: {stderr}", b.name);
        assert!(
            stderr.contains("hit its hard timeout"),
            "{}: {stderr}",
            b.name
        );
        // Timeout 1 s + grace 1 s, well before the ten minutes it would sleep.
        assert!(took < Duration::from_secs(30), "{}: {took:?}", b.name);
        let (status, error) = row(&pool, &p, "2024_10_01_000000_stuck")
            .await
            .expect("recorded");
        assert_eq!(status, "failed", "{}", b.name);
        assert!(
            error.as_deref().is_some_and(|e| e.contains("hard timeout")),
            "{}: {error:?}",
            b.name
        );
        assert_eq!(
            row(&pool, &p, "2024_10_01_000001_after_stuck")
                .await
                .map(|r| r.0),
            Some("pending".into())
        );

        // Restarted (and no longer stuck): the failed operation runs again, and the one after it.
        let out = seqstuck(&b, &p, &["process", "--sync"], "")
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}: {}",
            b.name,
            String::from_utf8_lossy(&out.stdout)
        );
        for name in ["2024_10_01_000000_stuck", "2024_10_01_000001_after_stuck"] {
            assert_eq!(
                row(&pool, &p, name).await.map(|r| r.0),
                Some("completed".into()),
                "{}: {name}",
                b.name
            );
        }
        common::drop_tables(&pool, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_exits_when_its_job_is_stuck_and_its_restart_finishes_the_queue() {
    for b in backends().await {
        let p = prefix();
        let pool = pool(&b).await;
        let out = seqstuck(&b, &p, &["process"], "").output().expect("queue");
        assert!(
            out.status.success(),
            "{}: {}",
            b.name,
            String::from_utf8_lossy(&out.stdout)
        );
        let out = seqstuck(
            &b,
            &p,
            &["work", "--until-idle", "--lease", "2"],
            "stuck_on_worker",
        )
        .output()
        .expect("work");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{}: {stderr}", b.name);
        let (status, error) = row(&pool, &p, "2024_10_01_000002_stuck_on_worker")
            .await
            .expect("recorded");
        assert_eq!(status, "failed", "{}: {error:?}", b.name);
        assert!(
            error.is_some_and(|e| e.contains("hard timeout")),
            "{}",
            b.name
        );

        // Restarted (and no longer stuck): the job is taken again once the dead worker's lease has run out.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let out = seqstuck(&b, &p, &["work", "--until-idle", "--lease", "2"], "")
            .output()
            .expect("work");
        assert!(
            out.status.success(),
            "{}: {}",
            b.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let status = seqstuck(&b, &p, &["status"], "").output().expect("status");
        let status = String::from_utf8_lossy(&status.stdout);
        assert_eq!(
            row(&pool, &p, "2024_10_01_000002_stuck_on_worker")
                .await
                .map(|r| r.0),
            Some("completed".into()),
            "{}: {status}",
            b.name
        );
        common::drop_tables(&pool, &p, &[]).await;
    }
}
