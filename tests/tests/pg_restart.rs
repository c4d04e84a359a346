//! PostgreSQL restarted in the middle of a run: workers ride it out (the pool reconnects, `LISTEN` re-subscribes),
//! finish the queue, and mark nothing completed that did not complete. Its own test binary, so that the restart
//! disturbs no other suite (cargo runs test binaries one after another).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::work::{
    cleanup, job_count, log_counts, seqwork, setup, statuses, terminate, Workers, N,
};
use common::{backends, prefix};

/// `pg_ctlcluster VERSION main restart`, where the machine has it.
fn restart_command() -> Option<Command> {
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
    c.args(["--skip-systemctl-redirect", &version, "main", "restart"]);
    Some(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_a_postgresql_restart() {
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
    let mut workers = Workers(
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
    for w in &workers.0 {
        terminate(w);
    }
    for w in workers.0.drain(..) {
        let out = w.wait_with_output().unwrap();
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
