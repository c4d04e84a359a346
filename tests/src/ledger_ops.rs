//! Operations for the ledger suites: each appends its name to `<prefix>log`, and switches in [`Knobs`] make
//! them fail, panic or sleep. The SQL avoids binds, so it runs unchanged on SQLite, PostgreSQL and MariaDB.

use std::sync::atomic::{AtomicBool, AtomicU64};

/// Per-test switches, registered as state.
#[derive(Debug, Default)]
pub struct Knobs {
    /// Prefix of this test's tables (letters, digits, `_`).
    pub prefix: String,
    /// `d_fail` fails.
    pub fail_d: AtomicBool,
    /// `e_optional` fails.
    pub fail_e: AtomicBool,
    /// `b_tx` fails after writing.
    pub fail_tx: AtomicBool,
    /// `i_panic` panics.
    pub panic_i: AtomicBool,
    /// `j_slow` and `k_idem` sleep this long.
    pub sleep_ms: AtomicU64,
    /// The rollback of `a_create` sleeps this long before it logs.
    pub rollback_sleep_ms: AtomicU64,
}

impl Knobs {
    /// Knobs from the environment, for the test binary: `SEQTEST_PREFIX`, `SEQTEST_SLEEP_MS`, `SEQTEST_FAIL_D`,
    /// `SEQTEST_ROLLBACK_SLEEP_MS`.
    pub fn from_env() -> Knobs {
        let var = |k: &str| std::env::var(k).ok();
        Knobs {
            prefix: var("SEQTEST_PREFIX").unwrap_or_else(|| "seqtest_".into()),
            fail_d: AtomicBool::new(var("SEQTEST_FAIL_D").is_some()),
            sleep_ms: AtomicU64::new(
                var("SEQTEST_SLEEP_MS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            rollback_sleep_ms: AtomicU64::new(
                var("SEQTEST_ROLLBACK_SLEEP_MS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            ..Knobs::default()
        }
    }
}

fn knobs(ctx: &sequencer::Ctx) -> anyhow::Result<&Knobs> {
    ctx.state::<Knobs>()
        .ok_or_else(|| anyhow::anyhow!("no Knobs state registered"))
}

/// Appends `what` to the log table, on the pool.
pub async fn log(ctx: &sequencer::Ctx, what: &str) -> anyhow::Result<()> {
    let p = &knobs(ctx)?.prefix;
    sequencer::sqlx::query(&format!("INSERT INTO {p}log (name) VALUES ('{what}')"))
        .execute(ctx.pool())
        .await?;
    Ok(())
}

/// The deferred handler `abort`: logs `abort`, then kills its own process, as a crash would.
pub fn abort(ctx: &sequencer::Ctx, _: ()) -> sequencer::BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async move {
        log(ctx, "abort").await?;
        std::process::abort()
    })
}

#[sequencer::operations]
pub mod ops {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    use sequencer::prelude::*;
    use sequencer::sqlx;

    use super::{knobs, log};

    #[operation(timestamp = "2024_01_01_000001", rollback = a_drop)]
    pub async fn a_create(ctx: &Ctx) -> Result<()> {
        let p = &knobs(ctx)?.prefix;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {p}log (name VARCHAR(191) NOT NULL)"
        ))
        .execute(ctx.pool())
        .await?;
        log(ctx, "a_create").await
    }

    async fn a_drop(ctx: &Ctx) -> Result<()> {
        let sleep = knobs(ctx)?.rollback_sleep_ms.load(SeqCst);
        tokio::time::sleep(Duration::from_millis(sleep)).await;
        log(ctx, "rollback a_create").await
    }

    #[operation(timestamp = "2024_01_01_000002", transaction, rollback = b_undo)]
    pub async fn b_tx(ctx: &Ctx) -> Result<()> {
        let k = knobs(ctx)?;
        {
            let mut tx = ctx.tx().await?;
            sqlx::query(&format!(
                "INSERT INTO {}log (name) VALUES ('b_tx')",
                k.prefix
            ))
            .execute(&mut **tx)
            .await?;
        }
        // Written through the same transaction: it commits, or rolls back, with the insert above.
        ctx.checkpoint("inserted").await?;
        if k.fail_tx.load(SeqCst) {
            anyhow::bail!("b_tx failed after writing");
        }
        Ok(())
    }

    async fn b_undo(ctx: &Ctx) -> Result<()> {
        log(ctx, "rollback b_tx").await
    }

    #[operation(timestamp = "2024_01_01_000004", rollback = d_undo)]
    pub async fn d_fail(ctx: &Ctx) -> Result<()> {
        log(ctx, "d_fail").await?;
        if knobs(ctx)?.fail_d.load(SeqCst) {
            let io = std::io::Error::other("connection reset by peer");
            return Err(anyhow::Error::new(io)
                .context("calling the billing API")
                .context("d_fail could not sync invoices"));
        }
        Ok(())
    }

    async fn d_undo(ctx: &Ctx) -> Result<()> {
        log(ctx, "rollback d_fail").await
    }

    #[operation(timestamp = "2024_01_01_000005", allowed_to_fail)]
    pub async fn e_optional(ctx: &Ctx) -> Result<()> {
        log(ctx, "e_optional").await?;
        if knobs(ctx)?.fail_e.load(SeqCst) {
            anyhow::bail!("optional step failed");
        }
        Ok(())
    }

    #[operation(timestamp = "2024_01_01_000006", environments = ["production"])]
    pub async fn f_env(ctx: &Ctx) -> Result<()> {
        log(ctx, "f_env").await
    }

    #[operation(timestamp = "2024_01_01_000007", should_run = never)]
    pub async fn g_cond(ctx: &Ctx) -> Result<()> {
        log(ctx, "g_cond").await
    }

    async fn never(_ctx: &Ctx) -> bool {
        false
    }

    #[operation(timestamp = "2024_01_01_000008")]
    pub async fn h_skip(_ctx: &Ctx) -> Result<()> {
        Err(Skip("nothing to do"))
    }

    #[operation(timestamp = "2024_01_01_000009")]
    pub async fn i_panic(ctx: &Ctx) -> Result<()> {
        if knobs(ctx)?.panic_i.load(SeqCst) {
            panic!("index out of range in i_panic");
        }
        log(ctx, "i_panic").await
    }

    #[operation(timestamp = "2024_01_01_000010")]
    pub async fn j_slow(ctx: &Ctx) -> Result<()> {
        let ms = knobs(ctx)?.sleep_ms.load(SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        log(ctx, "j_slow").await
    }

    #[operation(timestamp = "2024_01_01_000011", idempotent)]
    pub async fn k_idem(ctx: &Ctx) -> Result<()> {
        let ms = knobs(ctx)?.sleep_ms.load(SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        log(ctx, "k_idem").await
    }
}
