//! The context every operation receives.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use crate::OperationMeta;

/// What an operation sees while it runs: its metadata, the attempt number and the application's typed state.
///
/// The ledger issue adds the database pool, the cancellation token and the transaction.
pub struct Ctx {
    meta: &'static OperationMeta,
    attempt: u32,
    state: Arc<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Ctx {
    /// A context for one attempt of an operation.
    pub fn new(
        meta: &'static OperationMeta,
        attempt: u32,
        state: Arc<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    ) -> Self {
        Ctx {
            meta,
            attempt,
            state,
        }
    }

    /// The running operation's metadata.
    pub fn operation(&self) -> &'static OperationMeta {
        self.meta
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Application state of type `T` registered on the builder, if any.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.state
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }

    /// Ends the operation as skipped with a reason: `return ctx.skip("nothing to do");`.
    pub fn skip(&self, reason: impl Into<String>) -> crate::Result<()> {
        Err(crate::Skip(reason))
    }
}
