//! On every backend: `without_overlapping(..).release_after(..)` waits for a held key (without it the operation is
//! left pending), the `execute_at = "HH:MM"` next-occurrence rule, and the `execute_at = fn` form.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{backends, prefix};
use sequencer::ledger::Status;
use sequencer::Outcome;

#[sequencer::operations]
mod ops {
    use std::time::{Duration, SystemTime};

    use sequencer::prelude::*;

    #[operation(timestamp = "2024_11_01_000000", middleware = [without_overlapping("reindex").release_after("200ms")])]
    pub async fn waits_for_the_key(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_11_01_000001", middleware = [without_overlapping("reindex")])]
    pub async fn gives_up_on_the_key(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_11_01_000002", execute_at = "00:00")]
    pub async fn at_midnight(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    fn in_an_hour() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3600)
    }

    fn an_hour_ago() -> SystemTime {
        SystemTime::now() - Duration::from_secs(3600)
    }

    #[operation(timestamp = "2024_11_01_000003", execute_at = in_an_hour)]
    pub async fn computed_later(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_11_01_000004", execute_at = an_hour_ago)]
    pub async fn computed_past(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_after_waits_for_a_held_key_and_without_it_the_operation_stays_pending() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, ops::registry())).await;
        let ledger = seq.ledger().clone();
        // Someone else holds the key for 1.5 s.
        assert!(ledger
            .try_named_lock("overlap:reindex", "someone-else", Duration::from_secs(60))
            .await
            .expect("lock"));
        let releaser = tokio::spawn({
            let ledger = ledger.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                ledger
                    .release_named_lock("overlap:reindex", "someone-else")
                    .await
                    .expect("release");
            }
        });
        let started = Instant::now();
        let waited = seq.execute("waits_for_the_key").await.expect("execute");
        let took = started.elapsed();
        releaser.await.expect("releaser");
        assert!(
            matches!(waited.results[0].1, Outcome::Completed { .. }),
            "{}: {waited:?}",
            b.name
        );
        assert!(
            took >= Duration::from_millis(1400),
            "{}: it waited: {took:?}",
            b.name
        );

        // Without `release_after`: not run, left pending, while the key is held.
        assert!(ledger
            .try_named_lock("overlap:reindex", "someone-else", Duration::from_secs(60))
            .await
            .expect("lock"));
        let started = Instant::now();
        let refused = seq.execute("gives_up_on_the_key").await.expect("execute");
        assert!(
            started.elapsed() < Duration::from_millis(1400),
            "{}",
            b.name
        );
        assert!(
            matches!(&refused.results[0].1, Outcome::Deferred { reason } if reason.contains("is held by another run")),
            "{}: {refused:?}",
            b.name
        );
        let rows = common::rows(&seq).await;
        assert_eq!(
            rows["gives_up_on_the_key"].status,
            Status::Pending,
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_at_time_of_day_and_fn_set_the_due_time() {
    for b in backends().await {
        let p = prefix();
        let seq = common::build(&b, common::builder(&b, &p, ops::registry())).await;
        let before = now_ms();
        let report = seq.execute_all().await.expect("process");
        let after = now_ms();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let rows = common::rows(&seq).await;

        // `execute_at = "00:00"`: the next midnight UTC, strictly after now (never today's, which has passed).
        let midnight = &rows["at_midnight"];
        assert_eq!(midnight.status, Status::Scheduled, "{}", b.name);
        let due = midnight.due_at.expect("due_at");
        let day = 86_400_000;
        assert_eq!(due % day, 0, "{}: a midnight: {due}", b.name);
        assert!(
            due > before && due <= after + day,
            "{}: the next one: {due}",
            b.name
        );

        // `execute_at = fn`: what the function returns when first seen; a past time runs at once.
        let later = &rows["computed_later"];
        assert_eq!(later.status, Status::Scheduled, "{}", b.name);
        let due = later.due_at.expect("due_at");
        assert!(
            due >= before + 3_600_000 - 1_000 && due <= after + 3_600_000 + 1_000,
            "{}: in an hour: {due}",
            b.name
        );
        assert_eq!(
            rows["computed_past"].status,
            Status::Completed,
            "{}",
            b.name
        );

        // The due time is kept: a second run does not compute it afresh.
        tokio::time::sleep(Duration::from_millis(50)).await;
        seq.execute_all().await.expect("process again");
        let again = common::rows(&seq).await;
        assert_eq!(again["computed_later"].due_at, later.due_at, "{}", b.name);
        assert_eq!(
            again["computed_later"].status,
            Status::Scheduled,
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}
