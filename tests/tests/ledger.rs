//! The ledger suite, run against every backend: SQLite (always), PostgreSQL and MariaDB (when reachable; with
//! `SEQUENCER_REQUIRE_SERVERS=1`, as `.ci/run` sets, an unreachable server fails the suite).
//! Override the servers with `SEQUENCER_TEST_POSTGRES_URL` / `SEQUENCER_TEST_MYSQL_URL`.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sequencer::ledger::Status;
use sequencer::sqlx;
use sequencer::{
    Event, Outcome, ProcessOptions, RollbackTarget, Sequencer, SequencerError, Timestamp,
};
use sequencer_tests::ledger_ops::{ops, Knobs};

mod common;

use common::{backends, prefix, Backend};

async fn sequencer(b: &Backend, p: &str, knobs: Knobs) -> Sequencer {
    let knobs = Knobs {
        prefix: p.to_owned(),
        ..knobs
    };
    common::build(b, common::builder(b, p, ops::registry()).state(knobs)).await
}

async fn log(seq: &Sequencer, p: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT name FROM {p}log"))
        .fetch_all(seq.ledger().pool())
        .await
        .unwrap_or_default()
}

async fn statuses(seq: &Sequencer) -> HashMap<String, Status> {
    seq.status()
        .await
        .expect("status")
        .into_iter()
        .map(|e| (e.name.split_at(18).1.to_owned(), e.status))
        .collect()
}

fn ts(s: &str) -> Option<Timestamp> {
    Some(s.parse().expect("timestamp"))
}

fn count(log: &[String], what: &str) -> usize {
    log.iter().filter(|l| *l == what).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_each_operation_once_and_records_it() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p, Knobs::default()).await;
        let mut events = seq.subscribe();
        let report = seq
            .execute_all()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let s = statuses(&seq).await;
        for op in [
            "a_create",
            "b_tx",
            "d_fail",
            "e_optional",
            "i_panic",
            "j_slow",
            "k_idem",
        ] {
            assert_eq!(s[op], Status::Completed, "{}: {op}", b.name);
        }
        for op in ["f_env", "g_cond", "h_skip"] {
            assert_eq!(s[op], Status::Skipped, "{}: {op}", b.name);
        }
        let reasons: Vec<String> = seq
            .status()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| e.skip_reason)
            .collect();
        assert!(
            reasons[0].contains("only in [\"production\"]"),
            "{}: {reasons:?}",
            b.name
        );
        assert_eq!(reasons[1], "`should_run` returned false");
        assert_eq!(reasons[2], "nothing to do");

        let first = events.recv().await.unwrap();
        assert!(
            matches!(first, Event::OperationsStarted { count: 10, .. }),
            "{}: {first:?}",
            b.name
        );
        let mut last = first;
        while let Ok(e) = events.try_recv() {
            last = e;
        }
        assert!(
            matches!(
                last,
                Event::OperationsEnded {
                    completed: 7,
                    failed: 0,
                    skipped: 3,
                    ..
                }
            ),
            "{}: {last:?}",
            b.name
        );

        // A second run finds nothing to do, and the log shows each operation ran once.
        let again = seq.execute_all().await.unwrap();
        assert!(
            again.planned.is_empty() && again.batch.is_none(),
            "{}: {again:?}",
            b.name
        );
        assert!(matches!(
            events.recv().await.unwrap(),
            Event::NoPendingOperations
        ));
        let l = log(&seq, &p).await;
        for op in [
            "a_create",
            "b_tx",
            "d_fail",
            "e_optional",
            "i_panic",
            "j_slow",
            "k_idem",
        ] {
            assert_eq!(count(&l, op), 1, "{}: {op} in {l:?}", b.name);
        }
        assert_eq!(count(&l, "f_env") + count(&l, "g_cond"), 0);

        // `--repeat` adds runs of completed operations and refuses ones that never completed.
        let repeat = ProcessOptions {
            repeat: true,
            from: ts("2024_01_01_000010"),
            to: ts("2024_01_01_000011"),
            ..Default::default()
        };
        let r = seq.process(&repeat).await.unwrap();
        assert_eq!(
            r.count(|o| matches!(o, Outcome::Completed { .. })),
            2,
            "{}: {r:?}",
            b.name
        );
        assert_eq!(count(&log(&seq, &p).await, "j_slow"), 2);
        let refused = seq
            .process(&ProcessOptions {
                repeat: true,
                to: ts("2024_01_01_000006"),
                ..Default::default()
            })
            .await;
        assert!(
            matches!(&refused, Err(SequencerError::Usage(m)) if m.contains("never completed")),
            "{}: {refused:?}",
            b.name
        );
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_stops_the_run_and_rolls_back_only_this_runs_operations() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p, Knobs::default()).await;
        seq.process(&ProcessOptions {
            to: ts("2024_01_01_000001"),
            ..Default::default()
        })
        .await
        .unwrap();

        let failing = sequencer(
            &b,
            &p,
            Knobs {
                fail_d: true.into(),
                ..Knobs::default()
            },
        )
        .await;
        // Asked to (`--rollback-on-failure`): the run's own completed operations are undone.
        let report = failing
            .process(&ProcessOptions {
                rollback_on_failure: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(!report.succeeded());
        assert_eq!(
            report.rolled_back,
            ["2024_01_01_000002_b_tx"],
            "{}: only this run's, in reverse",
            b.name
        );
        let s = statuses(&failing).await;
        assert_eq!(
            s["a_create"],
            Status::Completed,
            "{}: an earlier run's op is left alone",
            b.name
        );
        assert_eq!(s["b_tx"], Status::RolledBack);
        assert_eq!(s["d_fail"], Status::Failed);
        assert_eq!(
            s["e_optional"],
            Status::Pending,
            "{}: the run stopped",
            b.name
        );
        let l = log(&failing, &p).await;
        assert_eq!(count(&l, "rollback b_tx"), 1, "{}: {l:?}", b.name);
        assert_eq!(
            count(&l, "rollback a_create") + count(&l, "rollback d_fail"),
            0,
            "{}: {l:?}",
            b.name
        );

        // Every cause of the error chain is recorded.
        let errors = failing.errors(Some("d_fail")).await.unwrap();
        assert_eq!(errors.len(), 1, "{}: {errors:?}", b.name);
        assert_eq!(
            errors[0].chain,
            "d_fail could not sync invoices\ncalling the billing API\nconnection reset by peer"
        );
        let row = failing
            .status()
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.name.ends_with("d_fail"))
            .unwrap();
        assert!(row.error.unwrap().contains("connection reset by peer"));

        // Fixed: the next run runs the failed and the rolled-back operations again, and the rest.
        let report = seq.execute_all().await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let s = statuses(&seq).await;
        assert_eq!(
            (s["b_tx"], s["d_fail"], s["k_idem"]),
            (Status::Completed, Status::Completed, Status::Completed)
        );

        // Rolling back a batch undoes its rollbackable operations, latest first, and reports the others.
        let batch = report.batch.unwrap();
        let rb = seq.rollback(&RollbackTarget::Batch(batch)).await.unwrap();
        assert_eq!(
            rb.rolled_back,
            ["2024_01_01_000004_d_fail", "2024_01_01_000002_b_tx"],
            "{}: {rb:?}",
            b.name
        );
        assert!(rb
            .rollback_failures
            .iter()
            .any(|(n, e)| n.ends_with("j_slow") && e.contains("no rollback")));
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_to_fail_and_panics_are_recorded() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(
            &b,
            &p,
            Knobs {
                fail_e: true.into(),
                panic_i: true.into(),
                ..Knobs::default()
            },
        )
        .await;
        let report = seq.execute_all().await.unwrap();
        let s = statuses(&seq).await;
        assert_eq!(s["e_optional"], Status::Failed, "{}", b.name);
        assert_eq!(
            s["i_panic"],
            Status::Failed,
            "{}: a panic is a failure",
            b.name
        );
        assert_eq!(
            s["j_slow"],
            Status::Pending,
            "{}: the panic stopped the run",
            b.name
        );
        let failures: Vec<_> = report
            .results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
            .collect();
        assert!(
            matches!(
                &failures[0].1,
                Outcome::Failed {
                    allowed_to_fail: true,
                    ..
                }
            ),
            "{}: {failures:?}",
            b.name
        );
        assert!(
            matches!(&failures[1].1, Outcome::Failed { allowed_to_fail: false, error } if error.contains("panicked: index out of range"))
        );
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_operation_commits_with_its_ledger_row_or_not_at_all() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p, Knobs::default()).await;
        seq.process(&ProcessOptions {
            to: ts("2024_01_01_000001"),
            ..Default::default()
        })
        .await
        .unwrap();
        let failing = sequencer(
            &b,
            &p,
            Knobs {
                fail_tx: true.into(),
                ..Knobs::default()
            },
        )
        .await;
        failing
            .process(&ProcessOptions {
                to: ts("2024_01_01_000002"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            statuses(&failing).await["b_tx"],
            Status::Failed,
            "{}",
            b.name
        );
        assert_eq!(
            count(&log(&failing, &p).await, "b_tx"),
            0,
            "{}: the failed operation's write was rolled back",
            b.name
        );
        let checkpoint = |seq: &Sequencer| {
            let ledger = seq.ledger().clone();
            async move {
                ledger
                    .last_checkpoint("2024_01_01_000002_b_tx", 0)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            checkpoint(&failing).await,
            None,
            "{}: its checkpoint was rolled back with it",
            b.name
        );
        seq.process(&ProcessOptions {
            to: ts("2024_01_01_000002"),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(
            statuses(&seq).await["b_tx"],
            Status::Completed,
            "{}",
            b.name
        );
        assert_eq!(count(&log(&seq, &p).await, "b_tx"), 1, "{}", b.name);
        assert_eq!(
            checkpoint(&seq).await.as_deref(),
            Some("\"inserted\""),
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_operations_rerun_only_when_safe() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p, Knobs::default()).await;
        seq.process(&ProcessOptions {
            to: ts("2024_01_01_000009"),
            ..Default::default()
        })
        .await
        .unwrap();
        // Another machine claimed j and k, then died: their leases ran out.
        let t = format!("{p}seq_operations");
        let past = sequencer::ledger::now_ms() - 1_000;
        for op in ["2024_01_01_000010_j_slow", "2024_01_01_000011_k_idem"] {
            sqlx::query(&format!("UPDATE {t} SET status = 'running', attempts = 1, lease_until = {past}, host = 'elsewhere', pid = 1 WHERE name = '{op}'"))
                .execute(seq.ledger().pool())
                .await
                .unwrap();
        }
        let report = seq.execute_all().await.unwrap();
        assert_eq!(
            report.needs_attention,
            ["2024_01_01_000010_j_slow"],
            "{}: {report:?}",
            b.name
        );
        let s = statuses(&seq).await;
        assert_eq!(
            s["j_slow"],
            Status::Interrupted,
            "{}: not idempotent: left for a human",
            b.name
        );
        assert_eq!(
            s["k_idem"],
            Status::Completed,
            "{}: idempotent: run again",
            b.name
        );
        let retried = seq.retry("j_slow").await.unwrap();
        assert!(retried.succeeded());
        assert_eq!(
            statuses(&seq).await["j_slow"],
            Status::Completed,
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_lock_checksums_orphans_and_marks() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p, Knobs::default()).await;
        let other = sequencer::ledger::Owner {
            host: "other-host".into(),
            pid: 1,
            actor: None,
        };
        let lock = seq
            .ledger()
            .try_lock(&other)
            .await
            .unwrap()
            .expect("free lock");
        let held = seq
            .process(&ProcessOptions {
                isolate: true,
                ..Default::default()
            })
            .await;
        assert!(
            matches!(held, Err(SequencerError::LockHeld { waited: None, .. })),
            "{}: {held:?}",
            b.name
        );
        lock.release().await.unwrap();
        seq.process(&ProcessOptions {
            isolate: true,
            to: ts("2024_01_01_000002"),
            ..Default::default()
        })
        .await
        .unwrap();

        let t = format!("{p}seq_operations");
        sqlx::query(&format!("UPDATE {t} SET checksum = '0000000000000000' WHERE name = '2024_01_01_000001_a_create'")).execute(seq.ledger().pool()).await.unwrap();
        sqlx::query(&format!("INSERT INTO {t} (name, run, op_timestamp, status, attempts) VALUES ('2023_01_01_000000_removed', 0, 20230101000000, 'completed', 1)"))
            .execute(seq.ledger().pool())
            .await
            .unwrap();
        let status = seq.status().await.unwrap();
        let a = status
            .iter()
            .find(|e| e.name.ends_with("a_create"))
            .unwrap();
        let bt = status.iter().find(|e| e.name.ends_with("b_tx")).unwrap();
        assert!(
            a.edited && !bt.edited,
            "{}: only the op whose source changed is flagged",
            b.name
        );
        let orphan = status
            .iter()
            .find(|e| e.name == "2023_01_01_000000_removed")
            .unwrap();
        assert!(
            orphan.orphaned && orphan.timestamp == "2023_01_01_000000",
            "{}: {orphan:?}",
            b.name
        );
        assert_eq!(seq.forget("2023_01_01_000000_removed").await.unwrap(), 1);

        seq.mark("d_fail", Status::Skipped).await.unwrap();
        assert_eq!(statuses(&seq).await["d_fail"], Status::Skipped);
        assert!(matches!(
            seq.mark("nope", Status::Completed).await,
            Err(SequencerError::UnknownOperation { .. })
        ));
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

/// `status` streams the ledger's rows into the entries (issue 19, memory): every operation of the registry in plan
/// order with its LATEST run, then the orphaned rows by `(timestamp, name)`; and the CLI's `status --json`, written
/// item by item, is byte for byte what `serde_json::json!` of the same values prints (keys sorted), the table one
/// line per entry in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_latest_runs_in_plan_order_then_orphans_and_prints_them_unchanged() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p, Knobs::default()).await;
        seq.process(&ProcessOptions {
            to: ts("2024_01_01_000002"),
            ..Default::default()
        })
        .await
        .unwrap();
        let t = format!("{p}seq_operations");
        // A second run of `a_create` (failed) after its first; orphans out of name order, one with two runs.
        let rows = [
            "('2024_01_01_000001_a_create', 1, 20240101000001, 'failed', 2)",
            "('2023_01_01_000000_zz_removed', 0, 20230101000000, 'completed', 1)",
            "('2023_01_01_000000_aa_removed', 0, 20230101000000, 'failed', 1)",
            "('2022_06_01_000000_old', 0, 20220601000000, 'failed', 1)",
            "('2022_06_01_000000_old', 1, 20220601000000, 'completed', 1)",
        ];
        for r in rows {
            sqlx::query(&format!(
                "INSERT INTO {t} (name, run, op_timestamp, status, attempts) VALUES {r}"
            ))
            .execute(seq.ledger().pool())
            .await
            .unwrap();
        }
        let status = seq.status().await.unwrap();
        let names: Vec<&str> = status.iter().map(|e| e.name.as_str()).collect();
        let mut want: Vec<&str> = seq
            .registry()
            .ordered()
            .unwrap()
            .iter()
            .map(|d| d.meta.name)
            .collect();
        want.extend([
            "2022_06_01_000000_old",
            "2023_01_01_000000_aa_removed",
            "2023_01_01_000000_zz_removed",
        ]);
        assert_eq!(names, want, "{}", b.name);
        let a = &status[names.iter().position(|n| n.ends_with("a_create")).unwrap()];
        assert_eq!(
            (a.run, a.status, a.attempts),
            (1, Status::Failed, 2),
            "{}: {a:?}",
            b.name
        );
        let old = &status[want.len() - 3];
        assert_eq!(
            (old.run, old.status),
            (1, Status::Completed),
            "{}: {old:?}",
            b.name
        );
        assert!(old.orphaned && !a.orphaned, "{}", b.name);

        let tasks: Vec<_> = seq
            .task_status()
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.runs() > 0)
            .collect();
        let batches = seq.open_batches().await.unwrap();
        let json = serde_json::json!({ "operations": status, "tasks": tasks, "batches": batches });
        let out = seqtest(&b.url, &p, &["status", "--json"], &[])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", b.name);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}\n", serde_json::to_string_pretty(&json).unwrap()),
            "{}",
            b.name
        );
        let out = seqtest(&b.url, &p, &["status"], &[]).output().unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        let listed: Vec<&str> = table
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert_eq!(listed, want, "{}: {table}", b.name);
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

fn seqtest(url: &str, p: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_seqtest"), url, p, args);
    c.env_remove("SEQUENCER_ENV");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processes_run_each_operation_exactly_once() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p, Knobs::default()).await;
        // Without `--isolate` nothing orders operations across processes (a later operation may start while
        // another process still runs `a_create`), so the log table exists before they start.
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {p}log (name VARCHAR(191) NOT NULL)"
        ))
        .execute(seq.ledger().pool())
        .await
        .expect("log table");
        // Eight real processes at once, without --isolate; the claim alone keeps each operation to one of them.
        let children: Vec<_> = (0..8)
            .map(|_| {
                seqtest(&b.url, &p, &["process"], &[("SEQTEST_SLEEP_MS", "100")])
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}\n{}",
                b.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let l = log(&seq, &p).await;
        for op in [
            "a_create",
            "b_tx",
            "d_fail",
            "e_optional",
            "i_panic",
            "j_slow",
            "k_idem",
        ] {
            assert_eq!(
                count(&l, op),
                1,
                "{}: {op} ran {} times: {l:?}",
                b.name,
                count(&l, op)
            );
        }
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_leaves_an_interrupted_operation_and_cli_exit_codes() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p, Knobs::default()).await;
        let mut child = seqtest(&b.url, &p, &["process"], &[("SEQTEST_SLEEP_MS", "30000")])
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if statuses(&seq).await.get("j_slow") == Some(&Status::Running) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: j_slow never started",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().expect("kill -9");
        child.wait().unwrap();
        assert_eq!(
            statuses(&seq).await["j_slow"],
            Status::Running,
            "{}: the dead process left its claim",
            b.name
        );

        let out = seqtest(&b.url, &p, &["process"], &[]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}", b.name);
        assert!(
            stdout.contains("interrupted: 2024_01_01_000010_j_slow")
                && stdout.contains("retry 2024_01_01_000010_j_slow"),
            "{}: {stdout}",
            b.name
        );
        let s = statuses(&seq).await;
        assert_eq!(
            (s["j_slow"], s["k_idem"]),
            (Status::Interrupted, Status::Completed),
            "{}",
            b.name
        );
        assert_eq!(
            count(&log(&seq, &p).await, "j_slow"),
            0,
            "{}: never silently re-run",
            b.name
        );

        // Exit codes: 2 for a usage error (with a suggestion), 3 for a held lock, 1 for a failed operation.
        let out = seqtest(&b.url, &p, &["execute", "j_slo"], &[])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("did you mean `2024_01_01_000010_j_slow`?"));
        let other = sequencer::ledger::Owner {
            host: "other-host".into(),
            pid: 1,
            actor: None,
        };
        let lock = seq
            .ledger()
            .try_lock(&other)
            .await
            .unwrap()
            .expect("free lock");
        let out = seqtest(&b.url, &p, &["process", "--isolate"], &[])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}: {}",
            b.name,
            String::from_utf8_lossy(&out.stderr)
        );
        lock.release().await.unwrap();
        seq.mark("j_slow", Status::Completed).await.unwrap();
        sqlx::query(&format!(
            "DELETE FROM {p}seq_operations WHERE name = '2024_01_01_000004_d_fail'"
        ))
        .execute(seq.ledger().pool())
        .await
        .unwrap();
        let out = seqtest(&b.url, &p, &["process"], &[("SEQTEST_FAIL_D", "1")])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            b.name,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("FAILED      2024_01_01_000004_d_fail")
        );
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_gets_a_clear_error() {
    let build = |url: &str| {
        Sequencer::builder()
            .registry(ops::registry())
            .database(url.to_owned())
            .build()
    };
    let err = build("oracle://db/x")
        .await
        .err()
        .expect("unsupported scheme");
    assert!(
        err.to_string()
            .contains("unsupported database URL `oracle://db/x`: use `sqlite://FILE`"),
        "{err}"
    );
    let err = build("postgres://postgres:secret@127.0.0.1:1/x")
        .await
        .err()
        .expect("nothing listens on port 1");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(
        text.contains(
            "cannot connect to the ledger database `postgres://postgres:***@127.0.0.1:1/x`"
        ),
        "{text}"
    );
    assert!(text.contains("refused"), "the cause is kept: {text}");

    let dir = std::env::temp_dir().join(format!("sequencer-guard-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("l.db").display());
    let seq = Sequencer::builder()
        .registry(ops::registry())
        .database(url)
        .state(Knobs::default())
        .guard(sequencer::only_hosts(&["build-server-7"]))
        .build()
        .await
        .unwrap();
    let refused = seq.execute_all().await;
    assert!(
        matches!(&refused, Err(SequencerError::Refused(m)) if m.contains("is not one of [\"build-server-7\"]")),
        "{refused:?}"
    );
    assert!(
        seq.status()
            .await
            .unwrap()
            .iter()
            .all(|e| e.status == Status::Pending),
        "a refused run writes nothing"
    );
}

#[test]
fn make_writes_a_file_the_directory_form_accepts() {
    let dir = std::env::temp_dir().join(format!("sequencer-make-{}", fastrand::u64(..)));
    let out = Command::new(env!("CARGO_BIN_EXE_seqtest"))
        .args([
            "make",
            "backfill_orders",
            "--rollback",
            "--retryable",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1);
    let (ts, name) = sequencer_core_file_name(&files[0]);
    assert_eq!(name, "backfill_orders");
    assert!(ts.starts_with("20"), "{ts}");
    let src = std::fs::read_to_string(dir.join(&files[0])).unwrap();
    assert!(
        src.contains("#[operation(retries = 3, backoff = [1, 5])]")
            && src.contains("pub async fn rollback"),
        "{src}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_seqtest"))
        .args(["make", "BackfillOrders"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("try `backfill_orders`"));
}

/// `YYYY_MM_DD_HHMMSS_name.rs` → (timestamp, name).
fn sequencer_core_file_name(f: &str) -> (String, String) {
    let stem = f.strip_suffix(".rs").expect(".rs");
    let ts: Timestamp = stem[..17].parse().expect("a real timestamp");
    (ts.to_string(), stem[18..].to_owned())
}

#[test]
fn graph_command_draws_every_format() {
    let dir = std::env::temp_dir().join(format!("sequencer-graph-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("l.db").display());
    let draw = |format: &str| {
        let out = seqtest(&url, "g_", &["graph", "--format", format], &[])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = draw("text");
    assert!(text.starts_with("10 operations, 1 wave,"), "{text}");
    assert!(
        text.contains("[pending] 2024_01_01_000001_a_create"),
        "{text}"
    );
    let dot = draw("dot");
    assert!(
        dot.starts_with("digraph operations {") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    assert_eq!(
        dot.matches("->").count(),
        0,
        "these operations have no dependencies"
    );
    assert!(draw("mermaid").starts_with("flowchart LR"));
    let bad = seqtest(&url, "g_", &["graph", "--format", "svg"], &[])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values: text, dot, mermaid"));
}

/// Pending rows go in 500 per statement: a start of 1,234 operations records each exactly once, leaves rows
/// that exist alone, and keeps the timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_rows_are_inserted_in_chunks_once_each() {
    for b in backends().await {
        let p = prefix();
        let ledger = sequencer::ledger::Ledger::connect(&b.url, &format!("{p}seq_"))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let names: Vec<String> = (0..1_234).map(|i| format!("op_{i:05}")).collect();
        let first: Vec<(&str, i64)> = names[..700]
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as i64))
            .collect();
        ledger.insert_pending(&first).await.expect("first insert");
        // Start one, then insert everything (the first 700 again, with other timestamps): nothing is duplicated
        // or overwritten.
        sqlx::query(&format!(
            "UPDATE {p}seq_operations SET status = 'completed' WHERE name = 'op_00003'"
        ))
        .execute(ledger.pool())
        .await
        .expect("update");
        let all: Vec<(&str, i64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), 10_000 + i as i64))
            .collect();
        ledger.insert_pending(&all).await.expect("second insert");
        let rows = ledger.rows().await.expect("rows");
        assert_eq!(rows.len(), 1_234, "{}", b.name);
        let by_name: HashMap<&str, &sequencer::ledger::LedgerRow> =
            rows.iter().map(|r| (r.name.as_str(), r)).collect();
        assert_eq!(by_name.len(), 1_234, "{}: a name recorded twice", b.name);
        assert_eq!(by_name["op_00003"].status, Status::Completed, "{}", b.name);
        assert_eq!(by_name["op_00699"].timestamp, 699, "{}", b.name);
        assert_eq!(by_name["op_00700"].timestamp, 10_700, "{}", b.name);
        assert_eq!(by_name["op_01233"].timestamp, 11_233, "{}", b.name);
        common::drop_tables(ledger.pool(), &p, &[]).await;
    }
}

/// `status | head`: a closed stdout does not make the CLI panic; the command finishes and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_is_not_a_panic() {
    let b = &backends().await[0];
    let p = prefix();
    let seq = sequencer(b, &p, Knobs::default()).await;
    for args in [&["status"][..], &["graph"], &["process", "--dry-run"]] {
        let mut child = seqtest(&b.url, &p, args, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Close the reading end before the child writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
    }
    common::cleanup(&seq, &p, &["log"]).await;
}

/// `forget NAME` deletes the operation's rows and its recorded errors, so that it runs again afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_clears_rows_and_errors() {
    for b in backends().await {
        let p = prefix();
        let failing = sequencer(
            &b,
            &p,
            Knobs {
                fail_d: true.into(),
                ..Knobs::default()
            },
        )
        .await;
        let report = failing.process(&ProcessOptions::default()).await.unwrap();
        assert!(!report.succeeded(), "{}", b.name);
        let d = "2024_01_01_000004_d_fail";
        assert!(
            !failing.errors(Some(d)).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert!(
            !failing.errors(None).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert_eq!(failing.forget(d).await.unwrap(), 1, "{}", b.name);
        assert!(
            failing.errors(Some(d)).await.unwrap().is_empty(),
            "{}: errors kept",
            b.name
        );
        assert!(
            !failing
                .ledger()
                .rows()
                .await
                .unwrap()
                .iter()
                .any(|r| r.name == d),
            "{}",
            b.name
        );
        // It runs again, now that it no longer fails, with no trace of the old failure.
        let fixed = sequencer(&b, &p, Knobs::default()).await;
        assert!(fixed
            .process(&ProcessOptions::default())
            .await
            .unwrap()
            .succeeded());
        assert!(
            fixed.errors(Some(d)).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert_eq!(
            statuses(&fixed).await["d_fail"],
            Status::Completed,
            "{}",
            b.name
        );
        common::cleanup(&fixed, &p, &["log"]).await;
    }
}
