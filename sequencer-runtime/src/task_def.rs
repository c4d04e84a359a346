//! Task definitions: what `#[task(...)]` generates. A task is an operation that carries data: its definition is
//! an [`OperationDef`] (run by the same executor, with every policy) whose handler reads the run's data from its
//! context, and a function computing the run's keys (unique, overlap, rate limit, tags) from that data.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::registry::OperationDef;
use crate::result::Result;

/// The keys of one task run, computed from its data by the functions its attribute names
/// (`unique = customer_key`, `without_overlapping = ..`, `rate_limit_key = ..`, `tags = ..`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskKeys {
    /// `unique`: while a run with this key is queued or running, another dispatch with it is refused.
    pub unique: Option<String>,
    /// `without_overlapping`: runs with this key never run at the same time.
    pub overlap: Option<String>,
    /// `rate_limit_key`: the rate limits of the task's `middleware` count per key.
    pub rate: Option<String>,
    /// `tags = f`: the run's own tags, besides the task's fixed `tags = [..]`.
    pub tags: Vec<String>,
}

/// Computes a run's [`TaskKeys`] from its stored data (JSON).
pub type KeysFn = fn(&str) -> Result<TaskKeys>;

/// One task: its operation definition and the function computing a run's keys.
#[derive(Clone, Copy)]
pub struct TaskDef {
    /// What the attribute declared, and the functions that run it. `op.meta.name` is the task's ledger name.
    pub op: OperationDef,
    /// A run's keys, from its data.
    pub keys: KeysFn,
}

impl TaskDef {
    /// The task's ledger name.
    pub fn name(&self) -> &'static str {
        self.op.meta.name
    }
}

impl fmt::Debug for TaskDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDef")
            .field("meta", &self.op.meta)
            .finish_non_exhaustive()
    }
}

/// What a task's data must be: it is stored in the ledger as JSON when a run is recorded, and read back when the
/// run starts. Every `Serialize + DeserializeOwned + Send + 'static` type is one; the trait is here so that a task
/// whose data type is not gets one error, in these words, at the type (not each unmet serde bound with the
/// compiler's list of the types that meet it).
#[diagnostic::on_unimplemented(
    message = "the data of a task must be `Serialize + DeserializeOwned`: `{Self}` is not",
    label = "a task's data is stored in the ledger as JSON",
    note = "derive both on it: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait TaskArgs: Send + 'static {
    /// The data as the ledger stores it.
    fn to_json(&self) -> serde_json::Result<String>;

    /// The data from what the ledger stored.
    fn from_json(json: &str) -> serde_json::Result<Self>
    where
        Self: Sized;
}

// Not recommended in diagnostics: for a type without serde's traits the compiler then reports the message above
// instead of the unmet bounds inside this impl.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> TaskArgs for T {
    fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    fn from_json(json: &str) -> serde_json::Result<Self> {
        serde_json::from_str(json)
    }
}

/// Implemented by the companion type `#[task(...)]` generates, so that dispatching is typed:
/// `seq.dispatch::<ops::reprice>(Reprice { .. })` compiles only with the task's own data type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sequencer task",
    label = "not a task",
    note = "only functions marked `#[task(...)]` inside a `#[sequencer::operations]` module can be dispatched"
)]
pub trait Task {
    /// The data a run carries: the type of the task function's second parameter.
    type Args: TaskArgs;
    /// The ledger name.
    const NAME: &'static str;
    /// The task's definition.
    const DEF: TaskDef;
}
