//! A long run over a CSV file (feature `csv`): [`Ctx::csv`] streams its rows in batches, resumes after the last
//! batch a checkpoint recorded (by seeking to its byte offset, not by reading the file again), and reports
//! progress by rows.

use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::Transaction;

use crate::ctx::Ctx;
use crate::ledger::CheckpointDb;
use crate::result::Result;

/// The rows of a CSV file for an operation to work through, set up by [`Ctx::csv`]: the batch size and the
/// file's format, then [`CsvRows::open`] (or [`CsvRows::for_each`]).
pub struct CsvRows<'c, T> {
    ctx: &'c Ctx,
    path: PathBuf,
    batch: usize,
    delimiter: u8,
    has_headers: bool,
    row: PhantomData<fn() -> T>,
}

/// Where a CSV run stands: stored as the operation's checkpoint after each batch.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct CsvCursor {
    /// Rows handled.
    rows: u64,
    /// The byte offset of the next row.
    byte: u64,
    /// The line of the next row, from 1.
    line: u64,
}

/// An open CSV run: [`CsvBatches::next_batch`] reads the next rows, and [`CsvBatches::commit`] (exactly once,
/// with a transaction) or [`CsvBatches::checkpoint`] (at least once) records them handled.
pub struct CsvBatches<'c, T> {
    ctx: &'c Ctx,
    path: PathBuf,
    reader: csv::Reader<File>,
    headers: Option<csv::StringRecord>,
    record: csv::StringRecord,
    batch: usize,
    total: u64,
    /// Where the handled rows end (what the last checkpoint says).
    handled: CsvCursor,
    /// Where the rows read so far end.
    read: CsvCursor,
    resumed_at: u64,
    row: PhantomData<fn() -> T>,
}

impl Ctx {
    /// The rows of the CSV file at `path`, each deserialized as `T` (by header name when the file has headers,
    /// which it does unless [`CsvRows::has_headers`] says not), read in batches of 1,000 (see
    /// [`CsvRows::batch`]). The file is streamed: memory holds one batch, not the file. Its rows are counted
    /// first (one streamed pass) so that progress says `rows done/rows in the file`, with an ETA.
    ///
    /// The run's checkpoint belongs to the CSV: after each batch it records the rows handled and where the next
    /// one starts, and a retried run continues there (seeking to that byte, not reading what was handled). With
    /// [`CsvBatches::commit`] the batch's writes and its checkpoint commit in one transaction, so each row is
    /// handled exactly once even if the process is killed; [`CsvRows::for_each`] and
    /// [`CsvBatches::checkpoint`] record a batch after it, so a batch cut short is done again (at least once).
    ///
    /// ```
    /// #[sequencer::operations]
    /// mod ops {
    ///     use sequencer::prelude::*;
    ///     use sequencer::sqlx;
    ///
    ///     #[derive(serde::Deserialize)]
    ///     struct Price {
    ///         sku: String,
    ///         cents: i64,
    ///     }
    ///
    ///     #[operation(timestamp = "2024_01_15_120000")]
    ///     async fn import_prices(ctx: &Ctx) -> Result<()> {
    ///         let path = std::env::temp_dir().join(format!("prices-{}.csv", std::process::id()));
    ///         std::fs::write(&path, "sku,cents\na-1,250\nb-2,1000\nc-3,75\n")?;
    ///         sqlx::query("CREATE TABLE IF NOT EXISTS prices (sku TEXT PRIMARY KEY, cents BIGINT NOT NULL)")
    ///             .execute(ctx.pool())
    ///             .await?;
    ///         let mut rows = ctx.csv::<Price>(&path).batch(2).open().await?;
    ///         while let Some(batch) = rows.next_batch()? {
    ///             let mut tx = ctx.pool().begin().await?;
    ///             for price in batch {
    ///                 sqlx::query("INSERT INTO prices (sku, cents) VALUES (?, ?)")
    ///                     .bind(price.sku)
    ///                     .bind(price.cents)
    ///                     .execute(&mut *tx)
    ///                     .await?;
    ///             }
    ///             rows.commit(tx).await?; // the rows and the checkpoint after them, together
    ///         }
    ///         ctx.log(format!("{} prices imported", rows.rows_done())).await?;
    ///         std::fs::remove_file(&path)?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let ledger = sequencer::testing::ledger(sequencer::Sequencer::builder().registry(ops::registry())).await.unwrap();
    /// # let report = ledger.sequencer.execute_all().await.unwrap();
    /// # assert!(report.succeeded(), "{report:?}");
    /// # let status = ledger.sequencer.status().await.unwrap();
    /// # assert_eq!((status[0].progress_done, status[0].progress_total), (Some(3), Some(3)));
    /// # }
    /// ```
    pub fn csv<T: DeserializeOwned>(&self, path: impl AsRef<Path>) -> CsvRows<'_, T> {
        CsvRows {
            ctx: self,
            path: path.as_ref().to_path_buf(),
            batch: 1000,
            delimiter: b',',
            has_headers: true,
            row: PhantomData,
        }
    }
}

impl<'c, T: DeserializeOwned> CsvRows<'c, T> {
    /// Rows per batch (default 1,000; at least 1).
    pub fn batch(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// The field delimiter (default `b','`; `b';'`, `b'\t'`, …).
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Whether the first line names the columns (default true). Without headers, `T` is deserialized by
    /// position (a tuple, or a struct whose fields are in the file's order).
    pub fn has_headers(mut self, yes: bool) -> Self {
        self.has_headers = yes;
        self
    }

    fn reader(&self) -> Result<csv::Reader<File>> {
        let file = File::open(&self.path).map_err(|e| {
            anyhow::anyhow!("cannot open the CSV file `{}`: {e}", self.path.display())
        })?;
        Ok(csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(self.has_headers)
            .from_reader(file))
    }

    /// Counts the rows (a streamed pass), opens the file and moves past the rows the last checkpoint of this
    /// run recorded handled.
    pub async fn open(self) -> Result<CsvBatches<'c, T>> {
        let mut total = 0u64;
        let mut counting = self.reader()?;
        let mut record = csv::ByteRecord::new();
        while counting
            .read_byte_record(&mut record)
            .map_err(|e| bad_row(&self.path, e))?
        {
            total += 1;
        }
        let mut reader = self.reader()?;
        let headers = if self.has_headers {
            Some(
                reader
                    .headers()
                    .map_err(|e| bad_row(&self.path, e))?
                    .clone(),
            )
        } else {
            None
        };
        let handled: CsvCursor = self.ctx.last_checkpoint().await?.unwrap_or_default();
        if handled.rows > 0 {
            if handled.rows > total {
                anyhow::bail!(
                    "the CSV file `{}` has {total} rows, but this run's checkpoint says {} were handled: the file \
                     changed since; restore it, or roll the operation back to start afresh",
                    self.path.display(),
                    handled.rows
                );
            }
            let mut at = csv::Position::new();
            at.set_byte(handled.byte)
                .set_line(handled.line)
                .set_record(handled.rows + u64::from(self.has_headers));
            reader.seek(at).map_err(|e| bad_row(&self.path, e))?;
            self.ctx
                .log(format!(
                    "resuming `{}` after row {} of {total}",
                    self.path.display(),
                    handled.rows
                ))
                .await?;
        }
        self.ctx.progress(handled.rows, total).await?;
        Ok(CsvBatches {
            ctx: self.ctx,
            path: self.path,
            reader,
            headers,
            record: csv::StringRecord::new(),
            batch: self.batch,
            total,
            handled,
            read: handled,
            resumed_at: handled.rows,
            row: PhantomData,
        })
    }

    /// Runs `f` on each batch and then records it handled ([`CsvBatches::checkpoint`]): at least once (a batch
    /// cut short by a kill is done again on retry). For exactly once, write the batch in a transaction and
    /// [`CsvBatches::commit`] it (see [`Ctx::csv`]). Returns the rows handled by this attempt.
    pub async fn for_each<F, Fut>(self, mut f: F) -> Result<u64>
    where
        F: FnMut(Vec<T>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let mut rows = self.open().await?;
        while let Some(batch) = rows.next_batch()? {
            f(batch).await?;
            rows.checkpoint().await?;
        }
        Ok(rows.rows_done() - rows.resumed_at)
    }
}

impl<T: DeserializeOwned> CsvBatches<'_, T> {
    /// The next batch of rows (up to the batch size; `None` at the end of the file). A row that does not fit
    /// `T` is an error naming its line.
    pub fn next_batch(&mut self) -> Result<Option<Vec<T>>> {
        let mut out = Vec::with_capacity(self.batch.min(4096));
        while out.len() < self.batch {
            let more = self
                .reader
                .read_record(&mut self.record)
                .map_err(|e| bad_row(&self.path, e))?;
            if !more {
                break;
            }
            let line = self.record.position().map_or(0, csv::Position::line);
            let row: T = self
                .record
                .deserialize(self.headers.as_ref())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "line {line} of the CSV file `{}` does not fit the row type: {e}",
                        self.path.display()
                    )
                })?;
            out.push(row);
        }
        let next = self.reader.position();
        self.read = CsvCursor {
            rows: self.read.rows + out.len() as u64,
            byte: next.byte(),
            line: next.line(),
        };
        Ok((!out.is_empty()).then_some(out))
    }

    /// Commits `tx` (a transaction on the ledger's database holding the batch's writes) together with the
    /// checkpoint after the rows read so far ([`Ctx::commit_with_checkpoint`]), then reports progress: each row
    /// is handled exactly once, even if the process is killed at any moment.
    pub async fn commit<DB: CheckpointDb>(&mut self, tx: Transaction<'_, DB>) -> Result<()> {
        self.ctx.commit_with_checkpoint(tx, &self.read).await?;
        self.handled = self.read;
        self.ctx.progress(self.handled.rows, self.total).await
    }

    /// Records the rows read so far handled ([`Ctx::checkpoint`]) and reports progress: a batch whose writes
    /// were done outside a transaction, at least once.
    pub async fn checkpoint(&mut self) -> Result<()> {
        self.ctx.checkpoint(&self.read).await?;
        self.handled = self.read;
        self.ctx.progress(self.handled.rows, self.total).await
    }

    /// Rows recorded handled, this attempt and the earlier ones of the run.
    pub fn rows_done(&self) -> u64 {
        self.handled.rows
    }

    /// Rows in the file.
    pub fn rows_total(&self) -> u64 {
        self.total
    }
}

/// A CSV error, with the file named.
fn bad_row(path: &Path, e: csv::Error) -> crate::result::Error {
    anyhow::anyhow!("the CSV file `{}`: {e}", path.display())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::ctx::Ctx;
    use crate::registry::BLANK_META;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "sequencer-csv-{}-{}-{name}.csv",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, text).expect("write the CSV");
        path
    }

    #[tokio::test]
    async fn rows_come_in_batches_and_a_row_that_does_not_fit_names_its_line() {
        let ctx = Ctx::detached(&BLANK_META, 1, Arc::default());
        let path = file("ok", "id;name\n1;a\n2;\"b;c\"\n3;d\n");
        let mut rows = ctx
            .csv::<(i64, String)>(&path)
            .delimiter(b';')
            .batch(2)
            .open()
            .await
            .expect("open");
        assert_eq!(rows.rows_total(), 3);
        let first = rows.next_batch().expect("read").expect("a batch");
        assert_eq!(first, [(1, "a".to_owned()), (2, "b;c".to_owned())]);
        rows.checkpoint().await.expect("checkpoint");
        assert_eq!(rows.rows_done(), 2);
        assert_eq!(
            rows.next_batch().expect("read"),
            Some(vec![(3, "d".to_owned())])
        );
        rows.checkpoint().await.expect("checkpoint");
        assert_eq!(rows.next_batch().expect("read"), None);
        assert_eq!(rows.rows_done(), 3);

        let bad = file("bad", "id,name\n1,a\nx,b\n");
        let mut rows = ctx.csv::<(i64, String)>(&bad).open().await.expect("open");
        let e = rows
            .next_batch()
            .expect_err("`x` is not a number")
            .to_string();
        assert!(e.contains("line 3 of the CSV file"), "{e}");
        let missing = ctx.csv::<(i64,)>("/nonexistent/rows.csv").open().await;
        let e = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains("cannot open the CSV file `/nonexistent/rows.csv`"),
            "{e}"
        );
        for p in [path, bad] {
            let _ = std::fs::remove_file(p);
        }
    }
}
