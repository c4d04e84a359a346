//! What the CLI and the ledger say is what happened: an error's causes once, who holds an operation another
//! process runs, where the default ledger was created, who holds the isolation lock (and `--wait` for it), the
//! dry run's critical path, the application's own name and version, an idle worker's queue, and `make --inline`.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use sequencer::ledger::Status;
use sequencer::{LockWait, ProcessOptions, Sequencer, SequencerError};
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

/// Runs the `seqtest` binary on a backend with the test's prefix; `env` adds variables.
fn seqtest(b: &common::Backend, p: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_seqtest"), &b.url, p, args);
    c.env_remove("SEQUENCER_ENV");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_isolate_wait_waits_for_the_lock_and_says_who_holds_it() {
    for b in backends().await {
        let p = prefix();
        let knobs = Knobs {
            prefix: p.clone(),
            ..Knobs::default()
        };
        let seq = common::build(&b, common::builder(&b, &p, ops::registry()).state(knobs)).await;
        assert!(seq.execute("a_create").await.unwrap().succeeded());
        let only_j = ["--from", "2024_01_01_000010", "--to", "2024_01_01_000010"];
        let isolated = |extra: &[&str]| {
            let mut args = vec!["process", "--isolate"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&only_j);
            args.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let args = isolated(&[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut holder = seqtest(&b, &p, &args, &[("SEQTEST_SLEEP_MS", "3000")])
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
        // `--wait`: runs once the holder is done, so finds j_slow completed.
        let args = isolated(&["--wait"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let waiter = seqtest(&b, &p, &args, &[]).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&waiter.stdout),
            String::from_utf8_lossy(&waiter.stderr),
        );
        assert_eq!(waiter.status.code(), Some(0), "{}: {stderr}", b.name);
        assert!(
            stderr.contains(&format!(
                "(pid {}) holds the isolation lock; waiting for it until it is free",
                holder.id()
            )),
            "{}: {stderr}",
            b.name
        );
        assert_eq!(
            stderr.matches("waiting for it").count(),
            1,
            "{}: said once: {stderr}",
            b.name
        );
        assert!(
            stdout.contains("Nothing to run") && !stdout.contains("running elsewhere"),
            "{}: the waiter ran after the holder: {stdout}",
            b.name
        );
        assert!(holder.wait().unwrap().success(), "{}", b.name);
        assert_eq!(statuses(&seq).await["j_slow"], Status::Completed);

        // `--wait=1s`: gives up after about a second, exit 3, naming the holder.
        let other = sequencer::ledger::Owner {
            host: "other-host".into(),
            pid: 4242,
            actor: None,
        };
        let lock = seq.ledger().try_lock(&other).await.unwrap().expect("free");
        let started = Instant::now();
        let out = seqtest(&b, &p, &["process", "--isolate", "--wait=1s"], &[])
            .output()
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {stderr}", b.name);
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(15),
            "{}: {took:?}",
            b.name
        );
        assert!(
            stderr.contains("waiting for it for at most 1 s")
                && stderr.contains("another process holds the isolation lock: other-host (pid 4242); waited 1 s for it"),
            "{}: {stderr}",
            b.name
        );
        // Without `--wait`: exit 3 at once, naming the holder too.
        let out = seqtest(&b, &p, &["process", "--isolate"], &[])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {stderr}", b.name);
        assert!(
            stderr.contains("other-host (pid 4242)"),
            "{}: {stderr}",
            b.name
        );

        // In the library, `Sequencer::cancel` ends the wait.
        let waiting = seq.clone();
        let mut events = seq.subscribe();
        let wait = tokio::spawn(async move {
            waiting
                .process(&ProcessOptions {
                    isolate: true,
                    lock_wait: LockWait::Forever,
                    ..ProcessOptions::default()
                })
                .await
        });
        let said = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the wait is announced")
            .unwrap();
        assert_eq!(
            said,
            sequencer::Event::WaitingForLock {
                holder: Some("other-host (pid 4242)".into()),
                at_most_secs: None
            },
            "{}",
            b.name
        );
        seq.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("cancel ends the wait")
            .unwrap();
        assert!(
            matches!(
                ended,
                Err(SequencerError::LockHeld {
                    waited: Some(_),
                    ..
                })
            ),
            "{}: {ended:?}",
            b.name
        );
        lock.release().await.unwrap();
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

/// Four operations: `first` → `second` → `third`, and `lone`.
#[sequencer::operations]
mod chain {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_09_01_000001")]
    pub async fn first(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_09_01_000002", depends_on = [first])]
    pub async fn second(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_09_01_000003", depends_on = [second])]
    pub async fn third(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_09_01_000004")]
    pub async fn lone(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_draws_its_critical_path_over_what_would_run() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, chain::registry())).await;
        assert!(seq.execute("first").await.unwrap().succeeded());
        assert!(seq.execute("second").await.unwrap().succeeded());
        let preview = seq
            .preview(&ProcessOptions {
                dry_run: true,
                ..ProcessOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(
            preview.planned,
            ["2024_09_01_000003_third", "2024_09_01_000004_lone"],
            "{}",
            b.name
        );
        assert!(
            !preview.critical_path.is_empty()
                && preview
                    .critical_path
                    .iter()
                    .all(|n| preview.planned.contains(n)),
            "{}: the critical path names operations that will not run: {:?}",
            b.name,
            preview.critical_path
        );
        // `third`'s dependency has run: it can start at once, beside `lone`.
        assert_eq!(
            preview.waves,
            [["2024_09_01_000003_third", "2024_09_01_000004_lone"]],
            "{}",
            b.name
        );
        assert_eq!(preview.total_work, 2, "{}", b.name);
        common::cleanup(&seq, &p, &[]).await;
    }
}

/// The dry run and the graph read each operation's latest run only: not an older run, not a task run (a row with
/// arguments) of the same name, and not an older run in place of a latest one this version cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_and_the_graph_read_each_operations_latest_run() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, chain::registry())).await;
        assert!(seq.execute("first").await.unwrap().succeeded());
        assert!(seq.execute("second").await.unwrap().succeeded());
        let ops = format!("{p}seq_operations");
        let (second, third, lone) = (
            "2024_09_01_000002_second",
            "2024_09_01_000003_third",
            "2024_09_01_000004_lone",
        );
        // `second`: a later run written by a newer version; `third`: completed, then failed; `lone`: completed,
        // then a task run of the same name failed.
        let rows = [
            format!("DELETE FROM {ops} WHERE name IN ('{third}', '{lone}')"),
            format!("INSERT INTO {ops} (name, run, op_timestamp, status) VALUES ('{second}', 1, 20240901000002, 'from_the_future')"),
            format!("INSERT INTO {ops} (name, run, op_timestamp, status, duration_ms) VALUES ('{third}', 0, 20240901000003, 'completed', 10)"),
            format!("INSERT INTO {ops} (name, run, op_timestamp, status, duration_ms) VALUES ('{third}', 1, 20240901000003, 'failed', 7)"),
            format!("INSERT INTO {ops} (name, run, op_timestamp, status, duration_ms) VALUES ('{lone}', 0, 20240901000004, 'completed', 3)"),
            format!("INSERT INTO {ops} (name, run, op_timestamp, status, duration_ms, args) VALUES ('{lone}', 7, 0, 'failed', 5, '{{}}')"),
        ];
        for sql in &rows {
            sequencer::sqlx::query(sql)
                .execute(seq.ledger().pool())
                .await
                .unwrap();
        }
        let preview = seq
            .preview(&ProcessOptions {
                dry_run: true,
                ..ProcessOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(preview.planned, [second, third], "{}", b.name);
        let outlines = seq.ledger().latest_outlines().await.unwrap();
        let mut seen: Vec<(&str, Status, Option<i64>)> = outlines
            .iter()
            .map(|(n, (s, ms))| (n.as_str(), *s, *ms))
            .collect();
        seen.sort_by_key(|(n, _, _)| *n);
        assert_eq!(
            seen,
            [
                ("2024_09_01_000001_first", Status::Completed, seen[0].2),
                (third, Status::Failed, Some(7)),
                (lone, Status::Completed, Some(3)),
            ],
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[test]
fn help_and_version_name_the_application() {
    let run = |exe: &str, arg: &str| {
        let out = Command::new(exe).arg(arg).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // `seqtest` sets `.app(sequencer::app_info!())`: this crate's name, version and description.
    assert_eq!(
        run(env!("CARGO_BIN_EXE_seqtest"), "--version"),
        format!("sequencer-tests {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = run(env!("CARGO_BIN_EXE_seqtest"), "--help");
    assert!(
        help.starts_with("Integration tests of sequencer.") && help.contains("Usage: seqtest"),
        "{help}"
    );
    // `seqwork` does not: its file name, and the sequencer version it was built with.
    let version = run(env!("CARGO_BIN_EXE_seqwork"), "--version");
    assert!(version.starts_with("seqwork (sequencer "), "{version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_says_it_waits_and_on_which_queue() {
    use std::io::BufRead;
    for b in backends().await {
        let p = prefix();
        let mut worker = seqtest(&b, &p, &["work", "--queue", "honest_q"], &[])
            .spawn()
            .expect("spawn");
        let stdout = worker.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = Vec::new();
        while !lines
            .iter()
            .any(|l: &String| l.starts_with("Waiting for jobs on queue `honest_q`"))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => {
                    let _ = worker.kill();
                    panic!("{}: the worker never said it waits: {lines:?}", b.name);
                }
            }
        }
        common::work::terminate(&worker);
        assert!(worker.wait().unwrap().success(), "{}", b.name);
        let seq = common::build(&b, common::builder(&b, &p, ops::registry())).await;
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[test]
fn make_inline_prints_the_function_to_paste() {
    let dir = std::env::temp_dir().join(format!("sequencer-make-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let now = || {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        sequencer::Timestamp::from_unix_seconds(secs as i64).unwrap()
    };
    let before = now();
    let out = Command::new(env!("CARGO_BIN_EXE_seqtest"))
        .args([
            "make",
            "backfill_orders",
            "--inline",
            "--rollback",
            "--dependencies",
            "create_users",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let after = now();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ts: sequencer::Timestamp = stdout
        .split_once("timestamp = \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .and_then(|(ts, _)| ts.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp: {stdout}"));
    assert!(before <= ts && ts <= after, "{ts} is not now");
    assert!(
        stdout.contains(&format!("#[operation(timestamp = \"{ts}\", rollback = undo_backfill_orders, depends_on = [create_users])]\nasync fn backfill_orders(ctx: &Ctx) -> Result<()> {{"))
            && stdout.contains("async fn undo_backfill_orders(ctx: &Ctx) -> Result<()> {"),
        "{stdout}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "it wrote a file"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Deploy tooling configures runs through the environment: `SEQUENCER_ORCHESTRATOR`, `SEQUENCER_CONCURRENCY` and
/// `SEQUENCER_STRATEGY`, the flag over the variable over the application's choice; a bad value is exit 2 naming the
/// valid ones.
#[test]
fn the_environment_configures_runs_and_bad_values_name_the_valid_ones() {
    let dir = std::env::temp_dir().join(format!("sequencer-envcfg-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = common::command(env!("CARGO_BIN_EXE_seqtest"), &url, "envcfg_", args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("seqtest runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(
        &["process", "--dry-run"],
        &[("SEQUENCER_ORCHESTRATOR", "graph")],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("with the graph orchestrator"), "{out}");
    let (code, out, err) = run(
        &["process", "--dry-run", "--orchestrator", "batch"],
        &[("SEQUENCER_ORCHESTRATOR", "graph")],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("with the batch orchestrator"),
        "the flag wins: {out}"
    );

    let (code, _, err) = run(
        &["process", "--dry-run"],
        &[("SEQUENCER_ORCHESTRATOR", "fastest")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("fastest") && err.contains("sequential") && err.contains("graph"),
        "{err}"
    );
    let (code, _, err) = run(&["process", "--dry-run"], &[("SEQUENCER_CONCURRENCY", "0")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("SEQUENCER_CONCURRENCY") || err.contains("concurrency"),
        "{err}"
    );
    let (code, _, err) = run(&["status"], &[("SEQUENCER_STRATEGY", "sometimes")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("command") && err.contains("migration"),
        "{err}"
    );

    // The migration strategy from the environment: `process` says what it does.
    let (code, _, err) = run(
        &["process"],
        &[("SEQUENCER_STRATEGY", "migration"), ("SEQTEST_FAIL_D", "0")],
    );
    assert!(
        err.contains("runs its operations during `migrate`"),
        "{code:?}: {err}"
    );
    let (_, _, err) = run(
        &["process", "--strategy", "command"],
        &[("SEQUENCER_STRATEGY", "migration")],
    );
    assert!(!err.contains("during `migrate`"), "the flag wins: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every operation event says how its run was started: `process`, `retry`, `execute`, `rollback`, `migrate`
/// (tests/tests/migrate.rs) or a worker (tests/tests/async_order.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_event_says_how_its_run_started() {
    use sequencer::{Event, RollbackTarget, Via};
    for b in backends().await {
        let p = prefix();
        let seq = common::build(
            &b,
            common::builder(&b, &p, sequencer_tests::users::registry()),
        )
        .await;
        let mut rx = seq.subscribe();
        let short = |n: &str| {
            n.get(18..)
                .filter(|_| n.starts_with("2024"))
                .unwrap_or(n)
                .to_owned()
        };
        let drain = |rx: &mut tokio::sync::broadcast::Receiver<Event>| {
            let mut out = Vec::new();
            while let Ok(e) = rx.try_recv() {
                let line = match e {
                    Event::OperationsStarted { via, .. } => format!("{via}: started"),
                    Event::OperationStarted { name, via, .. } => {
                        format!("{via}: start {}", short(&name))
                    }
                    Event::OperationSucceeded { name, via, .. } => {
                        format!("{via}: done {}", short(&name))
                    }
                    Event::OperationFailed { name, via, .. } => {
                        format!("{via}: failed {}", short(&name))
                    }
                    Event::OperationSkipped { name, via, .. } => {
                        format!("{via}: skipped {}", short(&name))
                    }
                    Event::OperationRolledBack { name, via } => {
                        format!("{via}: undone {}", short(&name))
                    }
                    Event::OperationsEnded { via, .. } => format!("{via}: ended"),
                    _ => continue,
                };
                out.push(line);
            }
            out
        };
        seq.execute_all().await.unwrap();
        assert_eq!(
            drain(&mut rx),
            [
                "process: started",
                "process: start create_users",
                "process: done create_users",
                "process: start custom-name",
                "process: failed custom-name",
                "process: ended"
            ],
            "{}",
            b.name
        );
        let _ = seq.retry("invite_users").await.unwrap();
        let retried = drain(&mut rx);
        assert!(
            retried.iter().any(|l| l == "retry: failed custom-name")
                || retried.iter().any(|l| l == "retry: skipped custom-name"),
            "{}: {retried:?}",
            b.name
        );
        assert!(
            retried.iter().all(|l| l.starts_with("retry: ")),
            "{}: {retried:?}",
            b.name
        );
        seq.rollback(&RollbackTarget::Op("create_users".into()))
            .await
            .unwrap();
        assert_eq!(
            drain(&mut rx),
            ["rollback: undone create_users"],
            "{}",
            b.name
        );
        seq.execute("create_users").await.unwrap();
        let executed = drain(&mut rx);
        assert!(
            executed.contains(&"execute: done create_users".to_owned())
                && executed.iter().all(|l| l.starts_with("execute: ")),
            "{}: {executed:?}",
            b.name
        );
        assert_eq!(Via::Worker.to_string(), "worker");
        common::cleanup(&seq, &p, &[]).await;
    }
}
