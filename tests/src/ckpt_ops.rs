//! An operation that works through 40 items, storing a checkpoint after each and logging each item it handles
//! to `<prefix>items`; it resumes from its last checkpoint.

#[sequencer::operations]
pub mod ops {
    use std::time::Duration;

    use sequencer::prelude::*;
    use sequencer::sqlx;

    fn prefix() -> String {
        std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "ckpt_".into())
    }

    #[operation(timestamp = "2024_08_01_000000")]
    pub async fn c_items(ctx: &Ctx) -> Result<()> {
        let p = prefix();
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {p}items (item BIGINT NOT NULL)"
        ))
        .execute(ctx.pool())
        .await?;
        let sleep_ms: u64 = std::env::var("SEQTEST_SLEEP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let start = ctx
            .last_checkpoint::<u64>()
            .await?
            .map_or(0, |last| last + 1);
        let total = 40;
        for item in start..total {
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
            sqlx::query(&format!("INSERT INTO {p}items (item) VALUES ({item})"))
                .execute(ctx.pool())
                .await?;
            ctx.checkpoint(&item).await?;
            ctx.progress(item + 1, total).await?;
        }
        Ok(())
    }
}
