//! A task run's data as the executor receives it: its arguments read from the ledger (opened when sealed) and
//! the keys its task computes from them.

use std::sync::Arc;

use crate::crypto::{is_sealed, place};
use crate::executor::policy::unique_task_lock;
use crate::executor::Env;
use crate::ledger::batches::BatchId;
use crate::ledger::error::LedgerError;
use crate::plan::Due;
use crate::registry::OperationDef;
use crate::report::Outcome;
use crate::task_def::{TaskDef, TaskKeys};

/// What a task run carries into the executor: its arguments (JSON, opened; `Err`: why they cannot be read) and
/// the keys computed from them.
#[derive(Clone)]
pub(crate) struct TaskData {
    pub args: Result<Arc<str>, Arc<str>>,
    pub keys: TaskKeys,
    /// The tries this run is allowed, when its data says (a deferred run's `max_attempts`): they bound its
    /// task's `retries`, counted across its claims (crashes and earlier tries included), and such a run takes one
    /// try per claim, a failed one going back on its queue.
    pub tries: Option<u32>,
    /// A deferred run's registered handler.
    pub handler: Option<crate::handlers::ErasedHandler>,
}

impl std::fmt::Debug for TaskData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskData")
            .field("args", &self.args)
            .field("keys", &self.keys)
            .field("tries", &self.tries)
            .field("deferred", &self.handler.is_some())
            .finish()
    }
}

impl TaskData {
    /// The data of a run from its arguments as JSON: its keys computed by the task. Data its key functions
    /// cannot read is carried as the reason: the run then fails with it, through the executor.
    pub(crate) fn from_json(def: &TaskDef, json: String) -> TaskData {
        match (def.keys)(&json) {
            Ok(keys) => TaskData {
                args: Ok(json.into()),
                keys,
                tries: None,
                handler: None,
            },
            Err(e) => TaskData {
                args: Err(format!("task `{}`: {e:#}", def.name()).into()),
                keys: TaskKeys::default(),
                tries: None,
                handler: None,
            },
        }
    }
}

impl Env {
    /// Claims and runs one run of a task (its `pending` row `run`), with its data, through every policy. The
    /// task's `unique` key, taken when it was dispatched, is released once the run has ended.
    pub async fn run_task(
        &self,
        def: &'static OperationDef,
        run: i64,
        batch: i64,
        data: TaskData,
        member_of: Option<BatchId>,
    ) -> Result<Outcome, LedgerError> {
        let unique = data.keys.unique.clone();
        let outcome = self
            .run_with(
                &Due::new(def, run, false, false).in_batch(member_of),
                batch,
                Some(Arc::new(data)),
            )
            .await;
        if let (
            Some(key),
            Ok(Outcome::Completed { .. } | Outcome::Failed { .. } | Outcome::Skipped { .. }),
        ) = (unique, &outcome)
        {
            let (lock, owner) = unique_task_lock(def.meta.name, &key, run);
            self.ledger.release_named_lock(&lock, &owner).await?;
        }
        outcome
    }

    /// Reads a task run's arguments from the ledger, opened with the configured keys when sealed.
    pub(crate) async fn task_data(&self, def: &TaskDef, run: i64) -> Result<TaskData, LedgerError> {
        let name = def.name();
        let failed = |why: String| TaskData {
            args: Err(why.into()),
            keys: TaskKeys::default(),
            tries: None,
            handler: None,
        };
        if let Some(handler) = self.deferred.by_task(name) {
            return self.deferred_data(def, handler, run).await;
        }
        let Some(stored) = self.ledger.task_args(name, run).await? else {
            return Ok(failed(format!(
                "task `{name}` run {run} has no stored arguments"
            )));
        };
        let encrypted = def.op.meta.encrypted;
        if !encrypted && !is_sealed(&stored) {
            return Ok(TaskData::from_json(def, stored));
        }
        Ok(
            match self
                .keys
                .open_at(&stored, &place::task_args(name, run), encrypted)
            {
                Ok(json) => TaskData::from_json(def, json),
                Err(e) => failed(format!(
                    "cannot open the arguments of task `{name}` run {run}: {e}"
                )),
            },
        )
    }
}

/// A task run's tags: the task's fixed ones, then those computed from its data.
pub(crate) fn run_tags(def: &OperationDef, keys: &TaskKeys) -> Vec<String> {
    let fixed = def.meta.tags.iter().map(|t| (*t).to_owned());
    fixed.chain(keys.tags.iter().cloned()).collect()
}
