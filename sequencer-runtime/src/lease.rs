//! Time under a lease: the heartbeat that renews a claim, and a wait that a cancellation cuts short. One copy of
//! each, for every claim the ledger holds (operations, jobs, deferred rows) and every wait of the executor.

use std::collections::HashMap;
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
/// A claim held with its cancellation token ([`Held::hold_cancel`]) is renewed by its worker's heartbeat, which
/// fires the token when the claim was lost or `cancel NAME` asked it to stop.
#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<HashMap<String, Option<CancellationToken>>>);

impl Held {
    /// Holds `key` until the returned guard is dropped (the run ended, or its future was dropped).
    pub(crate) fn hold(self: &Arc<Self>, key: String) -> HeldGuard {
        self.hold_with(key, None)
    }

    /// Holds `key` as [`Held::hold`] does, with the token [`Held::cancel`] fires.
    pub(crate) fn hold_cancel(
        self: &Arc<Self>,
        key: String,
        cancel: CancellationToken,
    ) -> HeldGuard {
        self.hold_with(key, Some(cancel))
    }

    fn hold_with(self: &Arc<Self>, key: String, cancel: Option<CancellationToken>) -> HeldGuard {
        self.lock().insert(key.clone(), cancel);
        HeldGuard {
            held: self.clone(),
            key,
        }
    }

    /// What is held now.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Fires the cancellation token `key` is held with, if it is still held.
    pub(crate) fn cancel(&self, key: &str) {
        if let Some(Some(token)) = self.lock().get(key) {
            token.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<CancellationToken>>> {
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
