//! `migrate revert` on every backend: down migrations newest first, each after rolling back the operations that
//! ran after its migration (by timestamp, by `depends_on = [migration(V)]`, and their dependents); an operation
//! without a rollback refuses the revert unless forced (then it is recorded `stale`); `--dry-run` changes nothing.

mod common;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use common::{backends, drop_database, fresh_database, rows, Backend};
use sequencer::ledger::Status;
use sequencer::{Registry, RevertOptions, Sequencer, SequencerBuilder, SequencerError, Strategy};
use sequencer_tests::rev_ops::{chain, ops, stuck, RevertKnobs};

const A: i64 = 20240101000000;
const B: i64 = 20240201000000;
const C: i64 = 20240301000000;

fn builder(
    url: &str,
    registry: Registry,
    dir: &str,
    strategy: Strategy,
    knobs: &Arc<RevertKnobs>,
) -> SequencerBuilder {
    Sequencer::builder()
        .registry(registry)
        .database(url.to_owned())
        .migrations(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir),
        )
        .strategy(strategy)
        .state(knobs.clone())
}

async fn build(b: &Backend, builder: SequencerBuilder) -> Sequencer {
    builder
        .build()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", b.name))
}

/// The versions in `_sqlx_migrations`, oldest first.
async fn applied(seq: &Sequencer) -> Vec<i64> {
    sequencer::sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(seq.ledger().pool())
        .await
        .expect("_sqlx_migrations")
}

/// Each operation's status, by function name.
async fn statuses(seq: &Sequencer) -> Vec<(String, Status)> {
    let mut out: Vec<(String, Status)> = rows(seq)
        .await
        .into_iter()
        .map(|(n, r)| (n, r.status))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn short(names: &[String]) -> Vec<&str> {
    names.iter().map(|n| n.split_at(18).1).collect()
}

async fn table_exists(seq: &Sequencer, table: &str) -> bool {
    let sql = match table {
        "rv_b" => "SELECT COUNT(*) FROM rv_b",
        "rv_c" => "SELECT COUNT(*) FROM rv_c",
        _ => "SELECT COUNT(*) FROM rv_a",
    };
    sequencer::sqlx::query(sql)
        .execute(seq.ledger().pool())
        .await
        .is_ok()
}

fn revert(to: Option<i64>, force_operations: bool, dry_run: bool) -> RevertOptions {
    RevertOptions {
        to,
        force_operations,
        dry_run,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_rolls_back_the_operations_that_ran_after_the_migration_first() {
    use Status::{Completed, RolledBack};
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let knobs = Arc::new(RevertKnobs::default());
        let seq = build(
            &b,
            builder(
                &url,
                ops::registry(),
                "reversible",
                Strategy::migration().into(),
                &knobs,
            ),
        )
        .await;
        assert!(seq.migrate().await.unwrap().succeeded(), "{}", b.name);
        let all_done = statuses(&seq).await;
        assert!(all_done.iter().all(|(_, s)| *s == Completed), "{}", b.name);

        // The plan: C, after `r_late` (written after C) and `r_needs_c` (it needs C), newest first.
        let plan = seq
            .revert_migrations(&revert(None, false, true))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert!(plan.dry_run && plan.reverted.is_empty(), "{}", b.name);
        assert_eq!(plan.plan.len(), 1, "{}", b.name);
        assert_eq!(plan.plan[0].version, C, "{}", b.name);
        assert_eq!(
            short(&plan.plan[0].operations),
            ["r_late", "r_needs_c"],
            "{}",
            b.name
        );
        assert_eq!(applied(&seq).await, [A, B, C], "{}: dry run", b.name);
        assert_eq!(statuses(&seq).await, all_done, "{}: dry run", b.name);

        // Reverting C: its operations are rolled back while its table still exists (their rollbacks delete from
        // it), then its down migration drops the table.
        let report = seq
            .revert_migrations(&revert(None, false, false))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(
            short(&report.rolled_back),
            ["r_late", "r_needs_c"],
            "{}",
            b.name
        );
        assert_eq!(report.reverted, [(C, "create c".to_owned())], "{}", b.name);
        assert_eq!(applied(&seq).await, [A, B], "{}", b.name);
        assert!(!table_exists(&seq, "rv_c").await, "{}", b.name);
        assert_eq!(
            statuses(&seq).await,
            [
                ("r_fill_a".into(), Completed),
                ("r_fill_b".into(), Completed),
                ("r_late".into(), RolledBack),
                ("r_needs_c".into(), RolledBack)
            ],
            "{}",
            b.name
        );

        // `--to V` wants an applied V, and lists them.
        let err = seq
            .revert_migrations(&revert(Some(C), false, false))
            .await
            .expect_err("C is not applied");
        assert!(matches!(err, SequencerError::Usage(_)), "{}: {err}", b.name);
        assert!(
            err.to_string().contains(&format!("({A}, {B})")),
            "{}: {err}",
            b.name
        );

        // `--to A`: B goes, after `r_fill_b`; `r_fill_a`, written before B, stays.
        let report = seq
            .revert_migrations(&revert(Some(A), false, false))
            .await
            .unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(short(&report.rolled_back), ["r_fill_b"], "{}", b.name);
        assert_eq!(applied(&seq).await, [A], "{}", b.name);
        assert!(
            table_exists(&seq, "rv_a").await && !table_exists(&seq, "rv_b").await,
            "{}",
            b.name
        );
        assert!(
            statuses(&seq)
                .await
                .contains(&("r_fill_a".into(), Completed)),
            "{}",
            b.name
        );

        // `migrate` applies them again and runs the rolled-back operations again, in the chronological order.
        let again = seq.migrate().await.unwrap();
        assert!(again.succeeded(), "{}: {again:?}", b.name);
        assert_eq!(applied(&seq).await, [A, B, C], "{}", b.name);
        assert_eq!(statuses(&seq).await, all_done, "{}", b.name);
        drop(seq);
        drop_database(&b, db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_of_an_operation_that_needs_the_migration_go_first() {
    use Status::{Completed, RolledBack};
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let knobs = Arc::new(RevertKnobs::default());
        // The command strategy: `migrate` applies A, B and C, then `process` runs the operations.
        let seq = build(
            &b,
            builder(
                &url,
                chain::registry(),
                "reversible",
                Strategy::command(),
                &knobs,
            ),
        )
        .await;
        assert_eq!(seq.migrate().await.unwrap().applied.len(), 3, "{}", b.name);
        assert!(seq.execute_all().await.unwrap().succeeded(), "{}", b.name);

        // `c_tally` (written before B and C) depends on `c_needs_c`, which needs C: both go, the dependent first.
        let report = seq
            .revert_migrations(&revert(None, false, false))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(
            short(&report.rolled_back),
            ["c_tally", "c_needs_c"],
            "{}",
            b.name
        );
        assert_eq!(
            statuses(&seq).await,
            [
                ("c_fill_a".into(), Completed),
                ("c_needs_c".into(), RolledBack),
                ("c_tally".into(), RolledBack)
            ],
            "{}",
            b.name
        );

        // `--to 0`: every migration, B then A, and `c_fill_a` before A.
        let report = seq
            .revert_migrations(&revert(Some(0), false, false))
            .await
            .unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(
            report.reverted.iter().map(|r| r.0).collect::<Vec<_>>(),
            [B, A],
            "{}",
            b.name
        );
        assert_eq!(short(&report.rolled_back), ["c_fill_a"], "{}", b.name);
        assert!(applied(&seq).await.is_empty(), "{}", b.name);
        assert!(!table_exists(&seq, "rv_a").await, "{}", b.name);
        drop(seq);
        drop_database(&b, db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_without_a_rollback_blocks_unless_forced() {
    use Status::{Completed, RolledBack, Stale};
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let knobs = Arc::new(RevertKnobs::default());
        let seq = build(
            &b,
            builder(
                &url,
                stuck::registry(),
                "reversible",
                Strategy::migration().into(),
                &knobs,
            ),
        )
        .await;
        assert!(seq.migrate().await.unwrap().succeeded(), "{}", b.name);
        let all_done = statuses(&seq).await;

        // Refused before anything is undone, naming the operation and the way out.
        let err = seq
            .revert_migrations(&revert(None, false, false))
            .await
            .expect_err("s_warm has no rollback");
        let message = err.to_string();
        assert!(
            matches!(err, SequencerError::Usage(_))
                && message.contains("2024_03_15_000000_s_warm")
                && message.contains("--force-operations"),
            "{}: {message}",
            b.name
        );
        assert_eq!(statuses(&seq).await, all_done, "{}", b.name);
        assert_eq!(applied(&seq).await, [A, B, C], "{}", b.name);

        // The forced plan: `s_flaky` rolled back, `s_warm` recorded stale; the dry run changes nothing.
        let plan = seq
            .revert_migrations(&revert(None, true, true))
            .await
            .unwrap();
        assert_eq!(
            short(&plan.plan[0].operations),
            ["s_flaky", "s_warm"],
            "{}",
            b.name
        );
        assert_eq!(short(&plan.plan[0].stale), ["s_warm"], "{}", b.name);
        assert_eq!(statuses(&seq).await, all_done, "{}", b.name);

        // A rollback that fails stops the revert there: nothing after it, and C stays applied.
        knobs.fail_rollback.store(true, SeqCst);
        let report = seq
            .revert_migrations(&revert(None, true, false))
            .await
            .unwrap();
        assert!(!report.succeeded(), "{}", b.name);
        let (failed, why) = report.failed_rollback.clone().expect("failed rollback");
        assert!(
            failed.ends_with("s_flaky") && why.contains("cache server is down"),
            "{}: {why}",
            b.name
        );
        assert!(
            report.stale.is_empty() && report.reverted.is_empty(),
            "{}",
            b.name
        );
        assert_eq!(statuses(&seq).await, all_done, "{}", b.name);
        assert_eq!(applied(&seq).await, [A, B, C], "{}", b.name);

        // Fixed: the revert goes through, `s_warm` recorded stale with why.
        knobs.fail_rollback.store(false, SeqCst);
        let report = seq
            .revert_migrations(&revert(None, true, false))
            .await
            .unwrap();
        assert!(report.succeeded(), "{}: {report:?}", b.name);
        assert_eq!(short(&report.rolled_back), ["s_flaky"], "{}", b.name);
        assert_eq!(short(&report.stale), ["s_warm"], "{}", b.name);
        assert_eq!(applied(&seq).await, [A, B], "{}", b.name);
        let rows = rows(&seq).await;
        assert_eq!(rows["s_flaky"].status, RolledBack, "{}", b.name);
        assert_eq!(rows["s_warm"].status, Stale, "{}", b.name);
        assert!(
            rows["s_warm"]
                .skip_reason
                .as_deref()
                .is_some_and(|r| r.contains("--force-operations")),
            "{}: {:?}",
            b.name,
            rows["s_warm"].skip_reason
        );
        assert_ne!(rows["s_warm"].status, Completed);
        drop(seq);
        drop_database(&b, db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_without_a_down_migration_is_refused_before_anything() {
    use Status::Completed;
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let knobs = Arc::new(RevertKnobs::default());
        // A is a plain migration (no down migration), B a reversible one.
        let seq = build(
            &b,
            builder(
                &url,
                chain::registry(),
                "partly_reversible",
                Strategy::command(),
                &knobs,
            ),
        )
        .await;
        assert_eq!(seq.migrate().await.unwrap().applied.len(), 2, "{}", b.name);
        assert_eq!(
            seq.execute_all().await.unwrap().results.len(),
            1,
            "{}",
            b.name
        );
        let missing_a = |err: SequencerError| {
            assert!(
                matches!(err, SequencerError::Usage(_))
                    && err
                        .to_string()
                        .contains("`20240101000000_create_a.down.sql` is missing"),
                "{}: {err}",
                b.name
            );
        };
        // Everything: refused before B (which could be reverted) is touched, and before `c_fill_a` is.
        missing_a(
            seq.revert_migrations(&revert(Some(0), true, false))
                .await
                .expect_err("A has no down migration"),
        );
        assert_eq!(applied(&seq).await, [A, B], "{}", b.name);
        assert!(table_exists(&seq, "rv_b").await, "{}", b.name);
        assert_eq!(
            statuses(&seq).await[0],
            ("c_fill_a".into(), Completed),
            "{}",
            b.name
        );
        // B alone goes; then A is refused the same way.
        let report = seq
            .revert_migrations(&revert(None, false, false))
            .await
            .unwrap();
        assert_eq!(report.reverted, [(B, "create b".to_owned())], "{}", b.name);
        missing_a(
            seq.revert_migrations(&revert(None, true, false))
                .await
                .expect_err("A has no down migration"),
        );
        assert_eq!(applied(&seq).await, [A], "{}", b.name);
        assert_eq!(
            statuses(&seq).await[0],
            ("c_fill_a".into(), Completed),
            "{}",
            b.name
        );
        drop(seq);
        drop_database(&b, db).await;
    }
}

/// `migrate revert` through the CLI: exit 2 for a refusal, 1 for a failed rollback, 0 otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reverts_with_its_exit_codes() {
    for b in backends().await {
        let (url, db) = fresh_database(&b).await;
        let knobs = Arc::new(RevertKnobs::default());
        let cli = |args: &'static [&'static str]| {
            let builder = builder(
                &url,
                stuck::registry(),
                "reversible",
                Strategy::migration().into(),
                &knobs,
            );
            let args = ["app"].into_iter().chain(args.iter().copied());
            let args: Vec<&str> = args.collect();
            tokio::task::spawn_blocking(move || sequencer::cli::run_from(builder, args))
        };
        assert_eq!(
            cli(&["migrate"]).await.unwrap(),
            ExitCode::SUCCESS,
            "{}",
            b.name
        );
        let seq = build(
            &b,
            builder(
                &url,
                stuck::registry(),
                "reversible",
                Strategy::migration().into(),
                &knobs,
            ),
        )
        .await;
        let all_done = statuses(&seq).await;
        let code = cli(&["migrate", "revert", "--dry-run", "--force-operations"]);
        assert_eq!(code.await.unwrap(), ExitCode::SUCCESS, "{}", b.name);
        let code = cli(&["migrate", "revert", "--to", "20240201000001"]);
        assert_eq!(code.await.unwrap(), ExitCode::from(2), "{}", b.name);
        let code = cli(&["migrate", "revert"]);
        assert_eq!(code.await.unwrap(), ExitCode::from(2), "{}: s_warm", b.name);
        assert_eq!(statuses(&seq).await, all_done, "{}", b.name);
        assert_eq!(applied(&seq).await, [A, B, C], "{}", b.name);

        knobs.fail_rollback.store(true, SeqCst);
        let code = cli(&["migrate", "revert", "--force-operations"]);
        assert_eq!(code.await.unwrap(), ExitCode::from(1), "{}", b.name);
        assert_eq!(applied(&seq).await, [A, B, C], "{}", b.name);
        knobs.fail_rollback.store(false, SeqCst);
        let code = cli(&["migrate", "revert", "--force-operations"]);
        assert_eq!(code.await.unwrap(), ExitCode::SUCCESS, "{}", b.name);
        assert_eq!(applied(&seq).await, [A, B], "{}", b.name);
        drop(seq);
        drop_database(&b, db).await;
    }
}
