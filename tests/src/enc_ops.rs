//! An `encrypted` operation whose error, checkpoint and log line carry a secret.

#[sequencer::operations]
pub mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_10_01_000000", encrypted)]
    pub async fn e_secret(ctx: &Ctx) -> Result<()> {
        ctx.checkpoint("cursor sk_live_123").await?;
        ctx.log("calling the API with sk_live_123").await?;
        anyhow::bail!("the API rejected token sk_live_123")
    }
}
