//! The commands for long runs: `pause`, `resume` and `logs`.

use crate::crypto::place;
use crate::error::SequencerError;
use crate::ledger::LogLine;
use crate::sequencer::Sequencer;

impl Sequencer {
    /// Asks a running operation (in any process) to hold at its next `ctx.checkpoint(..)` until
    /// [`Sequencer::resume_operation`]: its checkpoint call waits there, its lease renewed, and `status` shows it
    /// `paused`. Unlike [`Sequencer::cancel_operation`] the run does not end. `false` if it is not running.
    pub async fn pause_operation(&self, name: &str) -> Result<bool, SequencerError> {
        let def = self.find(name)?;
        Ok(self.ledger().request_pause(def.meta.name).await?)
    }

    /// Lets an operation paused by [`Sequencer::pause_operation`] go on (a pause not yet reached is withdrawn).
    /// `false` if it was not paused.
    pub async fn resume_operation(&self, name: &str) -> Result<bool, SequencerError> {
        let def = self.find(name)?;
        Ok(self.ledger().request_resume(def.meta.name).await?)
    }

    /// The log lines (`ctx.log(..)`) of an operation's latest run after the line `after` (0 for all; a
    /// [`LogLine::id`] to read only newer ones), oldest first, opened for display. The ledger keeps the last
    /// 1,000 lines of each run.
    pub async fn logs(&self, name: &str, after: i64) -> Result<Vec<LogLine>, SequencerError> {
        let name = self.find(name).map(|d| d.meta.name).unwrap_or(name);
        let ledger = self.ledger();
        let Some(run) = ledger
            .rows()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.run)
        else {
            return Ok(Vec::new());
        };
        let keys = &self.inner.env.keys;
        let mut lines = ledger.logs(name, run, after).await?;
        for l in &mut lines {
            l.line = keys.show_at(&l.line, &place::log(&l.name, l.run));
        }
        Ok(lines)
    }
}
