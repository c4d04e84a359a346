//! Deferred operations on every backend: typed handlers, retries after a delay, final failure with the error,
//! aliases for renamed handlers, and clear errors (row kept) for unknown handlers and malformed payloads. Each
//! deferred run is a run of the task `deferred:<handler>` (a row of the operations table, a job on the `deferred`
//! queue); rows an older version left in the old deferred table are moved into task runs and run once.

mod common;

use std::time::{Duration, SystemTime};

use common::{backends, prefix, Backend};
use sequencer::ledger::{DeferredStatus, LedgerRow, Status};
use sequencer::{BoxFuture, Ctx, Sequencer, SequencerError};
use sequencer_tests::ledger_ops::ops;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Welcome {
    user: String,
    /// Fail on tries up to this one.
    fail_until: u32,
}

async fn send_welcome(ctx: &Ctx, payload: Welcome) -> sequencer::Result<()> {
    if ctx.attempt() <= payload.fail_until {
        anyhow::bail!(
            "mail server refused {} (try {})",
            payload.user,
            ctx.attempt()
        );
    }
    Ok(())
}

fn handler(ctx: &Ctx, p: Welcome) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(send_welcome(ctx, p))
}

/// Every run of the task `name` with its stored data (`args`), by run number.
async fn task_runs(seq: &Sequencer, name: &str) -> Vec<(LedgerRow, String)> {
    let mut out = Vec::new();
    for run in 1.. {
        let Some(row) = seq.ledger().row_of(name, run).await.unwrap() else {
            break;
        };
        let args = seq.ledger().task_args(name, run).await.unwrap();
        out.push((row, args.unwrap_or_default()));
    }
    out
}

async fn sequencer(b: &Backend, p: &str) -> Sequencer {
    let builder = common::builder(b, p, ops::registry())
        .deferred("send_welcome", handler)
        .deferred_alias("welcome_mail", "send_welcome")
        .deferred_retry_delay(Duration::ZERO);
    common::build(b, builder).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_operations_retry_then_fail_and_keep_bad_rows() {
    for b in backends().await {
        let p = prefix();
        let seq = sequencer(&b, &p).await;
        let now = SystemTime::now();
        let w = |user: &str, fail_until| Welcome {
            user: user.into(),
            fail_until,
        };
        seq.defer("send_welcome", &w("ada", 0), now, 3)
            .await
            .unwrap();
        seq.defer("send_welcome", &w("bob", 2), now, 3)
            .await
            .unwrap();
        seq.defer("send_welcome", &w("cyd", 9), now, 2)
            .await
            .unwrap();
        seq.defer(
            "send_welcome",
            &w("later", 0),
            now + Duration::from_secs(3600),
            1,
        )
        .await
        .unwrap();
        // Rows written under an old name, an unknown name, and a payload that does not fit.
        seq.ledger()
            .defer(
                "welcome_mail",
                |_| serde_json::to_string(&w("dee", 0)).unwrap(),
                0,
                1,
            )
            .await
            .unwrap();
        seq.ledger()
            .defer("ghost", |_| "{}".to_owned(), 0, 1)
            .await
            .unwrap();
        seq.ledger()
            .defer("send_welcome", |_| "{\"user\": 7}".to_owned(), 0, 5)
            .await
            .unwrap();
        let unknown = seq.defer("send_welcom", &w("x", 0), now, 1).await;
        assert!(
            matches!(&unknown, Err(SequencerError::UnknownOperation { suggestion: Some(s), .. }) if s == "send_welcome"),
            "{unknown:?}"
        );

        for _ in 0..4 {
            seq.process_deferred(None).await.unwrap();
        }
        // Deferred by this version: runs of the task `deferred:send_welcome`, their payload in their data.
        let runs = task_runs(&seq, "deferred:send_welcome").await;
        let by_user = |u: &str| {
            runs.iter()
                .find(|(_, args)| args.contains(&format!("\"{u}\"")))
                .map(|(row, _)| row)
                .unwrap_or_else(|| panic!("{u}: {runs:?}"))
        };
        assert_eq!(
            (by_user("ada").status, by_user("ada").attempts),
            (Status::Completed, 1),
            "{}",
            b.name
        );
        assert_eq!(
            (by_user("bob").status, by_user("bob").attempts),
            (Status::Completed, 3),
            "{}: retried",
            b.name
        );
        let cyd = by_user("cyd");
        assert_eq!(
            (cyd.status, cyd.attempts),
            (Status::Failed, 2),
            "{}: out of attempts",
            b.name
        );
        assert!(
            cyd.last_error
                .as_deref()
                .is_some_and(|e| e.contains("mail server refused cyd (try 2)")),
            "{}: {cyd:?}",
            b.name
        );
        assert_eq!(
            (by_user("later").status, by_user("later").attempts),
            (Status::Pending, 0),
            "{}: not due",
            b.name
        );
        // Written in the old table (as an older version did): moved into task runs, each run there.
        let rows = seq.ledger().deferred().await.unwrap();
        let moved = |handler: &str, payload: &str| {
            let old = rows
                .iter()
                .find(|r| r.handler == handler && r.payload.contains(payload))
                .unwrap_or_else(|| panic!("{handler}: {rows:?}"));
            assert_eq!(old.status, DeferredStatus::Moved, "{}: {old:?}", b.name);
            let run = old.task_run.expect("the run it became");
            runs.iter()
                .find(|(row, _)| row.run == run)
                .map(|(row, _)| row)
                .unwrap_or_else(|| panic!("run {run}: {runs:?}"))
        };
        assert_eq!(
            moved("welcome_mail", "dee").status,
            Status::Completed,
            "{}: the alias maps the old name",
            b.name
        );
        let ghost = rows.iter().find(|r| r.handler == "ghost").unwrap();
        assert_eq!(
            ghost.status,
            DeferredStatus::Failed,
            "{}: kept for a human",
            b.name
        );
        assert!(ghost
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("unknown deferred handler `ghost`")));
        let bad = moved("send_welcome", ": 7");
        assert_eq!(
            (bad.status, bad.attempts),
            (Status::Failed, 1),
            "{}: a malformed payload is not retried",
            b.name
        );
        assert!(
            bad.last_error
                .as_deref()
                .is_some_and(|e| e.contains("malformed payload")),
            "{}: {bad:?}",
            b.name
        );
        // They are tasks: `task_status` counts their runs.
        let status = seq.task_status().await.unwrap();
        let welcome = status
            .iter()
            .find(|t| t.name == "deferred:send_welcome")
            .unwrap_or_else(|| panic!("{status:?}"));
        assert_eq!(
            (welcome.completed, welcome.failed, welcome.queued),
            (3, 2, 1),
            "{}: {welcome}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

static SLOW_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(Debug, Serialize, Deserialize)]
struct Slow {
    ms: u64,
}

fn slow(_ctx: &Ctx, p: Slow) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async move {
        SLOW_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(p.ms)).await;
        Ok(())
    })
}

/// A deferred operation that runs longer than the lease keeps its claim (renewed every third of the lease): a
/// second processor meanwhile does not run it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_deferred_operation_keeps_its_claim() {
    for b in backends().await {
        let p = prefix();
        let build = || async {
            let builder = common::builder(&b, &p, ops::registry())
                .lease(Duration::from_millis(600))
                .deferred("slow", slow);
            common::build(&b, builder).await
        };
        let (first, second) = (build().await, build().await);
        SLOW_RUNS.store(0, std::sync::atomic::Ordering::SeqCst);
        first
            .defer("slow", &Slow { ms: 2_000 }, SystemTime::now(), 3)
            .await
            .unwrap();
        let running = tokio::spawn(async move { first.process_deferred(None).await });
        // Well past the 600 ms lease: without renewal the row would be taken again here.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let meanwhile = second.process_deferred(None).await.unwrap();
        assert_eq!(meanwhile.completed, 0, "{}", b.name);
        let done = running.await.unwrap().unwrap();
        assert_eq!(done.completed, 1, "{}", b.name);
        assert_eq!(
            SLOW_RUNS.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{}: the handler ran twice",
            b.name
        );
        common::cleanup(&second, &p, &[]).await;
    }
}

static GREETINGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    name: String,
}

/// Fails its first try, then greets.
fn greet(ctx: &Ctx, g: Greeting) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async move {
        GREETINGS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        anyhow::ensure!(ctx.attempt() > 1, "the first try for {} fails", g.name);
        anyhow::ensure!(g.name == "ada", "wrong payload {}", g.name);
        Ok(())
    })
}

/// A layer that notes every attempt it wraps.
struct Seen(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl sequencer::Layer for Seen {
    fn handle<'a>(
        &'a self,
        ctx: &'a Ctx,
        next: sequencer::Next<'a>,
    ) -> BoxFuture<'a, sequencer::Result<()>> {
        Box::pin(async move {
            let note = format!("{}#{}", ctx.operation().name, ctx.attempt());
            self.0.lock().unwrap().push(note);
            next.run(ctx).await
        })
    }
}

fn key() -> sequencer::crypto::Keyring {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    sequencer::crypto::Keyring::new(Some(&key), []).unwrap()
}

/// A pending row an older version left in its deferred table (its payload sealed for that row) is moved into a
/// task run when the new version first processes deferred operations, and runs once, through the executor: the
/// layer sees each attempt, the retry waits the backoff, the events say so. Two processes upgrading at once move
/// it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_row_of_an_older_version_runs_once_through_the_executor() {
    for b in backends().await {
        let p = prefix();
        // The older version's ledger: its schema without version 14, and a pending row in its deferred table.
        let old = common::build(
            &b,
            common::builder(&b, &p, ops::registry()).encryption_keys(key()),
        )
        .await;
        let pool = old.ledger().pool();
        // Version 14's index on the old table's status.
        let on = if b.name.contains("MariaDB") || b.name.contains("MySQL") {
            format!(" ON {p}seq_deferred")
        } else {
            String::new()
        };
        sequencer::sqlx::query(&format!("DROP INDEX {p}seq_deferred_by_status{on}"))
            .execute(pool)
            .await
            .unwrap();
        if b.name == "SQLite" {
            // SQLite drops no indexed column.
            sequencer::sqlx::query(&format!("DROP INDEX {p}seq_job_batches_callbacks"))
                .execute(pool)
                .await
                .unwrap();
        }
        for sql in [
            format!("DELETE FROM {p}seq_schema_versions WHERE version = 14"),
            format!("ALTER TABLE {p}seq_deferred DROP COLUMN task_run"),
            format!("ALTER TABLE {p}seq_job_batches DROP COLUMN callbacks_done"),
            format!("ALTER TABLE {p}seq_job_batches DROP COLUMN callback_token"),
            format!("ALTER TABLE {p}seq_job_batches DROP COLUMN callback_lease_until"),
            format!("ALTER TABLE {p}seq_job_batches DROP COLUMN callbacks_settled_at"),
            format!(
                "INSERT INTO {p}seq_deferred (handler, payload, due_at, attempts, max_attempts, status, created_at) \
                 VALUES ('greet', '', 0, 0, 3, 'pending', 0)"
            ),
        ] {
            sequencer::sqlx::query(&sql).execute(pool).await.unwrap();
        }
        let id: i64 =
            sequencer::sqlx::query_scalar(&format!("SELECT MAX(id) FROM {p}seq_deferred"))
                .fetch_one(pool)
                .await
                .unwrap();
        let sealed = key()
            .seal_for(
                r#"{"name":"ada"}"#,
                &sequencer::crypto::place::deferred(id, "payload"),
            )
            .unwrap();
        let set = format!("UPDATE {p}seq_deferred SET payload = ? WHERE id = ?");
        let set = if b.url.starts_with("postgres") {
            sequencer::ledger::number_placeholders(&set)
        } else {
            set
        };
        sequencer::sqlx::query(&set)
            .bind(sealed.clone())
            .bind(id)
            .execute(pool)
            .await
            .unwrap_or_else(|_| panic!("{}", b.name));
        drop(old);

        // The new version: two processes start on it (the first applies the schema step).
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let build = || async {
            let builder = common::builder(&b, &p, ops::registry())
                .encryption_keys(key())
                .deferred("greet", greet)
                .deferred_retry_delay(Duration::from_millis(250))
                .layer(Seen(seen.clone()));
            common::build(&b, builder).await
        };
        let (one, two) = (build().await, build().await);
        let (mut events_one, mut events_two) = (one.subscribe(), two.subscribe());
        GREETINGS.store(0, std::sync::atomic::Ordering::SeqCst);
        let (r1, r2) = tokio::join!(one.process_deferred(None), two.process_deferred(None));
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        // The failed first try went back on the queue, due again after the backoff: taken by a later call.
        let (mut completed, mut retrying) =
            (r1.completed + r2.completed, r1.retrying + r2.retrying);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while completed == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = one.process_deferred(None).await.unwrap();
            (completed, retrying) = (completed + r.completed, retrying + r.retrying);
        }
        assert_eq!(
            (r1.moved + r2.moved, completed, retrying),
            (1, 1, 1),
            "{}: moved once, ran once after one try put back: {r1:?} {r2:?}",
            b.name
        );
        assert_eq!(
            GREETINGS.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "{}: one failed try, one that succeeded",
            b.name
        );
        assert_eq!(
            *seen.lock().unwrap(),
            ["deferred:greet#1", "deferred:greet#2"],
            "{}: the layer wraps each attempt",
            b.name
        );
        let mut retrying = Vec::new();
        for events in [&mut events_one, &mut events_two] {
            while let Ok(e) = events.try_recv() {
                if let sequencer::Event::OperationRetrying {
                    name,
                    attempt,
                    delay_ms,
                    ..
                } = e
                {
                    retrying.push((name, attempt, delay_ms));
                }
            }
        }
        assert_eq!(
            retrying,
            [("deferred:greet".to_owned(), 1, 250)],
            "{}: retried after the backoff",
            b.name
        );
        let rows = one.ledger().deferred().await.unwrap();
        assert_eq!(
            (rows[0].status, rows[0].task_run, rows[0].payload.as_str()),
            (DeferredStatus::Moved, Some(1), sealed.as_str()),
            "{}: the old row is kept, moved, its payload as it was",
            b.name
        );
        let runs = task_runs(&one, "deferred:greet").await;
        assert_eq!(runs.len(), 1, "{}: {runs:?}", b.name);
        assert_eq!(
            (runs[0].0.status, runs[0].0.attempts),
            (Status::Completed, 2),
            "{}",
            b.name
        );
        assert!(
            runs[0].1.starts_with("enc:v2:"),
            "{}: its data is sealed: {}",
            b.name,
            runs[0].1
        );
        let again = one.process_deferred(None).await.unwrap();
        assert_eq!(
            (again.moved, again.completed, again.failed.len()),
            (0, 0, 0),
            "{}: {again:?}",
            b.name
        );
        assert_eq!(GREETINGS.load(std::sync::atomic::Ordering::SeqCst), 2);
        common::cleanup(&one, &p, &[]).await;
    }
}

/// Waits until `check` holds, or fails after 60 s (a bound on a hang, not a timing assertion).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker does not sleep through a deferred run's backoff: the failed try goes back on the `deferred` queue, due
/// after the delay, while the worker goes on taking jobs, and it stops at once when asked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leaves_a_failed_deferred_try_to_its_queue_and_goes_on() {
    for b in backends().await {
        let p = prefix();
        let knobs = sequencer_tests::ledger_ops::Knobs {
            prefix: p.clone(),
            ..Default::default()
        };
        let builder = common::builder(&b, &p, ops::registry())
            .state(knobs)
            .deferred("send_welcome", handler)
            .deferred_retry_delay(Duration::from_secs(3600));
        let seq = common::build(&b, builder).await;
        let always = Welcome {
            user: "eve".into(),
            fail_until: 9,
        };
        seq.defer("send_welcome", &always, SystemTime::now(), 3)
            .await
            .unwrap();
        let shutdown = sequencer::CancellationToken::new();
        let opts = sequencer::WorkOptions {
            grace: Duration::from_millis(200),
            ..Default::default()
        };
        let worker = {
            let (seq, shutdown) = (seq.clone(), shutdown.clone());
            tokio::spawn(async move { seq.work(&opts, shutdown).await })
        };
        let run = || async {
            seq.ledger()
                .row_of("deferred:send_welcome", 1)
                .await
                .unwrap()
                .map(|r| (r.status, r.attempts))
        };
        eventually("the first try failed", || async {
            run().await == Some((Status::Pending, 1))
        })
        .await;
        // A job queued now is taken while the deferred run waits for its next try.
        assert!(seq.enqueue("a_create").await.unwrap(), "{}", b.name);
        eventually("the queued operation ran", || async {
            seq.status()
                .await
                .unwrap()
                .iter()
                .any(|e| e.name.ends_with("a_create") && e.status == Status::Completed)
        })
        .await;
        shutdown.cancel();
        let report = tokio::time::timeout(Duration::from_secs(60), worker)
            .await
            .unwrap_or_else(|_| panic!("{}: the worker did not stop", b.name))
            .unwrap()
            .unwrap();
        assert_eq!(report.completed, 1, "{}: {report:?}", b.name);
        assert_eq!(
            run().await,
            Some((Status::Pending, 1)),
            "{}: one try, the next one due in an hour",
            b.name
        );
        let now = seq.ledger().db_now().await.unwrap();
        let (status, available_at): (String, i64) = sequencer::sqlx::query_as(&format!(
            "SELECT status, available_at FROM {p}seq_jobs WHERE name = 'deferred:send_welcome'"
        ))
        .fetch_one(seq.ledger().pool())
        .await
        .unwrap();
        let later = available_at > now + 60_000;
        assert_eq!(
            (status.as_str(), later),
            ("queued", true),
            "{}: its job waits on the queue for its next try",
            b.name
        );
        common::cleanup(&seq, &p, &["log"]).await;
    }
}
