//! Quick start: four operations in an inline module on the embedded SQLite ledger (`sequencer.db`).
//!
//! ```sh
//! cargo run --example quickstart -- process        # runs every pending operation, once
//! cargo run --example quickstart -- process        # nothing pending: exits 0
//! cargo run --example quickstart -- status --json
//! cargo run --example quickstart -- rollback --op create_roles
//! ```

use std::process::ExitCode;

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;
    use sequencer::sqlx;

    /// Creates the table the other operations fill.
    #[operation(timestamp = "2024_01_15_120000", rollback = drop_roles, tags = ["setup"])]
    async fn create_roles(ctx: &Ctx) -> Result<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS qs_roles (name TEXT PRIMARY KEY)")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    async fn drop_roles(ctx: &Ctx) -> Result<()> {
        sqlx::query("DROP TABLE IF EXISTS qs_roles")
            .execute(ctx.pool())
            .await?;
        Ok(())
    }

    /// Seeds the roles in a transaction committed together with its ledger row; it needs the table first even
    /// though its timestamp is earlier.
    #[operation(timestamp = "2024_01_10_090000", depends_on = [create_roles], transaction, retries = 3, backoff = [1, 5], timeout = "2m")]
    async fn seed_roles(ctx: &Ctx) -> Result<()> {
        let mut tx = ctx.tx().await?;
        for role in ["admin", "editor", "viewer"] {
            sqlx::query("INSERT OR IGNORE INTO qs_roles (name) VALUES (?)")
                .bind(role)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Only in production: recorded as skipped elsewhere, with the reason.
    #[operation(timestamp = "2024_01_20_000000", environments = ["production"])]
    async fn notify_admins(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_02_01_000000", allowed_to_fail, idempotent)]
    async fn warm_cache(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() -> ExitCode {
    sequencer::cli::run(ops::registry())
}
