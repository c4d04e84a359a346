//! Helpers the generated code calls; not part of the public API.

use std::future::Future;

use crate::registry::BoxFuture;
use crate::result::{Error, Result};

/// What an operation may return: `Result<(), E>` for any error `E` that converts into [`Error`].
#[diagnostic::on_unimplemented(
    message = "an operation must return `Result<()>`, not `{Self}`",
    label = "expected `Result<()>` (`sequencer::Result`, or `Result<(), E>` for an error type `E`)"
)]
pub trait OperationOutput {
    /// Converts into the runtime's result.
    fn into_result(self) -> Result<()>;
}

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
