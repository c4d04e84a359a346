//! The runtime of [sequencer](https://docs.rs/sequencer): operation definitions, registries and their
//! start-up validation, and the context an operation runs with.
//!
//! Most users depend on the `sequencer` facade crate, which re-exports everything here.
#![warn(missing_docs)]

pub mod crypto;
mod ctx;
mod deferred;
mod error;
mod events;
mod executor;
pub mod ledger;
pub mod orchestrator;
mod registry;
pub mod render;
mod sequencer;
mod strategy;
mod worker;

pub use ctx::{Cancelled, Ctx, StateMap, TxGuard};
pub use deferred::DeferredReport;
pub use error::{Skip, Skipped};
pub use events::Event;
pub use executor::{Layer, Next, Outcome};
pub use orchestrator::{
    AllowedToFailBatch, Batch, DependencyGraph, Orchestrator, Scheduled, Sequential,
    TransactionalBatch,
};
pub use registry::{
    BoxFuture, Condition, DueTime, FailedHook, Handler, Operation, OperationDef, Registry,
    RegistryBuilder, RegistryError,
};
pub use sequencer::{
    only_environments, only_hosts, Guard, Limit, OutcomeKind, PendingBatch, PendingChain, Preview,
    ProcessOptions, RollbackTarget, RunReport, Sequencer, SequencerBuilder, SequencerError,
    StatusEntry, DEFAULT_CONCURRENCY, DEFAULT_DATABASE_URL,
};
pub use sequencer_core::{
    Backoff, Dependency, Hooks, Middleware, OperationMeta, RetryPolicy, Schedule, SourceLocation,
    Timestamp, Unique,
};
pub use strategy::{MigrateReport, MigrationStrategy, Strategy};
pub use tokio_util::sync::CancellationToken;
pub use worker::{WorkOptions, WorkReport, DEFAULT_QUEUE};

/// The error an operation returns: any error converts into it with `?`.
pub type Error = anyhow::Error;

/// The result of an operation, `Result<()>` by default.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// Helpers the generated code calls; not part of the public API.
#[doc(hidden)]
pub mod glue {
    use std::future::Future;

    use crate::{BoxFuture, Error, Result};

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
}
