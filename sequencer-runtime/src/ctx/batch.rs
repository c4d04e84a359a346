//! `ctx.batch()`: what a member of a recorded batch (or chain) sees of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::ledger::{BatchId, BatchInfo, Ledger};
use crate::result::Result;
use crate::task_def::Task;

/// A member of a batch or chain: a one-time operation, by ledger name or function name (`"reprice"` converts),
/// or a run of a typed task with its data ([`BatchMember::task`]); a batch may mix both.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchMember {
    /// A one-time operation of the registry, by ledger name or function name: its current run.
    Operation(String),
    /// A new run of a typed task with its arguments, built by [`BatchMember::task`].
    Task(TaskMember),
}

/// A task run to record as a member of a batch: the task's ledger name and its arguments, serialized when it was
/// built by [`BatchMember::task`] (typed: only the task's own data type compiles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMember {
    pub(crate) name: &'static str,
    /// The arguments as JSON, or why they could not be serialized (reported when the batch is dispatched).
    pub(crate) args: std::result::Result<String, String>,
}

impl TaskMember {
    /// The task's ledger name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl BatchMember {
    /// A new run of task `T` with its data, as a member: `seq.batch([BatchMember::task::<ops::reprice>(Reprice {
    /// customer_id: 7 })])`. Recorded (arguments sealed when the task is `encrypted`) when the batch is
    /// dispatched; its `unique` key is taken then, as [`dispatch`](crate::Sequencer::dispatch) takes it, and a
    /// member whose key another run holds is recorded `skipped` with the reason (counted as ended, not run).
    pub fn task<T: Task>(args: T::Args) -> BatchMember {
        BatchMember::Task(TaskMember {
            name: T::NAME,
            args: crate::task_def::TaskArgs::to_json(&args)
                .map_err(|e| format!("cannot serialize the arguments of task `{}`: {e}", T::NAME)),
        })
    }
}

impl From<&str> for BatchMember {
    fn from(name: &str) -> Self {
        BatchMember::Operation(name.to_owned())
    }
}

impl From<String> for BatchMember {
    fn from(name: String) -> Self {
        BatchMember::Operation(name)
    }
}

impl From<&String> for BatchMember {
    fn from(name: &String) -> Self {
        BatchMember::Operation(name.clone())
    }
}

/// What adds members to a recorded batch (the registry resolves their names, the ledger records them).
pub(crate) trait AddMembers: Send + Sync {
    fn add<'a>(
        &'a self,
        batch: BatchId,
        members: Vec<BatchMember>,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}

/// The batch (or chain) the running member belongs to, from [`Ctx::batch`](crate::Ctx::batch): its id, whether it
/// was cancelled, cancelling it and adding members to it.
///
/// ```
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_06_01_000000")]
///     async fn reprice(ctx: &Ctx) -> Result<()> {
///         if let Some(batch) = ctx.batch() {
///             if batch.cancelled().await? {
///                 return Ok(()); // another member cancelled the batch: nothing to do
///             }
///             println!("member of batch {}", batch.id());
///         }
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct BatchHandle {
    id: BatchId,
    ledger: Ledger,
    adder: Arc<dyn AddMembers>,
}

impl std::fmt::Debug for BatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchHandle").field("id", &self.id).finish()
    }
}

impl BatchHandle {
    pub(crate) fn new(id: BatchId, ledger: Ledger, adder: Arc<dyn AddMembers>) -> Self {
        BatchHandle { id, ledger, adder }
    }

    /// The batch's id.
    pub fn id(&self) -> BatchId {
        self.id
    }

    /// Whether the batch was cancelled (by a member's [`cancel`](Self::cancel), or by a failure in a batch that
    /// does not `allow_failures`): a long member checks it and returns early.
    pub async fn cancelled(&self) -> Result<bool> {
        Ok(self.ledger.batch_cancelled(self.id).await?)
    }

    /// Cancels the batch: its members not started yet are recorded `skipped` with the reason "batch
    /// cancelled" (their operations stay pending), and its `then` callback does not run; `finally` still does.
    pub async fn cancel(&self) -> Result<()> {
        self.ledger.cancel_batch(self.id).await?;
        Ok(())
    }

    /// Adds members to the batch (its total rises): queued like the others, or, in a batch run in the
    /// dispatching process, run there. An error once the batch has finished.
    pub async fn add<I, M>(&self, members: I) -> Result<()>
    where
        I: IntoIterator<Item = M>,
        M: Into<BatchMember>,
    {
        let members = members.into_iter().map(Into::into).collect();
        self.adder.add(self.id, members).await
    }

    /// The batch's row: its counts, callbacks and times.
    pub async fn info(&self) -> Result<BatchInfo> {
        self.ledger
            .batch_info(self.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("batch {} is not in the ledger", self.id))
    }
}
