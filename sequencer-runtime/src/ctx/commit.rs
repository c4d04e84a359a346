//! A batch's writes and its checkpoint committed together: [`Ctx::commit_with_checkpoint`].

use sqlx::Transaction;

use super::Ctx;
use crate::ledger::CheckpointDb;
use crate::result::Result;

impl Ctx {
    /// Stores a checkpoint inside `tx`, a transaction the operation began on the ledger's database
    /// (`ctx.pool().begin()`, `ctx.postgres()?.begin()`, …), and commits it: the batch's writes and the cursor
    /// past them commit together or not at all, so a run killed at any moment resumes ([`Ctx::last_checkpoint`])
    /// exactly after the last batch that committed, and no row is handled twice. Then, as [`Ctx::checkpoint`]
    /// does, it returns [`Cancelled`](crate::Cancelled) after `cancel NAME`, holds after `pause NAME` and backs
    /// off while `throttle_on` returns true, outside any transaction.
    ///
    /// On SQLite, begin the batch's transaction with `BEGIN IMMEDIATE`
    /// (`ctx.sqlite()?.begin_with("BEGIN IMMEDIATE")`): a deferred one that reads and then writes fails with
    /// `SQLITE_BUSY_SNAPSHOT` when another connection (the run's heartbeat, a log line) wrote in between.
    ///
    /// If the run lost its claim (another process recovered it), the transaction is rolled back and an error
    /// returned. Not for `transaction` operations, whose one transaction commits with the ledger row: there use
    /// [`Ctx::checkpoint`].
    ///
    /// ```
    /// #[sequencer::operations]
    /// mod ops {
    ///     use sequencer::prelude::*;
    ///     use sequencer::sqlx;
    ///
    ///     #[operation(timestamp = "2024_01_15_120000")]
    ///     async fn number_items(ctx: &Ctx) -> Result<()> {
    ///         sqlx::query("CREATE TABLE IF NOT EXISTS numbered (n BIGINT NOT NULL)")
    ///             .execute(ctx.pool())
    ///             .await?;
    ///         let mut next: i64 = ctx.last_checkpoint().await?.unwrap_or(0);
    ///         while next < 100 {
    ///             let mut tx = ctx.pool().begin().await?;
    ///             for n in next..next + 10 {
    ///                 sqlx::query("INSERT INTO numbered (n) VALUES (?)")
    ///                     .bind(n)
    ///                     .execute(&mut *tx)
    ///                     .await?;
    ///             }
    ///             next += 10;
    ///             ctx.commit_with_checkpoint(tx, &next).await?;
    ///             ctx.progress(next as u64, 100).await?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let ledger = sequencer::testing::ledger(sequencer::Sequencer::builder().registry(ops::registry())).await.unwrap();
    /// # let report = ledger.sequencer.execute_all().await.unwrap();
    /// # assert!(report.succeeded(), "{report:?}");
    /// # }
    /// ```
    pub async fn commit_with_checkpoint<DB, T>(
        &self,
        mut tx: Transaction<'_, DB>,
        cursor: &T,
    ) -> Result<()>
    where
        DB: CheckpointDb,
        T: serde::Serialize + ?Sized,
    {
        if self.tx.is_some() {
            anyhow::bail!(
                "`{}` is a `transaction` operation: its writes commit with its ledger row, so \
                 `ctx.commit_with_checkpoint` cannot commit a batch of its own; use `ctx.checkpoint(..)` \
                 inside its transaction, or drop `transaction` to commit batch by batch",
                self.meta.name
            );
        }
        let Some(rec) = &self.recorder else {
            tx.commit().await?;
            return Ok(());
        };
        let json = self.stored_checkpoint(rec, cursor)?;
        let ours = rec
            .ledger
            .checkpoint(
                DB::conn(&mut *tx),
                self.meta.name,
                rec.run,
                Some(&rec.token),
                &json,
            )
            .await?;
        if !ours {
            // Dropping `tx` rolls the batch back.
            return Err(self.lost_claim());
        }
        tx.commit().await?;
        self.at_checkpoint(rec).await
    }
}
