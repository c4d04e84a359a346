//! The typed handlers of deferred operations, registered on the builder and erased so that a stored JSON
//! payload can be handed to them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sequencer_core::OperationMeta;

use crate::ctx::Ctx;
use crate::registry::{BoxFuture, BLANK_META};
use crate::result::Result;

/// A type-erased deferred handler.
pub(crate) type ErasedHandler =
    Arc<dyn for<'a> Fn(&'a Ctx, serde_json::Value) -> BoxFuture<'a, Result<()>> + Send + Sync>;

/// The handlers and aliases registered on the builder.
#[derive(Clone, Default)]
pub(crate) struct DeferredHandlers {
    pub handlers: HashMap<String, (ErasedHandler, &'static OperationMeta)>,
    pub aliases: HashMap<String, String>,
    pub retry_delay: Duration,
}

impl DeferredHandlers {
    pub(crate) fn resolve(
        &self,
        name: &str,
    ) -> Option<(&str, &(ErasedHandler, &'static OperationMeta))> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.handlers
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// A payload that does not deserialize into the handler's type: failed at once, never retried.
#[derive(Debug)]
pub(crate) struct MalformedPayload(pub(crate) String);

impl std::fmt::Display for MalformedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MalformedPayload {}

/// Wraps a typed handler.
pub(crate) fn erase<T, F>(name: &str, handler: F) -> (ErasedHandler, &'static OperationMeta)
where
    T: serde::de::DeserializeOwned + Send + 'static,
    F: for<'a> Fn(&'a Ctx, T) -> BoxFuture<'a, Result<()>> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let erased: ErasedHandler = Arc::new(move |ctx: &Ctx, value: serde_json::Value| {
        match serde_json::from_value::<T>(value) {
            Ok(payload) => handler(ctx, payload),
            Err(e) => {
                let err = MalformedPayload(format!(
                    "malformed payload for `{}`: {e}",
                    ctx.operation().name
                ));
                Box::pin(async move { Err(anyhow::Error::new(err)) })
            }
        }
    });
    // One metadata record per handler, for its `Ctx`; handlers are registered once, at start-up.
    let meta: &'static OperationMeta = Box::leak(Box::new(OperationMeta {
        name: Box::leak(format!("deferred:{name}").into_boxed_str()),
        fn_name: Box::leak(name.to_owned().into_boxed_str()),
        ..BLANK_META
    }));
    (erased, meta)
}
