//! Operation modules the integration tests load: inline modules depending on each other, a pair of modules whose
//! dependencies form a cycle only visible once merged, and a directory of operation files.

use std::sync::Mutex;

pub mod batch_ops;
pub mod ckpt_ops;
pub mod enc_ops;
pub mod ledger_ops;
pub mod mig_ops;
pub mod order_ops;
pub mod par_ops;
pub mod policy_ops;
pub mod rev_ops;
pub mod stuck_ops;
pub mod task_ops;
pub mod tx_ops;
pub mod work_ops;

/// What the operations ran, in order.
pub static RAN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Appends to [`RAN`].
pub fn record(what: &str) {
    RAN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(what.to_owned());
}

/// How many members of a batch have not ended yet (`pending` or `waiting`), read from the ledger's table with the
/// tables prefixed `<prefix>seq_`: what a batch callback of the suites records to show it ran after the last end.
pub async fn open_members(ctx: &sequencer::BatchCtx, prefix: &str) -> anyhow::Result<i64> {
    let id = ctx.id().0;
    Ok(sequencer::sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {prefix}seq_batch_members WHERE batch_id = {id} AND state IN ('pending', 'waiting')"
    ))
    .fetch_one(ctx.pool())
    .await?)
}

/// Inline operations.
#[sequencer::operations]
pub mod users {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000", rollback = drop_users, idempotent)]
    pub async fn create_users(_ctx: &Ctx) -> Result<()> {
        crate::record("create_users");
        Ok(())
    }

    async fn drop_users(_ctx: &Ctx) -> Result<()> {
        crate::record("drop_users");
        Ok(())
    }

    #[operation(timestamp = "20240115120001", name = "custom-name", depends_on = [create_users], should_run = only_first_attempt)]
    pub async fn invite_users(ctx: &Ctx) -> Result<()> {
        crate::record(&format!("invite_users attempt {}", ctx.attempt()));
        Err(anyhow::anyhow!("mail server down").context("inviting users"))
    }

    async fn only_first_attempt(ctx: &Ctx) -> bool {
        ctx.attempt() == 1
    }
}

/// Operations depending on another module's, by path.
#[sequencer::operations]
pub mod orders {
    use sequencer::prelude::*;

    #[operation(
        timestamp = "2024_01_01_000000",
        depends_on = [super::users::create_users, "2024_01_02_000000_index_orders"],
        failed = report,
        before = prepare,
        after = finish,
    )]
    pub async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        crate::record("backfill_orders");
        Err(std::io::Error::other("disk full").into())
    }

    #[operation(timestamp = "2024_01_02_000000")]
    pub async fn index_orders(_ctx: &Ctx) -> std::result::Result<(), std::fmt::Error> {
        crate::record("index_orders");
        Ok(())
    }

    async fn report(_ctx: &Ctx, error: &Error) -> Result<()> {
        crate::record(&format!("failed: {error}"));
        Ok(())
    }

    async fn prepare(_ctx: &Ctx) -> Result<()> {
        crate::record("before");
        Ok(())
    }

    async fn finish(_ctx: &Ctx) -> Result<()> {
        crate::record("after");
        Ok(())
    }
}

/// With `cycle_b`: a cycle across modules, which no single macro can see; the runtime's validator reports it.
#[sequencer::operations]
pub mod cycle_a {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_05_01_000000", depends_on = [super::cycle_b::second])]
    pub async fn first(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

/// See [`cycle_a`].
#[sequencer::operations]
pub mod cycle_b {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_05_02_000000", depends_on = [super::cycle_a::first])]
    pub async fn second(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

/// The directory form: `tests/operations/*.rs`.
#[sequencer::operations("operations")]
pub mod files {}
