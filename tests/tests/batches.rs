//! Recorded batches and chains on every backend (issue 16): callbacks that fire once, when the members have
//! ended, wherever `work` runs; `catch`, `allow_failures`, `cancel()` and `add(..)` from inside a member; a batch
//! whose dispatcher exited at once; a chain that goes on across a killed worker.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::batch::{finished, members_done, status_line};
use common::work::{counts_by_name, log_counts, seqwork, statuses, Workers, N};
use common::{backends, command, pool, prefix, run_ok, Backend};
use sequencer::ledger::{BatchId, BatchInfo, MemberState};
use sequencer::{sqlx, Sequencer, WorkOptions};
use sequencer_tests::batch_ops;

const TABLES: &[&str] = &["batch_log", "batch_calls"];

/// The suite's tables and a sequencer over `batch_ops`.
async fn setup(b: &Backend, p: &str) -> (sqlx::AnyPool, Sequencer) {
    let pool = pool(b).await;
    for sql in [
        format!("CREATE TABLE {p}batch_log (name VARCHAR(191) NOT NULL)"),
        format!("CREATE TABLE {p}batch_calls (batch_id BIGINT NOT NULL, kind VARCHAR(16) NOT NULL, at BIGINT NOT NULL, open_members BIGINT NOT NULL, member VARCHAR(191) NOT NULL)"),
    ] {
        sqlx::query(&sql).execute(&pool).await.expect("suite table");
    }
    let seq = common::build(b, batch_ops::builder(p).database(b.url.clone())).await;
    (pool, seq)
}

fn seqbatch(b: &Backend, p: &str, args: &[&str]) -> Command {
    command(env!("CARGO_BIN_EXE_seqbatch"), &b.url, p, args)
}

/// A worker in this process, until its queue is empty.
async fn drain(seq: &Sequencer) {
    let opts = WorkOptions {
        concurrency: 1,
        until_idle: true,
        ..WorkOptions::default()
    };
    seq.work(&opts, sequencer::CancellationToken::new())
        .await
        .expect("work");
}

/// Works the queue in this process until it is empty, then waits for the batch to finish.
async fn drained(seq: &Sequencer, id: BatchId, what: &str) -> BatchInfo {
    drain(seq).await;
    finished(seq, id, what).await
}

/// The callbacks that ran for a batch: kind → (times, open members when it ran, caught member).
async fn calls(pool: &sqlx::AnyPool, p: &str, id: BatchId) -> HashMap<String, (i64, i64, String)> {
    let rows: Vec<(String, i64, String)> = sqlx::query_as(&format!(
        "SELECT kind, open_members, member FROM {p}batch_calls WHERE batch_id = {}",
        id.0
    ))
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out: HashMap<String, (i64, i64, String)> = HashMap::new();
    for (kind, open, member) in rows {
        let e = out.entry(kind).or_insert((0, 0, String::new()));
        e.0 += 1;
        e.1 += open;
        e.2 = member.get(18..).unwrap_or(&member).to_owned();
    }
    out
}

/// How many times each member logged itself.
async fn logged(pool: &sqlx::AnyPool, p: &str) -> HashMap<String, i64> {
    counts_by_name(pool, &format!("{p}batch_log"))
        .await
        .expect("read the log")
}

/// The member states of a batch, by function name.
async fn states(seq: &Sequencer, id: BatchId) -> HashMap<String, (MemberState, Option<String>)> {
    seq.ledger()
        .batch_members(id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name[18..].to_owned(), (m.state, m.reason)))
        .collect()
}

async fn cleanup(seq: &Sequencer, p: &str) {
    common::cleanup(seq, p, TABLES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn then_runs_once_after_the_last_member_ended_on_two_workers() {
    for b in backends().await {
        let p = prefix();
        let (pool, seq) = setup(&b, &p).await;
        let members: Vec<String> = (0..8).map(|i| format!("b_{i}")).collect();
        let id = seq
            .batch(&members)
            .name("reprice")
            .then("then")
            .catch("catch")
            .finally("finally")
            .dispatch()
            .await
            .unwrap();
        let open = seq.open_batches().await.unwrap();
        assert_eq!(
            open.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [format!("batch {id} reprice: 0 of 8 done, running")],
            "{}: dispatched, not run: nothing fired",
            b.name
        );
        assert!(calls(&pool, &p, id).await.is_empty(), "{}", b.name);
        let status = seqbatch(&b, &p, &["status"]).output().unwrap();
        assert!(
            String::from_utf8_lossy(&status.stdout)
                .contains(&format!("batch {id} reprice: 0 of 8 done, running")),
            "{}: `status` shows the open batch: {}",
            b.name,
            String::from_utf8_lossy(&status.stdout)
        );
        let args = ["work", "--concurrency", "4"];
        let mut workers = Workers::start(2, || seqbatch(&b, &p, &args));
        let info = finished(&seq, id, b.name).await;
        workers.stop();
        assert_eq!(
            (info.total, info.pending, info.failed),
            (8, 0, 0),
            "{}",
            b.name
        );
        let calls = calls(&pool, &p, id).await;
        assert_eq!(
            calls.get("then").map(|c| (c.0, c.1)),
            Some((1, 0)),
            "{}: `then` ran once, after every member ended: {calls:?}",
            b.name
        );
        assert_eq!(calls.get("finally").map(|c| c.0), Some(1), "{}", b.name);
        assert!(!calls.contains_key("catch"), "{}", b.name);
        // Written after every member's run had finished.
        let then_at: i64 = sqlx::query_scalar(&format!(
            "SELECT at FROM {p}batch_calls WHERE batch_id = {} AND kind = 'then'",
            id.0
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        let last_finished: i64 =
            sqlx::query_scalar(&format!("SELECT MAX(finished_at) FROM {p}seq_operations"))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(
            then_at >= last_finished,
            "{}: then at {then_at}, last member at {last_finished}",
            b.name
        );
        let log = logged(&pool, &p).await;
        for m in &members {
            assert_eq!(log.get(m), Some(&1), "{}: {m} ran once", b.name);
        }
        assert!(seq.open_batches().await.unwrap().is_empty(), "{}", b.name);
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_fires_once_on_a_failing_member_and_cancels_the_rest() {
    for b in backends().await {
        let p = prefix();
        let (pool, seq) = setup(&b, &p).await;
        let id = seq
            .batch(["b_0", "b_fail", "b_1"])
            .then("then")
            .catch("catch")
            .finally("finally")
            .dispatch()
            .await
            .unwrap();
        let info = drained(&seq, id, b.name).await;
        assert_eq!((info.failed, info.skipped), (1, 1), "{}: {info}", b.name);
        assert!(
            info.cancelled_at.is_some(),
            "{}: a failure cancels the batch",
            b.name
        );
        let calls = calls(&pool, &p, id).await;
        assert_eq!(
            calls.get("catch").map(|c| (c.0, c.2.as_str())),
            Some((1, "b_fail")),
            "{}: {calls:?}",
            b.name
        );
        assert_eq!(calls.get("finally").map(|c| c.0), Some(1), "{}", b.name);
        assert!(
            !calls.contains_key("then"),
            "{}: a failed batch has no `then`",
            b.name
        );
        let states = states(&seq, id).await;
        assert_eq!(
            states["b_1"],
            (MemberState::Skipped, Some("batch cancelled".into())),
            "{}",
            b.name
        );
        assert!(
            !seq.has_executed("b_1").await.unwrap(),
            "{}: a skipped member's operation stays pending",
            b.name
        );

        // A chain stops at its failing link: `catch`, and the links after it recorded skipped.
        let id = seq
            .chain(["b_2", "b_fail", "b_3"])
            .catch("catch")
            .dispatch()
            .await
            .unwrap();
        let info = drained(&seq, id, b.name).await;
        assert_eq!((info.failed, info.skipped), (1, 1), "{}: {info}", b.name);
        let states_of_chain = self::states(&seq, id).await;
        let (state, reason) = &states_of_chain["b_3"];
        assert_eq!(*state, MemberState::Skipped, "{}", b.name);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.starts_with("chain stopped: ") && r.ends_with("b_fail failed")),
            "{}: {reason:?}",
            b.name
        );
        assert_eq!(
            self::calls(&pool, &p, id).await.get("catch").map(|c| c.0),
            Some(1),
            "{}",
            b.name
        );
        assert_eq!(logged(&pool, &p).await.get("b_3"), None, "{}", b.name);
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_failures_runs_every_member_and_then() {
    for b in backends().await {
        let p = prefix();
        let (pool, seq) = setup(&b, &p).await;
        let id = seq
            .batch(["b_0", "b_fail", "b_1"])
            .allow_failures()
            .then("then")
            .catch("catch")
            .finally("finally")
            .dispatch()
            .await
            .unwrap();
        let info = drained(&seq, id, b.name).await;
        assert_eq!((info.failed, info.skipped), (1, 0), "{}: {info}", b.name);
        assert!(info.cancelled_at.is_none(), "{}", b.name);
        let calls = calls(&pool, &p, id).await;
        assert_eq!(
            calls.get("then").map(|c| c.0),
            Some(1),
            "{}: {calls:?}",
            b.name
        );
        assert!(!calls.contains_key("catch"), "{}", b.name);
        assert!(seq.has_executed("b_1").await.unwrap(), "{}", b.name);
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cancels_its_batch_or_adds_to_it() {
    for b in backends().await {
        let p = prefix();
        let (pool, seq) = setup(&b, &p).await;
        let id = seq
            .batch(["b_cancel", "b_0", "b_1"])
            .then("then")
            .finally("finally")
            .dispatch()
            .await
            .unwrap();
        let info = drained(&seq, id, b.name).await;
        assert_eq!((info.failed, info.skipped), (0, 2), "{}: {info}", b.name);
        let states = states(&seq, id).await;
        for m in ["b_0", "b_1"] {
            assert_eq!(
                states[m],
                (MemberState::Skipped, Some("batch cancelled".into())),
                "{}",
                b.name
            );
            assert!(!seq.has_executed(m).await.unwrap(), "{}: {m}", b.name);
            let noted: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM {p}seq_jobs WHERE name LIKE '%{m}' AND last_error = 'not run: batch cancelled'"
            ))
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(noted, 1, "{}: {m}'s job says why it did not run", b.name);
        }
        let c = calls(&pool, &p, id).await;
        assert!(
            !c.contains_key("then"),
            "{}: a cancelled batch has no `then`",
            b.name
        );
        assert_eq!(c.get("finally").map(|c| c.0), Some(1), "{}", b.name);

        // `add(..)` from inside a member: the total rises, and `then` waits for the added member.
        let id = seq.batch(["b_add"]).then("then").dispatch().await.unwrap();
        let info = drained(&seq, id, b.name).await;
        assert_eq!(
            (info.total, info.pending, info.failed),
            (2, 0, 0),
            "{}: {info}",
            b.name
        );
        assert_eq!(
            self::states(&seq, id).await["b_extra"].0,
            MemberState::Completed,
            "{}",
            b.name
        );
        let c = calls(&pool, &p, id).await;
        assert_eq!(
            c.get("then").map(|c| (c.0, c.1)),
            Some((1, 0)),
            "{}: {c:?}",
            b.name
        );
        assert_eq!(
            logged(&pool, &p).await.get("b_extra"),
            Some(&1),
            "{}",
            b.name
        );
        cleanup(&seq, &p).await;
    }
}

/// `dispatch_and_wait`: the members run in this process, and `cancel()` and `add(..)` work there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_members_cancel_and_add() {
    for b in backends().await {
        let p = prefix();
        let (pool, seq) = setup(&b, &p).await;
        let info = seq
            .batch(["b_add", "b_0"])
            .then("then")
            .dispatch_and_wait()
            .await
            .unwrap();
        assert_eq!(
            (info.total, info.pending, info.failed),
            (3, 0, 0),
            "{}: {info}",
            b.name
        );
        assert!(info.in_process && info.finished_at.is_some(), "{}", b.name);
        assert_eq!(
            logged(&pool, &p).await.get("b_extra"),
            Some(&1),
            "{}",
            b.name
        );
        assert_eq!(
            calls(&pool, &p, info.id)
                .await
                .get("then")
                .map(|c| (c.0, c.1)),
            Some((1, 0)),
            "{}",
            b.name
        );

        let info = seq
            .batch(["b_cancel", "b_1", "b_2"])
            .concurrency(1)
            .then("then")
            .finally("finally")
            .dispatch_and_wait()
            .await
            .unwrap();
        assert_eq!((info.skipped, info.failed), (2, 0), "{}: {info}", b.name);
        let states = states(&seq, info.id).await;
        assert_eq!(
            states["b_2"],
            (MemberState::Skipped, Some("batch cancelled".into())),
            "{}",
            b.name
        );
        let c = calls(&pool, &p, info.id).await;
        assert_eq!(
            (c.get("then"), c.get("finally").map(|c| c.0)),
            (None, Some(1)),
            "{}: {c:?}",
            b.name
        );
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_finish_a_batch_whose_dispatcher_exited() {
    for b in backends().await {
        let p = prefix();
        let (pool, seq) = setup(&b, &p).await;
        let out = run_ok(&b, seqbatch(&b, &p, &[]).env("SEQBATCH_DISPATCH", "1"));
        let id = BatchId(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("the batch id"),
        );
        let args = ["work", "--concurrency", "2"];
        let mut workers = Workers::start(2, || seqbatch(&b, &p, &args));
        let info = finished(&seq, id, b.name).await;
        workers.stop();
        assert_eq!((info.total, info.failed), (8, 0), "{}: {info}", b.name);
        assert_eq!(info.name.as_deref(), Some("dispatched"), "{}", b.name);
        let c = calls(&pool, &p, id).await;
        assert_eq!(
            c.get("then").map(|c| (c.0, c.1)),
            Some((1, 0)),
            "{}: `then` ran on a worker: {c:?}",
            b.name
        );
        cleanup(&seq, &p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_goes_on_across_a_killed_worker() {
    for b in backends().await {
        let p = prefix();
        let (pool, seq) = setup(&b, &p).await;
        let id = seq
            .chain(["c_one", "c_slow", "c_three"])
            .then("then")
            .catch("catch")
            .dispatch()
            .await
            .unwrap();
        assert_eq!(
            states(&seq, id).await["c_three"].0,
            MemberState::Waiting,
            "{}: a link waits for its turn",
            b.name
        );
        let args = ["work", "--concurrency", "1", "--lease", "2"];
        let mut first = seqbatch(&b, &p, &args)
            .env("SEQBATCH_SLOW_MS", "60000")
            .spawn()
            .unwrap();
        // Kill -9 the worker while it runs the second link.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !logged(&pool, &p).await.contains_key("c_slow") {
            assert!(
                Instant::now() < deadline,
                "{}: c_slow never started",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first.kill().expect("kill -9");
        first.wait().unwrap();
        assert!(
            seq.batch_info(id)
                .await
                .unwrap()
                .unwrap()
                .finished_at
                .is_none(),
            "{}",
            b.name
        );
        let mut workers = Workers::start(1, || seqbatch(&b, &p, &args));
        let info = finished(&seq, id, b.name).await;
        workers.stop();
        assert_eq!(
            (info.total, info.failed, info.skipped),
            (3, 0, 0),
            "{}: {info}",
            b.name
        );
        let log = logged(&pool, &p).await;
        assert_eq!(log.get("c_one"), Some(&1), "{}", b.name);
        assert_eq!(
            log.get("c_slow"),
            Some(&2),
            "{}: run again after its worker died (idempotent)",
            b.name
        );
        assert_eq!(log.get("c_three"), Some(&1), "{}", b.name);
        let c = calls(&pool, &p, id).await;
        assert_eq!(c.get("then").map(|c| c.0), Some(1), "{}: {c:?}", b.name);
        cleanup(&seq, &p).await;
    }
}

/// Issue 16's acceptance run, with operations for members: a batch of 1,000 on three worker processes, one
/// killed mid-way; `status` shows its progress while it runs; every member runs (a non-idempotent one killed
/// mid-run is recorded `interrupted`, and counted failed), and `then` runs once, after the last member ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_members_on_three_workers_one_killed() {
    for b in backends()
        .await
        .into_iter()
        .filter(|b| b.name == "PostgreSQL")
    {
        let p = prefix();
        let pool = pool(&b).await;
        sqlx::query(&format!(
            "CREATE TABLE {p}work_log (name VARCHAR(191) NOT NULL)"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let builder = sequencer_tests::work_ops::builder(&p).database(b.url.clone());
        let seq = common::build(&b, builder).await;
        let id = seq
            .batch((0..N).map(|i| format!("w_{i}")))
            .name("reprice")
            .allow_failures()
            .then("count_done")
            .dispatch()
            .await
            .unwrap();
        let args = ["work", "--concurrency", "8", "--lease", "2"];
        let mut workers = Workers::start(3, || seqwork(&b, &p, &args, "10"));
        members_done(&seq, id, 300, b.name).await;
        workers.kill_first();
        let status = seqwork(&b, &p, &["status"], "0").output().unwrap();
        let line = status_line(&status, id, "reprice", b.name);
        assert!(
            line.contains(" of 1000 done") && line.ends_with("running"),
            "{}: {line}",
            b.name
        );
        let info = finished(&seq, id, b.name).await;
        workers.stop();
        let counts = log_counts(&pool, &p).await;
        assert_eq!(
            counts.get("then:0"),
            Some(&1),
            "{}: `then` ran once, after every member ended: {:?}",
            b.name,
            counts
                .keys()
                .filter(|k| k.starts_with("then"))
                .collect::<Vec<_>>()
        );
        let statuses = statuses(&pool, &p).await;
        let mut interrupted = 0;
        for i in 0..N {
            let name = format!("w_{i}");
            let ran = counts.get(&name).copied().unwrap_or(0);
            match statuses.get(&name).map(String::as_str) {
                Some("completed") if i % 2 == 0 => assert!(ran >= 1, "{}: {name}", b.name),
                Some("completed") => {
                    assert_eq!(ran, 1, "{}: {name} is not idempotent: it ran once", b.name)
                }
                Some("interrupted") if i % 2 == 1 => interrupted += 1,
                other => panic!("{}: {name} is {other:?}", b.name),
            }
        }
        assert_eq!(
            (info.total, info.pending, info.failed),
            (N as i64, 0, interrupted),
            "{}: {info}",
            b.name
        );
        println!(
            "{}: {interrupted} non-idempotent member(s) interrupted by the kill",
            b.name
        );
        common::drop_tables(&pool, &p, &["work_log"]).await;
    }
}
