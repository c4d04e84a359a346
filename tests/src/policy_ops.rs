//! Operations for the policy suite: retries with backoff, retry_until, timeouts, max_exceptions, hooks, unique,
//! without_overlapping, rate limits, throttles, tags and schedules. Each records when its attempts start.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Per-test records, registered as `Arc<PolicyKnobs>` state.
#[derive(Debug, Default)]
pub struct PolicyKnobs {
    /// When each attempt of each operation started (by function name), since `t0`.
    pub starts: Mutex<HashMap<String, Vec<u128>>>,
    /// Hook calls in order.
    pub hooks: Mutex<Vec<String>>,
    /// The test's start.
    pub t0: Mutex<Option<Instant>>,
    /// Wall-clock start of each attempt, Unix milliseconds, by function name.
    pub wall: Mutex<HashMap<String, Vec<u128>>>,
}

impl PolicyKnobs {
    /// Attempt start times of an operation, in ms since the first record.
    pub fn starts_of(&self, op: &str) -> Vec<u128> {
        self.starts
            .lock()
            .map(|s| s.get(op).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

fn knobs(ctx: &sequencer::Ctx) -> anyhow::Result<&std::sync::Arc<PolicyKnobs>> {
    ctx.state::<std::sync::Arc<PolicyKnobs>>()
        .ok_or_else(|| anyhow::anyhow!("no PolicyKnobs state"))
}

/// Records the start of this attempt and returns the attempt number.
fn start(ctx: &sequencer::Ctx) -> anyhow::Result<u32> {
    let k = knobs(ctx)?;
    let t0 = *k
        .t0
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .get_or_insert_with(Instant::now);
    k.starts
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .entry(ctx.operation().fn_name.to_owned())
        .or_default()
        .push(t0.elapsed().as_millis());
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    k.wall
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .entry(ctx.operation().fn_name.to_owned())
        .or_default()
        .push(wall);
    Ok(ctx.attempt())
}

fn hook(ctx: &sequencer::Ctx, what: &str) -> anyhow::Result<()> {
    knobs(ctx)?
        .hooks
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(format!("{what} {}", ctx.operation().fn_name));
    Ok(())
}

#[sequencer::operations]
pub mod ops {
    use std::time::Duration;

    use sequencer::prelude::*;

    use super::{hook, start};

    /// Fails twice, then succeeds: waits 100 ms, then 200 ms.
    #[operation(timestamp = "2024_07_01_000001", retries = 3, backoff = ["100ms", "200ms"], tags = ["retry"])]
    pub async fn q_retry(ctx: &Ctx) -> Result<()> {
        if start(ctx)? < 3 {
            anyhow::bail!("transient failure {}", ctx.attempt());
        }
        Ok(())
    }

    /// Always fails; gives up once 300 ms have passed.
    #[operation(timestamp = "2024_07_01_000002", retry_until = "300ms", backoff = "100ms", allowed_to_fail, tags = ["retry"])]
    pub async fn q_until(ctx: &Ctx) -> Result<()> {
        start(ctx)?;
        anyhow::bail!("never works")
    }

    /// Hangs on its first attempt; the timeout cancels it and the second attempt succeeds.
    #[operation(timestamp = "2024_07_01_000003", timeout = "150ms", retries = 2, tags = ["timeout"])]
    pub async fn q_timeout(ctx: &Ctx) -> Result<()> {
        if start(ctx)? == 1 {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        // The first attempt's timeout cancelled that attempt only: this one is not cancelled.
        ctx.checkpoint(&2u32).await?;
        Ok(())
    }

    /// Hangs; `fail_on_timeout` stops it after one attempt.
    #[operation(timestamp = "2024_07_01_000004", timeout = "150ms", fail_on_timeout, retries = 3, allowed_to_fail, tags = ["timeout"])]
    pub async fn q_fail_timeout(ctx: &Ctx) -> Result<()> {
        start(ctx)?;
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    }

    /// Always fails; `max_exceptions = 2` ends it after two of its five tries.
    #[operation(timestamp = "2024_07_01_000005", retries = 5, max_exceptions = 2, allowed_to_fail, tags = ["retry"])]
    pub async fn q_max_exceptions(ctx: &Ctx) -> Result<()> {
        start(ctx)?;
        anyhow::bail!("always")
    }

    /// Hooks run around it; it fails once so that `failed` runs too.
    #[operation(timestamp = "2024_07_01_000006", before = h_before, after = h_after, failed = h_failed, allowed_to_fail, tags = ["hooks"])]
    pub async fn q_hooks(ctx: &Ctx) -> Result<()> {
        start(ctx)?;
        hook(ctx, "run")?;
        anyhow::bail!("hooked failure")
    }

    async fn h_before(ctx: &Ctx) -> Result<()> {
        hook(ctx, "before")
    }

    async fn h_after(ctx: &Ctx) -> Result<()> {
        hook(ctx, "after")
    }

    async fn h_failed(ctx: &Ctx, error: &Error) -> Result<()> {
        hook(ctx, &format!("failed ({error})"))
    }

    #[operation(timestamp = "2024_07_01_000007", unique = "imports", unique_for = "1h", tags = ["locks"])]
    pub async fn q_unique(ctx: &Ctx) -> Result<()> {
        start(ctx).map(drop)
    }

    #[operation(timestamp = "2024_07_01_000008", middleware = [without_overlapping("reindex").expire_after("10m")], tags = ["locks"])]
    pub async fn q_overlap(ctx: &Ctx) -> Result<()> {
        start(ctx).map(drop)
    }

    #[operation(timestamp = "2024_07_01_000009", middleware = [rate_limited("burst")], tags = ["rate"])]
    pub async fn q_rate_1(ctx: &Ctx) -> Result<()> {
        start(ctx).map(drop)
    }

    #[operation(timestamp = "2024_07_01_000010", middleware = [rate_limited("burst")], tags = ["rate"])]
    pub async fn q_rate_2(ctx: &Ctx) -> Result<()> {
        start(ctx).map(drop)
    }

    #[operation(timestamp = "2024_07_01_000011", middleware = [rate_limited("burst")], tags = ["rate"])]
    pub async fn q_rate_3(ctx: &Ctx) -> Result<()> {
        start(ctx).map(drop)
    }

    /// Fails once; the throttle then stays closed for its 500 ms window before the retry.
    #[operation(timestamp = "2024_07_01_000012", retries = 2, middleware = [throttle_exceptions(1, "500ms").by("flaky-api")], tags = ["throttle"])]
    pub async fn q_throttle(ctx: &Ctx) -> Result<()> {
        if start(ctx)? == 1 {
            anyhow::bail!("the API is down");
        }
        Ok(())
    }

    /// Due 2 s after the run that first sees it.
    #[operation(timestamp = "2024_07_01_000013", delay = "2s", tags = ["schedule"])]
    pub async fn q_delayed(ctx: &Ctx) -> Result<()> {
        start(ctx).map(drop)
    }

    /// Due at a past instant: runs at once.
    #[operation(timestamp = "2024_07_01_000014", execute_at = "2020-01-01T00:00:00Z", tags = ["schedule"])]
    pub async fn q_past_due(ctx: &Ctx) -> Result<()> {
        start(ctx).map(drop)
    }
}
