//! Operations and batch callbacks for the batch suite (`tests/batches.rs` and the `seqbatch` binary). Each
//! operation logs its name to `<prefix>batch_log`; each callback writes a row to `<prefix>batch_calls` with the time it ran and how many members of its batch had not ended then.

use sequencer::{sqlx, BatchCtx, Ctx, SequencerBuilder};

/// The suite's table prefix, as state of the sequencer.
pub struct Prefix(pub String);

/// Logs the operation's function name, then sleeps `SEQBATCH_SLOW_MS` if it is `c_slow`.
pub async fn log(ctx: &Ctx) -> anyhow::Result<()> {
    let name = ctx.operation().fn_name;
    let p = &ctx
        .state::<Prefix>()
        .ok_or_else(|| anyhow::anyhow!("no Prefix"))?
        .0;
    sqlx::query(&format!(
        "INSERT INTO {p}batch_log (name) VALUES ('{name}')"
    ))
    .execute(ctx.pool())
    .await?;
    if name == "c_slow" {
        let ms: u64 = std::env::var("SEQBATCH_SLOW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Ok(())
}

#[sequencer::operations]
pub mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_10_01_000000")]
    pub async fn b_0(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }
    #[operation(timestamp = "2024_10_01_000001")]
    pub async fn b_1(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }
    #[operation(timestamp = "2024_10_01_000002")]
    pub async fn b_2(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }
    #[operation(timestamp = "2024_10_01_000003")]
    pub async fn b_3(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }
    #[operation(timestamp = "2024_10_01_000004")]
    pub async fn b_4(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }
    #[operation(timestamp = "2024_10_01_000005")]
    pub async fn b_5(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }
    #[operation(timestamp = "2024_10_01_000006")]
    pub async fn b_6(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }
    #[operation(timestamp = "2024_10_01_000007")]
    pub async fn b_7(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }

    #[operation(timestamp = "2024_10_01_000100")]
    pub async fn b_fail(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await?;
        Err(Error::msg("b_fail fails"))
    }

    /// Cancels its batch.
    #[operation(timestamp = "2024_10_01_000101")]
    pub async fn b_cancel(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await?;
        let batch = ctx.batch().ok_or_else(|| Error::msg("not in a batch"))?;
        batch.cancel().await?;
        assert!(batch.cancelled().await?);
        Ok(())
    }

    /// Adds `b_extra` to its batch.
    #[operation(timestamp = "2024_10_01_000102")]
    pub async fn b_add(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await?;
        let batch = ctx.batch().ok_or_else(|| Error::msg("not in a batch"))?;
        batch.add(["b_extra"]).await
    }

    #[operation(timestamp = "2024_10_01_000103")]
    pub async fn b_extra(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }

    #[operation(timestamp = "2024_10_01_000200")]
    pub async fn c_one(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }

    /// Sleeps `SEQBATCH_SLOW_MS`; idempotent: run again after its worker died.
    #[operation(timestamp = "2024_10_01_000201", idempotent)]
    pub async fn c_slow(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }

    #[operation(timestamp = "2024_10_01_000202")]
    pub async fn c_three(ctx: &Ctx) -> Result<()> {
        super::log(ctx).await
    }
}

/// Records a callback's run in `<SEQTEST_PREFIX>batch_calls`.
async fn record(ctx: BatchCtx, kind: &'static str) -> anyhow::Result<()> {
    let p = &ctx
        .state::<Prefix>()
        .ok_or_else(|| anyhow::anyhow!("no Prefix"))?
        .0;
    let id = ctx.id().0;
    let open = crate::open_members(&ctx, p).await?;
    let at = sequencer::ledger::now_ms();
    let member = ctx.failed_member().unwrap_or("-").to_owned();
    sqlx::query(&format!(
        "INSERT INTO {p}batch_calls (batch_id, kind, at, open_members, member) VALUES ({id}, '{kind}', {at}, {open}, '{member}')"
    ))
    .execute(ctx.pool())
    .await?;
    Ok(())
}

/// The suite's sequencer: its operations and the callbacks `then`, `catch` and `finally`, its ledger tables
/// prefixed `<SEQTEST_PREFIX>seq_`.
pub fn builder(prefix: &str) -> SequencerBuilder {
    sequencer::Sequencer::builder()
        .registry(ops::registry())
        .table_prefix(format!("{prefix}seq_"))
        .state(Prefix(prefix.to_owned()))
        .batch_callback("then", |ctx| record(ctx, "then"))
        .batch_callback("catch", |ctx| record(ctx, "catch"))
        .batch_callback("finally", |ctx| record(ctx, "finally"))
}
