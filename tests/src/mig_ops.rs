//! Operations interleaved with the schema migrations of `tests/migrations/`.

#[sequencer::operations]
pub mod ops {
    use sequencer::prelude::*;

    /// Before the first migration's version: runs right after it.
    #[operation(timestamp = "2023_12_01_000000")]
    pub async fn m_early(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Between the first and the second migration: runs after the second (the first migration whose version is
    /// at or after its timestamp), before the third.
    #[operation(timestamp = "2024_01_15_000000")]
    pub async fn m_between(ctx: &Ctx) -> Result<()> {
        sequencer::sqlx::query("SELECT COUNT(*) FROM mig_b")
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
