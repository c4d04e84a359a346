// Every key of `#[operation(...)]` at least once, and the metadata the macro generates from them.
use std::time::{Duration, SystemTime};

use sequencer::{Backoff, Dependency, Hooks, Middleware, RetryPolicy, Schedule, Unique};

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(
        timestamp = "2024_01_15_115900",
        retry_until = "30m",
        backoff = [1, 5, 10],
        execute_at = "02:00",
        environments = ["production", "staging"],
        should_run = is_needed,
        throttle_on = is_needed,
        estimate = "90s",
        encrypted,
    )]
    async fn seed_plans(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(
        timestamp = "2024_01_15_120000",
        name = "create_users",
        rollback = drop_users,
        retries = 3,
        backoff = 30,
        transaction,
        idempotent,
        tags = ["users", "priority:high"],
        before = prepare,
        after = clean_up,
        failed = notify,
    )]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(
        timestamp = "20240115120100", // the compact form; the ledger name uses the canonical one
        depends_on = [create_users, "2024_01_15_115900_seed_plans", migration(20240101000000)],
        allowed_to_fail,
        retries = 5,
        backoff = "2m",
        retry_until = "1h",
        max_exceptions = 3,
        timeout = "2m",
        fail_on_timeout,
        middleware = [
            rate_limited("api", 60/min),
            without_overlapping("orders").release_after("60s").expire_after("180s"),
            throttle_exceptions(10, "5m").backoff("5s").by("x"),
        ],
    )]
    async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(
        timestamp = "2024_01_15_120200",
        execute_at = "2026-12-01T02:00:00Z",
        asynchronous,
        queue = "imports",
        unique = "import-invoices",
        unique_for = "1h"
    )]
    async fn import_invoices(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_01_15_120300", execute_at = due, middleware = [rate_limited("mail")])]
    async fn send_report(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(
        timestamp = "2024_01_15_120400",
        delay = "10m",
        asynchronous,
        idempotent = false
    )]
    async fn warm_cache(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn drop_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn prepare(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn clean_up(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn notify(_ctx: &Ctx, _error: &Error) -> Result<()> {
        Ok(())
    }

    async fn is_needed(_ctx: &Ctx) -> bool {
        true
    }

    pub fn due() -> std::time::SystemTime {
        std::time::SystemTime::UNIX_EPOCH
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn main() {
    let registry = ops::registry();
    let order: Vec<_> = registry
        .ordered()
        .unwrap()
        .iter()
        .map(|op| op.meta.name)
        .collect();
    assert_eq!(
        order,
        [
            "2024_01_15_115900_seed_plans",
            "create_users",
            "2024_01_15_120100_backfill_orders",
            "2024_01_15_120200_import_invoices",
            "2024_01_15_120300_send_report",
            "2024_01_15_120400_warm_cache",
        ]
    );

    let seed = registry.get("2024_01_15_115900_seed_plans").unwrap();
    assert_eq!(seed.meta.fn_name, "seed_plans");
    assert!(seed.meta.module_path.ends_with("::ops"));
    assert_eq!(seed.meta.retry.tries, u32::MAX);
    assert_eq!(seed.meta.retry.retry_until, Some(secs(1800)));
    let Backoff::List(list) = seed.meta.retry.backoff else {
        panic!("a backoff list")
    };
    assert_eq!(list, [secs(1), secs(5), secs(10)]);
    assert_eq!(
        seed.meta.schedule,
        Some(Schedule::TimeOfDay {
            hour: 2,
            minute: 0,
            second: 0
        })
    );
    assert_eq!(seed.meta.environments, ["production", "staging"]);
    assert!(seed.meta.conditional && seed.should_run.is_some());
    assert!(seed.throttle_on.is_some());
    assert_eq!(seed.meta.estimate, Some(secs(90)));
    assert!(seed.meta.encrypted);
    assert!(seed.rollback.is_none() && !seed.meta.rollbackable);

    let create = registry.get("create_users").unwrap();
    assert_eq!(create.meta.timestamp.version(), 20240115120000);
    assert!(create.meta.rollbackable && create.rollback.is_some());
    assert_eq!(
        create.meta.retry,
        RetryPolicy {
            tries: 3,
            backoff: Backoff::Fixed(secs(30)),
            ..RetryPolicy::ONCE
        }
    );
    assert!(create.meta.transaction && create.meta.idempotent);
    assert_eq!(create.meta.tags, ["users", "priority:high"]);
    assert_eq!(
        create.meta.hooks,
        Hooks {
            before: true,
            after: true,
            failed: true
        }
    );
    assert!(create.before.is_some() && create.after.is_some() && create.failed.is_some());

    let backfill = registry.get("2024_01_15_120100_backfill_orders").unwrap();
    assert_eq!(
        backfill.meta.depends_on,
        [
            Dependency::Operation("create_users"),
            Dependency::Operation("2024_01_15_115900_seed_plans"),
            Dependency::Migration(20240101000000),
        ]
    );
    assert!(backfill.meta.allowed_to_fail);
    assert_eq!(
        backfill.meta.retry,
        RetryPolicy {
            tries: 5,
            backoff: Backoff::Fixed(secs(120)),
            retry_until: Some(secs(3600)),
            max_exceptions: Some(3),
        }
    );
    assert_eq!(backfill.meta.timeout, Some(secs(120)));
    assert!(backfill.meta.fail_on_timeout);
    assert_eq!(
        backfill.meta.middleware,
        [
            Middleware::RateLimited {
                limiter: "api",
                limit: Some((60, secs(60)))
            },
            Middleware::WithoutOverlapping {
                key: "orders",
                release_after: Some(secs(60)),
                expire_after: Some(secs(180)),
            },
            Middleware::ThrottleExceptions {
                max: 10,
                window: secs(300),
                backoff: Some(secs(5)),
                by: Some("x"),
            },
        ]
    );

    let import = registry.get("2024_01_15_120200_import_invoices").unwrap();
    assert_eq!(import.meta.schedule, Some(Schedule::At(1_796_090_400)));
    assert!(import.meta.asynchronous);
    assert_eq!(import.meta.queue, Some("imports"));
    assert_eq!(
        import.meta.unique,
        Some(Unique {
            key: "import-invoices",
            hold_for: Some(secs(3600))
        })
    );

    let report = registry.get("2024_01_15_120300_send_report").unwrap();
    assert_eq!(report.meta.schedule, Some(Schedule::Computed));
    assert_eq!((report.execute_at.unwrap())(), SystemTime::UNIX_EPOCH);
    assert_eq!(
        report.meta.middleware,
        [Middleware::RateLimited {
            limiter: "mail",
            limit: None
        }]
    );

    let warm = registry.get("2024_01_15_120400_warm_cache").unwrap();
    assert_eq!(warm.meta.schedule, Some(Schedule::Delay(secs(600))));
    assert!(warm.meta.asynchronous && warm.meta.queue.is_none());
    assert!(!warm.meta.idempotent);
    assert_eq!(warm.meta.retry, RetryPolicy::ONCE);
}
