//! An operation that works through 40 items, storing a checkpoint after each and logging each item it handles
//! to `<prefix>items` and to its run's log (`ctx.log`); it resumes from its last checkpoint. While the file named
//! by `SEQTEST_THROTTLE_FILE` exists, its `throttle_on` condition holds it back at each checkpoint.

#[sequencer::operations]
pub mod ops {
    use std::time::Duration;

    use sequencer::prelude::*;
    use sequencer::sqlx;

    fn prefix() -> String {
        std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "ckpt_".into())
    }

    /// Throttled while the file `SEQTEST_THROTTLE_FILE` names exists.
    async fn throttled(_ctx: &Ctx) -> bool {
        std::env::var_os("SEQTEST_THROTTLE_FILE").is_some_and(|f| std::path::Path::new(&f).exists())
    }

    #[operation(timestamp = "2024_08_01_000000", throttle_on = throttled)]
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
            ctx.log(format!("handled item {item}")).await?;
            ctx.checkpoint(&item).await?;
            ctx.progress(item + 1, total).await?;
        }
        Ok(())
    }
}
