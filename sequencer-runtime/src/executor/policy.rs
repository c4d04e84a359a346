//! The policies around an operation's claim and attempts: `unique` keys and `without_overlapping` locks,
//! rate limits and exception throttles, all held in the ledger database so that every process shares them.

use std::collections::HashMap;
use std::time::Duration;

use sequencer_core::Middleware;
use tokio_util::sync::CancellationToken;

use crate::lease::sleep_or_cancel;
use crate::ledger::error::LedgerError;
use crate::ledger::{new_claim_token, Ledger, Owner};
use crate::registry::OperationDef;
use crate::task_def::TaskKeys;

/// The lock a task run's `unique` key is held under, and its owner: taken when the run is dispatched, released
/// when it has ended (or when `unique_for` runs out).
pub(crate) fn unique_task_lock(task: &str, key: &str, run: i64) -> (String, String) {
    (format!("unique:{task}:{key}"), format!("task:{task}:{run}"))
}

/// What the policies read: the ledger that holds their state, who runs, and the run's cancellation.
pub(crate) struct Policies<'a> {
    pub ledger: &'a Ledger,
    pub owner: &'a Owner,
    pub cancel: &'a CancellationToken,
    /// Named rate limits defined on the builder: `(starts, per)`.
    pub limiters: &'a HashMap<String, (u32, Duration)>,
}

/// The `unique` key and `without_overlapping` locks an operation holds while it runs: `(lock, owner)`.
pub(crate) type HeldLocks = Vec<(String, String)>;

/// Why the locks an operation needs were not all taken.
pub(crate) enum LockRefusal {
    /// One is held by another run: the operation is left as it was, with this reason.
    Busy(String),
    /// The ledger failed.
    Ledger(LedgerError),
}

impl From<LedgerError> for LockRefusal {
    fn from(e: LedgerError) -> Self {
        LockRefusal::Ledger(e)
    }
}

impl Policies<'_> {
    /// Takes the `unique` key and the `without_overlapping` locks, waiting for those with `release_after`.
    /// A task run's `unique` key was taken at dispatch; its `without_overlapping` key comes from its data
    /// (`task`).
    pub(crate) async fn take_locks(
        &self,
        def: &'static OperationDef,
        task: Option<&TaskKeys>,
    ) -> Result<HeldLocks, LockRefusal> {
        let meta = &def.meta;
        // A random token per acquisition: only this acquisition releases what it took.
        let owner = format!(
            "{}:{}:{}",
            self.owner.host,
            self.owner.pid,
            new_claim_token()
        );
        let mut held: Vec<(String, String)> = Vec::new();
        let mut wanted: Vec<(String, Duration, Option<Duration>, String)> = Vec::new();
        if let Some(key) = task.and_then(|k| k.overlap.as_deref()) {
            wanted.push((
                format!("overlap:{}:{key}", meta.name),
                Duration::from_secs(3600),
                None,
                format!("`without_overlapping` key `{key}` is held by another run"),
            ));
        }
        if let Some(u) = meta.unique.filter(|_| task.is_none()) {
            let hold = u.hold_for.unwrap_or(Duration::from_secs(3600));
            wanted.push((
                format!("unique:{}", u.key),
                hold,
                None,
                format!("unique key `{}` is held by another run", u.key),
            ));
        }
        for m in meta.middleware {
            if let Middleware::WithoutOverlapping {
                key,
                release_after,
                expire_after,
            } = m
            {
                let expire = expire_after.unwrap_or(Duration::from_secs(3600));
                wanted.push((
                    format!("overlap:{key}"),
                    expire,
                    *release_after,
                    format!("`without_overlapping(\"{key}\")` is held by another run"),
                ));
            }
        }
        for (name, hold, retry_after, reason) in wanted {
            loop {
                match self.ledger.try_named_lock(&name, &owner, hold).await {
                    Ok(true) => {
                        held.push((name.clone(), owner.clone()));
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => return Err(LockRefusal::Ledger(e)),
                }
                let Some(wait) = retry_after.filter(|_| !self.cancel.is_cancelled()) else {
                    for (n, o) in &held {
                        self.ledger.release_named_lock(n, o).await?;
                    }
                    return Err(LockRefusal::Busy(reason));
                };
                sleep_or_cancel(wait, self.cancel).await;
            }
        }
        Ok(held)
    }

    /// Waits for the operation's rate limits and closed throttles before an attempt. A task's `rate_limit_key`
    /// (`rate_key`) counts its rate limits per key.
    pub(crate) async fn before_attempt(
        &self,
        def: &'static OperationDef,
        rate_key: Option<&str>,
    ) -> Result<(), LedgerError> {
        for m in def.meta.middleware {
            match m {
                Middleware::RateLimited { limiter, limit } => {
                    let Some((count, per)) = limit.or_else(|| self.limiters.get(*limiter).copied())
                    else {
                        continue;
                    };
                    let per_ms = (per.as_millis() as i64).max(1);
                    let window_name = match rate_key {
                        Some(k) => format!("{limiter}:{k}"),
                        None => (*limiter).to_owned(),
                    };
                    loop {
                        let now = self.ledger.db_now().await?;
                        let window = now - now.rem_euclid(per_ms);
                        if self
                            .ledger
                            .rate_limit_hit(&window_name, window, count)
                            .await?
                            || self.cancel.is_cancelled()
                        {
                            break;
                        }
                        let wait = Duration::from_millis((window + per_ms - now).max(1) as u64);
                        sleep_or_cancel(wait, self.cancel).await;
                    }
                }
                Middleware::ThrottleExceptions { backoff, by, .. } => {
                    let key = by.unwrap_or(def.meta.name);
                    loop {
                        let until = self.ledger.throttle_until(key).await?;
                        let now = self.ledger.db_now().await?;
                        if until <= now || self.cancel.is_cancelled() {
                            break;
                        }
                        let mut wait = Duration::from_millis((until - now) as u64);
                        if let Some(b) = backoff {
                            wait = wait.min(*b).max(Duration::from_millis(1));
                        }
                        sleep_or_cancel(wait, self.cancel).await;
                    }
                }
                Middleware::WithoutOverlapping { .. } | Middleware::Named(_) => {}
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against the operation's `throttle_exceptions`.
    pub(crate) async fn after_failure(
        &self,
        def: &'static OperationDef,
    ) -> Result<(), LedgerError> {
        for m in def.meta.middleware {
            if let Middleware::ThrottleExceptions {
                max, window, by, ..
            } = m
            {
                self.ledger
                    .throttle_failure(by.unwrap_or(def.meta.name), *max, window.as_millis() as i64)
                    .await?;
            }
        }
        Ok(())
    }
}

/// `delay` less a random part of up to `fraction` of it; `unit` is a random number in [0, 1).
pub(crate) fn jittered(delay: Duration, fraction: f64, unit: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    delay.mul_f64(1.0 - fraction * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::jittered;
    use std::time::Duration;

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let d = Duration::from_secs(10);
        assert_eq!(jittered(d, 0.0, 0.9), d);
        assert_eq!(jittered(d, 0.5, 0.0), d);
        assert_eq!(jittered(d, 0.5, 1.0), Duration::from_secs(5));
        assert_eq!(jittered(d, 0.2, 0.5), Duration::from_secs(9));
        assert_eq!(
            jittered(d, 7.0, 1.0),
            Duration::ZERO,
            "a fraction above 1 is clamped"
        );
    }
}
