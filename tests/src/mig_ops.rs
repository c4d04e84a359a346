//! Operations interleaved with the schema migrations of `tests/migrations/`.

use std::sync::atomic::{AtomicBool, AtomicU64};

/// Whether `backfill_plan` fails (registered as state by the deploy test).
#[derive(Debug, Default)]
pub struct DeployKnobs {
    /// `backfill_plan` fails while set.
    pub fail: AtomicBool,
    /// `backfill_plan` sleeps this many milliseconds first.
    pub slow_ms: AtomicU64,
}

#[sequencer::operations]
pub mod ops {
    use sequencer::prelude::*;

    /// Before the first migration's version: runs before it.
    #[operation(timestamp = "2023_12_01_000000")]
    pub async fn m_early(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Between the first and the second migration: runs after the first, before the second.
    #[operation(timestamp = "2024_01_15_000000")]
    pub async fn m_between(ctx: &Ctx) -> Result<()> {
        sequencer::sqlx::query("SELECT COUNT(*) FROM mig_a")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    /// Its timestamp is before the second migration, but it needs the third.
    #[operation(timestamp = "2024_01_20_000000", depends_on = [migration(20240301000000)])]
    pub async fn m_needs_c(ctx: &Ctx) -> Result<()> {
        sequencer::sqlx::query("SELECT COUNT(*) FROM mig_c")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    /// After every migration.
    #[operation(timestamp = "2024_06_01_000000")]
    pub async fn m_late(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

/// The deploy a new user writes: `add_plan` adds a nullable column, this backfill fills it, `plan_not_null` makes it
/// `NOT NULL` (`tests/migrations/deploy_*`).
#[sequencer::operations]
pub mod deploy {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;

    use sequencer::prelude::*;

    /// Between `add_plan` (2024-02-01) and `plan_not_null` (2024-03-01).
    #[operation(timestamp = "2024_02_15_000000")]
    pub async fn backfill_plan(ctx: &Ctx) -> Result<()> {
        let knobs = ctx
            .state::<Arc<super::DeployKnobs>>()
            .ok_or_else(|| Error::msg("no DeployKnobs"))?;
        tokio::time::sleep(std::time::Duration::from_millis(knobs.slow_ms.load(SeqCst))).await;
        if knobs.fail.load(SeqCst) {
            return Err(Error::msg("the billing API is down"));
        }
        sequencer::sqlx::query("UPDATE dep_accounts SET plan = 'free' WHERE plan IS NULL")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }
}

/// For the hybrid strategy: one operation goes with the migrations, one waits for `process`.
#[sequencer::operations]
pub mod hybrid {
    use sequencer::prelude::*;

    /// Tagged: `migrate` runs it between the first and the second migration.
    #[operation(timestamp = "2024_01_15_000000", tags = ["with_migrations"])]
    pub async fn h_schema(ctx: &Ctx) -> Result<()> {
        sequencer::sqlx::query("SELECT COUNT(*) FROM mig_a")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    /// Untagged: `process` runs it.
    #[operation(timestamp = "2024_01_16_000000")]
    pub async fn h_other(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

/// An asynchronous operation between the first and the second migration (for `force_sync` and the workers).
#[sequencer::operations]
pub mod asyncmig {
    use sequencer::prelude::*;

    /// Needs `mig_a`, and must complete before `mig_b` is created.
    #[operation(timestamp = "2024_01_15_000000", asynchronous)]
    pub async fn a_fill(ctx: &Ctx) -> Result<()> {
        sequencer::sqlx::query("INSERT INTO mig_a (id) VALUES (1)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }
}
