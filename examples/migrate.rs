//! The migration strategy: `migrate` applies the schema migrations of `examples/migrations/` one at a time and,
//! after each, runs the operations whose timestamp is at or before its version; then the rest.
//!
//! ```sh
//! cargo run --example migrate -- migrate      # migrations and operations, interleaved by timestamp
//! cargo run --example migrate -- status
//! ```
//! The ledger and the tables live in `migrate-example.db` (override with `--database`).

use std::path::Path;
use std::process::ExitCode;

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;
    use sequencer::sqlx;

    /// Written after `create_users` and before `add_plan`: it runs between them.
    #[operation(timestamp = "2024_01_15_000000")]
    async fn seed_users(ctx: &Ctx) -> Result<()> {
        for (id, email) in [
            (1_i64, "ada@example.com"),
            (2, "bob@example.com"),
            (3, "cyd@example.com"),
        ] {
            sqlx::query("INSERT OR IGNORE INTO ex_users (id, email) VALUES (?, ?)")
                .bind(id)
                .bind(email)
                .execute(ctx.pool())
                .await?;
        }
        Ok(())
    }

    /// Needs the `plan` column: runs after `add_plan`, with progress and a checkpoint per user.
    #[operation(timestamp = "2024_02_10_000000", depends_on = [seed_users, migration(20240201000000)])]
    async fn backfill_plans(ctx: &Ctx) -> Result<()> {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM ex_users ORDER BY id")
            .fetch_all(ctx.pool())
            .await?;
        let start = ctx.last_checkpoint::<i64>().await?.unwrap_or(0);
        for (i, id) in ids.iter().enumerate().filter(|(_, id)| **id > start) {
            sqlx::query("UPDATE ex_users SET plan = 'free' WHERE id = ?")
                .bind(id)
                .execute(ctx.pool())
                .await?;
            ctx.checkpoint(id).await?;
            ctx.progress(i as u64 + 1, ids.len() as u64).await?;
        }
        Ok(())
    }

    /// After every migration.
    #[operation(timestamp = "2024_04_01_000000", depends_on = [migration(20240301000000)])]
    async fn first_invoices(ctx: &Ctx) -> Result<()> {
        sqlx::query(
            "INSERT OR IGNORE INTO ex_invoices (id, user_id, total) SELECT id, id, 0 FROM ex_users",
        )
        .execute(ctx.pool())
        .await?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let builder = sequencer::Sequencer::builder()
        .registry(ops::registry())
        .database("sqlite://migrate-example.db")
        .migrations(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")) // read by `build`
        .strategy(sequencer::Strategy::migration());
    sequencer::cli::run_with(builder)
}
