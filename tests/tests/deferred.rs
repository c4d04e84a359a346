//! Deferred operations on every backend: typed handlers, retries after a delay, final failure with the error,
//! aliases for renamed handlers, and clear errors (row kept) for unknown handlers and malformed payloads.

mod common;

use std::time::{Duration, SystemTime};

use common::{backends, prefix, Backend};
use sequencer::ledger::DeferredStatus;
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
        let rows = seq.ledger().deferred().await.unwrap();
        let by_user = |u: &str| {
            rows.iter()
                .find(|r| r.payload.contains(&format!("\"{u}\"")))
                .unwrap_or_else(|| panic!("{u}: {rows:?}"))
        };
        assert_eq!(
            (by_user("ada").status.as_str(), by_user("ada").attempts),
            ("completed", 1),
            "{}",
            b.name
        );
        assert_eq!(
            (by_user("bob").status.as_str(), by_user("bob").attempts),
            ("completed", 3),
            "{}: retried",
            b.name
        );
        let cyd = by_user("cyd");
        assert_eq!(
            (cyd.status.as_str(), cyd.attempts),
            ("failed", 2),
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
            (by_user("later").status.as_str(), by_user("later").attempts),
            ("pending", 0),
            "{}: not due",
            b.name
        );
        assert_eq!(
            by_user("dee").status,
            DeferredStatus::Completed,
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
        let bad = rows.iter().find(|r| r.payload.contains(": 7")).unwrap();
        assert_eq!(
            (bad.status.as_str(), bad.attempts),
            ("failed", 1),
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
