//! Batches and chains, recorded in the ledger: `seq.batch(..)` runs members side by side, `seq.chain(..)` one
//! after another; on the workers (`dispatch`) or in this process (`dispatch_and_wait`), with named callbacks.

use std::collections::HashSet;

use sequencer_core::Dependency;
use tokio::task::JoinSet;

use crate::batches::{prepare, Placement};
use crate::ctx::batch::BatchMember;
use crate::error::SequencerError;
use crate::ledger::batches::NewBatch;
use crate::ledger::{BatchId, BatchInfo, BatchKind, MemberState, Status};
use crate::options::check_queue;
use crate::plan::Due;
use crate::report::Outcome;
use crate::sequencer::batch_end::BATCH_CANCELLED;
use crate::sequencer::Sequencer;

impl Sequencer {
    /// A batch: members run side by side, on the workers ([`PendingBatch::dispatch`]) or in this process
    /// ([`PendingBatch::dispatch_and_wait`]), recorded in the ledger, with named callbacks that run once every
    /// member has ended: `seq.batch(["a", "b"]).name("reprice").then("notify_done").dispatch().await?`.
    pub fn batch<I, M>(&self, members: I) -> PendingBatch
    where
        I: IntoIterator<Item = M>,
        M: Into<BatchMember>,
    {
        PendingBatch(Pending::new(self, BatchKind::Batch, members))
    }

    /// A chain: members one after another in the given order, each queued when the one before completed (by the
    /// worker that completed it), stopping at the first failure: `seq.chain(["a", "b"]).catch("alert")
    /// .dispatch().await?`.
    pub fn chain<I, M>(&self, members: I) -> PendingChain
    where
        I: IntoIterator<Item = M>,
        M: Into<BatchMember>,
    {
        PendingChain(Pending::new(self, BatchKind::Chain, members))
    }

    /// A recorded batch or chain.
    pub async fn batch_info(&self, id: BatchId) -> Result<Option<BatchInfo>, SequencerError> {
        Ok(self.ledger().batch_info(id).await?)
    }

    /// The batches and chains not finished yet, oldest first, as `status` shows them.
    pub async fn open_batches(&self) -> Result<Vec<BatchInfo>, SequencerError> {
        Ok(self.ledger().batches(false).await?)
    }
}

/// What a batch and a chain share before they are dispatched.
struct Pending {
    seq: Sequencer,
    kind: BatchKind,
    members: Vec<BatchMember>,
    name: Option<String>,
    queue: Option<String>,
    allow_failures: bool,
    then: Option<String>,
    catch: Option<String>,
    finally: Option<String>,
    concurrency: Option<usize>,
}

impl Pending {
    fn new<I, M>(seq: &Sequencer, kind: BatchKind, members: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<BatchMember>,
    {
        Pending {
            seq: seq.clone(),
            kind,
            members: members.into_iter().map(Into::into).collect(),
            name: None,
            queue: None,
            allow_failures: false,
            then: None,
            catch: None,
            finally: None,
            concurrency: None,
        }
    }

    /// Every named callback is registered here; the queue's name is valid.
    fn check(&self) -> Result<(), SequencerError> {
        if let Some(queue) = &self.queue {
            check_queue(queue).map_err(SequencerError::Usage)?;
        }
        let known = &self.seq.inner.batch_callbacks;
        for name in [&self.then, &self.catch, &self.finally]
            .into_iter()
            .flatten()
        {
            if !known.contains_key(name) {
                let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
                names.sort_unstable();
                return Err(SequencerError::Usage(format!(
                    "no batch callback named `{name}`: register it with `.batch_callback(\"{name}\", |ctx| async move {{ .. }})` on the builder (registered: {})",
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                )));
            }
        }
        Ok(())
    }

    /// Every operation a member depends on has completed (or was skipped), or, in a chain, is an earlier link:
    /// members run without the planner, so they are refused otherwise.
    async fn check_dependencies(&self) -> Result<(), SequencerError> {
        let rows = self.seq.ledger().rows().await?;
        let mut before: Vec<&str> = Vec::new();
        for m in &self.members {
            let def = match m {
                BatchMember::Operation(name) => self.seq.find(name)?,
                BatchMember::Task(task) => match self.seq.registry().task(task.name()) {
                    Some(t) => &t.op,
                    // Reported by `prepare`, with the fix.
                    None => continue,
                },
            };
            for dep in def.meta.depends_on {
                let Dependency::Operation(d) = dep else {
                    continue;
                };
                let ended_well = rows.iter().any(|r| {
                    r.name == *d && matches!(r.status, Status::Completed | Status::Skipped)
                });
                let earlier_link = self.kind == BatchKind::Chain && before.contains(d);
                if !(ended_well || earlier_link) {
                    let fix = match self.kind {
                        BatchKind::Chain => "put it earlier in the chain",
                        BatchKind::Batch => "run it first, or put both in a chain in that order",
                    };
                    return Err(SequencerError::Usage(format!(
                        "`{}` depends on `{d}`, which has not completed: {fix}",
                        def.meta.name
                    )));
                }
            }
            before.push(def.meta.name);
        }
        Ok(())
    }

    async fn record(&self, placement: Placement<'_>) -> Result<BatchId, SequencerError> {
        self.check()?;
        self.check_dependencies().await?;
        let ledger = self.seq.ledger();
        let prepared = prepare(
            ledger,
            &self.seq.env().keys,
            self.seq.registry(),
            &self.members,
            placement,
        )
        .await?;
        let members = &prepared.members;
        let batch = NewBatch {
            kind: self.kind,
            name: self.name.as_deref(),
            queue: self.queue.as_deref(),
            in_process: matches!(placement, Placement::InProcess),
            allow_failures: self.allow_failures,
            callbacks: [
                self.then.as_deref(),
                self.catch.as_deref(),
                self.finally.as_deref(),
            ],
        };
        let id = match ledger.create_batch(&batch, members).await {
            Ok(id) => id,
            Err(e) => {
                prepared.abandon(ledger, &e.to_string()).await;
                return Err(e.into());
            }
        };
        if self.kind == BatchKind::Chain && members.first().is_some_and(|m| m.skipped.is_some()) {
            // Its first link ended as it was recorded: the next one's turn has come.
            ledger.release_next_link(id).await?;
        }
        if members.iter().all(|m| m.skipped.is_some()) {
            // Nothing will end (no members, or only members skipped as they were recorded): it ends now, here.
            self.seq.settle_batch(id, false).await?;
        }
        Ok(id)
    }

    async fn dispatch(self) -> Result<BatchId, SequencerError> {
        self.record(Placement::Workers(self.queue.as_deref())).await
    }

    async fn dispatch_and_wait(self) -> Result<BatchInfo, SequencerError> {
        let id = self.record(Placement::InProcess).await?;
        let concurrency = match self.kind {
            BatchKind::Chain => 1,
            BatchKind::Batch => self
                .concurrency
                .unwrap_or(self.seq.inner.concurrency)
                .max(1),
        };
        self.seq.run_batch_here(id, concurrency).await
    }
}

impl Sequencer {
    /// Runs a recorded in-process batch's members here, `concurrency` at a time, until every member (added ones
    /// too) has ended; its callbacks run here.
    async fn run_batch_here(
        &self,
        id: BatchId,
        concurrency: usize,
    ) -> Result<BatchInfo, SequencerError> {
        let ledger = self.ledger();
        let run_batch = ledger.new_batch(&self.env().owner).await?;
        let mut started: HashSet<(String, i64)> = HashSet::new();
        let mut tasks: JoinSet<(String, i64, Result<Outcome, SequencerError>)> = JoinSet::new();
        loop {
            if tasks.len() < concurrency {
                let cancelled = ledger.batch_cancelled(id).await?;
                for m in ledger.batch_members(id).await? {
                    if tasks.len() >= concurrency {
                        break;
                    }
                    if m.state != MemberState::Pending || !started.insert((m.name.clone(), m.run)) {
                        continue;
                    }
                    if cancelled {
                        self.member_ended(
                            id,
                            &m.name,
                            m.run,
                            MemberState::Skipped,
                            Some(BATCH_CANCELLED),
                        )
                        .await?;
                        continue;
                    }
                    let env = self.env().clone();
                    if let Some(task) = self.registry().task(&m.name) {
                        // A task member: its arguments from its row, through the task path.
                        tasks.spawn(async move {
                            let outcome = match env.task_data(task, m.run).await {
                                Ok(data) => env
                                    .run_task(&task.op, m.run, run_batch, data, Some(id))
                                    .await
                                    .map_err(Into::into),
                                Err(e) => Err(e.into()),
                            };
                            (m.name, m.run, outcome)
                        });
                        continue;
                    }
                    let Some(def) = self.registry().get(&m.name) else {
                        let reason = format!("unknown operation `{}`", m.name);
                        self.member_ended(id, &m.name, m.run, MemberState::Failed, Some(&reason))
                            .await?;
                        continue;
                    };
                    tasks.spawn(async move {
                        let due = Due::new(def, m.run, false, false).in_batch(Some(id));
                        let outcome = env.run(&due, run_batch).await.map_err(Into::into);
                        (m.name, m.run, outcome)
                    });
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (name, run, outcome) = joined.map_err(|e| {
                SequencerError::Usage(format!("a member of batch {id} panicked: {e}"))
            })?;
            let (state, reason) = match self.member_state(&name, run, &outcome?).await? {
                Some(ended) => ended,
                // Held elsewhere (a `unique` key, an overlap lock, another process's claim): not run here.
                None => (
                    MemberState::Skipped,
                    Some("not run: held by another process".to_owned()),
                ),
            };
            self.member_ended(id, &name, run, state, reason.as_deref())
                .await?;
        }
        // Whatever is left (nothing, unless a member was added after the last one ended) settles the batch.
        self.settle_batch(id, false).await?;
        ledger
            .batch_info(id)
            .await?
            .ok_or_else(|| SequencerError::Usage(format!("batch {id} left the ledger")))
    }
}

macro_rules! common_setters {
    ($ty:ident) => {
        impl $ty {
            /// A name, shown by `status` and passed to the callbacks.
            pub fn name(mut self, name: impl Into<String>) -> Self {
                self.0.name = Some(name.into());
                self
            }

            /// The queue every member runs on (default: each operation's own queue, else `default`).
            pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
                self.0.queue = Some(queue.into());
                self
            }

            /// The callback (registered on the builder with `.batch_callback(name, ..)`) run once on the first
            /// failure, where it happened.
            pub fn catch(mut self, callback: impl Into<String>) -> Self {
                self.0.catch = Some(callback.into());
                self
            }

            /// The callback run once every member completed well.
            pub fn then(mut self, callback: impl Into<String>) -> Self {
                self.0.then = Some(callback.into());
                self
            }

            /// The callback run once every member has ended, whatever happened.
            pub fn finally(mut self, callback: impl Into<String>) -> Self {
                self.0.finally = Some(callback.into());
                self
            }

            /// Records it and queues its members for the workers (`work`), then returns: the workers run the
            /// members and the callbacks, whether or not this process is still there. An unknown member or
            /// callback name is an error, and nothing is recorded.
            pub async fn dispatch(self) -> Result<BatchId, SequencerError> {
                self.0.dispatch().await
            }

            /// Records it and runs its members in this process, then returns the batch as it ended; its callbacks
            /// run here.
            pub async fn dispatch_and_wait(self) -> Result<BatchInfo, SequencerError> {
                self.0.dispatch_and_wait().await
            }
        }
    };
}

/// A batch waiting for [`PendingBatch::dispatch`] or [`PendingBatch::dispatch_and_wait`]; see
/// [`Sequencer::batch`].
#[must_use = "a batch does nothing until `.dispatch().await`"]
pub struct PendingBatch(Pending);

common_setters!(PendingBatch);

impl PendingBatch {
    /// A failure neither cancels the batch nor fires `catch`, and `then` runs once every member ended.
    pub fn allow_failures(mut self) -> Self {
        self.0.allow_failures = true;
        self
    }

    /// How many members run at once in this process (`dispatch_and_wait`; default: the builder's
    /// `concurrency`). On the workers, their `--concurrency` says.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.0.concurrency = Some(n);
        self
    }
}

/// A chain waiting for [`PendingChain::dispatch`] or [`PendingChain::dispatch_and_wait`]; see
/// [`Sequencer::chain`].
#[must_use = "a chain does nothing until `.dispatch().await`"]
pub struct PendingChain(Pending);

common_setters!(PendingChain);
