//! Transaction operations that read, then write, in their transaction: many processes running them at once
//! on one SQLite file is where a deferred `BEGIN` fails with `SQLITE_BUSY_SNAPSHOT`.

use std::time::Duration;

use sequencer::prelude::*;
use sequencer::sqlx;

/// The table the operations write, prefixed with `SEQTEST_PREFIX`.
pub fn table() -> String {
    format!(
        "{}tx_log",
        std::env::var("SEQTEST_PREFIX").unwrap_or_else(|_| "seqtx_".into())
    )
}

/// Counts the rows, waits a little, then appends one: a read that becomes a write in one transaction.
async fn read_then_write(ctx: &Ctx, name: &str) -> Result<()> {
    let t = table();
    let mut tx = ctx.tx().await?;
    let seen: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
        .fetch_one(&mut **tx)
        .await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    sqlx::query(&format!(
        "INSERT INTO {t} (name, seen) VALUES ('{name}', {seen})"
    ))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[sequencer::operations]
pub mod ops {
    use super::read_then_write;
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_09_01_000001", transaction)]
    pub async fn t01(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t01").await
    }

    #[operation(timestamp = "2024_09_01_000002", transaction)]
    pub async fn t02(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t02").await
    }

    #[operation(timestamp = "2024_09_01_000003", transaction)]
    pub async fn t03(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t03").await
    }

    #[operation(timestamp = "2024_09_01_000004", transaction)]
    pub async fn t04(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t04").await
    }

    #[operation(timestamp = "2024_09_01_000005", transaction)]
    pub async fn t05(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t05").await
    }

    #[operation(timestamp = "2024_09_01_000006", transaction)]
    pub async fn t06(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t06").await
    }

    #[operation(timestamp = "2024_09_01_000007", transaction)]
    pub async fn t07(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t07").await
    }

    #[operation(timestamp = "2024_09_01_000008", transaction)]
    pub async fn t08(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t08").await
    }

    #[operation(timestamp = "2024_09_01_000009", transaction)]
    pub async fn t09(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t09").await
    }

    #[operation(timestamp = "2024_09_01_000010", transaction)]
    pub async fn t10(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t10").await
    }

    #[operation(timestamp = "2024_09_01_000011", transaction)]
    pub async fn t11(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t11").await
    }

    #[operation(timestamp = "2024_09_01_000012", transaction)]
    pub async fn t12(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t12").await
    }

    #[operation(timestamp = "2024_09_01_000013", transaction)]
    pub async fn t13(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t13").await
    }

    #[operation(timestamp = "2024_09_01_000014", transaction)]
    pub async fn t14(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t14").await
    }

    #[operation(timestamp = "2024_09_01_000015", transaction)]
    pub async fn t15(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t15").await
    }

    #[operation(timestamp = "2024_09_01_000016", transaction)]
    pub async fn t16(ctx: &Ctx) -> Result<()> {
        read_then_write(ctx, "t16").await
    }

    /// Reports progress and stores a checkpoint in its transaction, then sleeps `SEQTX_SLOW_MS` (0 by default)
    /// inside it: its heartbeat must keep its claim alive meanwhile.
    #[operation(timestamp = "2024_09_01_000100", transaction)]
    pub async fn slow(ctx: &Ctx) -> Result<()> {
        drop(ctx.tx().await?); // begins its transaction (begun when first asked for)
        ctx.progress(1, 2).await?;
        ctx.checkpoint(&1).await?;
        let ms: u64 = std::env::var("SEQTX_SLOW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        ctx.progress(2, 2).await?;
        Ok(())
    }
}
