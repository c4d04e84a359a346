//! Time under a lease: the heartbeat that renews a claim, and a wait that a cancellation cuts short. One copy of
//! each, for every claim the ledger holds (operations, jobs, deferred rows) and every wait of the executor.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

/// Calls `renew` every third of `lease` (the first time after a third) on its own task, until the returned guard
/// is dropped: the heartbeat of every claim the ledger holds under a lease (operations, jobs, deferred rows). A
/// guard, so that a run whose future is dropped (a caller's timeout, a worker's grace running out) stops renewing.
pub(crate) fn renew_every_third<F, Fut>(lease: Duration, mut renew: F) -> DropGuard
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(lease / 3);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => renew().await,
            }
        }
    });
    stop.drop_guard()
}

/// Sleeps for `wait`, or less if `cancel` fires first.
pub(crate) async fn sleep_or_cancel(wait: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = cancel.cancelled() => {}
    }
}

/// The claims this process holds and is running (operation claim tokens, job ids), so that they are renewed before
/// anything is recovered: after an outage longer than the lease, a process's own live claims look expired too.
#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<HashSet<String>>);

impl Held {
    /// Holds `key` until the returned guard is dropped (the run ended, or its future was dropped).
    pub(crate) fn hold(self: &Arc<Self>, key: String) -> HeldGuard {
        self.lock().insert(key.clone());
        HeldGuard {
            held: self.clone(),
            key,
        }
    }

    /// What is held now.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Releases a [`Held`] key when dropped.
#[derive(Debug)]
pub(crate) struct HeldGuard {
    held: Arc<Held>,
    key: String,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.held.lock().remove(&self.key);
    }
}
