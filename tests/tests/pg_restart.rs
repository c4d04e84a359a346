//! PostgreSQL restarted in the middle of a run: workers ride it out (the pool reconnects, `LISTEN` re-subscribes),
//! finish the queue, and mark nothing completed that did not complete. Its own test binary, so that the restart
//! disturbs no other suite (cargo runs test binaries one after another).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::work::{cleanup, job_count, log_counts, seqwork, setup, statuses, Workers, N};
use common::{backends, prefix};

/// The tests of this binary stop PostgreSQL: one at a time.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `pg_ctlcluster VERSION main restart`, where the machine has it.
fn restart_command() -> Option<Command> {
    pg_ctl("restart")
}

/// `pg_ctlcluster VERSION main ACTION`, where the machine has it.
fn pg_ctl(action: &str) -> Option<Command> {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .flatten()
        .next()?
        .file_name()
        .to_string_lossy()
        .into_owned();
    let which = Command::new("sh")
        .arg("-c")
        .arg("command -v pg_ctlcluster")
        .output()
        .ok()?;
    if !which.status.success() {
        return None;
    }
    let mut c = Command::new("pg_ctlcluster");
    c.args(["--skip-systemctl-redirect", &version, "main", action]);
    Some(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_a_postgresql_restart() {
    let _one_at_a_time = SERVER.lock().await;
    let Some(b) = backends()
        .await
        .into_iter()
        .find(|b| b.name == "PostgreSQL")
    else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped the PostgreSQL restart test: no PostgreSQL\n",
        );
        return;
    };
    let Some(mut restart) = restart_command() else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped the PostgreSQL restart test: no pg_ctlcluster here\n",
        );
        return;
    };
    let p = prefix();
    let pool = setup(&b, &p).await;
    let args = ["work", "--concurrency", "8", "--lease", "2"];
    let mut workers = Workers::new(
        (0..2)
            .map(|_| seqwork(&b, &p, &args, "5").spawn().unwrap())
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_counts(&pool, &p).await.len() < 100 {
        assert!(Instant::now() < deadline, "the workers never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = restart.status().expect("pg_ctlcluster");
    assert!(status.success(), "restarting PostgreSQL failed");

    let jobs = format!("{p}seq_");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let open =
            job_count(&pool, &jobs, "queued").await + job_count(&pool, &jobs, "running").await;
        let statuses = statuses(&pool, &p).await;
        // An operation whose own query hit the restart fails: that is its honest outcome.
        let settled = statuses.len() == N
            && statuses
                .values()
                .all(|s| s == "completed" || s == "interrupted" || s == "failed");
        if open == 0 && settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} jobs still open after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for out in workers.stop() {
        assert!(
            out.status.success(),
            "a worker died with the database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let counts = log_counts(&pool, &p).await;
    let statuses = statuses(&pool, &p).await;
    let mut failed = 0;
    for i in 0..N {
        let name = format!("w_{i}");
        let count = counts.get(&name).copied().unwrap_or(0);
        match statuses.get(&name).map(String::as_str) {
            // Nothing is marked completed that did not complete: every completed op logged its work.
            Some("completed") => {
                assert!(count >= 1, "{name} is completed but never ran");
                if i % 2 == 1 {
                    assert_eq!(count, 1, "non-idempotent {name} ran {count} times");
                }
            }
            Some("interrupted") => {
                assert!(i % 2 == 1, "idempotent {name} was left interrupted");
                assert!(count <= 1, "interrupted {name} was re-run");
            }
            Some("failed") => {
                failed += 1;
                assert!(
                    i % 2 == 0 || count <= 1,
                    "non-idempotent {name} ran {count} times"
                );
            }
            other => panic!("{name} ended {other:?}"),
        }
    }
    assert!(failed < 50, "{failed} operations failed across one restart");
    cleanup(&pool, &p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_lease_leaves_a_worker_its_running_operations() {
    let _one_at_a_time = SERVER.lock().await;
    let Some(b) = backends()
        .await
        .into_iter()
        .find(|b| b.name == "PostgreSQL")
    else {
        return;
    };
    let (Some(mut stop), Some(mut start)) = (pg_ctl("stop"), pg_ctl("start")) else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped the PostgreSQL outage test: no pg_ctlcluster here\n",
        );
        return;
    };
    let p = prefix();
    let pool = setup(&b, &p).await;
    // Four operations that sleep 8 s each, on a worker whose lease is 2 s.
    let args = ["work", "--concurrency", "4", "--lease", "2"];
    let mut workers = Workers::new(vec![seqwork(&b, &p, &args, "8000").spawn().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let running: Vec<String> = statuses(&pool, &p)
            .await
            .into_iter()
            .filter(|(_, s)| s == "running")
            .map(|(n, _)| n)
            .collect();
        if running.len() == 4 {
            break running;
        }
        assert!(Instant::now() < deadline, "the worker never took its jobs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The database is gone for 5 s, longer than the lease, while the operations run.
    assert!(
        stop.status().expect("pg_ctlcluster").success(),
        "stopping PostgreSQL failed"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        start.status().expect("pg_ctlcluster").success(),
        "starting PostgreSQL failed"
    );
    let pool = common::pool(&b).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = statuses(&pool, &p).await;
        if running
            .iter()
            .all(|n| now.get(n).is_some_and(|s| s != "running"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the running operations never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for out in workers.stop() {
        assert!(
            out.status.success(),
            "the worker died with the database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let statuses = statuses(&pool, &p).await;
    let counts = log_counts(&pool, &p).await;
    for name in &running {
        assert_eq!(
            (
                statuses.get(name).map(String::as_str),
                counts.get(name).copied()
            ),
            (Some("completed"), Some(1)),
            "{name}: the worker's own live claim was expired by the outage"
        );
    }
    cleanup(&pool, &p).await;
}
