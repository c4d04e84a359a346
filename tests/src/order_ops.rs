//! Operations for the suite of asynchronous operations in plan order: a table created here, filled on a worker,
//! read here again, then a chain of two queued operations.

use std::sync::{Arc, Mutex};

use sequencer::sqlx;

/// Per-test state, registered as `Arc<OrderKnobs>`.
#[derive(Debug, Default)]
pub struct OrderKnobs {
    /// Prefix of this test's tables.
    pub prefix: String,
    /// The operations in the order they ended, wherever they ran.
    pub log: Mutex<Vec<String>>,
}

fn knobs(ctx: &sequencer::Ctx) -> anyhow::Result<&Arc<OrderKnobs>> {
    ctx.state::<Arc<OrderKnobs>>()
        .ok_or_else(|| anyhow::anyhow!("no OrderKnobs state"))
}

fn log(ctx: &sequencer::Ctx) -> anyhow::Result<()> {
    knobs(ctx)?
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(ctx.operation().fn_name.to_owned());
    Ok(())
}

/// The operations, in plan order.
#[sequencer::operations]
pub mod ops {
    use super::*;
    use sequencer::prelude::*;

    /// Here: creates the table.
    #[operation(timestamp = "2024_07_01_000001")]
    pub async fn create_items(ctx: &Ctx) -> Result<()> {
        let p = &knobs(ctx)?.prefix;
        sqlx::query(&format!("CREATE TABLE {p}order_items (id INT NOT NULL)"))
            .execute(ctx.pool())
            .await?;
        log(ctx)
    }

    /// On a worker, no `depends_on`: fails unless `create_items` ran first.
    #[operation(timestamp = "2024_07_01_000002", asynchronous)]
    pub async fn fill_items(ctx: &Ctx) -> Result<()> {
        let p = &knobs(ctx)?.prefix;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        sqlx::query(&format!("INSERT INTO {p}order_items (id) VALUES (1)"))
            .execute(ctx.pool())
            .await?;
        log(ctx)
    }

    /// Here: fails unless `fill_items` has completed.
    #[operation(timestamp = "2024_07_01_000003")]
    pub async fn count_items(ctx: &Ctx) -> Result<()> {
        let p = &knobs(ctx)?.prefix;
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {p}order_items"))
            .fetch_one(ctx.pool())
            .await?;
        if n != 1 {
            return Err(Error::msg(format!("expected the filled row, found {n}")));
        }
        log(ctx)
    }

    /// On a worker, after everything before it.
    #[operation(timestamp = "2024_07_01_000004", asynchronous)]
    pub async fn first_link(ctx: &Ctx) -> Result<()> {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        log(ctx)
    }

    /// On a worker, after `first_link`.
    #[operation(timestamp = "2024_07_01_000005", asynchronous, depends_on = [first_link])]
    pub async fn second_link(ctx: &Ctx) -> Result<()> {
        log(ctx)
    }
}
