//! `process --dispatch`: a run whose operations execute on the workers, queued as the orchestrator starts each
//! and awaited through the ledger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use crate::error::SequencerError;
use crate::events::Event;
use crate::ledger::jobs::JobStatus;
use crate::ledger::runs::Status;
use crate::ledger::Ledger;
use crate::options::DEFAULT_QUEUE;
use crate::registry::OperationDef;
use crate::report::Outcome;

/// Runs a process's operations on the workers: queue each one when the orchestrator starts it, then wait for
/// its ledger row to end, woken by `NOTIFY` on PostgreSQL and by adaptive polling elsewhere.
#[derive(Clone)]
pub(crate) struct Dispatch {
    ledger: Ledger,
    ended: Arc<Notify>,
    cancel: CancellationToken,
}

impl Dispatch {
    pub(crate) async fn new(
        ledger: Ledger,
        cancel: CancellationToken,
    ) -> Result<Dispatch, SequencerError> {
        let ended = Arc::new(Notify::new());
        if let Some(mut l) = ledger.listen(&ledger.done_channel()).await? {
            let (notify, stop) = (ended.clone(), cancel.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        got = l.recv() => {
                            notify.notify_waiters();
                            if got.is_err() {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            });
        }
        Ok(Dispatch {
            ledger,
            ended,
            cancel,
        })
    }

    /// Queues one operation and waits until a worker has ended it.
    pub(crate) async fn run_on_worker(
        &self,
        def: &'static OperationDef,
        run: i64,
        events: &broadcast::Sender<Event>,
    ) -> Result<Outcome, SequencerError> {
        let queue = def.meta.queue.unwrap_or(DEFAULT_QUEUE);
        self.ledger.enqueue(def.meta.name, run, queue).await?;
        self.wait_for_worker(def, run, events).await
    }

    /// Waits until a worker has ended an operation's queued (or blocked) job.
    pub(crate) async fn wait_for_worker(
        &self,
        def: &'static OperationDef,
        run: i64,
        events: &broadcast::Sender<Event>,
    ) -> Result<Outcome, SequencerError> {
        let meta = &def.meta;
        let queue = meta.queue.unwrap_or(DEFAULT_QUEUE);
        let started = Instant::now();
        let mut wait = Duration::from_millis(5);
        // Say so when no worker takes the job: first after 10 s, then every minute.
        let mut next_notice = Duration::from_secs(10);
        loop {
            let notified = self.ended.notified();
            // The job ends after the operation's row: wait for the job, then read the row (an older run's
            // failure is never mistaken for this one's).
            let job = self.ledger.job_status(meta.name, run).await?;
            if job == Some(JobStatus::Queued) && started.elapsed() >= next_notice {
                let _ = events.send(Event::WaitingForWorker {
                    name: meta.name.to_owned(),
                    queue: queue.to_owned(),
                    waited_secs: started.elapsed().as_secs(),
                });
                next_notice += Duration::from_secs(60);
            }
            if matches!(job, Some(JobStatus::Done | JobStatus::Failed)) {
                let r = self.ledger.row_of(meta.name, run).await?;
                let allowed_to_fail = meta.allowed_to_fail;
                return Ok(match r {
                    Some(r) => match r.status {
                        Status::Completed => Outcome::Completed {
                            duration_ms: r.duration_ms.unwrap_or(0).max(0) as u64,
                        },
                        Status::Skipped => Outcome::Skipped {
                            reason: r.skip_reason.unwrap_or_default(),
                        },
                        Status::Failed | Status::Interrupted => Outcome::Failed {
                            error: r.last_error.unwrap_or_else(|| {
                                format!("`{}` ended {} on a worker", meta.name, r.status)
                            }),
                            allowed_to_fail,
                        },
                        other => Outcome::Failed {
                            error: format!(
                                "a worker took `{}` but did not run it: it is {other}",
                                meta.name
                            ),
                            allowed_to_fail,
                        },
                    },
                    None => Outcome::Failed {
                        error: format!("`{}` has no ledger row", meta.name),
                        allowed_to_fail,
                    },
                });
            }
            if self.cancel.is_cancelled() {
                return Ok(Outcome::Cancelled {
                    reason: format!("`{}` was still on a worker when the run stopped", meta.name),
                });
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
            // Without notifications (MySQL, SQLite): poll quickly at first, then at most once a second.
            let cap = if started.elapsed() < Duration::from_secs(1) {
                Duration::from_millis(50)
            } else {
                Duration::from_secs(1)
            };
            wait = (wait * 2).min(cap);
        }
    }
}
