//! User middleware around every attempt: [`Layer`] and the rest of its chain, [`Next`].

use std::sync::Arc;

use crate::ctx::Ctx;
use crate::registry::{BoxFuture, OperationDef};
use crate::result::Result;

/// User middleware: wraps every attempt of every operation, on every path (register it with
/// [`SequencerBuilder::layer`](crate::SequencerBuilder::layer)). Call `next.run(ctx)` to go on, or return
/// without calling it to stop the attempt; an `Err` is treated like the operation's own (`Err(Skip(..))` skips).
/// Layers run inside the timeout, between the `before` and `after` hooks, outermost first in the order added.
///
/// ```
/// use sequencer::{BoxFuture, Ctx, Layer, Next, Result, Skip};
///
/// /// Logs every attempt.
/// struct Audit;
///
/// impl Layer for Audit {
///     fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, Result<()>> {
///         Box::pin(async move {
///             tracing::info!(operation = ctx.operation().name, "starting");
///             next.run(ctx).await
///         })
///     }
/// }
///
/// /// Skips operations tagged `paused` instead of running them.
/// struct Pause;
///
/// impl Layer for Pause {
///     fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, Result<()>> {
///         Box::pin(async move {
///             if ctx.operation().tags.contains(&"paused") {
///                 return Err(Skip("paused by the Pause layer"));
///             }
///             next.run(ctx).await
///         })
///     }
/// }
///
/// #[sequencer::operations]
/// mod ops {
///     use sequencer::prelude::*;
///
///     #[operation(timestamp = "2024_01_15_120000", tags = ["paused"])]
///     async fn reindex(_ctx: &Ctx) -> Result<()> {
///         unreachable!("the Pause layer skips it")
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let builder = sequencer::Sequencer::builder().registry(ops::registry()).layer(Audit).layer(Pause);
/// # let ledger = sequencer::testing::ledger(builder).await.unwrap();
/// # let report = ledger.sequencer.execute_all().await.unwrap();
/// # assert_eq!(report.count(|o| matches!(o, sequencer::Outcome::Skipped { .. })), 1);
/// # }
/// ```
pub trait Layer: Send + Sync {
    /// Runs around one attempt.
    fn handle<'a>(&'a self, ctx: &'a Ctx, next: Next<'a>) -> BoxFuture<'a, Result<()>>;
}

/// The rest of the chain: the next layer, then the operation. See [`Layer`] for an example.
pub struct Next<'a> {
    pub(crate) layers: &'a [Arc<dyn Layer>],
    pub(crate) def: &'static OperationDef,
}

impl<'a> Next<'a> {
    /// Runs the rest of the chain.
    pub fn run(self, ctx: &'a Ctx) -> BoxFuture<'a, Result<()>> {
        match self.layers.split_first() {
            Some((layer, rest)) => layer.handle(
                ctx,
                Next {
                    layers: rest,
                    def: self.def,
                },
            ),
            None => (self.def.handler)(ctx),
        }
    }
}
