//! What recorded batches and chains need below the `Sequencer`: turning members into the runs the ledger records
//! (and, on the workers, queues), `ctx.batch().add(..)`, and the named callbacks with the context they receive.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::AnyPool;

use crate::crypto::Keyring;
use crate::ctx::batch::{AddMembers, BatchMember};
use crate::ctx::StateMap;
use crate::error::SequencerError;
use crate::executor::policy::unique_task_lock;
use crate::ledger::batches::NewMember;
use crate::ledger::runs::Status;
use crate::ledger::{BatchId, BatchInfo, BatchKind, Ledger};
use crate::options::DEFAULT_QUEUE;
use crate::registry::{OperationDef, Registry};
use crate::result::Result;
use crate::task_def::TaskDef;
use crate::task_runs::{record_task_run, Recorded, WhenHeld};

/// Where a batch's members run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placement<'a> {
    /// In the process that dispatched it: no job.
    InProcess,
    /// On the workers: on this queue, else each on its operation's own queue.
    Workers(Option<&'a str>),
}

/// A member resolved against the registry.
enum Resolved<'m> {
    Operation(&'static OperationDef),
    Task(&'static TaskDef, &'m str),
}

/// The runs `members` stand for, each with the queue its job goes on: a one-time operation's newest run (a
/// pending row inserted if the ledger has none); a task member's new run, recorded with its arguments (sealed
/// when `encrypted`) and its `unique` key taken as `dispatch` takes it. A task member whose key another run holds
/// is recorded `skipped` with the reason: it ends as it is recorded, and never runs. Every member is resolved
/// before anything is recorded: an unknown name records nothing.
pub(crate) async fn prepare(
    ledger: &Ledger,
    keys: &Keyring,
    registry: &Registry,
    members: &[BatchMember],
    placement: Placement<'_>,
) -> std::result::Result<Prepared, SequencerError> {
    let mut resolved = Vec::with_capacity(members.len());
    for m in members {
        resolved.push(match m {
            BatchMember::Operation(name) => {
                Resolved::Operation(registry.lookup(name).map_err(|suggestion| {
                    SequencerError::UnknownOperation {
                        name: name.clone(),
                        suggestion,
                    }
                })?)
            }
            BatchMember::Task(task) => {
                let def = registry.task(task.name).ok_or_else(|| {
                    SequencerError::Usage(format!(
                        "task `{}` is not in this sequencer's registry: add its module's `registry()` to the builder",
                        task.name
                    ))
                })?;
                let json = task.args.as_deref().map_err(|e| SequencerError::Usage(e.clone()))?;
                Resolved::Task(def, json)
            }
        });
    }
    let names: Vec<&str> = resolved
        .iter()
        .filter_map(|r| match r {
            Resolved::Operation(d) => Some(d.meta.name),
            Resolved::Task(..) => None,
        })
        .collect();
    let runs = ledger.latest_runs(&names).await?;
    let missing: Vec<(&str, i64)> = resolved
        .iter()
        .filter_map(|r| match r {
            Resolved::Operation(d) if !runs.contains_key(d.meta.name) => {
                Some((d.meta.name, d.meta.timestamp.version() as i64))
            }
            _ => None,
        })
        .collect();
    ledger.insert_pending(&missing).await?;
    let queue_of = |own: Option<&'static str>| match placement {
        Placement::InProcess => None,
        Placement::Workers(queue) => Some(queue.or(own).unwrap_or(DEFAULT_QUEUE).to_owned()),
    };
    let mut out = Prepared {
        members: Vec::with_capacity(resolved.len()),
        task_runs: Vec::new(),
    };
    for r in resolved {
        out.members.push(match r {
            Resolved::Operation(d) => NewMember {
                name: d.meta.name.to_owned(),
                run: runs.get(d.meta.name).copied().unwrap_or(0),
                queue: queue_of(d.meta.queue),
                skipped: None,
            },
            Resolved::Task(def, json) => {
                let recorded = match record_task_run(
                    ledger,
                    keys,
                    def,
                    json.to_owned(),
                    WhenHeld::RecordSkipped,
                    None,
                )
                .await
                {
                    Ok(recorded) => recorded,
                    Err(e) => {
                        out.abandon(ledger, &e.to_string()).await;
                        return Err(e);
                    }
                };
                let (run, skipped) = match recorded {
                    Recorded::Run(run, data) => {
                        out.task_runs.push((def.name(), run, data.keys.unique));
                        (run, None)
                    }
                    Recorded::Skipped(run, reason) => (run, Some(reason)),
                    Recorded::Dropped => continue,
                };
                NewMember {
                    name: def.name().to_owned(),
                    run,
                    queue: queue_of(def.op.meta.queue),
                    skipped,
                }
            }
        });
    }
    Ok(out)
}

/// The members `prepare` resolved, and the task runs it recorded for them.
pub(crate) struct Prepared {
    /// The members to record.
    pub members: Vec<NewMember>,
    /// The task runs recorded `pending`, each with its `unique` key (taken).
    task_runs: Vec<(&'static str, i64, Option<String>)>,
}

impl Prepared {
    /// The batch was not recorded (or its members not added): the task runs recorded for it would wait for a job
    /// that never comes, their `unique` keys held. Each is recorded `skipped` with the reason, its key released.
    /// Best effort: what fails here is logged, and the caller reports the first error.
    pub(crate) async fn abandon(&self, ledger: &Ledger, why: &str) {
        let reason = format!("not run: its batch was not recorded: {why}");
        for (name, run, unique) in &self.task_runs {
            let skipped = ledger
                .set_status(name, *run, Status::Pending, Status::Skipped, Some(&reason))
                .await;
            let released = match unique {
                Some(key) => {
                    let (lock, owner) = unique_task_lock(name, key, *run);
                    ledger.release_named_lock(&lock, &owner).await
                }
                None => Ok(()),
            };
            if let Err(e) = skipped.and(released) {
                tracing::warn!(task = *name, run, error = %e, "cannot record an abandoned task run skipped");
            }
        }
    }
}

/// Adds members to a recorded batch: `ctx.batch().add(..)`.
pub(crate) struct Members {
    pub ledger: Ledger,
    pub keys: Arc<Keyring>,
    pub registry: Registry,
}

impl Members {
    async fn add_now(&self, id: BatchId, members: Vec<BatchMember>) -> Result<()> {
        let info = self
            .ledger
            .batch_info(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("batch {id} is not in the ledger"))?;
        let placement = if info.in_process {
            Placement::InProcess
        } else {
            Placement::Workers(info.queue.as_deref())
        };
        let prepared = prepare(
            &self.ledger,
            &self.keys,
            &self.registry,
            &members,
            placement,
        )
        .await?;
        let finished = format!("batch {id} has finished: members can no longer be added to it");
        match self.ledger.add_members(id, &prepared.members).await {
            Ok(true) => {}
            Ok(false) => {
                prepared.abandon(&self.ledger, &finished).await;
                anyhow::bail!(finished);
            }
            Err(e) => {
                prepared.abandon(&self.ledger, &e.to_string()).await;
                return Err(e.into());
            }
        }
        if info.kind == BatchKind::Chain && !info.in_process {
            // A chain whose links had all completed goes on with the new ones.
            self.ledger.release_next_link(id).await?;
        }
        Ok(())
    }
}

impl AddMembers for Members {
    fn add<'a>(
        &'a self,
        batch: BatchId,
        members: Vec<BatchMember>,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(self.add_now(batch, members))
    }
}

/// What a batch callback receives: the batch as it ended (or as it was when its first failure was caught),
/// the application's state and the ledger's pool.
pub struct BatchCtx {
    pub(crate) info: BatchInfo,
    pub(crate) state: Arc<StateMap>,
    pub(crate) pool: AnyPool,
}

impl BatchCtx {
    /// The batch: id, name, counts, times.
    pub fn batch(&self) -> &BatchInfo {
        &self.info
    }

    /// The batch's id.
    pub fn id(&self) -> BatchId {
        self.info.id
    }

    /// For `catch`: the ledger name of the member whose failure was caught.
    pub fn failed_member(&self) -> Option<&str> {
        self.info.failed_member.as_deref()
    }

    /// Application state registered on the builder with `.state(..)`.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.state
            .get(&std::any::TypeId::of::<T>())
            .and_then(|b| b.downcast_ref::<T>())
    }

    /// The ledger database's pool (sqlx `Any`).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A named batch callback, registered on the builder.
pub(crate) type BatchCallback =
    Arc<dyn Fn(BatchCtx) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// The batch callbacks registered on the builder, by name.
pub(crate) type BatchCallbacks = HashMap<String, BatchCallback>;
