//! Operations between the reversible migrations of `tests/migrations/reversible/` (tables `rv_a`, `rv_b` and
//! `rv_c`), for the `migrate revert` suite. Each writes to a table a migration created, and its rollback deletes
//! from it: a rollback run after that migration was reverted fails (the table is gone), so the suite sees the
//! order too.

use std::sync::atomic::AtomicBool;

/// What the `stuck` operations do (registered as state by the suite).
#[derive(Debug, Default)]
pub struct RevertKnobs {
    /// The rollback of `s_flaky` fails while set.
    pub fail_rollback: AtomicBool,
}

/// Run under the migration strategy: `r_fill_a` after migration A, `r_fill_b` after B, `r_needs_c` (written
/// before B) once C is applied, and `r_late` after all of them.
#[sequencer::operations]
pub mod ops {
    use sequencer::prelude::*;
    use sequencer::sqlx;

    /// Between A (2024-01-01) and B (2024-02-01).
    #[operation(timestamp = "2024_01_15_000000", rollback = unfill_a)]
    pub async fn r_fill_a(ctx: &Ctx) -> Result<()> {
        sqlx::query("INSERT INTO rv_a (id) VALUES (1)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn unfill_a(ctx: &Ctx) -> Result<()> {
        sqlx::query("DELETE FROM rv_a").execute(ctx.pool()).await?;
        Ok(())
    }

    /// Written before B, but needs C (2024-03-01).
    #[operation(timestamp = "2024_01_20_000000", depends_on = [migration(20240301000000)], rollback = unfill_c)]
    pub async fn r_needs_c(ctx: &Ctx) -> Result<()> {
        sqlx::query("INSERT INTO rv_c (id) VALUES (1)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn unfill_c(ctx: &Ctx) -> Result<()> {
        sqlx::query("DELETE FROM rv_c WHERE id = 1")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    /// Between B and C.
    #[operation(timestamp = "2024_02_15_000000", rollback = unfill_b)]
    pub async fn r_fill_b(ctx: &Ctx) -> Result<()> {
        sqlx::query("INSERT INTO rv_b (id) VALUES (1)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn unfill_b(ctx: &Ctx) -> Result<()> {
        sqlx::query("DELETE FROM rv_b").execute(ctx.pool()).await?;
        Ok(())
    }

    /// After every migration.
    #[operation(timestamp = "2024_06_01_000000", rollback = unlate)]
    pub async fn r_late(ctx: &Ctx) -> Result<()> {
        sqlx::query("INSERT INTO rv_c (id) VALUES (2)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn unlate(ctx: &Ctx) -> Result<()> {
        sqlx::query("DELETE FROM rv_c WHERE id = 2")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }
}

/// Run by `process` after `migrate` (the command strategy): `c_tally`, written before C, depends on `c_needs_c`,
/// which needs C.
#[sequencer::operations]
pub mod chain {
    use sequencer::prelude::*;
    use sequencer::sqlx;

    /// After A.
    #[operation(timestamp = "2024_01_15_000000", rollback = unfill_a)]
    pub async fn c_fill_a(ctx: &Ctx) -> Result<()> {
        sqlx::query("INSERT INTO rv_a (id) VALUES (1)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn unfill_a(ctx: &Ctx) -> Result<()> {
        sqlx::query("DELETE FROM rv_a").execute(ctx.pool()).await?;
        Ok(())
    }

    /// Needs C.
    #[operation(timestamp = "2024_01_20_000000", depends_on = [migration(20240301000000)], rollback = unfill_c)]
    pub async fn c_needs_c(ctx: &Ctx) -> Result<()> {
        sqlx::query("INSERT INTO rv_c (id) VALUES (1)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn unfill_c(ctx: &Ctx) -> Result<()> {
        sqlx::query("DELETE FROM rv_c WHERE id = 1")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    /// Written before B and C, depends on `c_needs_c`.
    #[operation(timestamp = "2024_01_25_000000", depends_on = [c_needs_c], rollback = untally)]
    pub async fn c_tally(ctx: &Ctx) -> Result<()> {
        sqlx::query("INSERT INTO rv_c (id) VALUES (3)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn untally(ctx: &Ctx) -> Result<()> {
        sqlx::query("DELETE FROM rv_c WHERE id = 3")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }
}

/// After C, under the migration strategy: `s_warm` has no rollback, and the rollback of `s_flaky` fails while
/// [`RevertKnobs::fail_rollback`] is set.
#[sequencer::operations]
pub mod stuck {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;

    use sequencer::prelude::*;
    use sequencer::sqlx;

    /// No rollback.
    #[operation(timestamp = "2024_03_15_000000")]
    pub async fn s_warm(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Its rollback fails while the knob is set.
    #[operation(timestamp = "2024_03_20_000000", rollback = unflaky)]
    pub async fn s_flaky(ctx: &Ctx) -> Result<()> {
        sqlx::query("INSERT INTO rv_c (id) VALUES (4)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn unflaky(ctx: &Ctx) -> Result<()> {
        let knobs = ctx
            .state::<Arc<super::RevertKnobs>>()
            .ok_or_else(|| Error::msg("no RevertKnobs"))?;
        if knobs.fail_rollback.load(SeqCst) {
            return Err(Error::msg("the cache server is down"));
        }
        sqlx::query("DELETE FROM rv_c WHERE id = 4")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }
}
