//! The migration strategy on every backend: migrations and operations interleave by timestamp, an operation that
//! depends on a later migration waits for it, a failing migration stops everything after it.

mod common;

use std::path::Path;

use common::{backends, drop_database, fresh_database, Backend};
use sequencer::ledger::Status;
use sequencer::sqlx::migrate::Migrator;
use sequencer::{Event, Sequencer, Strategy, Via};
use sequencer_tests::mig_ops::ops;

async fn sequencer(b: &Backend, url: &str, dir: &str, strategy: Strategy) -> Sequencer {
    let migrator = Migrator::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir),
    )
    .await
    .expect("migrations");
    Sequencer::builder()
        .registry(ops::registry())
        .database(url.to_owned())
        .migrator(migrator)
        .strategy(strategy)
        .build()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", b.name))
}

/// Migrations and operations in the order their events came.
async fn drain(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        match e {
            Event::MigrationEnded { version, .. } => out.push(format!("M{version}")),
            // Operations `migrate` ran say so; any other run would show as `via: name`.
            Event::OperationSucceeded { name, via, .. } => out.push(match via {
                Via::Migrate => name.split_at(18).1.to_owned(),
                other => format!("{other}: {}", name.split_at(18).1),
            }),
            Event::OperationFailed { name, via, .. } => out.push(format!(
                "FAILED {}{}",
                if via == Via::Migrate {
                    ""
                } else {
                    "(not migrate) "
                },
                name.split_at(18).1
            )),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_and_operations_interleave_by_timestamp() {
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let seq = sequencer(&b, &url, "ok", Strategy::migration().into()).await;
        let mut rx = seq.subscribe();
        let report = seq.migrate().await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let got = drain(&mut rx).await;
        assert_eq!(
            got,
            [
                "m_early",
                "M20240101000000",
                "m_between",
                "M20240201000000",
                "M20240301000000",
                "m_needs_c",
                "m_late"
            ],
            "{}",
            b.name
        );
        // Nothing pending, and every operation has run: migrate does nothing.
        let again = seq.migrate().await.unwrap();
        assert!(
            again.applied.is_empty() && again.runs.is_empty(),
            "{}",
            b.name
        );
        assert!(matches!(rx.try_recv(), Ok(Event::NoPendingMigrations)));
        drop(seq);
        drop_database(&b, db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pending_migrations_with_and_without_run_on_no_pending() {
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        // The command strategy: migrate only migrates.
        let plain = sequencer(&b, &url, "ok", Strategy::command()).await;
        let report = plain.migrate().await.unwrap();
        assert_eq!(report.applied.len(), 3, "{}", b.name);
        assert!(
            report.runs.is_empty(),
            "{}: the command strategy runs no operation in migrate",
            b.name
        );
        assert!(plain
            .status()
            .await
            .unwrap()
            .iter()
            .all(|e| e.status == Status::Pending));

        let without = sequencer(
            &b,
            &url,
            "ok",
            Strategy::migration()
                .run_on_no_pending_migrations(false)
                .into(),
        )
        .await;
        assert!(
            without.migrate().await.unwrap().runs.is_empty(),
            "{}",
            b.name
        );
        // The default: a release with operations but no migration still runs them on `migrate`.
        let with = sequencer(&b, &url, "ok", Strategy::migration().into()).await;
        let report = with.migrate().await.unwrap();
        assert_eq!(report.runs.len(), 1, "{}", b.name);
        assert!(
            with.status()
                .await
                .unwrap()
                .iter()
                .all(|e| e.status == Status::Completed),
            "{}",
            b.name
        );
        drop((plain, without, with));
        drop_database(&b, db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_stops_everything_after_it() {
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let seq = sequencer(&b, &url, "failing", Strategy::migration().into()).await;
        let mut rx = seq.subscribe();
        let report = seq.migrate().await.unwrap();
        assert!(!report.succeeded());
        assert_eq!(
            report.failed_migration.as_ref().map(|f| f.0),
            Some(20240301000000),
            "{}: {report:?}",
            b.name
        );
        assert_eq!(
            drain(&mut rx).await,
            ["m_early", "M20240101000000", "m_between", "M20240201000000"],
            "{}",
            b.name
        );
        let status: Vec<(String, Status)> = seq
            .status()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.name.split_at(18).1.to_owned(), e.status))
            .collect();
        assert!(
            status.contains(&("m_between".into(), Status::Completed)),
            "{}: ops already run stay recorded",
            b.name
        );
        assert!(
            status.contains(&("m_needs_c".into(), Status::Pending)),
            "{}",
            b.name
        );
        assert!(
            status.contains(&("m_late".into(), Status::Pending)),
            "{}",
            b.name
        );
        // Under the migration strategy `process` leaves the operations to `migrate`.
        let run = seq.process(&Default::default()).await.unwrap();
        assert!(
            run.planned.is_empty() && run.waiting.is_empty(),
            "{}: {run:?}",
            b.name
        );
        // Under the command strategy, `process` does not run an operation whose migration has not been applied.
        let command = sequencer(&b, &url, "failing", Strategy::command()).await;
        let run = command.process(&Default::default()).await.unwrap();
        assert!(
            run.waiting
                .iter()
                .any(|(n, why)| n.ends_with("m_needs_c") && why.contains("20240301000000")),
            "{}: {run:?}",
            b.name
        );
        drop(seq);
        drop_database(&b, db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_reads_a_migrations_directory() {
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join("ok");
        let seq = Sequencer::builder()
            .registry(ops::registry())
            .database(url.clone())
            .migrations(&dir)
            .strategy(Strategy::migration())
            .build()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let report = seq.migrate().await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        let versions: Vec<i64> = report.applied.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            versions,
            [20240101000000, 20240201000000, 20240301000000],
            "{}",
            b.name
        );
        // The directory's last migration really ran on the ledger database.
        let count: i64 = sequencer::sqlx::query_scalar("SELECT COUNT(*) FROM mig_c")
            .fetch_one(seq.ledger().pool())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert_eq!(count, 0, "{}", b.name);
        drop(seq);
        drop_database(&b, db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_migrations_directory_is_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!(
        "sequencer-no-such-migrations-{}",
        std::process::id()
    ));
    let err = match Sequencer::builder()
        .registry(ops::registry())
        .database("sqlite::memory:")
        .migrations(&dir)
        .build()
        .await
    {
        Ok(_) => panic!("a missing migrations directory was accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, sequencer::SequencerError::Usage(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot read the migrations directory")
            && message.contains(&dir.display().to_string()),
        "{message}"
    );
}

async fn deploy_sequencer(
    b: &Backend,
    url: &str,
    knobs: &std::sync::Arc<sequencer_tests::mig_ops::DeployKnobs>,
) -> Sequencer {
    let dir = match b.name {
        "PostgreSQL" => "deploy_postgres",
        "MariaDB" => "deploy_mysql",
        _ => "deploy_sqlite",
    };
    Sequencer::builder()
        .registry(sequencer_tests::mig_ops::deploy::registry())
        .database(url.to_owned())
        .migrations(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir),
        )
        .strategy(Strategy::migration())
        .state(knobs.clone())
        .build()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", b.name))
}

/// `migrate` holds the isolation lock on every backend: a second `migrate` and a `process` started while it runs
/// wait for it, and find nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_process_never_interleave() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;
    use std::time::Instant;

    use sequencer_tests::mig_ops::DeployKnobs;

    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let knobs = Arc::new(DeployKnobs::default());
        knobs.slow_ms.store(1500, SeqCst);
        let (first, second, third) = (
            deploy_sequencer(&b, &url, &knobs).await,
            deploy_sequencer(&b, &url, &knobs).await,
            deploy_sequencer(&b, &url, &knobs).await,
        );
        let mut rx = first.subscribe();
        let a = tokio::spawn(async move {
            let r = first.migrate().await;
            (r, Instant::now())
        });
        // Once the first holds the lock (it has started migrating), start the others.
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv()).await {
                Ok(Ok(Event::MigrationsStarted { .. })) => break,
                Ok(Ok(_)) => {}
                other => panic!("{}: no MigrationsStarted: {other:?}", b.name),
            }
        }
        let b2 = tokio::spawn(async move { (second.migrate().await, Instant::now()) });
        let c = tokio::spawn(async move {
            let r = third.process(&Default::default()).await;
            (r, Instant::now())
        });
        let (ra, a_end) = a.await.unwrap();
        let (rb, b_end) = b2.await.unwrap();
        let (rc, c_end) = c.await.unwrap();
        let (ra, rb, rc) = (
            ra.unwrap_or_else(|e| panic!("{}: {e}", b.name)),
            rb.unwrap_or_else(|e| panic!("{}: {e}", b.name)),
            rc.unwrap_or_else(|e| panic!("{}: {e}", b.name)),
        );
        assert!(
            ra.succeeded() && ra.applied.len() == 3,
            "{}: {ra:?}",
            b.name
        );
        assert!(
            rb.succeeded() && rb.applied.is_empty() && rb.runs.is_empty(),
            "{}: the second migrate found everything done: {rb:?}",
            b.name
        );
        assert!(
            rc.succeeded() && rc.results.is_empty(),
            "{}: the process found everything done: {rc:?}",
            b.name
        );
        assert!(
            b_end >= a_end && c_end >= a_end,
            "{}: they did not wait",
            b.name
        );
        drop_database(&b, db).await;
    }
}

/// The deploy of the issue: `add_plan` adds a nullable column, `backfill_plan` (written between the two) fills it,
/// `plan_not_null` makes it `NOT NULL`: one `migrate` runs them in that order. A failing backfill stops the
/// migrations after it, and a rerun continues from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_backfill_not_null_in_one_migrate() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;

    use sequencer_tests::mig_ops::{deploy, DeployKnobs};

    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let dir = match b.name {
            "PostgreSQL" => "deploy_postgres",
            "MariaDB" => "deploy_mysql",
            _ => "deploy_sqlite",
        };
        let knobs = Arc::new(DeployKnobs::default());
        knobs.fail.store(true, SeqCst);
        let seq = Sequencer::builder()
            .registry(deploy::registry())
            .database(url.clone())
            .migrations(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("migrations")
                    .join(dir),
            )
            .strategy(Strategy::migration())
            .state(knobs.clone())
            .build()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let mut rx = seq.subscribe();

        // The backfill fails: `plan_not_null` is not applied, and `migrate` says why.
        let report = seq.migrate().await.unwrap();
        assert!(!report.succeeded(), "{}", b.name);
        assert_eq!(
            report.applied.iter().map(|a| a.0).collect::<Vec<_>>(),
            [20240101000000, 20240201000000],
            "{}",
            b.name
        );
        let (version, why) = report.stopped_before.clone().expect("stopped");
        assert_eq!(version, 20240301000000, "{}", b.name);
        assert!(why.contains("failed"), "{}: {why}", b.name);
        assert_eq!(
            drain(&mut rx).await,
            ["M20240101000000", "M20240201000000", "FAILED backfill_plan"],
            "{}",
            b.name
        );

        // Fixed: the rerun continues with the backfill, then the NOT NULL migration.
        knobs.fail.store(false, SeqCst);
        let report = seq.migrate().await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(
            drain(&mut rx).await,
            ["backfill_plan", "M20240301000000"],
            "{}",
            b.name
        );
        let nulls: i64 =
            sequencer::sqlx::query_scalar("SELECT COUNT(*) FROM dep_accounts WHERE plan IS NULL")
                .fetch_one(seq.ledger().pool())
                .await
                .unwrap();
        assert_eq!(nulls, 0, "{}", b.name);
        drop(seq);
        drop_database(&b, db).await;
    }
}

/// The hybrid strategy: `migrate` runs the operations tagged `with_migrations` between the migrations, and leaves
/// the rest to `process`; a strategy of one's own does the same with its own rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_and_custom_strategies_split_the_operations() {
    use sequencer::{ExecutionStrategy, OperationMeta};
    use sequencer_tests::mig_ops::hybrid;

    /// `migrate` runs only `h_other`.
    struct OnlyOther;
    impl ExecutionStrategy for OnlyOther {
        fn name(&self) -> &str {
            "only-other"
        }
        fn with_migrations(&self, op: &OperationMeta) -> bool {
            op.fn_name == "h_other"
        }
    }

    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let build = |strategy: Strategy| {
            let url = url.clone();
            async move {
                Sequencer::builder()
                    .registry(hybrid::registry())
                    .database(url)
                    .migrations(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/ok"))
                    .strategy(strategy)
                    .build()
                    .await
                    .unwrap()
            }
        };
        let seq = build(Strategy::hybrid().into()).await;
        let mut rx = seq.subscribe();
        let report = seq.migrate().await.unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(
            drain(&mut rx).await,
            [
                "M20240101000000",
                "h_schema",
                "M20240201000000",
                "M20240301000000"
            ],
            "{}: only the tagged operation runs with the migrations",
            b.name
        );
        let run = seq.process(&Default::default()).await.unwrap();
        assert_eq!(
            run.planned,
            ["2024_01_16_000000_h_other"],
            "{}: process runs the rest",
            b.name
        );
        drop(seq);
        drop_database(&b, db).await;

        let (url, db) = fresh_database(&b).await;
        let custom = Sequencer::builder()
            .registry(hybrid::registry())
            .database(url)
            .migrations(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/ok"))
            .strategy(OnlyOther)
            .build()
            .await
            .unwrap();
        let mut rx = custom.subscribe();
        assert!(custom.migrate().await.unwrap().succeeded(), "{}", b.name);
        assert_eq!(
            drain(&mut rx).await,
            [
                "M20240101000000",
                "h_other",
                "M20240201000000",
                "M20240301000000"
            ],
            "{}",
            b.name
        );
        drop(custom);
        drop_database(&b, db).await;
    }
}

/// An asynchronous operation between two migrations: with `force_sync`, `migrate` runs it itself; without, it
/// queues it and waits for a worker to complete it before the next migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_operations_complete_before_the_next_migration() {
    use sequencer::{CancellationToken, WorkOptions};
    use sequencer_tests::mig_ops::asyncmig;

    for b in backends().await {
        for force_sync in [true, false] {
            let (url, db) = fresh_database(&b).await;
            let build = || {
                Sequencer::builder()
                    .registry(asyncmig::registry())
                    .database(url.clone())
                    .migrations(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/ok"))
                    .strategy(Strategy::migration().force_sync(force_sync))
                    .build()
            };
            let seq = build().await.unwrap();
            let worker = build().await.unwrap();
            let mut worker_events = worker.subscribe();
            // Both processes' events, in the order they happened.
            let timeline = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let record = |mut rx: tokio::sync::broadcast::Receiver<Event>| {
                let timeline = timeline.clone();
                tokio::spawn(async move {
                    while let Ok(e) = rx.recv().await {
                        let line = match e {
                            Event::MigrationStarted { version, .. } => format!("M{version}"),
                            Event::OperationSucceeded { name, via, .. } => {
                                format!("{via}: {}", name.split_at(18).1)
                            }
                            _ => continue,
                        };
                        timeline.lock().unwrap().push(line);
                    }
                })
            };
            let watch_migrate = record(seq.subscribe());
            let watch_worker = record(worker.subscribe());
            let stop = CancellationToken::new();
            let work = tokio::spawn({
                let stop = stop.clone();
                async move { worker.work(&WorkOptions::default(), stop).await }
            });
            let mut rx = seq.subscribe();
            let report = seq.migrate().await.unwrap();
            assert!(report.succeeded(), "{} {force_sync}: {report:?}", b.name);
            stop.cancel();
            work.await.unwrap().unwrap();
            let by_migrate = drain(&mut rx).await;
            let mut by_worker = Vec::new();
            while let Ok(e) = worker_events.try_recv() {
                if let Event::OperationSucceeded { name, via, .. } = e {
                    by_worker.push(format!("{via}: {}", name.split_at(18).1));
                }
            }
            if force_sync {
                assert_eq!(
                    by_migrate,
                    [
                        "M20240101000000",
                        "a_fill",
                        "M20240201000000",
                        "M20240301000000"
                    ],
                    "{}",
                    b.name
                );
                assert!(by_worker.is_empty(), "{}: {by_worker:?}", b.name);
            } else {
                // `migrate` applied the second migration only after the worker had completed the operation.
                assert_eq!(
                    by_migrate,
                    ["M20240101000000", "M20240201000000", "M20240301000000"],
                    "{}",
                    b.name
                );
                assert_eq!(by_worker, ["worker: a_fill"], "{}", b.name);
            }
            let expected: &[&str] = if force_sync {
                &[
                    "M20240101000000",
                    "migrate: a_fill",
                    "M20240201000000",
                    "M20240301000000",
                ]
            } else {
                &[
                    "M20240101000000",
                    "worker: a_fill",
                    "M20240201000000",
                    "M20240301000000",
                ]
            };
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(
                *timeline.lock().unwrap(),
                expected,
                "{} {force_sync}",
                b.name
            );
            watch_migrate.abort();
            watch_worker.abort();
            let rows: i64 = sequencer::sqlx::query_scalar("SELECT COUNT(*) FROM mig_a")
                .fetch_one(seq.ledger().pool())
                .await
                .unwrap();
            assert_eq!(rows, 1, "{} {force_sync}", b.name);
            drop(seq);
            drop_database(&b, db).await;
        }
    }
}
