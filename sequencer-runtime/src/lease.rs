//! Time under a lease: the heartbeat that renews a claim, and a wait that a cancellation cuts short. One copy of
//! each, for every claim the ledger holds (operations, jobs, deferred rows) and every wait of the executor.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Calls `renew` every third of `lease` (the first time after a third) on its own task, until the returned token
/// is cancelled: the heartbeat of every claim the ledger holds under a lease (operations, jobs, deferred rows).
pub(crate) fn renew_every_third<F, Fut>(lease: Duration, mut renew: F) -> CancellationToken
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
    stop
}

/// Sleeps for `wait`, or less if `cancel` fires first.
pub(crate) async fn sleep_or_cancel(wait: Duration, cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = cancel.cancelled() => {}
    }
}
