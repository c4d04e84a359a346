//! Workers: `asynchronous` operations are queued in the ledger database by `process` and run by any number of
//! `work` processes, on any number of machines sharing a PostgreSQL (or MySQL 8 / MariaDB 10.6+) ledger.
//!
//! ```sh
//! export SEQUENCER_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
//! for i in 1 2 3; do cargo run --example workers -- work & done   # three workers, woken by LISTEN/NOTIFY
//! cargo run --example workers -- work --queue imports &           # and one for the `imports` queue
//! cargo run --example workers -- process                           # the dispatcher: queues the operations
//! cargo run --example workers -- status
//! kill %1 %2 %3                                                    # SIGTERM: running jobs finish first
//! ```

use std::process::ExitCode;
use std::time::Duration;

#[sequencer::operations]
mod ops {
    use super::Duration;
    use sequencer::prelude::*;

    async fn pretend_work(ctx: &Ctx, ms: u64) -> Result<()> {
        for step in 1..=10 {
            tokio::time::sleep(Duration::from_millis(ms / 10)).await;
            ctx.progress(step, 10).await?;
        }
        Ok(())
    }

    /// Runs on the `default` queue; safe to run again if a worker dies mid-way.
    #[operation(timestamp = "2024_11_01_000000", asynchronous, idempotent)]
    async fn reindex_search(ctx: &Ctx) -> Result<()> {
        pretend_work(ctx, 2_000).await
    }

    /// Runs on the `imports` queue only (`work --queue imports`), retried on failure.
    #[operation(timestamp = "2024_11_01_000001", asynchronous, queue = "imports", retries = 3, backoff = [1, 5])]
    async fn import_customers(ctx: &Ctx) -> Result<()> {
        pretend_work(ctx, 3_000).await
    }

    #[operation(timestamp = "2024_11_01_000002", asynchronous, idempotent)]
    async fn warm_caches(ctx: &Ctx) -> Result<()> {
        pretend_work(ctx, 1_000).await
    }

    /// Not asynchronous: `process` runs it in the dispatcher itself.
    #[operation(timestamp = "2024_11_01_000003")]
    async fn announce(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() -> ExitCode {
    // The operations are independent: under the graph orchestrator the workers run them side by side and
    // `announce` runs at once. (Under the default `sequential` one, each waits for the one planned before it,
    // wherever it runs, and `process` waits for the workers before `announce`.)
    let builder = sequencer::Sequencer::builder()
        .registry(ops::registry())
        .orchestrator(sequencer::DependencyGraph);
    sequencer::cli::run_with(builder)
}
