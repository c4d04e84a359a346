//! On every backend the ledger compares its keys and names exactly as written: a task's `unique` key, a
//! `without_overlapping` lock, rate-limit and throttle keys that differ only in case, accents or trailing spaces
//! are different keys (MySQL / MariaDB compared them case- and accent-insensitively, padded with spaces, before
//! schema version 16); keys longer than the ledger's columns are kept apart too (stored hashed); task names that
//! differ only in case are different tasks, listed and shown apart on the dashboard; and an older MySQL /
//! MariaDB ledger is made exact by version 16, its rows kept.

mod common;

use common::http::{attrs, get, serve};
use common::{backends, build, builder, cleanup, prefix, Backend};
use sequencer::dashboard::{self, DashboardOptions};
use sequencer::ledger::TaskRunsPage;
use sequencer::{sqlx, Sequencer};

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Whom to mail.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Mail {
        pub to: String,
    }

    /// One queued run per recipient: the key is the recipient, as written.
    #[task(unique = recipient)]
    pub async fn mail(_ctx: &Ctx, args: Mail) -> Result<()> {
        let _ = args;
        Ok(())
    }

    fn recipient(args: &Mail) -> String {
        args.to.clone()
    }
}

fn mysql(b: &Backend) -> bool {
    b.url.starts_with("mysql") || b.url.starts_with("mariadb")
}

/// Dispatches a `mail` to `to`: its run, `None` when dropped for a held key.
async fn mail(seq: &Sequencer, b: &Backend, to: &str) -> Option<i64> {
    seq.dispatch::<ops::mail>(ops::Mail { to: to.into() })
        .await
        .unwrap_or_else(|e| panic!("{}: dispatch to {to:?}: {e}", b.name))
        .map(|r| r.run)
}

/// Keys a server could take for one another: case, accents, trailing spaces.
const NEAR: [&str; 5] = [
    "customer:Bob",
    "customer:bob",
    "customer:bob ",
    "customer:bób",
    "customer:BOB\u{a0}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_differing_only_in_case_accents_or_trailing_spaces_are_different_keys() {
    for b in backends().await {
        let (n, p) = (b.name, prefix());
        let seq = build(&b, builder(&b, &p, ops::registry())).await;
        // A `unique` key per recipient: each one queued, none taken for another's duplicate.
        let mut runs = Vec::new();
        for to in NEAR {
            runs.push(mail(&seq, &b, to).await);
        }
        assert_eq!(
            runs,
            [Some(1), Some(2), Some(3), Some(4), Some(5)],
            "{n}: every key its own run"
        );
        assert_eq!(mail(&seq, &b, "customer:bob").await, None, "{n}: held");

        let ledger = seq.ledger();
        let hold = std::time::Duration::from_secs(60);
        // `without_overlapping` locks: each its own.
        for (i, key) in NEAR.iter().enumerate() {
            let taken = ledger
                .try_named_lock(&format!("overlap:t:{key}"), &format!("o{i}"), hold)
                .await
                .unwrap();
            assert!(taken, "{n}: the lock of {key:?} is its own");
        }
        // Its owner's release releases its own lock only.
        ledger
            .release_named_lock("overlap:t:customer:bob", "o0")
            .await
            .unwrap();
        assert!(
            !ledger
                .try_named_lock("overlap:t:customer:Bob", "again", hold)
                .await
                .unwrap(),
            "{n}: another owner's release left the lock held"
        );
        // Rate limits: one start per window for each key.
        for key in NEAR {
            let hit = ledger
                .rate_limit_hit(&format!("rate:{key}"), 1_000, 1)
                .await
                .unwrap();
            assert!(hit, "{n}: the window of {key:?} is its own");
        }
        // Throttles: a failure closes its own key only.
        ledger
            .throttle_failure("throttle:customer:Bob", 1, 60_000)
            .await
            .unwrap();
        assert!(
            ledger
                .throttle_until("throttle:customer:Bob")
                .await
                .unwrap()
                > 0
        );
        for key in &NEAR[1..] {
            assert_eq!(
                ledger
                    .throttle_until(&format!("throttle:{key}"))
                    .await
                    .unwrap(),
                0,
                "{n}: {key:?} is not closed by another key's failures"
            );
        }
        cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_longer_than_the_columns_are_kept_apart_on_every_backend() {
    for b in backends().await {
        let (n, p) = (b.name, prefix());
        let seq = build(&b, builder(&b, &p, ops::registry())).await;
        // Two long keys sharing their first 400 characters; multi-byte ones; one as long as the column.
        let long = "x".repeat(400);
        let wide = "é".repeat(300);
        let keys = [
            format!("{long}:1"),
            format!("{long}:2"),
            format!("{wide}a"),
            format!("{wide}b"),
            "k".repeat(191),
            format!("{} ", "k".repeat(191)),
        ];
        let mut runs = Vec::new();
        for k in &keys {
            runs.push(mail(&seq, &b, k).await);
        }
        assert_eq!(
            runs,
            [Some(1), Some(2), Some(3), Some(4), Some(5), Some(6)],
            "{n}: every long key its own run"
        );
        for k in &keys {
            assert_eq!(mail(&seq, &b, k).await, None, "{n}: a long key is held");
        }
        let ledger = seq.ledger();
        let hold = std::time::Duration::from_secs(60);
        for k in &keys[..2] {
            assert!(ledger.try_named_lock(k, "a", hold).await.unwrap(), "{n}");
            assert!(!ledger.try_named_lock(k, "b", hold).await.unwrap(), "{n}");
            ledger.release_named_lock(k, "a").await.unwrap();
            assert!(ledger.try_named_lock(k, "b", hold).await.unwrap(), "{n}");
            assert!(ledger.rate_limit_hit(k, 7, 1).await.unwrap(), "{n}");
            assert!(!ledger.rate_limit_hit(k, 7, 1).await.unwrap(), "{n}");
        }
        ledger.throttle_failure(&keys[0], 1, 60_000).await.unwrap();
        assert!(ledger.throttle_until(&keys[0]).await.unwrap() > 0, "{n}");
        assert_eq!(ledger.throttle_until(&keys[1]).await.unwrap(), 0, "{n}");
        cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_names_differing_only_in_case_are_different_tasks() {
    for b in backends().await {
        let (n, p) = (b.name, prefix());
        let seq = build(&b, builder(&b, &p, ops::registry())).await;
        let ledger = seq.ledger();
        for (name, note) in [("Charge", "upper"), ("charge", "lower")] {
            let recorded = ledger
                .insert_task_run(name, 1, &format!("{{\"note\":\"{note}\"}}"))
                .await
                .unwrap_or_else(|e| panic!("{n}: record {name}/1: {e}"));
            assert!(recorded, "{n}: {name} run 1 is its own row");
        }
        assert_eq!(ledger.next_task_run("charge").await.unwrap(), 2, "{n}");
        assert_eq!(ledger.next_task_run("CHARGE").await.unwrap(), 1, "{n}");
        // A page at a time, one run a page: every run once, in byte order (`C` < `c`).
        let (mut walked, mut after) = (Vec::new(), None::<(String, i64)>);
        for _ in 0..5 {
            let page = ledger
                .task_runs_page(&TaskRunsPage {
                    task: None,
                    status: None,
                    after: after.as_ref().map(|(name, run)| (name.as_str(), *run)),
                    limit: 1,
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.row.name.clone(), last.row.run));
            walked.extend(page.iter().map(|r| format!("{}/{}", r.row.name, r.row.run)));
        }
        assert_eq!(walked, ["Charge/1", "charge/1"], "{n}: paged");
        let port = serve(dashboard::router_with(
            seq.clone(),
            DashboardOptions::default(),
        ))
        .await;
        let list = get(port, "/admin/ops/tasks").await;
        assert_eq!(list.status, 200, "{n}: {}", list.body);
        let mut runs = attrs(&list.body, "data-run");
        runs.sort();
        assert_eq!(runs, ["Charge/1", "charge/1"], "{n}: {}", list.body);
        let lower = get(port, "/admin/ops/tasks?task=charge").await;
        assert_eq!(attrs(&lower.body, "data-run"), ["charge/1"], "{n}");
        for (name, own, other) in [("charge", "lower", "upper"), ("Charge", "upper", "lower")] {
            let page = get(port, &format!("/admin/ops/task/{name}/1")).await;
            assert_eq!(page.status, 200, "{n}: {}", page.body);
            assert!(
                page.body.contains(own) && !page.body.contains(other),
                "{n}: /task/{name}/1 shows its own row: {}",
                page.body
            );
        }
        cleanup(&seq, &p, &[]).await;
    }
}

/// The ledger's text columns version 16 makes exact on MySQL / MariaDB, and their collations there.
async fn collations(seq: &Sequencer, p: &str) -> Vec<(String, String, String)> {
    let sql = format!(
        "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE '{p}seq_%' AND COLLATION_NAME IS NOT NULL \
         AND (COLUMN_NAME IN ('name', 'handler', 'target', 'owner', 'queue', 'blocked_by', 'claim_token', \
         'callback_token', 'worker') OR COLUMN_NAME LIKE '%callback' OR COLUMN_NAME = 'failed_member') \
         ORDER BY TABLE_NAME, COLUMN_NAME"
    );
    sqlx::query_as(&sql)
        .fetch_all(seq.ledger().pool())
        .await
        .expect("the columns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_16_makes_an_older_ledger_exact_and_keeps_its_rows() {
    for b in backends().await {
        let (n, p) = (b.name, prefix());
        let seq = build(&b, builder(&b, &p, ops::registry())).await;
        let pool = seq.ledger().pool().clone();
        let exec = |sql: String| {
            let pool = pool.clone();
            async move {
                sqlx::query(&sql)
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        };
        if mysql(&b) {
            // Version 15's columns: the server's default collation.
            for (table, column, ty) in [
                ("locks", "name", "VARCHAR(191)"),
                ("locks", "owner", "VARCHAR(255)"),
                ("operations", "name", "VARCHAR(191)"),
                ("jobs", "name", "VARCHAR(191)"),
            ] {
                exec(format!(
                    "ALTER TABLE {p}seq_{table} MODIFY {column} {ty} \
                     CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL"
                ))
                .await;
            }
        }
        exec(format!(
            "DELETE FROM {p}seq_schema_versions WHERE version = 16"
        ))
        .await;
        // The older ledger's rows: a held key, a task run; there, another case was the same key.
        assert_eq!(mail(&seq, &b, "customer:Bob").await, Some(1), "{n}");
        assert_eq!(
            mail(&seq, &b, "customer:bob").await,
            if mysql(&b) { None } else { Some(2) },
            "{n}: before version 16"
        );
        drop(seq);

        let seq = build(&b, builder(&b, &p, ops::registry())).await;
        let versions: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT version FROM {p}seq_schema_versions WHERE version = 16"
        ))
        .fetch_all(seq.ledger().pool())
        .await
        .unwrap();
        assert_eq!(versions, [16], "{n}: version 16 applied again");
        // The rows are kept: the key still held, the run still there; another case is another key.
        let row = seq.ledger().row_of("mail", 1).await.unwrap();
        assert!(row.is_some(), "{n}: the run is kept");
        assert_eq!(mail(&seq, &b, "customer:Bob").await, None, "{n}: held");
        // Its own key now (queued before on the exact backends, so held there).
        let bob = mail(&seq, &b, "customer:bob").await;
        assert_eq!(bob, mysql(&b).then_some(2), "{n}");
        if mysql(&b) {
            let columns = collations(&seq, &p).await;
            assert!(columns.len() >= 20, "{n}: {columns:?}");
            for (table, column, collation) in &columns {
                assert!(
                    collation == "utf8mb4_nopad_bin" || collation == "utf8mb4_0900_bin",
                    "{n}: {table}.{column} is {collation}"
                );
            }
        }
        cleanup(&seq, &p, &[]).await;
    }
}
