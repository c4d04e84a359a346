//! What a long run does besides its work: log lines kept with the run (`ctx.log`), and what happens at each
//! checkpoint after it is stored: `cancel NAME`, `pause NAME` and the `throttle_on` condition.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Cancelled, Ctx, Recorder};
use crate::crypto::place;
use crate::events::Event;
use crate::ledger::dialect::Dialect;
use crate::ledger::logs::LOG_TRIM_EVERY;
use crate::result::Result;

/// How often a paused run looks for `resume NAME` (or `cancel NAME`).
const PAUSE_POLL: Duration = Duration::from_millis(250);

/// The first back-off of a throttled run; each next one doubles, up to [`THROTTLE_MAX_BACKOFF`].
const THROTTLE_FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest single back-off of a throttled run.
const THROTTLE_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs a ledger write on the operation's open transaction where the pool cannot write meanwhile (SQLite, whose
/// one writer is that transaction), else on the pool: `$write` is a closure-like `|on| future`.
macro_rules! on_row {
    ($ctx:expr, $rec:expr, |$on:ident| $write:expr) => {{
        let mut guard = $ctx.tx_conn()?;
        let sqlite = $rec.ledger.dialect() == Dialect::Sqlite;
        match guard
            .as_mut()
            .and_then(|g| if sqlite { g.conn() } else { None })
        {
            Some($on) => $write.await?,
            None => {
                let $on = $rec.ledger.pool();
                $write.await?
            }
        }
    }};
}

impl Ctx {
    /// Writes a line to this run's log, kept in the ledger with the run (sealed for an `encrypted` operation) and
    /// shown by `status NAME` and `logs NAME`. The ledger keeps the last 1,000 lines of each run. Outside a
    /// recorded run (`execute --no-record`, [`Ctx::detached`]) the line goes to `tracing` only.
    ///
    /// In a `transaction` operation on SQLite, a line written after the operation opened its transaction
    /// commits with it (SQLite's one writer is that transaction); elsewhere lines are written at once.
    pub async fn log(&self, line: impl Into<String>) -> Result<()> {
        let line = line.into();
        tracing::info!(operation = self.meta.name, "{line}");
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        let stored = if self.meta.encrypted {
            rec.keys
                .seal_for(&line, &place::log(self.meta.name, rec.run))?
        } else {
            line
        };
        let (name, run) = (self.meta.name, rec.run);
        on_row!(self, rec, |on| rec
            .ledger
            .append_log(on, name, run, &stored));
        if (self.log_lines.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(LOG_TRIM_EVERY) {
            on_row!(self, rec, |on| rec.ledger.trim_logs(on, name, run));
        }
        Ok(())
    }

    /// What a checkpoint does once it is stored: returns [`Cancelled`] after `cancel NAME`; holds while
    /// `pause NAME` asks it to (until `resume NAME`, or [`Cancelled`]); backs off while the operation's
    /// `throttle_on` condition returns true.
    pub(super) async fn at_checkpoint(&self, rec: &Recorder) -> Result<()> {
        let (cancel, pause) = rec.ledger.control(self.meta.name, rec.run).await?;
        if cancel || self.cancel.is_cancelled() {
            return Err(self.cancelled());
        }
        // A transaction open on SQLite holds the database's one write lock: holding it while paused would stop
        // every other writer, `resume NAME` too. Such a run pauses at its next checkpoint outside a transaction.
        let holds_sqlite_lock = rec.ledger.dialect() == Dialect::Sqlite
            && self.tx_conn()?.is_some_and(|mut g| g.conn().is_some());
        if pause != 0 && !holds_sqlite_lock {
            self.hold_while_paused(rec).await?;
            self.restart_rate();
        }
        if let Some(throttle_on) = rec.throttle_on {
            self.back_off_while(rec, throttle_on).await?;
        }
        Ok(())
    }

    /// After a run was held back, its rate is measured afresh (the wait is not its speed).
    fn restart_rate(&self) {
        self.rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .restart();
    }

    fn cancelled(&self) -> crate::result::Error {
        self.cancel.cancel();
        Cancelled {
            name: self.meta.name.to_owned(),
        }
        .into()
    }

    async fn hold_while_paused(&self, rec: &Recorder) -> Result<()> {
        let name = self.meta.name;
        rec.ledger.pause_holding(name, rec.run, &rec.token).await?;
        let _ = rec.events.send(Event::OperationPaused {
            via: rec.via,
            name: name.to_owned(),
        });
        let started = Instant::now();
        // The heartbeat renews the lease meanwhile.
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return Err(self.cancelled()),
                () = tokio::time::sleep(PAUSE_POLL) => {}
            }
            let (cancel, pause) = rec.ledger.control(name, rec.run).await?;
            if cancel {
                return Err(self.cancelled());
            }
            if pause == 0 {
                break;
            }
        }
        let _ = rec.events.send(Event::OperationResumed {
            via: rec.via,
            name: name.to_owned(),
            paused_ms: started.elapsed().as_millis() as u64,
        });
        Ok(())
    }

    async fn back_off_while(
        &self,
        rec: &Recorder,
        throttle_on: crate::registry::Condition,
    ) -> Result<()> {
        if !throttle_on(self).await {
            return Ok(());
        }
        self.restart_rate();
        let (name, run) = (self.meta.name, rec.run);
        on_row!(self, rec, |on| rec.ledger.throttled(on, name, run, true, 0));
        let started = Instant::now();
        let mut backoff = THROTTLE_FIRST_BACKOFF;
        let outcome = loop {
            tokio::select! {
                () = self.cancel.cancelled() => break Err(self.cancelled()),
                () = tokio::time::sleep(backoff) => {}
            }
            match rec.ledger.control(name, run).await {
                Ok((true, _)) => break Err(self.cancelled()),
                Ok(_) => {}
                Err(e) => break Err(e.into()),
            }
            if !throttle_on(self).await {
                break Ok(());
            }
            backoff = (backoff * 2).min(THROTTLE_MAX_BACKOFF);
        };
        let ms = started.elapsed().as_millis() as u64;
        on_row!(self, rec, |on| rec
            .ledger
            .throttled(on, name, run, false, ms));
        let _ = rec.events.send(Event::OperationThrottled {
            via: rec.via,
            name: name.to_owned(),
            throttled_ms: ms,
        });
        outcome
    }
}
