//! The generated registries: metadata, handlers and hooks, merging across modules, and start-up validation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sequencer::{Backoff, Ctx, Dependency, OperationDef, Registry, Skipped};
use sequencer_tests::{cycle_a, cycle_b, files, orders, users, RAN};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn run<T>(f: impl Future<Output = T>) -> T {
    runtime().block_on(f)
}

fn ctx(op: &'static OperationDef, attempt: u32) -> Ctx {
    let _in_runtime = runtime().enter();
    Ctx::detached(&op.meta, attempt, Arc::default())
}

/// Tests that read [`RAN`] take this lock, so they do not see each other's records.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn taken() -> Vec<String> {
    std::mem::take(&mut *RAN.lock().unwrap())
}

fn merged() -> Registry {
    Registry::builder()
        .merge(users::registry())
        .merge(orders::registry())
        .merge(files::registry())
        .build()
        .expect("valid registry")
}

#[test]
fn inline_metadata_is_generated() {
    let r = users::registry();
    assert_eq!(r.len(), 2);
    let create = r
        .get("2024_01_15_120000_create_users")
        .expect("default ledger name");
    assert_eq!(create.meta.timestamp.version(), 20240115120000);
    assert_eq!(create.meta.fn_name, "create_users");
    assert!(create.meta.rollbackable && create.rollback.is_some());
    assert!(create.meta.idempotent);
    assert!(
        create.meta.module_path.ends_with("::users"),
        "{}",
        create.meta.module_path
    );
    assert!(create.meta.source.file.ends_with("lib.rs"));
    assert!(create.meta.source.line > 10);

    let invite = r
        .get("custom-name")
        .expect("`name` overrides the ledger name");
    assert_eq!(
        invite.meta.depends_on,
        &[Dependency::Operation("2024_01_15_120000_create_users")]
    );
    assert!(invite.meta.conditional && invite.should_run.is_some());
    assert_ne!(create.meta.checksum, invite.meta.checksum);
}

#[test]
fn handlers_hooks_and_conditions_run_the_users_code() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    taken();
    let r = merged();
    let create = r.get("2024_01_15_120000_create_users").unwrap();
    run((create.handler)(&ctx(create, 1))).unwrap();
    run((create.rollback.unwrap())(&ctx(create, 1))).unwrap();
    assert_eq!(taken(), ["create_users", "drop_users"]);

    let invite = r.get("custom-name").unwrap();
    let err = run((invite.handler)(&ctx(invite, 2))).unwrap_err();
    let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
    assert_eq!(
        chain,
        ["inviting users", "mail server down"],
        "the whole cause chain is kept"
    );
    assert!(run((invite.should_run.unwrap())(&ctx(invite, 1))));
    assert!(!run((invite.should_run.unwrap())(&ctx(invite, 2))));

    let backfill = r.get("2024_01_01_000000_backfill_orders").unwrap();
    let c = ctx(backfill, 1);
    run((backfill.before.unwrap())(&c)).unwrap();
    let err = run((backfill.handler)(&c)).unwrap_err();
    run((backfill.failed.unwrap())(&c, &err)).unwrap();
    run((backfill.after.unwrap())(&c)).unwrap();
    assert!(backfill.meta.hooks.before && backfill.meta.hooks.after && backfill.meta.hooks.failed);
    assert_eq!(
        taken(),
        [
            "invite_users attempt 2",
            "before",
            "backfill_orders",
            "failed: disk full",
            "after"
        ]
    );

    // A custom error type converts with `?`-style `Into`.
    let index = r.get("2024_01_02_000000_index_orders").unwrap();
    run((index.handler)(&ctx(index, 1))).unwrap();
}

#[test]
fn merged_registry_orders_by_dependencies_across_modules() {
    let r = merged();
    let order: Vec<&str> = r.ordered().unwrap().iter().map(|o| o.meta.name).collect();
    let pos = |n: &str| {
        order
            .iter()
            .position(|o| *o == n)
            .unwrap_or_else(|| panic!("{n} missing from {order:?}"))
    };
    // backfill_orders has the earliest timestamp but waits for both of its dependencies.
    assert!(pos("2024_01_15_120000_create_users") < pos("2024_01_01_000000_backfill_orders"));
    assert!(pos("2024_01_02_000000_index_orders") < pos("2024_01_01_000000_backfill_orders"));
    // Directory: seed_plans (09:00) waits for create_accounts (10:00).
    assert!(pos("2024_03_01_100000_create_accounts") < pos("2024_03_01_090000_seed_plans"));
    assert!(pos("2024_03_01_090000_seed_plans") < pos("2024_03_02_000000_link_users"));
    assert_eq!(order.len(), 7);
}

#[test]
fn a_cycle_across_modules_is_reported_at_start_up_with_its_path() {
    let err = Registry::builder()
        .merge(cycle_a::registry())
        .merge(cycle_b::registry())
        .build()
        .unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(
        err.problems[0].starts_with("dependency cycle: 2024_05_02_000000_second → 2024_05_01_000000_first → 2024_05_02_000000_second"),
        "{err}"
    );
    assert!(
        err.problems[0].contains("lib.rs:"),
        "the message says where: {err}"
    );
}

#[test]
fn missing_modules_and_duplicates_are_reported_at_start_up() {
    // orders depends on users: alone, its registry is incomplete.
    let err = Registry::builder()
        .merge(orders::registry())
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("depends on unknown operation `2024_01_15_120000_create_users`"),
        "{err}"
    );
    let err = Registry::builder()
        .merge(users::registry())
        .merge(users::registry())
        .build()
        .unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(
        err.problems
            .iter()
            .all(|p| p.starts_with("duplicate operation")),
        "{err}"
    );
}

#[test]
fn directory_form_takes_names_from_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    taken();
    let r = files::registry();
    let names: Vec<&str> = r.operations().iter().map(|o| o.meta.name).collect();
    assert_eq!(
        names,
        [
            "2024_03_01_090000_seed_plans",
            "2024_03_01_100000_create_accounts",
            "2024_03_02_000000_link_users"
        ]
    );
    let accounts = r.get("2024_03_01_100000_create_accounts").unwrap();
    assert!(
        accounts.meta.rollbackable,
        "the file's `rollback` fn is found"
    );
    assert_eq!(accounts.meta.tags, &["accounts"]);
    assert!(accounts
        .meta
        .source
        .file
        .ends_with("2024_03_01_100000_create_accounts.rs"));
    let seed = r.get("2024_03_01_090000_seed_plans").unwrap();
    assert_eq!(seed.meta.retry.tries, 3);
    assert_eq!(
        seed.meta.retry.backoff,
        Backoff::Fixed(Duration::from_secs(5))
    );
    assert!(!seed.meta.rollbackable);
    let link = r.get("2024_03_02_000000_link_users").unwrap();
    assert_eq!(
        link.meta.depends_on,
        &[
            Dependency::Operation("2024_03_01_090000_seed_plans"),
            Dependency::Operation("2024_01_15_120000_create_users"),
            Dependency::Migration(20240301000000)
        ]
    );
    let err = run((link.handler)(&ctx(link, 1))).unwrap_err();
    assert_eq!(
        err.downcast_ref::<Skipped>().map(|s| s.reason.as_str()),
        Some("no users to link")
    );
    run((accounts.rollback.unwrap())(&ctx(accounts, 1))).unwrap();
    assert_eq!(taken(), ["link_users", "rollback create_accounts"]);
    // Checksums are of the whole file, so each differs.
    assert_ne!(accounts.meta.checksum, seed.meta.checksum);
}

#[test]
fn the_fake_dispatcher_records_and_asserts() {
    use sequencer::testing::{Dispatcher, FakeDispatcher};
    let fake = FakeDispatcher::new();
    fake.assert_nothing_dispatched();
    run(async {
        // Application code written against `Dispatcher` runs the real sequencer in production.
        async fn on_signup(d: &dyn Dispatcher) -> Result<(), sequencer::SequencerError> {
            d.dispatch("2024_01_15_120000_create_users").await?;
            d.dispatch("2024_01_15_120000_create_users").await
        }
        on_signup(&fake).await.unwrap();
    });
    fake.assert_dispatched::<users::create_users>();
    fake.assert_dispatched_times::<users::create_users>(2);
    fake.assert_not_dispatched::<users::invite_users>();
    let missed = std::panic::catch_unwind(|| fake.assert_dispatched::<users::invite_users>());
    assert!(
        missed.is_err(),
        "asserting a dispatch that did not happen fails"
    );
    let missed = std::panic::catch_unwind(|| fake.assert_nothing_dispatched());
    assert!(missed.is_err());
}

#[test]
fn testing_runs_a_registry_on_a_throw_away_ledger() {
    use sequencer::ledger::Status;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let registry = Registry::builder()
        .merge(users::registry())
        .merge(files::registry())
        .build()
        .unwrap();
    let run = run(sequencer::testing::run(registry)).unwrap();
    // invite_users fails (its mail server is down): the run stops, and the default orchestrator undoes nothing.
    assert!(!run.report.succeeded(), "{:?}", run.report);
    assert_eq!(run.status_of("custom-name"), Some(Status::Failed));
    assert_eq!(run.status_of("create_users"), Some(Status::Completed));
    assert_eq!(run.status_of("create_accounts"), Some(Status::Pending));
    assert!(run.report.rolled_back.is_empty(), "{:?}", run.report);
    taken();
}
