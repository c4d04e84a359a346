//! Operations built at run time: registries of no-op, sleeping and time-stamping operations, random DAGs.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use sequencer::{BoxFuture, Ctx, Dependency, OperationDef, OperationMeta, Registry, Timestamp};

use crate::setup::AnyError;

/// How long each operation of the DAG runs sleep, by ledger name.
pub(crate) static DURATIONS: LazyLock<RwLock<HashMap<&'static str, Duration>>> =
    LazyLock::new(Default::default);
/// When each queued operation started, by ledger name (wake-up latency).
pub(crate) static STARTS: LazyLock<Mutex<HashMap<&'static str, Instant>>> =
    LazyLock::new(Default::default);

pub(crate) fn noop(_ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async { Ok(()) })
}

pub(crate) fn sleeper(ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    let d = DURATIONS
        .read()
        .ok()
        .and_then(|m| m.get(ctx.operation().name).copied())
        .unwrap_or_default();
    Box::pin(async move {
        tokio::time::sleep(d).await;
        Ok(())
    })
}

pub(crate) fn stamp(ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    if let Ok(mut m) = STARTS.lock() {
        m.insert(ctx.operation().name, Instant::now());
    }
    Box::pin(async { Ok(()) })
}

/// A registry of `deps.len()` operations; operation `i` depends on the operations `deps[i]`.
pub(crate) fn registry(
    tag: &str,
    deps: &[Vec<usize>],
    handler: sequencer::Handler,
    asynchronous: bool,
) -> Result<Registry, AnyError> {
    let names: Vec<&'static str> = (0..deps.len())
        .map(|i| &*Box::leak(format!("{tag}_{i:06}").into_boxed_str()))
        .collect();
    let mut builder = Registry::builder();
    for (i, d) in deps.iter().enumerate() {
        let depends_on: Vec<Dependency> =
            d.iter().map(|&j| Dependency::Operation(names[j])).collect();
        let timestamp = Timestamp::from_unix_seconds(1_704_067_200 + i as i64)
            .ok_or("timestamp out of range")?;
        let meta = OperationMeta {
            depends_on: Box::leak(depends_on.into_boxed_slice()),
            asynchronous,
            ..OperationMeta::new(names[i], timestamp)
        };
        let def = OperationDef::new(meta, handler);
        builder = builder.operation(Box::leak(Box::new(def)));
    }
    Ok(builder.build()?)
}

/// A seeded random DAG: each operation depends on 0–4 earlier ones (2 on average).
pub(crate) fn random_dag(n: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let mut d: Vec<usize> = if i == 0 {
                Vec::new()
            } else {
                (0..rng.usize(0..=4)).map(|_| rng.usize(0..i)).collect()
            };
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect()
}
