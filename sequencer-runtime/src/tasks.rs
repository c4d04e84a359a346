//! Typed tasks: `seq.dispatch::<ops::reprice>(args)` records a run of the task with its arguments (a row of
//! the operations table, sealed for an `encrypted` task) and queues it as a job; `work` runs it through the
//! executor with every policy. `seq.dispatch_sync::<ops::reprice>(args)` runs one here and returns its outcome.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::SequencerError;
use crate::events::Via;
use crate::executor::{Env, TaskData};
use crate::ledger::runs::Status;
use crate::ledger::tasks::Available;
use crate::options::DEFAULT_QUEUE;
use crate::report::Outcome;
use crate::sequencer::Sequencer;
use crate::task_def::{Task, TaskArgs, TaskDef};
use crate::task_runs::{record_task_run, Recorded, WhenHeld};

/// One run of a task, as the ledger records it: the row `(name, run)` of the operations table, and the job
/// `(name, run)` of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRun {
    /// The task's ledger name.
    pub name: &'static str,
    /// The run: numbered per task from 1, in the order they were dispatched.
    pub run: i64,
}

/// The runs of one task by state, as `status` shows them: `reprice: 998 completed, 2 queued`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    /// The task's ledger name.
    pub name: String,
    /// Waiting for a worker (`pending` rows: dispatched, not started).
    pub queued: i64,
    /// Claimed by a worker (or by `dispatch_sync`).
    pub running: i64,
    /// Ran to the end.
    pub completed: i64,
    /// Ended with an error, after their retries.
    pub failed: i64,
    /// Their process died while running them, and they are not idempotent: for a person (`retry_task`).
    pub interrupted: i64,
    /// Skipped (`should_run`, `ctx.skip`).
    pub skipped: i64,
}

impl TaskStatus {
    /// How many runs the task has, in any state.
    pub fn runs(&self) -> i64 {
        self.queued + self.running + self.completed + self.failed + self.interrupted + self.skipped
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            (self.completed, "completed"),
            (self.running, "running"),
            (self.queued, "queued"),
            (self.failed, "failed"),
            (self.interrupted, "interrupted"),
            (self.skipped, "skipped"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        write!(f, "{}: {}", self.name, parts.join(", "))
    }
}

/// A dispatch of a task, built by [`Sequencer::dispatch`]: set when and where it runs, then `.await` it (queued
/// for the workers) or call [`TaskDispatch::run_now`] (run here).
#[must_use = "a dispatch does nothing until it is awaited"]
pub struct TaskDispatch<'a, T: Task> {
    seq: &'a Sequencer,
    args: T::Args,
    when: Available,
    queue: Option<String>,
    task: PhantomData<fn() -> T>,
}

impl<'a, T: Task> TaskDispatch<'a, T> {
    /// Available to the workers only after `delay` (the database's clock).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.when = Available::After(delay.as_millis().min(i64::MAX as u128) as i64);
        self
    }

    /// Available to the workers only at `time`.
    pub fn at(mut self, time: SystemTime) -> Self {
        let ms = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64);
        self.when = Available::At(ms);
        self
    }

    /// On this queue rather than the task's `queue = ".."` (else `default`).
    pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Records the run and queues it. `Ok(None)`: the task is `unique` and a run with the same key is queued or
    /// running, so nothing was recorded (Laravel's `ShouldBeUnique`: a duplicate is dropped, not delayed).
    pub async fn send(self) -> Result<Option<TaskRun>, SequencerError> {
        let def = self.seq.task_def::<T>()?;
        let queue = self
            .queue
            .as_deref()
            .or(def.op.meta.queue)
            .unwrap_or(DEFAULT_QUEUE);
        crate::options::check_queue(queue).map_err(SequencerError::Usage)?;
        let json = to_json(def, &self.args)?;
        let Some((run, _)) = self
            .seq
            .record_task_run(def, json, Some((queue, self.when)))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(TaskRun {
            name: def.name(),
            run,
        }))
    }

    /// Records the run and runs it in this process through the executor (retries, timeouts, hooks, layers,
    /// locks), ignoring `delay`, `at` and `on_queue`; returns its outcome. A `unique` key held by another run
    /// is [`Outcome::Deferred`], and nothing is recorded.
    pub async fn run_now(self) -> Result<Outcome, SequencerError> {
        let def = self.seq.task_def::<T>()?;
        let json = to_json(def, &self.args)?;
        let Some((run, data)) = self.seq.record_task_run(def, json, None).await? else {
            return Ok(Outcome::Deferred {
                reason: format!(
                    "a run of `{}` with the same `unique` key is queued or running",
                    def.name()
                ),
            });
        };
        let env = Env {
            via: Via::Execute,
            ..self.seq.env().clone()
        };
        let batch = env.ledger.new_batch(&env.owner).await?;
        Ok(env.run_task(&def.op, run, batch, data, None).await?)
    }
}

impl<'a, T: Task + 'a> IntoFuture for TaskDispatch<'a, T> {
    type Output = Result<Option<TaskRun>, SequencerError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A task run's arguments as JSON.
fn to_json<A: TaskArgs>(def: &TaskDef, args: &A) -> Result<String, SequencerError> {
    args.to_json().map_err(|e| {
        SequencerError::Usage(format!(
            "cannot serialize the arguments of task `{}`: {e}",
            def.name()
        ))
    })
}

impl Sequencer {
    /// Dispatches a run of task `T` with its data: `seq.dispatch::<ops::reprice>(Reprice { customer_id }).await?`
    /// records it and queues it for the workers; `.delay(..)`, `.at(..)`, `.on_queue(..)` say when and where;
    /// `.run_now()` runs it here instead. Only `T`'s own data type compiles.
    pub fn dispatch<T: Task>(&self, args: T::Args) -> TaskDispatch<'_, T> {
        TaskDispatch {
            seq: self,
            args,
            when: Available::Now,
            queue: None,
            task: PhantomData,
        }
    }

    /// Runs a run of task `T` in this process through the executor and returns its outcome:
    /// `seq.dispatch::<T>(args).run_now()`.
    pub async fn dispatch_sync<T: Task>(&self, args: T::Args) -> Result<Outcome, SequencerError> {
        self.dispatch::<T>(args).run_now().await
    }

    /// The registered definition of task `T`.
    fn task_def<T: Task>(&self) -> Result<&'static TaskDef, SequencerError> {
        self.registry().task(T::NAME).ok_or_else(|| {
            SequencerError::Usage(format!(
                "task `{}` is not in this sequencer's registry: add its module's `registry()` to the builder",
                T::NAME
            ))
        })
    }

    /// Records a `pending` run of a task with its arguments (sealed when it is `encrypted`), its `unique` key
    /// taken first, and with `queue` its job in the same transaction: the run and its data, or `None` when that
    /// key is held by another run.
    async fn record_task_run(
        &self,
        def: &'static TaskDef,
        json: String,
        queue: Option<(&str, crate::ledger::tasks::Available)>,
    ) -> Result<Option<(i64, TaskData)>, SequencerError> {
        let keys = &self.env().keys;
        match record_task_run(self.ledger(), keys, def, json, WhenHeld::Drop, queue).await? {
            Recorded::Run(run, data) => Ok(Some((run, data))),
            Recorded::Dropped | Recorded::Skipped(..) => Ok(None),
        }
    }

    /// Every registered task with its runs by state (tasks never dispatched show no runs).
    pub async fn task_status(&self) -> Result<Vec<TaskStatus>, SequencerError> {
        let mut counts = self.ledger().task_counts().await?;
        let mut out = Vec::new();
        let mut names: Vec<String> = self
            .registry()
            .tasks()
            .iter()
            .map(|t| t.name().to_owned())
            .collect();
        names.extend(
            counts
                .keys()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect::<Vec<_>>(),
        );
        for name in names {
            let c: HashMap<Status, i64> = counts.remove(&name).unwrap_or_default();
            let n = |s: Status| c.get(&s).copied().unwrap_or(0);
            out.push(TaskStatus {
                queued: n(Status::Pending) + n(Status::Scheduled),
                running: n(Status::Running),
                completed: n(Status::Completed),
                failed: n(Status::Failed),
                interrupted: n(Status::Interrupted),
                skipped: n(Status::Skipped),
                name,
            });
        }
        Ok(out)
    }

    /// Runs a `failed` or `interrupted` task run again on the workers: the row is `pending` again and its job
    /// queued again. `false` when the run is in neither state.
    pub async fn retry_task(&self, name: &str, run: i64) -> Result<bool, SequencerError> {
        let Some(def) = self.registry().task(name) else {
            let names = self.registry().tasks().iter().map(|t| t.name());
            return Err(SequencerError::UnknownOperation {
                name: name.to_owned(),
                suggestion: sequencer_core::suggest::did_you_mean(name, names).map(str::to_owned),
            });
        };
        let ledger = self.ledger();
        let mut again = false;
        for from in [Status::Failed, Status::Interrupted] {
            // Its tries start over (a deferred run counts them in its row, across claims).
            again = again || ledger.retry_run(name, run, from).await?;
        }
        if again {
            let queue = def.op.meta.queue.unwrap_or(DEFAULT_QUEUE);
            ledger.enqueue(name, run, queue).await?;
        }
        Ok(again)
    }
}
