//! What the CLI and the ledger say is what happened: an error's causes once, who holds an operation another
//! process runs, and where the default ledger was created.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use sequencer::ledger::Status;
use sequencer::Sequencer;
use sequencer_tests::ledger_ops::{ops, Knobs};

mod common;

use common::{backends, prefix};

/// An operation whose query fails in the database.
#[sequencer::operations]
mod broken {
    use sequencer::prelude::*;
    use sequencer::sqlx;

    #[operation(timestamp = "2024_08_01_000000")]
    pub async fn read_missing(ctx: &Ctx) -> Result<()> {
        sqlx::query("SELECT x FROM no_such_table_xyz")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_errors_causes_are_said_once() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, broken::registry())).await;
        let report = seq.execute_all().await.unwrap();
        let error = report
            .results
            .iter()
            .find_map(|(_, o)| match o {
                sequencer::Outcome::Failed { error, .. } => Some(error.clone()),
                _ => None,
            })
            .expect("it failed");
        assert_eq!(
            error.matches("no_such_table_xyz").count(),
            1,
            "{}: the database's message is repeated: {error}",
            b.name
        );
        let status = seq.status().await.unwrap();
        let recorded = status[0].error.clone().unwrap_or_default();
        assert_eq!(
            recorded.matches("no_such_table_xyz").count(),
            1,
            "{}: {recorded}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

async fn statuses(seq: &Sequencer) -> HashMap<String, Status> {
    seq.status()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name.split_at(18).1.to_owned(), e.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_says_who_runs_an_operation_elsewhere() {
    for b in backends().await {
        let p = prefix();
        let knobs = Knobs {
            prefix: p.clone(),
            ..Knobs::default()
        };
        let seq = common::build(&b, common::builder(&b, &p, ops::registry()).state(knobs)).await;
        let seqtest = |args: &[&str], env: &[(&str, &str)]| {
            let mut c = common::command(env!("CARGO_BIN_EXE_seqtest"), &b.url, &p, args);
            c.env_remove("SEQUENCER_ENV");
            for (k, v) in env {
                c.env(k, v);
            }
            c
        };
        let only_j = [
            "process",
            "--from",
            "2024_01_01_000010",
            "--to",
            "2024_01_01_000010",
        ];
        assert!(seq.execute("a_create").await.unwrap().succeeded());
        let mut slow = seqtest(&only_j, &[("SEQTEST_SLEEP_MS", "20000")])
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(60);
        while statuses(&seq).await.get("j_slow") != Some(&Status::Running) {
            assert!(
                Instant::now() < deadline,
                "{}: j_slow never started",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = seqtest(&only_j, &[]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("running elsewhere: 2024_01_01_000010_j_slow: running on ")
                && stdout.contains(&format!("(pid {})", slow.id())),
            "{}: {stdout}",
            b.name
        );
        assert!(!stdout.contains("Nothing to run"), "{}: {stdout}", b.name);
        slow.kill().ok();
        slow.wait().ok();
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[test]
fn the_default_ledger_says_where_it_was_created_once() {
    let dir = std::env::temp_dir().join(format!("sequencer-default-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let status = || {
        Command::new(env!("CARGO_BIN_EXE_seqtest"))
            .arg("status")
            .current_dir(&dir)
            .env_remove("SEQUENCER_DATABASE_URL")
            .env_remove("SEQUENCER_ENV")
            .output()
            .unwrap()
    };
    let first = status();
    assert!(first.status.success(), "{first:?}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("created the ledger `sequencer.db` (SQLite)")
            && stderr.contains("--database URL"),
        "{stderr}"
    );
    assert!(dir.join("sequencer.db").exists());
    let second = status();
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("created the ledger"),
        "said again: {second:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
