//! Batches and chains: a few named operations run together, with callbacks.

use crate::error::SequencerError;
use crate::options::ProcessOptions;
use crate::orchestrator::ready_queue::Batch;
use crate::orchestrator::run::Orchestrator;
use crate::report::{Outcome, RunReport};
use crate::sequencer::Sequencer;

impl Sequencer {
    /// A batch of operations run together (in parallel, by [`Batch`] unless `.using(..)` says otherwise),
    /// with callbacks: `seq.batch(["a", "b"]).then(|r| ..).catch(|name, err| ..).finally(|r| ..).dispatch().await`.
    pub fn batch<I, S>(&self, ops: I) -> PendingBatch
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PendingBatch {
            seq: self.using(Batch),
            ops: ops.into_iter().map(Into::into).collect(),
            concurrency: None,
            then: None,
            catch: None,
            finally: None,
        }
    }

    /// A chain: the operations one after another in the given order, stopping at the first failure (completed
    /// ones are passed over): `seq.chain(["a", "b"]).catch(|name, err| ..).dispatch().await`.
    pub fn chain<I, S>(&self, ops: I) -> PendingChain
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        PendingChain {
            seq: self.clone(),
            ops: ops.into_iter().map(Into::into).collect(),
            catch: None,
        }
    }
}

type ReportCallback = Box<dyn FnOnce(&RunReport) + Send>;
type FailureCallback = Box<dyn FnOnce(&str, &str) + Send>;

/// A batch waiting for [`PendingBatch::dispatch`]; see [`Sequencer::batch`].
#[must_use = "a batch does nothing until `.dispatch().await`"]
pub struct PendingBatch {
    seq: Sequencer,
    ops: Vec<String>,
    concurrency: Option<usize>,
    then: Option<ReportCallback>,
    catch: Option<FailureCallback>,
    finally: Option<ReportCallback>,
}

impl PendingBatch {
    /// Runs the batch with another orchestrator (`TransactionalBatch`, `AllowedToFailBatch`, …).
    pub fn using(mut self, orchestrator: impl Orchestrator + 'static) -> Self {
        self.seq = self.seq.using(orchestrator);
        self
    }

    /// How many run at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Called when every operation of the batch ended well.
    pub fn then(mut self, f: impl FnOnce(&RunReport) + Send + 'static) -> Self {
        self.then = Some(Box::new(f));
        self
    }

    /// Called with the first failed operation and its error.
    pub fn catch(mut self, f: impl FnOnce(&str, &str) + Send + 'static) -> Self {
        self.catch = Some(Box::new(f));
        self
    }

    /// Called at the end, whatever happened.
    pub fn finally(mut self, f: impl FnOnce(&RunReport) + Send + 'static) -> Self {
        self.finally = Some(Box::new(f));
        self
    }

    /// Runs the batch.
    pub async fn dispatch(self) -> Result<RunReport, SequencerError> {
        let mut only = Vec::with_capacity(self.ops.len());
        for name in &self.ops {
            only.push(self.seq.find(name)?.meta.name.to_owned());
        }
        let opts = ProcessOptions {
            only,
            concurrency: self.concurrency,
            ..ProcessOptions::default()
        };
        let report = self.seq.process(&opts).await?;
        if report.succeeded() {
            if let Some(then) = self.then {
                then(&report);
            }
        } else if let Some(catch) = self.catch {
            if let Some((name, Outcome::Failed { error, .. })) =
                report.results.iter().find(|(_, o)| {
                    matches!(
                        o,
                        Outcome::Failed {
                            allowed_to_fail: false,
                            ..
                        }
                    )
                })
            {
                catch(name, error);
            }
        }
        if let Some(finally) = self.finally {
            finally(&report);
        }
        Ok(report)
    }
}

/// A chain waiting for [`PendingChain::dispatch`]; see [`Sequencer::chain`].
#[must_use = "a chain does nothing until `.dispatch().await`"]
pub struct PendingChain {
    seq: Sequencer,
    ops: Vec<String>,
    catch: Option<FailureCallback>,
}

impl PendingChain {
    /// Called with the operation that failed and its error.
    pub fn catch(mut self, f: impl FnOnce(&str, &str) + Send + 'static) -> Self {
        self.catch = Some(Box::new(f));
        self
    }

    /// Runs the chain: one report per operation that ran.
    pub async fn dispatch(self) -> Result<Vec<RunReport>, SequencerError> {
        let defs = self
            .ops
            .iter()
            .map(|n| self.seq.find(n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reports = Vec::new();
        for def in defs {
            if self.seq.has_executed(def.meta.name).await? {
                continue;
            }
            let report = self.seq.execute(def.meta.name).await?;
            let failed = report.results.iter().find_map(|(n, o)| match o {
                Outcome::Failed { error, .. } => Some((n.clone(), error.clone())),
                _ => None,
            });
            reports.push(report);
            if let Some((name, error)) = failed {
                if let Some(catch) = self.catch {
                    catch(&name, &error);
                }
                break;
            }
        }
        Ok(reports)
    }
}
