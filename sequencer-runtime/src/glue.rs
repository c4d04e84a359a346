//! Helpers the generated code calls; not part of the public API.

use std::future::Future;

use crate::registry::BoxFuture;
use crate::result::{Error, Result};

/// What an operation may return: `Result<(), E>` for any error `E` that converts into [`Error`].
#[diagnostic::on_unimplemented(
    message = "an operation must return `Result<()>`, not `{Self}`",
    label = "expected `Result<()>` (from `sequencer::prelude`), or `Result<(), E>` where `E` converts into `sequencer::Error`",
    note = "accepted: `sequencer::Result<()>`, `anyhow::Result<()>`, or `Result<(), E>` for an error type `E: std::error::Error + Send + Sync + 'static` (`String` and `&str` are not: return `Err(Error::msg(message))`)"
)]
pub trait OperationOutput {
    /// Converts into the runtime's result.
    fn into_result(self) -> Result<()>;
}

// Not recommended in diagnostics: for a `Result<(), String>` the compiler then reports the message above instead of
// the unmet `String: Into<anyhow::Error>` bound inside this impl.
#[diagnostic::do_not_recommend]
impl<E: Into<Error>> OperationOutput for std::result::Result<(), E> {
    fn into_result(self) -> Result<()> {
        self.map_err(Into::into)
    }
}

/// Boxes an operation's (or hook's) future.
pub fn handler_future<'a, F>(future: F) -> BoxFuture<'a, Result<()>>
where
    F: Future + Send + 'a,
    F::Output: OperationOutput,
{
    Box::pin(async move { future.await.into_result() })
}

/// Boxes a `should_run` condition's future.
pub fn condition_future<'a, F>(future: F) -> BoxFuture<'a, bool>
where
    F: Future<Output = bool> + Send + 'a,
{
    Box::pin(future)
}

/// A task run's data, of task `T`'s type, from its context. (Bounded by `Task` alone, so that data that does not
/// serialize is reported once, on the task's `Args`.)
pub fn task_args<T: crate::task_def::Task>(ctx: &crate::ctx::Ctx) -> Result<T::Args> {
    ctx.task_args()
}

/// A handler's future that fails at once (a task whose data cannot be read).
pub fn failed_future<'a>(error: Error) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move { Err(error) })
}

/// Task `T`'s data from its stored JSON, for computing its keys.
pub fn decode_args<T: crate::task_def::Task>(json: &str) -> Result<T::Args> {
    <T::Args as crate::task_def::TaskArgs>::from_json(json)
        .map_err(|e| anyhow::anyhow!("the stored arguments do not fit the task's type: {e}"))
}

/// The tags a `tags = f` function returns, as strings.
pub fn task_tags<I>(tags: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    tags.into_iter().map(Into::into).collect()
}
