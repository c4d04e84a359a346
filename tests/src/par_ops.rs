//! Operations for the orchestrator suites: a fan-out / fan-in graph with sleeps, a failing branch and an
//! allowed-to-fail one; each records how many operations run at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// Per-test switches and counters, registered as `Arc<ParKnobs>` state.
#[derive(Debug, Default)]
pub struct ParKnobs {
    /// Prefix of this test's tables.
    pub prefix: String,
    /// `p_fail` fails.
    pub fail: AtomicBool,
    /// `p_opt` (allowed to fail) fails.
    pub fail_opt: AtomicBool,
    /// Operations running now.
    pub running: AtomicUsize,
    /// The most that ran at once.
    pub max_running: AtomicUsize,
    /// Rollbacks in the order they ran.
    pub rollbacks: std::sync::Mutex<Vec<String>>,
}

fn knobs(ctx: &sequencer::Ctx) -> anyhow::Result<&Arc<ParKnobs>> {
    ctx.state::<Arc<ParKnobs>>()
        .ok_or_else(|| anyhow::anyhow!("no ParKnobs state"))
}

/// Counts itself as running for `ms`.
async fn work(ctx: &sequencer::Ctx, ms: u64) -> anyhow::Result<()> {
    let k = knobs(ctx)?;
    let now = k.running.fetch_add(1, SeqCst) + 1;
    k.max_running.fetch_max(now, SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    k.running.fetch_sub(1, SeqCst);
    Ok(())
}

async fn undo(ctx: &sequencer::Ctx) -> anyhow::Result<()> {
    let k = knobs(ctx)?;
    k.rollbacks
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(ctx.operation().fn_name.to_owned());
    Ok(())
}

#[sequencer::operations]
pub mod ops {
    use std::sync::atomic::Ordering::SeqCst;

    use sequencer::prelude::*;

    use super::{knobs, undo, work};

    #[operation(timestamp = "2024_06_01_000001", rollback = root_undo)]
    pub async fn p_root(ctx: &Ctx) -> Result<()> {
        work(ctx, 30).await
    }

    async fn root_undo(ctx: &Ctx) -> Result<()> {
        undo(ctx).await
    }

    #[operation(timestamp = "2024_06_01_000002", depends_on = [p_root])]
    pub async fn p_fail(ctx: &Ctx) -> Result<()> {
        work(ctx, 20).await?;
        if knobs(ctx)?.fail.load(SeqCst) {
            anyhow::bail!("p_fail failed on purpose");
        }
        Ok(())
    }

    #[operation(timestamp = "2024_06_01_000003", depends_on = [p_fail])]
    pub async fn p_after_fail(ctx: &Ctx) -> Result<()> {
        work(ctx, 5).await
    }

    #[operation(timestamp = "2024_06_01_000004", allowed_to_fail)]
    pub async fn p_opt(ctx: &Ctx) -> Result<()> {
        work(ctx, 10).await?;
        if knobs(ctx)?.fail_opt.load(SeqCst) {
            anyhow::bail!("p_opt failed, which is allowed");
        }
        Ok(())
    }

    #[operation(timestamp = "2024_06_01_000011", depends_on = [p_root], rollback = w1_undo)]
    pub async fn p_w1(ctx: &Ctx) -> Result<()> {
        work(ctx, 150).await
    }

    async fn w1_undo(ctx: &Ctx) -> Result<()> {
        undo(ctx).await
    }

    #[operation(timestamp = "2024_06_01_000012", depends_on = [p_root], rollback = w2_undo)]
    pub async fn p_w2(ctx: &Ctx) -> Result<()> {
        work(ctx, 100).await
    }

    async fn w2_undo(ctx: &Ctx) -> Result<()> {
        undo(ctx).await
    }

    #[operation(timestamp = "2024_06_01_000013", depends_on = [p_root])]
    pub async fn p_w3(ctx: &Ctx) -> Result<()> {
        work(ctx, 100).await
    }

    #[operation(timestamp = "2024_06_01_000014", depends_on = [p_root])]
    pub async fn p_w4(ctx: &Ctx) -> Result<()> {
        work(ctx, 100).await
    }

    #[operation(timestamp = "2024_06_01_000015", depends_on = [p_root])]
    pub async fn p_w5(ctx: &Ctx) -> Result<()> {
        work(ctx, 100).await
    }

    #[operation(timestamp = "2024_06_01_000016", depends_on = [p_root])]
    pub async fn p_w6(ctx: &Ctx) -> Result<()> {
        work(ctx, 100).await
    }

    #[operation(timestamp = "2024_06_01_000020", depends_on = [p_w1, p_w2, p_w3, p_w4, p_w5, p_w6])]
    pub async fn p_join(ctx: &Ctx) -> Result<()> {
        work(ctx, 10).await
    }
}
