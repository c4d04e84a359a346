//! One attempt on its own task: `before`, the layers and the operation, `after`, under the timeout, with panics
//! caught and reported as errors.

use std::sync::Arc;
use std::time::Duration;

use crate::ctx::Ctx;
use crate::executor::layer::{Layer, Next};
use crate::executor::watchdog::{HardTimeout, Watchdog};
use crate::registry::{BoxFuture, OperationDef};
use crate::result::{Error, Result};

/// How an attempt failed.
pub(crate) enum AttemptError {
    /// The operation (or a hook) returned an error or panicked.
    Failed(Error),
    /// The timeout ran out first.
    TimedOut(Error),
}

/// One attempt: `before`, the operation, `after`, under the timeout (and its hard timeout, if any), with panics
/// caught.
pub(crate) async fn attempt_once(
    def: &'static OperationDef,
    ctx: Arc<Ctx>,
    layers: Arc<Vec<Arc<dyn Layer>>>,
    hard: Option<HardTimeout>,
) -> Result<(), AttemptError> {
    run_task(
        ctx,
        move |ctx| {
            Box::pin(async move {
                if let Some(before) = def.before {
                    before(ctx)
                        .await
                        .map_err(|e| e.context("the `before` hook failed"))?;
                }
                Next {
                    layers: &layers,
                    def,
                }
                .run(ctx)
                .await?;
                if let Some(after) = def.after {
                    after(ctx)
                        .await
                        .map_err(|e| e.context("the `after` hook failed"))?;
                }
                Ok(())
            })
        },
        def.meta.timeout,
        hard,
    )
    .await
}

/// Runs `f(ctx)` on its own task so that a panic is caught and reported, under an optional timeout. With a hard
/// timeout, a watchdog thread ends the process unless the task has ended by its limit: after the timeout, the
/// aborted task is awaited (it ends at its next `.await`; a task stuck in blocking code does not).
pub(crate) async fn run_task<F>(
    ctx: Arc<Ctx>,
    f: F,
    timeout: Option<Duration>,
    hard: Option<HardTimeout>,
) -> Result<(), AttemptError>
where
    F: for<'a> FnOnce(&'a Ctx) -> BoxFuture<'a, Result<()>> + Send + 'static,
{
    let cancel = ctx.cancellation().clone();
    let name = ctx.operation().name;
    let watchdog = hard.and_then(Watchdog::arm);
    let mut task = tokio::spawn(async move { f(&ctx).await });
    let abort = task.abort_handle();
    // Dropped before the task ends (the caller's future was dropped): the operation stops with it, never left
    // running detached.
    let _abort_on_drop = AbortOnDrop(abort.clone());
    let joined = match timeout {
        Some(limit) => match tokio::time::timeout(limit, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                cancel.cancel();
                abort.abort();
                if watchdog.is_some() {
                    // Ended only once the task has: the watchdog ends the process if it never does.
                    let _ = task.await;
                }
                drop(watchdog);
                let d = humantime_secs(limit);
                return Err(AttemptError::TimedOut(anyhow::anyhow!(
                    "`{name}` timed out after {d}"
                )));
            }
        },
        None => task.await,
    };
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(AttemptError::Failed(e)),
        Err(join) if join.is_panic() => {
            let panic = join.into_panic();
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned());
            Err(AttemptError::Failed(anyhow::anyhow!(
                "`{name}` panicked: {msg}"
            )))
        }
        Err(join) => Err(AttemptError::Failed(anyhow::anyhow!(
            "`{name}` was cancelled: {join}"
        ))),
    }
}

fn humantime_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Aborts a task when dropped (a no-op once it has ended).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
