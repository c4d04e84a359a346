//! A worker's completer: the completions of the runs it claimed with their jobs wait here, their claims and jobs
//! still held and renewed, until one transaction acknowledges a batch of them ([`Ledger::ack_completed`]): when
//! `ack_batch` wait, when the oldest has waited `ack_interval`, or at once when nothing else runs. One
//! acknowledgement is in flight at a time; completions gather behind it.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::lease::HeldGuard;
use crate::ledger::acks::Ack;
use crate::ledger::error::LedgerError;
use crate::ledger::jobs::Job;
use crate::ledger::Ledger;
use crate::registry::OperationDef;

/// A completion waiting for its acknowledgement.
pub(super) struct Pending {
    pub job: Job,
    pub def: &'static OperationDef,
    pub token: String,
    pub duration: Duration,
    /// The run's claim and the job, held (renewed by the worker) until acknowledged.
    pub _held: (HeldGuard, HeldGuard),
}

/// What an acknowledgement came to: the completions it carried, and the tokens of the runs recorded `completed`.
pub(super) type Flushed = (Vec<Pending>, Result<Vec<String>, LedgerError>);

pub(super) struct Completer {
    pending: Vec<Pending>,
    oldest: Option<Instant>,
    flushing: JoinSet<Flushed>,
    batch: usize,
    every: Duration,
}

impl Completer {
    pub(super) fn new(batch: usize, every: Duration) -> Self {
        Completer {
            pending: Vec::new(),
            oldest: None,
            flushing: JoinSet::new(),
            batch: batch.max(1),
            every,
        }
    }

    pub(super) fn push(&mut self, p: Pending) {
        self.oldest.get_or_insert_with(Instant::now);
        self.pending.push(p);
    }

    /// Whether completions wait for an acknowledgement, or one is under way.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.flushing.is_empty()
    }

    /// Whether an acknowledgement should start now (`idle`: no job of the worker is running).
    pub(super) fn due(&self, idle: bool) -> bool {
        self.flushing.is_empty()
            && !self.pending.is_empty()
            && (idle
                || self.pending.len() >= self.batch
                || self.oldest.is_some_and(|t| t.elapsed() >= self.every))
    }

    /// Whether an acknowledgement is under way.
    pub(super) fn in_flight(&self) -> bool {
        !self.flushing.is_empty()
    }

    /// Whether completions wait with no acknowledgement under way (so [`Completer::deadline`] means something).
    pub(super) fn waiting(&self) -> bool {
        self.flushing.is_empty() && !self.pending.is_empty()
    }

    /// When the oldest waiting completion will have waited `ack_interval` (now, when none waits).
    pub(super) fn deadline(&self) -> tokio::time::Instant {
        self.oldest
            .map_or_else(Instant::now, |t| t + self.every)
            .into()
    }

    /// Starts acknowledging up to `ack_batch` waiting completions.
    pub(super) fn start(&mut self, ledger: &Ledger, worker: &str) {
        let take = self.pending.len().min(self.batch);
        let batch: Vec<Pending> = self.pending.drain(..take).collect();
        self.oldest = if self.pending.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        let (ledger, worker) = (ledger.clone(), worker.to_owned());
        self.flushing.spawn(async move {
            let acks: Vec<Ack> = batch
                .iter()
                .map(|p| Ack {
                    job: p.job.id,
                    name: p.job.name.clone(),
                    run: p.job.run,
                    token: p.token.clone(),
                    duration: p.duration,
                })
                .collect();
            let done = ledger.ack_completed(&worker, &acks).await;
            (batch, done)
        });
    }

    /// The acknowledgement under way, when it ends (`None` when there is none).
    pub(super) async fn flushed(&mut self) -> Option<Flushed> {
        match self.flushing.join_next().await? {
            Ok(flushed) => Some(flushed),
            // A panic in the statement's task: nothing was written that is not true; the claims are released and
            // recovered as a death would leave them.
            Err(e) => {
                tracing::warn!("acknowledging completions failed: {e}");
                None
            }
        }
    }
}
