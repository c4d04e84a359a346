//! Every policy, applied by the shared executor, on every backend: retries and backoff, retry_until,
//! max_exceptions, timeouts, hooks, unique, without_overlapping, rate limits, throttles, tags, schedules, layers.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{backends, prefix, rows, Backend};
use sequencer::ledger::Status;
use sequencer::{
    BatchCtx, BoxFuture, Ctx, Layer, Limit, Next, Outcome, ProcessOptions, Sequencer,
    SequencerBuilder,
};
use sequencer_tests::policy_ops::{ops, PolicyKnobs};

struct CountingLayer(Arc<AtomicUsize>);

impl Layer for CountingLayer {
    fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, sequencer::Result<()>> {
        self.0.fetch_add(1, SeqCst);
        next.run(ctx)
    }
}

async fn sequencer(b: &Backend, p: &str) -> (Sequencer, Arc<PolicyKnobs>, Arc<AtomicUsize>) {
    sequencer_with(b, p, |builder| builder).await
}

async fn sequencer_with(
    b: &Backend,
    p: &str,
    more: impl FnOnce(SequencerBuilder) -> SequencerBuilder,
) -> (Sequencer, Arc<PolicyKnobs>, Arc<AtomicUsize>) {
    let knobs = Arc::new(PolicyKnobs::default());
    let layer_calls = Arc::new(AtomicUsize::new(0));
    let builder = common::builder(b, p, ops::registry())
        .state(knobs.clone())
        .rate_limiter(
            "burst",
            Limit {
                count: 2,
                per: Duration::from_secs(1),
            },
        )
        .layer(CountingLayer(layer_calls.clone()));
    let seq = common::build(b, more(builder)).await;
    (seq, knobs, layer_calls)
}

fn tags(t: &str) -> ProcessOptions {
    ProcessOptions {
        tags: vec![t.to_owned()],
        ..ProcessOptions::default()
    }
}

fn gaps(starts: &[u128]) -> Vec<u128> {
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_backoff_retry_until_and_max_exceptions() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs, layer_calls) = sequencer(&b, &p).await;
        let report = seq.process(&tags("retry")).await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let r = rows(&seq).await;
        assert_eq!(
            (r["q_retry"].status, r["q_retry"].attempts),
            (Status::Completed, 3),
            "{}",
            b.name
        );
        let g = gaps(&knobs.starts_of("q_retry"));
        assert!(
            g[0] >= 100 && g[1] >= 200,
            "{}: the backoff list is honoured: gaps {g:?}",
            b.name
        );
        assert_eq!(
            seq.errors(Some("q_retry")).await.unwrap().len(),
            2,
            "{}: every failed attempt is recorded",
            b.name
        );

        let until = knobs.starts_of("q_until");
        assert_eq!(r["q_until"].status, Status::Failed);
        assert!(
            until.len() >= 2,
            "{}: retried until the deadline: {until:?}",
            b.name
        );
        assert!(
            until.iter().all(|t| *t - until[0] <= 400),
            "{}: no attempt starts after retry_until: {until:?}",
            b.name
        );
        assert_eq!(r["q_until"].attempts as usize, until.len());

        assert_eq!(
            (r["q_max_exceptions"].status, r["q_max_exceptions"].attempts),
            (Status::Failed, 2),
            "{}",
            b.name
        );
        // The layer wraps every attempt.
        let attempts = 3 + until.len() + 2;
        assert_eq!(layer_calls.load(SeqCst), attempts, "{}", b.name);
        assert_eq!(
            r["q_hooks"].status,
            Status::Pending,
            "{}: --tags ran only the tagged operations",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_cancel_and_are_retried_unless_fail_on_timeout() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs, _) = sequencer(&b, &p).await;
        seq.process(&tags("timeout")).await.unwrap();
        let r = rows(&seq).await;
        assert_eq!(
            (r["q_timeout"].status, r["q_timeout"].attempts),
            (Status::Completed, 2),
            "{}",
            b.name
        );
        let errors = seq.errors(Some("q_timeout")).await.unwrap();
        assert!(
            errors[0].message.contains("timed out after 150ms"),
            "{}: {errors:?}",
            b.name
        );
        assert_eq!(
            (r["q_fail_timeout"].status, r["q_fail_timeout"].attempts),
            (Status::Failed, 1),
            "{}",
            b.name
        );
        assert_eq!(knobs.starts_of("q_fail_timeout").len(), 1);
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_in_order() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs, _) = sequencer(&b, &p).await;
        seq.process(&tags("hooks")).await.unwrap();
        let hooks = knobs.hooks.lock().unwrap().clone();
        assert_eq!(
            hooks,
            [
                "before q_hooks",
                "run q_hooks",
                "failed (hooked failure) q_hooks"
            ],
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_and_without_overlapping_hold_across_processes() {
    for b in backends().await {
        let p = prefix();
        let (seq, _, _) = sequencer(&b, &p).await;
        // Another process holds both keys.
        let far = std::time::Duration::from_secs(3600);
        assert!(seq
            .ledger()
            .try_named_lock("unique:imports", "other:1", far)
            .await
            .unwrap());
        assert!(seq
            .ledger()
            .try_named_lock("overlap:reindex", "other:1", far)
            .await
            .unwrap());
        let report = seq.process(&tags("locks")).await.unwrap();
        let deferred: Vec<_> = report
            .results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Deferred { .. }))
            .collect();
        assert_eq!(deferred.len(), 2, "{}: {report:?}", b.name);
        assert!(
            report
                .waiting
                .iter()
                .any(|(_, why)| why.contains("unique key `imports` is held")),
            "{}: {report:?}",
            b.name
        );
        let r = rows(&seq).await;
        assert_eq!(
            (r["q_unique"].status, r["q_overlap"].status),
            (Status::Pending, Status::Pending),
            "{}",
            b.name
        );

        seq.ledger()
            .release_named_lock("unique:imports", "other:1")
            .await
            .unwrap();
        seq.ledger()
            .release_named_lock("overlap:reindex", "other:1")
            .await
            .unwrap();
        seq.process(&tags("locks")).await.unwrap();
        let r = rows(&seq).await;
        assert_eq!(
            (r["q_unique"].status, r["q_overlap"].status),
            (Status::Completed, Status::Completed),
            "{}",
            b.name
        );
        // Released at the end of the run: the key is free again.
        assert!(
            seq.ledger()
                .try_named_lock("overlap:reindex", "other:1", far)
                .await
                .unwrap(),
            "{}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_throttles_hold_operations_back() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs, _) = sequencer(&b, &p).await;
        seq.process(&tags("rate")).await.unwrap();
        let wall = knobs.wall.lock().unwrap().clone();
        let mut per_window: HashMap<u128, usize> = HashMap::new();
        for op in ["q_rate_1", "q_rate_2", "q_rate_3"] {
            *per_window.entry(wall[op][0] / 1000).or_default() += 1;
        }
        assert!(
            per_window.values().all(|n| *n <= 2),
            "{}: at most 2 starts per second: {per_window:?}",
            b.name
        );

        seq.process(&tags("throttle")).await.unwrap();
        let r = rows(&seq).await;
        assert_eq!(
            (r["q_throttle"].status, r["q_throttle"].attempts),
            (Status::Completed, 2),
            "{}",
            b.name
        );
        let g = gaps(&knobs.starts_of("q_throttle"));
        assert!(
            g[0] >= 490,
            "{}: the closed throttle held the retry back: {g:?}",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_operations_wait_for_their_due_time() {
    for b in backends().await {
        let p = prefix();
        let (seq, knobs, _) = sequencer(&b, &p).await;
        let report = seq.process(&tags("schedule")).await.unwrap();
        assert_eq!(report.scheduled.len(), 1, "{}: {report:?}", b.name);
        let r = rows(&seq).await;
        assert_eq!(
            r["q_past_due"].status,
            Status::Completed,
            "{}: past due runs at once",
            b.name
        );
        assert_eq!(r["q_delayed"].status, Status::Scheduled, "{}", b.name);
        let due = r["q_delayed"].due_at.unwrap();
        let only_scheduled = ProcessOptions {
            only_scheduled: true,
            ..ProcessOptions::default()
        };
        let early = seq
            .using(sequencer::Scheduled)
            .process(&only_scheduled)
            .await
            .unwrap();
        assert!(
            early.planned.is_empty(),
            "{}: not due yet: {early:?}",
            b.name
        );
        tokio::time::sleep(Duration::from_millis(
            (due - sequencer::ledger::now_ms()).max(0) as u64 + 50,
        ))
        .await;
        let late = seq
            .using(sequencer::Scheduled)
            .process(&only_scheduled)
            .await
            .unwrap();
        assert_eq!(late.planned.len(), 1, "{}: {late:?}", b.name);
        assert_eq!(
            rows(&seq).await["q_delayed"].status,
            Status::Completed,
            "{}",
            b.name
        );
        assert!(
            knobs.wall.lock().unwrap()["q_delayed"][0] as i64 >= due,
            "{}: it ran at or after its due time",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}

/// A named callback that records `what` and the member whose failure was caught.
fn recorder(
    calls: &Arc<std::sync::Mutex<Vec<String>>>,
    what: &'static str,
) -> impl Fn(BatchCtx) -> std::future::Ready<sequencer::Result<()>> + Send + Sync + 'static {
    let calls = calls.clone();
    move |ctx: BatchCtx| {
        let member = ctx.failed_member().unwrap_or("-");
        let member = member.get(18..).unwrap_or(member).to_owned();
        calls.lock().unwrap().push(format!("{what} {member}"));
        std::future::ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_chain_and_conditional_api() {
    for b in backends().await {
        let p = prefix();
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (seq, _, _) = sequencer_with(&b, &p, |builder| {
            builder
                .batch_callback("then", recorder(&calls, "then"))
                .batch_callback("catch", recorder(&calls, "catch"))
                .batch_callback("finally", recorder(&calls, "finally"))
        })
        .await;
        let info = seq
            .batch(["q_unique", "q_overlap"])
            .then("then")
            .catch("catch")
            .finally("finally")
            .dispatch_and_wait()
            .await
            .unwrap();
        assert_eq!(
            (info.total, info.pending, info.failed),
            (2, 0, 0),
            "{}",
            b.name
        );
        assert!(info.finished_at.is_some(), "{}", b.name);
        assert_eq!(
            *calls.lock().unwrap(),
            ["then -", "finally -"],
            "{}: then and finally ran, once each, in this process",
            b.name
        );
        assert!(seq.has_executed("q_unique").await.unwrap());
        assert!(!seq.has_executed("q_hooks").await.unwrap());
        let unknown = seq.batch(["q_unique"]).then("nope").dispatch().await;
        assert!(
            unknown.is_err_and(|e| e.to_string().contains("no batch callback named `nope`")),
            "{}",
            b.name
        );

        calls.lock().unwrap().clear();
        let info = seq
            .chain(["q_unique", "q_hooks", "q_past_due"])
            .catch("catch")
            .finally("finally")
            .dispatch_and_wait()
            .await
            .unwrap();
        assert_eq!((info.failed, info.skipped), (1, 1), "{}", b.name);
        assert_eq!(
            *calls.lock().unwrap(),
            ["catch q_hooks", "finally q_hooks"],
            "{}: the completed q_unique is passed over; q_hooks fails and ends the chain",
            b.name
        );
        let members = seq.ledger().batch_members(info.id).await.unwrap();
        assert_eq!(
            members[2]
                .reason
                .as_deref()
                .map(|r| r.ends_with("q_hooks failed")),
            Some(true),
            "{}: {members:?}",
            b.name
        );
        assert!(seq.has_failed("q_hooks").await.unwrap());
        assert!(!seq.has_executed("q_past_due").await.unwrap());

        assert!(seq.execute_if(false, "q_past_due").await.unwrap().is_none());
        assert!(seq
            .execute_unless(false, "q_past_due")
            .await
            .unwrap()
            .is_some());
        assert!(seq.has_executed("q_past_due").await.unwrap());
        common::cleanup(&seq, &p, &[]).await;
    }
}
