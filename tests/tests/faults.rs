//! The ledger tells the truth under faults, on every backend: a rollback killed half-way, a second process during
//! a slow rollback, a claim taken over between two tries.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sequencer::ledger::Status;
use sequencer::sqlx;
use sequencer::{Cascade, Outcome, RollbackTarget, Sequencer};
use sequencer_tests::ledger_ops::{ops, Knobs};

mod common;

use common::{backends, prefix, Backend};

async fn sequencer(b: &Backend, p: &str) -> Sequencer {
    let knobs = Knobs {
        prefix: p.to_owned(),
        ..Knobs::default()
    };
    common::build(b, common::builder(b, p, ops::registry()).state(knobs)).await
}

async fn status_of(seq: &Sequencer, short: &str) -> Status {
    let all: HashMap<String, Status> = seq
        .status()
        .await
        .expect("status")
        .into_iter()
        .map(|e| (e.name.split_at(18).1.to_owned(), e.status))
        .collect();
    all[short]
}

async fn log_count(seq: &Sequencer, p: &str, what: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {p}log WHERE name = '{what}'"
    ))
    .fetch_one(seq.ledger().pool())
    .await
    .unwrap_or(0)
}

fn seqtest(url: &str, p: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_seqtest"), url, p, args);
    c.env_remove("SEQUENCER_ENV");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Waits until `short` has status `want`, or fails after 60 s.
async fn wait_for(seq: &Sequencer, b: &Backend, short: &str, want: Status) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_of(seq, short).await != want {
        assert!(
            Instant::now() < deadline,
            "{}: `{short}` never became {want} (it is {})",
            b.name,
            status_of(seq, short).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_claimed_while_it_runs_and_a_killed_one_is_never_run_forward() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p).await;
        assert!(seq.execute("a_create").await.unwrap().succeeded());
        assert_eq!(log_count(&seq, &p, "a_create").await, 1);

        // A slow rollback in another process: the row says `rolling_back` while the undo runs, not `rolled_back`.
        let mut undo = seqtest(
            &b.url,
            &p,
            &["rollback", "--op", "a_create"],
            &[("SEQTEST_ROLLBACK_SLEEP_MS", "30000")],
        )
        .spawn()
        .expect("spawn");
        wait_for(&seq, &b, "a_create", Status::RollingBack).await;

        // A second `process` started during the rollback leaves it alone: nothing runs forward under the undo.
        let out = seqtest(&b.url, &p, &["process", "--to", "2024_01_01_000001"], &[])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}{}",
            b.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            log_count(&seq, &p, "a_create").await,
            1,
            "{}: run forward during its rollback",
            b.name
        );
        assert_eq!(status_of(&seq, "a_create").await, Status::RollingBack);

        // kill -9 half-way through the undo: the next run reports it, and never runs the operation forward.
        undo.kill().expect("kill -9");
        undo.wait().unwrap();
        let out = seqtest(&b.url, &p, &["process", "--to", "2024_01_01_000001"], &[])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("rollback interrupted: 2024_01_01_000001_a_create"),
            "{}: {stdout}",
            b.name
        );
        assert_eq!(
            status_of(&seq, "a_create").await,
            Status::RollbackInterrupted,
            "{}",
            b.name
        );
        assert_eq!(log_count(&seq, &p, "a_create").await, 1, "{}", b.name);
        assert_eq!(log_count(&seq, &p, "rollback a_create").await, 0);
        let report = seq.execute_all().await.unwrap();
        assert!(
            report
                .needs_attention
                .contains(&"2024_01_01_000001_a_create".to_owned()),
            "{}: {report:?}",
            b.name
        );
        let refused = seq.execute("a_create").await.expect_err("refused");
        assert!(
            refused.to_string().contains("rollback --op"),
            "{}: {refused}",
            b.name
        );

        // A person decides: `rollback --op` finishes the undo, recorded only once it returned.
        let undone = seq
            .rollback(&RollbackTarget::Op("a_create".into()))
            .await
            .unwrap();
        assert_eq!(undone.rolled_back, ["2024_01_01_000001_a_create"]);
        assert_eq!(status_of(&seq, "a_create").await, Status::RolledBack);
        assert_eq!(log_count(&seq, &p, "rollback a_create").await, 1);
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

/// Operations whose claim another process takes over between two tries.
#[sequencer::operations]
mod lost {
    use std::sync::atomic::Ordering::SeqCst;

    use sequencer::prelude::*;
    use sequencer::sqlx;

    use super::Tries;

    #[operation(timestamp = "2024_05_01_000000", retries = 3, backoff = [1])]
    pub async fn flaky(ctx: &Ctx) -> Result<()> {
        let tries = ctx.state::<Tries>().expect("Tries state");
        tries.count.fetch_add(1, SeqCst);
        // Another process recovered the row after this one's lease ran out, and claimed it.
        sqlx::query(&format!(
            "UPDATE {}seq_operations SET host = 'thief', pid = 1, claim_token = 'thief' WHERE name = '2024_05_01_000000_flaky'",
            tries.prefix
        ))
        .execute(ctx.pool())
        .await?;
        Err(Error::msg("the first try fails"))
    }
}

/// How often `flaky` ran, and the test's table prefix.
struct Tries {
    prefix: String,
    count: Arc<AtomicU32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_when_the_claim_is_lost() {
    for b in backends().await {
        let p = prefix();
        let count = Arc::new(AtomicU32::new(0));
        let tries = Tries {
            prefix: p.clone(),
            count: count.clone(),
        };
        let seq = common::build(&b, common::builder(&b, &p, lost::registry()).state(tries)).await;
        let report = seq.execute_all().await.unwrap();
        assert_eq!(
            count.load(SeqCst),
            1,
            "{}: tried again after its claim was lost",
            b.name
        );
        let ran = report.results.first().cloned();
        assert!(
            matches!(&ran, Some((_, Outcome::Failed { error, .. })) if error.contains("lost its claim")),
            "{}: {ran:?}",
            b.name
        );
        let (host, status): (String, String) = sqlx::query_as(&format!(
            "SELECT host, status FROM {p}seq_operations WHERE name = '2024_05_01_000000_flaky'"
        ))
        .fetch_one(seq.ledger().pool())
        .await
        .unwrap();
        assert_eq!(
            (host.as_str(), status.as_str()),
            ("thief", "running"),
            "{}: the new owner's row is left as it is",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

/// Whether `faketime` is here; where it is missing the suite may skip the clock-skew test, except under
/// `SEQUENCER_REQUIRE_SERVERS=1` (as in `.ci/run`, which installs it).
fn faketime_ready() -> bool {
    let found = Command::new("faketime")
        .args(["-f", "+0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !common::servers_required(),
            "`faketime` is not installed (Debian package `faketime`): the clock-skew test cannot run"
        );
        eprintln!("skipped the clock-skew test: `faketime` is not installed");
    }
    found
}

/// `seqtest` under `faketime`, its clock moved by `offset` (`+10m`, `-10m`).
fn skewed(b: &Backend, p: &str, offset: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut full = vec!["-f", offset, env!("CARGO_BIN_EXE_seqtest")];
    full.extend_from_slice(args);
    let mut c = common::command("faketime", &b.url, p, &full);
    c.env_remove("SEQUENCER_ENV");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_clock_never_takes_a_live_claim_and_still_recovers_a_dead_one() {
    if !faketime_ready() {
        return;
    }
    for b in backends().await {
        if b.name == "SQLite" {
            // Embedded: the database's clock is the host's own; SQLite is single-host and says so.
            continue;
        }
        let p = prefix();
        let seq = sequencer(&b, &p).await;
        let lease = [("SEQTEST_LEASE_MS", "4000")];
        let mut live = seqtest(
            &b.url,
            &p,
            &["process"],
            &[("SEQTEST_SLEEP_MS", "30000"), lease[0]],
        )
        .spawn()
        .expect("spawn");
        wait_for(&seq, &b, "j_slow", Status::Running).await;

        // A host whose clock is 10 minutes ahead runs `process`: the live claim is not its to take.
        let out = skewed(
            &b,
            &p,
            "+10m",
            &["process", "--to", "2024_01_01_000009"],
            &lease,
        )
        .output()
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}{}",
            b.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            status_of(&seq, "j_slow").await,
            Status::Running,
            "{}: a host 10 minutes ahead interrupted a live claim",
            b.name
        );

        // The claimer dies; its row names another host, so only its lease can free it. A host whose clock is 10
        // minutes behind still sees the lease run out, by the database's clock.
        live.kill().expect("kill -9");
        live.wait().unwrap();
        sqlx::query(&format!(
            "UPDATE {p}seq_operations SET host = 'elsewhere' WHERE name = '2024_01_01_000010_j_slow'"
        ))
        .execute(seq.ledger().pool())
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(5000)).await;
        let out = skewed(
            &b,
            &p,
            "-10m",
            &["process", "--to", "2024_01_01_000009"],
            &lease,
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", b.name);
        assert_eq!(
            status_of(&seq, "j_slow").await,
            Status::Interrupted,
            "{}: a host 10 minutes behind never saw the dead claim's lease run out",
            b.name
        );
        assert_eq!(log_count(&seq, &p, "j_slow").await, 0, "{}", b.name);
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

/// Whether processes can be started in their own pid namespace (`unshare -pf`, as root); where they cannot the
/// suite may skip the namespace test, except under `SEQUENCER_REQUIRE_SERVERS=1`.
fn unshare_ready() -> bool {
    let ok = Command::new("unshare")
        .args(["-pf", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !common::servers_required(),
            "`unshare -pf --mount-proc` does not work here (util-linux, root): the pid-namespace test cannot run"
        );
        eprintln!("skipped the pid-namespace test: `unshare -pf` does not work here");
    }
    ok
}

/// `seqtest` as a container would run it: in a pid namespace of its own, on the same host name, after `burn`
/// other processes, so that two such containers give it the same pid. Its own process group, to be paused.
fn in_namespace(b: &Backend, p: &str, burn: u32, args: &[&str], env: &[(&str, &str)]) -> Command {
    use std::os::unix::process::CommandExt;
    let script =
        format!("i=0; while [ \"$i\" -lt {burn} ]; do /bin/true; i=$((i+1)); done; \"$0\" \"$@\"");
    let mut full = vec![
        "-pf",
        "--mount-proc",
        "sh",
        "-c",
        script.as_str(),
        env!("CARGO_BIN_EXE_seqtest"),
    ];
    full.extend_from_slice(args);
    let mut c = common::command("unshare", &b.url, p, &full);
    c.env_remove("SEQUENCER_ENV").process_group(0);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn signal_group(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, "--", &format!("-{}", child.id())])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal}");
}

async fn pid_of(seq: &Sequencer, p: &str, name: &str) -> Option<i64> {
    sqlx::query_scalar(&format!(
        "SELECT pid FROM {p}seq_operations WHERE name = '{name}'"
    ))
    .fetch_one(seq.ledger().pool())
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_told_apart_by_their_token_across_pid_namespaces_and_a_paused_claimer() {
    if !unshare_ready() {
        return;
    }
    const K: &str = "2024_01_01_000011_k_idem";
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p).await;
        assert!(seq.execute("a_create").await.unwrap().succeeded());
        let only_k = [
            "process",
            "--from",
            "2024_01_01_000011",
            "--to",
            "2024_01_01_000011",
        ];
        let slow = [("SEQTEST_SLEEP_MS", "10000"), ("SEQTEST_LEASE_MS", "3000")];

        // A: a container on this host name runs `k_idem`.
        let a = in_namespace(&b, &p, 300, &only_k, &slow)
            .spawn()
            .expect("spawn");
        wait_for(&seq, &b, "k_idem", Status::Running).await;
        let pid_a = pid_of(&seq, &p, K).await.expect("pid");
        let token_of = |seq: &Sequencer| {
            let sql = format!(
                "SELECT claim_token FROM {p}seq_operations WHERE name = '{K}' AND status = 'running'"
            );
            let pool = seq.ledger().pool().clone();
            async move {
                sqlx::query_scalar::<_, String>(&sql)
                    .fetch_optional(&pool)
                    .await
                    .unwrap_or(None)
            }
        };
        let token_a = token_of(&seq).await.expect("A's claim token");

        // A process outside the namespace sees a pid that means nothing in its /proc: the claim is alive.
        let out = seqtest(&b.url, &p, &only_k, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", b.name);
        assert_eq!(
            status_of(&seq, "k_idem").await,
            Status::Running,
            "{}: another pid namespace's live claim (pid {pid_a}) was interrupted",
            b.name
        );

        // A is paused past its lease; B, another container whose process has the same pid, recovers the
        // idempotent operation and runs it again.
        signal_group(&a, "-STOP");
        tokio::time::sleep(Duration::from_millis(4500)).await;
        let b_run = in_namespace(&b, &p, 300, &only_k, &slow)
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if token_of(&seq).await.is_some_and(|t| t != token_a) {
                break;
            }
            assert!(Instant::now() < deadline, "{}: B never claimed it", b.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            pid_of(&seq, &p, K).await,
            Some(pid_a),
            "{}: the two containers' processes should share a pid",
            b.name
        );

        // A resumes: same host, same pid, but not the same claim. Its end changes nothing and says so; B's run
        // ends as it should.
        signal_group(&a, "-CONT");
        let a_out = a.wait_with_output().unwrap();
        let a_stdout = String::from_utf8_lossy(&a_out.stdout);
        assert!(
            a_stdout.contains("lost its claim"),
            "{}: the paused claimer's end was taken for B's: {a_stdout}",
            b.name
        );
        let b_out = b_run.wait_with_output().unwrap();
        let b_stdout = String::from_utf8_lossy(&b_out.stdout);
        assert_eq!(
            b_out.status.code(),
            Some(0),
            "{}: {b_stdout}{}",
            b.name,
            String::from_utf8_lossy(&b_out.stderr)
        );
        assert!(
            !b_stdout.contains("lost its claim"),
            "{}: {b_stdout}",
            b.name
        );
        assert_eq!(status_of(&seq, "k_idem").await, Status::Completed);
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

/// A sequencer over [`sequencer_tests::tx_ops`], with the table its operations write.
async fn tx_sequencer(b: &Backend, p: &str) -> Sequencer {
    let seq = common::build(
        b,
        common::builder(b, p, sequencer_tests::tx_ops::ops::registry()),
    )
    .await;
    sqlx::query(&format!(
        "CREATE TABLE {p}tx_log (name VARCHAR(32) NOT NULL, seen BIGINT NOT NULL)"
    ))
    .execute(seq.ledger().pool())
    .await
    .unwrap();
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_operations_of_four_processes_on_one_sqlite_file_all_complete() {
    for b in backends().await {
        let p = prefix();
        let seq = tx_sequencer(&b, &p).await;
        let runs: Vec<_> = (0..4)
            .map(|_| {
                common::command(
                    env!("CARGO_BIN_EXE_seqtx"),
                    &b.url,
                    &p,
                    &["process", "--orchestrator", "batch", "--concurrency", "4"],
                )
                .spawn()
                .expect("spawn")
            })
            .collect();
        for run in runs {
            let out = run.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}{}",
                b.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let status = seq.status().await.unwrap();
        let not_done: Vec<_> = status
            .iter()
            .filter(|e| e.status != Status::Completed)
            .map(|e| (&e.name, e.status, &e.error))
            .collect();
        assert!(not_done.is_empty(), "{}: {not_done:?}", b.name);
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {p}tx_log"))
            .fetch_one(seq.ledger().pool())
            .await
            .unwrap();
        assert_eq!(rows, 16, "{}: each operation wrote once", b.name);
        common::cleanup(&seq, &p, &["tx_log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_handler_that_kills_its_process_runs_at_most_max_attempts_times() {
    for b in backends().await {
        let p = prefix();
        let knobs = Knobs {
            prefix: p.clone(),
            ..Knobs::default()
        };
        let seq = common::build(
            &b,
            common::builder(&b, &p, ops::registry())
                .state(knobs)
                .deferred("abort", sequencer_tests::ledger_ops::abort),
        )
        .await;
        assert!(seq.execute("a_create").await.unwrap().succeeded());
        seq.defer("abort", &(), std::time::SystemTime::now(), 3)
            .await
            .unwrap();
        for _ in 0..5 {
            // Each run finds the run: the first three run the handler, which kills the process (each counted, on
            // top of the tries before it); the later ones find it interrupted with no try left.
            let out = seqtest(
                &b.url,
                &p,
                &["process-deferred"],
                &[("SEQTEST_LEASE_MS", "1000")],
            )
            .output()
            .unwrap();
            assert_ne!(out.status.code(), Some(2), "{}: {out:?}", b.name);
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        assert_eq!(
            log_count(&seq, &p, "abort").await,
            3,
            "{}: `max_attempts = 3` ran the handler other than 3 times",
            b.name
        );
        // The run of the task `deferred:abort`: its process died on each of its three tries, so it is
        // `interrupted` after 3 attempts, for a person (`retry_task`), never run again by itself.
        let row = seq
            .ledger()
            .row_of("deferred:abort", 1)
            .await
            .unwrap()
            .expect("the deferred run");
        assert_eq!(
            (row.status, row.attempts),
            (sequencer::ledger::Status::Interrupted, 3),
            "{}: {row:?}",
            b.name
        );
        assert!(
            seq.ledger()
                .row_of("deferred:abort", 2)
                .await
                .unwrap()
                .is_none(),
            "{}: one run",
            b.name
        );
        let (status,): (String,) = sqlx::query_as(&format!(
            "SELECT status FROM {p}seq_jobs WHERE name = 'deferred:abort'"
        ))
        .fetch_one(seq.ledger().pool())
        .await
        .unwrap();
        assert_eq!(status, "failed", "{}: its job is kept for a person", b.name);
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_operation_keeps_its_claim_alive_and_blocks_no_one() {
    const SLOW: &str = "2024_09_01_000100_slow";
    for b in backends().await {
        if b.name == "SQLite" {
            // SQLite has one writer: a `transaction` operation holds the database's write lock while it runs.
            continue;
        }
        let p = prefix();
        let seq = tx_sequencer(&b, &p).await;
        let tx = |args: &[&str], env: &[(&str, &str)]| {
            let mut c = common::command(env!("CARGO_BIN_EXE_seqtx"), &b.url, &p, args);
            for (k, v) in env {
                c.env(k, v);
            }
            c
        };
        let slow = tx(
            &["process", "--from", "2024_09_01_000100"],
            &[("SEQTX_SLOW_MS", "12000"), ("SEQTEST_LEASE_MS", "3000")],
        )
        .spawn()
        .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let e = seq.status().await.unwrap();
            let s = e.iter().find(|e| e.name == SLOW).expect("slow");
            if s.status == Status::Running && s.progress_done == Some(1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: slow never reported progress",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Past two leases, inside its transaction: its heartbeat still renews its claim.
        tokio::time::sleep(Duration::from_millis(6500)).await;
        let lease_left: i64 = sqlx::query_scalar(&format!(
            "SELECT lease_until FROM {p}seq_operations WHERE name = '{SLOW}'"
        ))
        .fetch_one(seq.ledger().pool())
        .await
        .unwrap();
        let now = seq.ledger().db_now().await.unwrap();
        assert!(
            lease_left > now,
            "{}: the heartbeat could not renew the claim while the transaction ran ({} ms past its lease)",
            b.name,
            now - lease_left
        );
        // Another process meanwhile runs its own operations and leaves the live claim alone.
        let out = tx(&["process", "--to", "2024_09_01_000016"], &[])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}: {out:?}", b.name);
        let s = seq.status().await.unwrap();
        assert_eq!(
            s.iter().find(|e| e.name == SLOW).map(|e| e.status),
            Some(Status::Running),
            "{}",
            b.name
        );
        let out = slow.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}: {out:?}", b.name);
        let s = seq.status().await.unwrap();
        let slow_entry = s.iter().find(|e| e.name == SLOW).expect("slow");
        assert_eq!(slow_entry.status, Status::Completed, "{}", b.name);
        assert_eq!(
            seq.ledger()
                .last_checkpoint(SLOW, 0)
                .await
                .unwrap()
                .as_deref(),
            Some("1"),
            "{}: the checkpoint committed with the operation",
            b.name
        );
        common::cleanup(&seq, &p, &["tx_log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_retries_only_failures_from_before_it_read_the_ledger() {
    use sequencer::ledger::{new_claim_token, Claim, Owner};
    const D: &str = "2024_01_01_000004_d_fail";
    for b in backends().await {
        let p = prefix();
        let knobs = Knobs {
            prefix: p.clone(),
            ..Knobs::default()
        };
        knobs.fail_d.store(true, SeqCst);
        let seq = common::build(&b, common::builder(&b, &p, ops::registry()).state(knobs)).await;
        assert!(seq.execute("a_create").await.unwrap().succeeded());
        // A second process reads the ledger: `d_fail` is pending.
        let read_at = seq.ledger().db_now().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Meanwhile another process runs it, and it fails.
        assert!(!seq.execute("d_fail").await.unwrap().succeeded());
        let owner = Owner::this_process(None);
        let claim = |failed_before: i64, token: &'static str| Claim {
            name: D,
            run: 0,
            batch: 1,
            owner: &owner,
            lease: Duration::from_secs(60),
            checksum: "0",
            reclaim_interrupted: false,
            due_scheduled: false,
            token,
            failed_before,
            bounded: None,
        };
        let token = Box::leak(new_claim_token().into_boxed_str());
        // The second process does not run a failure it did not see: another process's, just recorded.
        assert!(
            !seq.ledger().claim(&claim(read_at, token)).await.unwrap(),
            "{}: a fresh failure of another process was claimed again",
            b.name
        );
        // A process that read the ledger after the failure retries it, as `process` does with failed operations.
        let later = seq.ledger().db_now().await.unwrap() + 1;
        assert!(
            seq.ledger().claim(&claim(later, token)).await.unwrap(),
            "{}",
            b.name
        );
        assert_eq!(log_count(&seq, &p, "d_fail").await, 1, "{}", b.name);
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_row_does_not_stop_the_others() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p).await;
        assert!(seq.execute("a_create").await.unwrap().succeeded());
        // A row with a status this version does not know (written by a newer one, or by hand).
        sqlx::query(&format!(
            "INSERT INTO {p}seq_operations (name, run, op_timestamp, status, attempts) \
             VALUES ('2030_01_01_000000_from_the_future', 0, 20300101000000, 'paused', 0)"
        ))
        .execute(seq.ledger().pool())
        .await
        .unwrap();
        let status = seq.status().await.expect("status reads the other rows");
        assert_eq!(
            status
                .iter()
                .find(|e| e.name.ends_with("a_create"))
                .map(|e| e.status),
            Some(Status::Completed),
            "{}",
            b.name
        );
        assert!(
            !status.iter().any(|e| e.name.ends_with("from_the_future")),
            "{}",
            b.name
        );
        let report = seq
            .process(&sequencer::ProcessOptions {
                to: Some("2024_01_01_000002".parse().unwrap()),
                ..sequencer::ProcessOptions::default()
            })
            .await
            .expect("process runs the others");
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_it_reaches_sql() {
    use sequencer::{OperationDef, OperationMeta, Registry, Timestamp};
    fn noop(_: &sequencer::Ctx) -> sequencer::BoxFuture<'_, sequencer::Result<()>> {
        Box::pin(async { Ok(()) })
    }
    let b = &backends().await[0];
    let ts = Timestamp::from_version(20240101000000).unwrap();
    let with = |meta: OperationMeta| -> Registry {
        let def: &'static OperationDef = Box::leak(Box::new(OperationDef::new(meta, noop)));
        Registry::builder().operation(def).build().unwrap()
    };
    let refused = |registry: Registry, lease: Duration| async move {
        common::builder(b, &prefix(), registry)
            .lease(lease)
            .build()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let plain = || OperationMeta::new("2024_01_01_000000_x", ts);
    let e = refused(with(plain()), Duration::ZERO).await;
    assert!(e.contains("a lease of 0 ms"), "{e}");
    let e = refused(
        with(OperationMeta {
            asynchronous: true,
            queue: Some("mail queue"),
            ..plain()
        }),
        Duration::from_secs(60),
    )
    .await;
    assert!(e.contains("queue name `mail queue`"), "{e}");
    let e = refused(
        with(OperationMeta {
            unique: Some(sequencer::Unique {
                key: Box::leak("k".repeat(200).into_boxed_str()),
                hold_for: None,
            }),
            ..plain()
        }),
        Duration::from_secs(60),
    )
    .await;
    assert!(e.contains("lock key"), "{e}");
    let e = sequencer::ledger::Ledger::connect(&b.url, "bad-prefix; DROP")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("may hold only ASCII letters"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_run_stops_its_operation_and_its_heartbeat() {
    const J: &str = "2024_01_01_000010_j_slow";
    for b in backends().await {
        let p = prefix();
        let knobs = Knobs {
            prefix: p.clone(),
            ..Knobs::default()
        };
        knobs.sleep_ms.store(3000, SeqCst);
        let seq = common::build(
            &b,
            common::builder(&b, &p, ops::registry())
                .state(knobs)
                .lease(Duration::from_secs(1)),
        )
        .await;
        assert!(seq.execute("a_create").await.unwrap().succeeded());
        // A caller gives up on the run: its future is dropped while the operation sleeps.
        let gave_up = tokio::time::timeout(Duration::from_millis(300), seq.execute("j_slow")).await;
        assert!(gave_up.is_err(), "{}", b.name);
        tokio::time::sleep(Duration::from_millis(4000)).await;
        assert_eq!(
            log_count(&seq, &p, "j_slow").await,
            0,
            "{}: the operation went on detached after its run was dropped",
            b.name
        );
        let lease_until: i64 = sqlx::query_scalar(&format!(
            "SELECT lease_until FROM {p}seq_operations WHERE name = '{J}'"
        ))
        .fetch_one(seq.ledger().pool())
        .await
        .unwrap();
        assert!(
            lease_until < seq.ledger().db_now().await.unwrap(),
            "{}: the heartbeat of a dropped run still renews its claim",
            b.name
        );
        // Its claim lapses like a dead process's: recovered, and reported rather than run again.
        let report = seq.execute_all().await.unwrap();
        assert!(
            report.needs_attention.contains(&J.to_owned()),
            "{}: {report:?}",
            b.name
        );
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_ended_rows_older_than_asked() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(
            &b,
            common::builder(&b, &p, ops::registry())
                .state(Knobs {
                    prefix: p.clone(),
                    ..Knobs::default()
                })
                .deferred("abort", sequencer_tests::ledger_ops::abort),
        )
        .await;
        let pool = seq.ledger().pool();
        let old = 0; // 1970: older than anything
        let now = seq.ledger().db_now().await.unwrap();
        for (name, status, finished) in [
            ("old_done", "done", Some(old)),
            ("old_failed", "failed", Some(old)),
            ("new_done", "done", Some(now)),
            ("old_queued", "queued", None),
        ] {
            let finished = finished.map_or("NULL".to_owned(), |t| t.to_string());
            sqlx::query(&format!(
                "INSERT INTO {p}seq_jobs (name, run, queue, status, available_at, attempts, created_at, finished_at) \
                 VALUES ('{name}', 0, 'default', '{status}', 0, 0, 0, {finished})"
            ))
            .execute(pool)
            .await
            .unwrap();
        }
        for status in ["completed", "failed", "pending"] {
            sqlx::query(&format!(
                "INSERT INTO {p}seq_deferred (handler, payload, due_at, attempts, max_attempts, status, created_at) \
                 VALUES ('abort', 'null', 0, 0, 1, '{status}', {old})"
            ))
            .execute(pool)
            .await
            .unwrap();
        }
        // A recent completed row (written by an older version, as the others).
        sqlx::query(&format!(
            "INSERT INTO {p}seq_deferred (handler, payload, due_at, attempts, max_attempts, status, created_at) \
             VALUES ('abort', 'null', 0, 1, 1, 'completed', {now})"
        ))
        .execute(pool)
        .await
        .unwrap();

        let out = seqtest(&b.url, &p, &["prune", "--older-than", "90d"], &[])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {out:?}", b.name);
        assert!(
            stdout.contains("Pruned 2 ended job(s) and 2 ended deferred operation(s)."),
            "{}: {stdout}",
            b.name
        );
        let jobs: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM {p}seq_jobs ORDER BY name"))
                .fetch_all(pool)
                .await
                .unwrap();
        assert_eq!(jobs, ["new_done", "old_queued"], "{}", b.name);
        let mut deferred: Vec<String> = seq
            .ledger()
            .deferred()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.status.to_string())
            .collect();
        deferred.sort();
        // The old pending row and the recent completed one stay.
        assert_eq!(deferred, ["completed", "pending"], "{}", b.name);
        common::cleanup(&seq, &p, &[]).await;
    }
}

/// An asynchronous operation that runs until it is cancelled (or 5 s), saying which.
#[sequencer::operations]
mod stolen {
    use std::time::Duration;

    use sequencer::prelude::*;

    use super::Ended;

    #[operation(timestamp = "2024_06_01_000000", asynchronous)]
    pub async fn long_job(ctx: &Ctx) -> Result<()> {
        let ended = ctx.state::<Ended>().expect("Ended state");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                ended.finished.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            _ = ctx.cancellation().cancelled() => Err(Error::msg("stopped: its job was taken over")),
        }
    }
}

/// Whether `long_job` ran to its end.
#[derive(Default)]
struct Ended {
    finished: Arc<std::sync::atomic::AtomicBool>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_over_by_another_worker_stops_its_operation() {
    for b in backends().await {
        let p = prefix();
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seq = common::build(
            &b,
            common::builder(&b, &p, stolen::registry()).state(Ended {
                finished: finished.clone(),
            }),
        )
        .await;
        assert_eq!(
            seq.execute_all().await.unwrap().queued.len(),
            1,
            "{}",
            b.name
        );
        let shutdown = sequencer::CancellationToken::new();
        let worker = {
            let (seq, shutdown) = (seq.clone(), shutdown.clone());
            tokio::spawn(async move {
                let opts = sequencer::WorkOptions {
                    lease: Duration::from_secs(3),
                    ..sequencer::WorkOptions::default()
                };
                seq.work(&opts, shutdown).await
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while status_of_full(&seq, "2024_06_01_000000_long_job").await != Some(Status::Running) {
            assert!(
                Instant::now() < deadline,
                "{}: the worker never started it",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Another worker takes the job over (as after a rescue), and holds it.
        let far = seq.ledger().db_now().await.unwrap() + 600_000;
        sqlx::query(&format!(
            "UPDATE {p}seq_jobs SET worker = 'thief', lease_until = {far}"
        ))
        .execute(seq.ledger().pool())
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while status_of_full(&seq, "2024_06_01_000000_long_job").await == Some(Status::Running) {
            assert!(
                Instant::now() < deadline,
                "{}: the operation of a job taken over still runs",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        let report = tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("the worker ends")
            .unwrap()
            .unwrap();
        assert!(
            !finished.load(SeqCst),
            "{}: the operation ran on after its job was taken over",
            b.name
        );
        assert_ne!(
            status_of_full(&seq, "2024_06_01_000000_long_job").await,
            Some(Status::Completed),
            "{}: {report:?}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

async fn status_of_full(seq: &Sequencer, name: &str) -> Option<Status> {
    seq.status()
        .await
        .expect("status")
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| e.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_orchestrator_undoes_nothing_on_its_own() {
    for b in backends().await {
        let p = prefix();
        let knobs = Knobs {
            prefix: p.clone(),
            ..Knobs::default()
        };
        knobs.fail_d.store(true, SeqCst);
        let seq = common::build(&b, common::builder(&b, &p, ops::registry()).state(knobs)).await;
        let report = seq.execute_all().await.unwrap();
        assert!(!report.succeeded(), "{}", b.name);
        assert!(
            report.rolled_back.is_empty(),
            "{}: sequential rolled back without being asked: {report:?}",
            b.name
        );
        assert_eq!(status_of(&seq, "a_create").await, Status::Completed);
        assert_eq!(status_of(&seq, "b_tx").await, Status::Completed);
        assert_eq!(status_of(&seq, "d_fail").await, Status::Failed);
        assert_eq!(
            log_count(&seq, &p, "rollback a_create").await,
            0,
            "{}",
            b.name
        );
        assert_eq!(log_count(&seq, &p, "rollback b_tx").await, 0, "{}", b.name);
        common::cleanup(&seq, &p, &["log"]).await;
    }
}

/// `fill` depends on `create`, `report` on `fill`; `report` has no rollback. Each logs what it does.
#[sequencer::operations]
mod chain {
    use sequencer::prelude::*;

    use super::Undo;

    fn note(ctx: &Ctx, what: &str) {
        let undo = ctx.state::<Undo>().expect("Undo state");
        undo.log.lock().unwrap().push(what.to_owned());
    }

    #[operation(timestamp = "2024_07_01_000001", rollback = drop_table)]
    pub async fn create(ctx: &Ctx) -> Result<()> {
        note(ctx, "create");
        Ok(())
    }

    async fn drop_table(ctx: &Ctx) -> Result<()> {
        note(ctx, "undo create");
        Ok(())
    }

    #[operation(timestamp = "2024_07_01_000002", depends_on = [create], rollback = empty)]
    pub async fn fill(ctx: &Ctx) -> Result<()> {
        note(ctx, "fill");
        Ok(())
    }

    async fn empty(ctx: &Ctx) -> Result<()> {
        note(ctx, "undo fill");
        Ok(())
    }

    #[operation(timestamp = "2024_07_01_000003", depends_on = [fill])]
    pub async fn report(ctx: &Ctx) -> Result<()> {
        note(ctx, "report");
        Ok(())
    }
}

/// What the `chain` operations did, in order.
#[derive(Default)]
struct Undo {
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_refuses_while_dependents_are_completed_and_cascades_when_asked() {
    for b in backends().await {
        let p = prefix();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seq = common::build(
            &b,
            common::builder(&b, &p, chain::registry()).state(Undo { log: log.clone() }),
        )
        .await;
        let status = |seq: &Sequencer| {
            let seq = seq.clone();
            async move {
                seq.status()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| (e.name.split_at(18).1.to_owned(), e.status))
                    .collect::<HashMap<_, _>>()
            }
        };
        // Only `create` and `fill` ran.
        seq.process(&sequencer::ProcessOptions {
            to: Some("2024_07_01_000002".parse().unwrap()),
            ..sequencer::ProcessOptions::default()
        })
        .await
        .unwrap();
        let refused = seq
            .rollback(&RollbackTarget::Op("create".into()))
            .await
            .expect_err("refused");
        assert!(
            refused
                .to_string()
                .contains("`2024_07_01_000002_fill` (depends on `2024_07_01_000001_create`)")
                && refused.to_string().contains("--cascade"),
            "{}: {refused}",
            b.name
        );
        assert_eq!(
            status(&seq).await["create"],
            Status::Completed,
            "{}",
            b.name
        );
        // With `--cascade`: the dependent first, then what it depends on.
        let undone = seq
            .rollback_with(&RollbackTarget::Op("create".into()), Cascade::Dependents)
            .await
            .unwrap();
        assert_eq!(
            undone.rolled_back,
            ["2024_07_01_000002_fill", "2024_07_01_000001_create"],
            "{}",
            b.name
        );
        assert_eq!(
            log.lock().unwrap()[2..],
            ["undo fill".to_owned(), "undo create".to_owned()],
            "{}",
            b.name
        );
        // A dependent without a rollback stops the cascade before anything is undone.
        seq.execute_all().await.unwrap();
        let stopped = seq
            .rollback_with(&RollbackTarget::Op("create".into()), Cascade::Dependents)
            .await
            .expect_err("stopped");
        assert!(
            stopped
                .to_string()
                .contains("the cascade stops at `2024_07_01_000003_report`"),
            "{}: {stopped}",
            b.name
        );
        let s = status(&seq).await;
        assert_eq!(
            (s["create"], s["fill"], s["report"]),
            (Status::Completed, Status::Completed, Status::Completed),
            "{}",
            b.name
        );
        // `--force`: the dependent without a rollback is recorded `stale`, never left `completed` over undone work,
        // and `process` leaves it for a person.
        let forced = seq
            .rollback_with(&RollbackTarget::Op("create".into()), Cascade::Force)
            .await
            .unwrap();
        assert_eq!(
            (forced.needs_attention, forced.rolled_back),
            (
                vec!["2024_07_01_000003_report".to_owned()],
                vec![
                    "2024_07_01_000002_fill".to_owned(),
                    "2024_07_01_000001_create".to_owned()
                ]
            ),
            "{}",
            b.name
        );
        let s = status(&seq).await;
        assert_eq!(
            (s["create"], s["fill"], s["report"]),
            (Status::RolledBack, Status::RolledBack, Status::Stale),
            "{}",
            b.name
        );
        let again = seq.execute_all().await.unwrap();
        assert_eq!(
            again.needs_attention,
            ["2024_07_01_000003_report"],
            "{}: a stale operation is left for a person",
            b.name
        );
        assert_eq!(again.stale, ["2024_07_01_000003_report"], "{}", b.name);
        assert_eq!(status(&seq).await["report"], Status::Stale, "{}", b.name);
        common::cleanup(&seq, &p, &[]).await;
    }
}
