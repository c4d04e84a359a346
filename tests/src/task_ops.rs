//! Tasks for the tasks suite (`tests/tasks.rs`) and its worker binary `seqtask`: each run logs itself to
//! `<prefix>task_log` (the prefix from the `Prefix` state, else `SEQTEST_PREFIX`), and sleeps `SEQTEST_SLEEP_MS`
//! where it says so.

/// The table prefix of a suite's log table, registered with `.state(Prefix(..))`.
#[derive(Debug, Clone)]
pub struct Prefix(pub String);

/// Appends `(what, customer, attempt)` to the log table.
pub async fn log(ctx: &sequencer::Ctx, what: &str, customer: i64) -> anyhow::Result<()> {
    let prefix = match ctx.state::<Prefix>() {
        Some(p) => p.0.clone(),
        None => std::env::var("SEQTEST_PREFIX").unwrap_or_default(),
    };
    // Values of this suite only (no quotes in them): written into the statement, as `work_ops` does.
    let attempt = ctx.attempt();
    sequencer::sqlx::query(&format!(
        "INSERT INTO {prefix}task_log (what, customer, attempt) VALUES ('{what}', {customer}, {attempt})"
    ))
    .execute(ctx.pool())
    .await?;
    Ok(())
}

/// Sleeps `SEQTEST_SLEEP_MS`, if set.
pub async fn nap() {
    let ms: u64 = std::env::var("SEQTEST_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

#[sequencer::operations]
pub mod ops {
    use sequencer::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A customer to re-price.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Reprice {
        pub customer_id: i64,
    }

    /// Fails until attempt `succeed_on`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Flaky {
        pub succeed_on: u32,
    }

    #[task(
        queue = "billing",
        idempotent,
        unique = customer_key,
        tags = tags_of,
        before = before_reprice,
        after = after_reprice,
    )]
    pub async fn reprice(ctx: &Ctx, args: Reprice) -> Result<()> {
        crate::task_ops::log(ctx, "reprice", args.customer_id).await?;
        crate::task_ops::nap().await;
        Ok(())
    }

    fn customer_key(args: &Reprice) -> String {
        format!("customer:{}", args.customer_id)
    }

    fn tags_of(args: &Reprice) -> Vec<String> {
        vec![format!("customer:{}", args.customer_id)]
    }

    async fn before_reprice(ctx: &Ctx) -> Result<()> {
        let args: Reprice = serde_json::from_str(ctx.task_args_json().unwrap_or("null"))?;
        crate::task_ops::log(ctx, "before", args.customer_id).await
    }

    async fn after_reprice(ctx: &Ctx) -> Result<()> {
        let args: Reprice = serde_json::from_str(ctx.task_args_json().unwrap_or("null"))?;
        crate::task_ops::log(ctx, "after", args.customer_id).await
    }

    /// Not idempotent: a run whose worker died is left `interrupted`.
    #[task(queue = "billing", tags = ["once"])]
    pub async fn once(ctx: &Ctx, args: Reprice) -> Result<()> {
        crate::task_ops::log(ctx, "once", args.customer_id).await?;
        crate::task_ops::nap().await;
        Ok(())
    }

    #[task(retries = 3, backoff = ["10ms", "20ms"])]
    pub async fn flaky(ctx: &Ctx, args: Flaky) -> Result<()> {
        crate::task_ops::log(ctx, "flaky", 0).await?;
        if ctx.attempt() < args.succeed_on {
            return Err(Error::msg(format!("attempt {} fails", ctx.attempt())));
        }
        Ok(())
    }

    #[task(timeout = "200ms")]
    pub async fn slow(_ctx: &Ctx, args: Reprice) -> Result<()> {
        tokio::time::sleep(std::time::Duration::from_secs(args.customer_id as u64)).await;
        Ok(())
    }

    /// Two runs for one customer never overlap: each logs `span:<end>` with its start (Unix milliseconds).
    #[task(queue = "tenants", without_overlapping = customer_key)]
    pub async fn exclusive(ctx: &Ctx, args: Reprice) -> Result<()> {
        let _ = args;
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let start = now();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        crate::task_ops::log(ctx, &format!("span:{}", now()), start).await
    }

    /// A member of a batch that adds a `reprice` of customer `customer_id + 1000` to its batch (`task_batches`).
    #[task(queue = "billing")]
    pub async fn fan_out(ctx: &Ctx, args: Reprice) -> Result<()> {
        crate::task_ops::log(ctx, "fan_out", args.customer_id).await?;
        let batch = ctx.batch().ok_or_else(|| Error::msg("not in a batch"))?;
        batch
            .add([sequencer::BatchMember::task::<reprice>(Reprice {
                customer_id: args.customer_id + 1000,
            })])
            .await
    }

    /// An asynchronous one-time operation, for `execute_sync`.
    #[operation(timestamp = "2024_06_01_000000", asynchronous, queue = "billing")]
    pub async fn queued_op(ctx: &Ctx) -> Result<()> {
        crate::task_ops::log(ctx, "queued_op", 0).await
    }
}

/// The tasks suites' sequencer (the `seqtask` binary's): the tasks of [`ops`], the log's prefix as state, the
/// ledger's tables prefixed `<prefix>seq_`, the batch callback `reprice_done`, which logs `("then", members
/// not ended, 0)`, and the batch callback `slow_then`, which logs `("cb_start", batch id, 0)`, sleeps
/// `SEQTEST_CALLBACK_SLEEP_MS` and logs `("cb_end", batch id, 0)`.
pub fn builder(prefix: &str) -> sequencer::SequencerBuilder {
    let p = prefix.to_owned();
    sequencer::Sequencer::builder()
        .registry(ops::registry())
        .state(Prefix(prefix.to_owned()))
        .table_prefix(format!("{prefix}seq_"))
        .batch_callback("reprice_done", move |ctx: sequencer::BatchCtx| {
            let p = p.clone();
            async move {
                let open = crate::open_members(&ctx, &p).await?;
                sequencer::sqlx::query(&format!(
                    "INSERT INTO {p}task_log (what, customer, attempt) VALUES ('then', {open}, 0)"
                ))
                .execute(ctx.pool())
                .await?;
                Ok(())
            }
        })
        .batch_callback("slow_then", {
            let p = prefix.to_owned();
            move |ctx: sequencer::BatchCtx| {
                let p = p.clone();
                async move { slow_then(&ctx, &p).await }
            }
        })
}

/// The batch callback `slow_then`: logs `("cb_start", batch id, 0)`, sleeps `SEQTEST_CALLBACK_SLEEP_MS` (a worker
/// to kill mid-callback), then logs `("cb_end", batch id, 0)`.
async fn slow_then(ctx: &sequencer::BatchCtx, p: &str) -> sequencer::Result<()> {
    let id = ctx.id().0;
    let log = |what: &str| {
        format!("INSERT INTO {p}task_log (what, customer, attempt) VALUES ('{what}', {id}, 0)")
    };
    sequencer::sqlx::query(&log("cb_start"))
        .execute(ctx.pool())
        .await?;
    let sleep = std::env::var("SEQTEST_CALLBACK_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis(sleep)).await;
    sequencer::sqlx::query(&log("cb_end"))
        .execute(ctx.pool())
        .await?;
    Ok(())
}

/// An `encrypted` task, apart: a registry with it needs a key.
#[sequencer::operations]
pub mod sealed {
    use sequencer::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Secret data.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Secret {
        pub ssn: String,
    }

    #[task(encrypted)]
    pub async fn secret(ctx: &Ctx, args: Secret) -> Result<()> {
        crate::task_ops::log(ctx, &args.ssn, 0).await
    }
}
