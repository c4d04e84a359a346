//! The typed handlers of deferred operations, registered on the builder by name. Each one is a task: at `build`
//! it becomes a [`TaskDef`] named `deferred:<name>` (its handler reads the run's payload from its context), so
//! its runs are task runs, run by the same executor with every policy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sequencer_core::{Backoff, OperationMeta, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::registry::{BoxFuture, OperationDef, BLANK_META};
use crate::result::Result;
use crate::task_def::{TaskDef, TaskKeys};

/// The queue deferred operations wait on: `process_deferred` (and every `work` process, when idle) takes them
/// from there; `work --queue deferred` runs them too.
pub const DEFERRED_QUEUE: &str = "deferred";

/// A type-erased deferred handler.
pub(crate) type ErasedHandler =
    Arc<dyn for<'a> Fn(&'a Ctx, serde_json::Value) -> BoxFuture<'a, Result<()>> + Send + Sync>;

/// Checks that a payload fits the handler's type (`Err`: why not).
type ErasedCheck = Arc<dyn Fn(&serde_json::Value) -> Result<(), String> + Send + Sync>;

/// One registered handler: the function, the check of its payload, and (once built) its task.
#[derive(Clone)]
pub(crate) struct DeferredHandler {
    pub call: ErasedHandler,
    check: ErasedCheck,
    pub def: Option<&'static TaskDef>,
}

impl DeferredHandler {
    /// Whether `payload` fits the handler's type: `Err` says why not.
    pub(crate) fn check(&self, payload: &serde_json::Value) -> Result<(), String> {
        (self.check)(payload)
    }
}

/// The handlers and aliases registered on the builder.
#[derive(Clone, Default)]
pub(crate) struct DeferredHandlers {
    pub handlers: HashMap<String, DeferredHandler>,
    pub aliases: HashMap<String, String>,
    pub retry_delay: Duration,
}

/// The ledger name of the task a deferred handler is: `deferred:<name>`.
pub fn deferred_task_name(handler: &str) -> String {
    format!("deferred:{handler}")
}

/// The data of a deferred run, as its task run stores it (its `args`, sealed when a key is configured).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// Tries allowed (`defer(.., max_attempts)`).
    pub max_attempts: u32,
    /// The payload, for a run deferred by this version (`null` for one moved from the old table).
    #[serde(default)]
    pub payload: serde_json::Value,
    /// For a row moved from the old `<prefix>deferred` table: its id there, where its payload stays (sealed for
    /// that row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_id: Option<i64>,
}

impl DeferredHandlers {
    /// The handler a stored name means, aliases followed: its registered name and itself.
    pub(crate) fn resolve(&self, name: &str) -> Option<(&str, &DeferredHandler)> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.handlers
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The handler whose task is named `task` (`deferred:<name>`).
    pub(crate) fn by_task(&self, task: &str) -> Option<&DeferredHandler> {
        let name = task.strip_prefix("deferred:")?;
        self.handlers.get(name).filter(|h| h.def.is_some())
    }

    /// Makes each handler a task (once, at `build`): retried after `retry_delay` times the tries so far, its
    /// arguments and errors sealed when `sealed` (a key is configured). Returns the tasks.
    pub(crate) fn make_tasks(&mut self, sealed: bool) -> Vec<&'static TaskDef> {
        // `retry_delay` times the tries so far, as before: a list that repeats its last entry past 32 tries.
        let backoff = if self.retry_delay.is_zero() {
            Backoff::None
        } else {
            let list: Vec<Duration> = (1..=32u32).map(|n| self.retry_delay * n).collect();
            Backoff::List(Box::leak(list.into_boxed_slice()))
        };
        let mut out = Vec::new();
        let mut names: Vec<String> = self.handlers.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some(handler) = self.handlers.get_mut(&name) else {
                continue;
            };
            // One definition per handler, built once at start-up and kept for the life of the process.
            let meta = OperationMeta {
                name: Box::leak(deferred_task_name(&name).into_boxed_str()),
                fn_name: Box::leak(name.clone().into_boxed_str()),
                asynchronous: true,
                queue: Some(DEFERRED_QUEUE),
                encrypted: sealed,
                retry: RetryPolicy {
                    // Each run's own `max_attempts` bounds its tries (see `TaskData::tries`).
                    tries: u32::MAX,
                    backoff,
                    retry_until: None,
                    max_exceptions: None,
                },
                ..BLANK_META
            };
            let def: &'static TaskDef = Box::leak(Box::new(TaskDef {
                op: OperationDef::new(meta, deferred_entry),
                keys: no_keys,
            }));
            handler.def = Some(def);
            out.push(def);
        }
        out
    }
}

/// A deferred run's keys: none.
fn no_keys(_: &str) -> Result<TaskKeys> {
    Ok(TaskKeys::default())
}

/// The handler of every deferred task: the run's registered handler, with its payload.
fn deferred_entry(ctx: &Ctx) -> BoxFuture<'_, Result<()>> {
    let Some(handler) = ctx.deferred_handler() else {
        let name = ctx.operation().name;
        return Box::pin(async move {
            Err(anyhow::anyhow!(
                "`{name}` ran without its handler: register it with `.deferred(..)` on the builder"
            ))
        });
    };
    let payload = match ctx
        .task_args_json()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        Some(Ok(value)) => value,
        Some(Err(e)) => {
            return Box::pin(
                async move { Err(anyhow::anyhow!("malformed payload (not JSON): {e}")) },
            )
        }
        None => {
            let why = ctx.task_args_error().unwrap_or("no payload").to_owned();
            return Box::pin(async move { Err(anyhow::anyhow!("{why}")) });
        }
    };
    handler(ctx, payload)
}

/// Wraps a typed handler.
pub(crate) fn erase<T, F>(handler: F) -> DeferredHandler
where
    T: serde::de::DeserializeOwned + Send + 'static,
    F: for<'a> Fn(&'a Ctx, T) -> BoxFuture<'a, Result<()>> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let call: ErasedHandler = Arc::new(move |ctx: &Ctx, value: serde_json::Value| {
        match serde_json::from_value::<T>(value) {
            Ok(payload) => handler(ctx, payload),
            Err(e) => {
                let name = ctx.operation().name;
                Box::pin(async move { Err(anyhow::anyhow!("malformed payload for `{name}`: {e}")) })
            }
        }
    });
    let check: ErasedCheck = Arc::new(|value: &serde_json::Value| {
        T::deserialize(value).map(drop).map_err(|e| e.to_string())
    });
    DeferredHandler {
        call,
        check,
        def: None,
    }
}

/// The tries of a deferred run given its stored data: `None` when the data is not a deferred envelope.
pub(crate) fn envelope_of(json: &str) -> Option<Envelope> {
    serde_json::from_str::<Envelope>(json).ok()
}
