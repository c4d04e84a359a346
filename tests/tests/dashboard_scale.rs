//! The dashboard at scale and its bulk actions, on every backend: the operations list reads a page at a time
//! with a cursor (2,000 operations, 1,500 of them in the ledger, 3 orphaned rows), its status, tag and text
//! filters select exactly what they say across pages; a bulk retry over a filter is refused without the token,
//! read-only and cross-site, applies to the filtered operations only, and leaves alone one that changed since
//! its confirmation was drawn; a single action on a stale view is refused.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::http::{get, request, serve};
use common::{backends, build, builder, cleanup, prefix};
use sequencer::dashboard::{self, DashboardOptions};
use sequencer::ledger::Status;
use sequencer::sqlx;
use sequencer::{BoxFuture, Ctx, OperationDef, OperationMeta, Registry, Sequencer, Timestamp};

const TOKEN: &str = "bulk-t0ken";

fn noop(_ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async { Ok(()) })
}

/// Whether the bulk suite's operations fail.
static FAIL: AtomicBool = AtomicBool::new(true);

fn failing(_ctx: &Ctx) -> BoxFuture<'_, sequencer::Result<()>> {
    Box::pin(async {
        if FAIL.load(Ordering::SeqCst) {
            anyhow::bail!("the upstream said no");
        }
        Ok(())
    })
}

/// `n` operations `{stem}_00000`, … one second apart; those `tagged` says carry the tag `billing`.
fn registry(
    stem: &str,
    n: usize,
    handler: sequencer::Handler,
    tagged: impl Fn(usize) -> bool,
) -> Registry {
    let mut b = Registry::builder();
    for i in 0..n {
        let name: &'static str = Box::leak(format!("{stem}_{i:05}").into_boxed_str());
        let ts = Timestamp::from_unix_seconds(1_735_689_600 + i as i64).expect("a timestamp");
        let tags: &'static [&'static str] = if tagged(i) { &["billing"] } else { &[] };
        let meta = OperationMeta {
            tags,
            ..OperationMeta::new(name, ts)
        };
        b = b.operation(Box::leak(Box::new(OperationDef::new(meta, handler))));
    }
    b.build().expect("a registry")
}

/// The operations a list page shows, and its "next" link (unescaped).
fn listed(body: &str) -> (Vec<String>, Option<String>) {
    let names = body
        .split("<tr data-op=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect();
    let next = body
        .split("class=\"next\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(|h| h.replace("&amp;", "&"));
    (names, next)
}

/// Every operation the list shows for `query`, following its "next" links; and how many pages that took.
async fn walk(port: u16, query: &str) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut url = format!("/admin/ops?{query}");
    for pages in 1..100 {
        let page = get(port, &url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        let (names, next) = listed(&page.body);
        assert!(names.len() <= 200, "{url}: {} rows", names.len());
        all.extend(names);
        match next {
            Some(n) => url = n,
            None => return (all, pages),
        }
    }
    panic!("{query}: more than 100 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operations_list_pages_with_a_cursor_and_filters_in_the_statement() {
    for b in backends().await {
        let n = b.name;
        let p = prefix();
        let reg = registry("op", 2000, noop, |i| i % 3 == 0);
        let seq = build(&b, builder(&b, &p, reg)).await;
        let ledger = seq.ledger();
        let ops = format!("{p}seq_operations");
        // 1,500 operations in the ledger (every tenth failed), 500 never recorded, and 3 rows no longer in the
        // registry with the timestamp of the 200th operation, whose names sort differently by bytes and by a
        // case-insensitive collation (MariaDB's): the first page ends among them.
        let ts_199 = seq.registry().operations()[199].meta.timestamp.version() as i64;
        let recorded: Vec<(String, i64)> = seq.registry().operations()[..1500]
            .iter()
            .map(|d| (d.meta.name.to_owned(), d.meta.timestamp.version() as i64))
            .chain(["zz_orphan_a", "zz_orphan_B", "zz_orphan_C"].map(|o| (o.to_owned(), ts_199)))
            .collect();
        let pairs: Vec<(&str, i64)> = recorded.iter().map(|(s, t)| (s.as_str(), *t)).collect();
        ledger.insert_pending(&pairs).await.expect("pending rows");
        let fail = format!(
            "UPDATE {ops} SET status = 'failed', attempts = 1, last_error = ? WHERE name = ?"
        );
        let fail = if n == "PostgreSQL" {
            sequencer::ledger::number_placeholders(&fail)
        } else {
            fail
        };
        let mut tx = ledger.pool().begin().await.expect("a transaction");
        for i in (0..1500).step_by(10) {
            let name = format!("op_{i:05}");
            sqlx::query(&fail)
                .bind(format!("Timeout talking to {name}"))
                .bind(&name)
                .execute(&mut *tx)
                .await
                .expect("a failed row");
        }
        tx.commit().await.expect("commit");
        let port = serve(dashboard::router_with(
            seq.clone(),
            DashboardOptions::default(),
        ))
        .await;

        let first = get(port, "/admin/ops").await;
        let (names, next) = listed(&first.body);
        assert_eq!(names.len(), 200, "{n}: a full first page");
        assert_eq!(names[0], "op_00000", "{n}");
        assert!(next.is_some(), "{n}: a next link");
        assert!(first.body.contains("data-status=\"failed\""), "{n}");

        let (all, pages) = walk(port, "").await;
        assert_eq!(
            all.len(),
            2003,
            "{n}: every operation once, over {pages} pages"
        );
        let mut want: Vec<String> = (0..2000).map(|i| format!("op_{i:05}")).collect();
        let orphans = ["zz_orphan_B", "zz_orphan_C", "zz_orphan_a"].map(str::to_owned);
        want.splice(200..200, orphans);
        let first_wrong = all.iter().zip(&want).position(|(a, w)| a != w);
        assert_eq!(
            first_wrong,
            None,
            "{n}: in (timestamp, name) order, names byte by byte, none twice: {:?}",
            first_wrong.map(|i| &all[i.saturating_sub(2)..(i + 3).min(all.len())])
        );

        let (failed, _) = walk(port, "status=failed").await;
        let want: Vec<String> = (0..1500)
            .step_by(10)
            .map(|i| format!("op_{i:05}"))
            .collect();
        assert_eq!(failed, want, "{n}: the failed ones, only");

        let (billing, _) = walk(port, "status=failed&tag=billing").await;
        let want: Vec<String> = (0..1500)
            .step_by(30)
            .map(|i| format!("op_{i:05}"))
            .collect();
        assert_eq!(billing, want, "{n}: failed and tagged billing");

        let (text, _) = walk(port, "q=TIMEOUT+talking+to+op_0002").await;
        assert_eq!(
            text,
            ["op_00020"],
            "{n}: the text of an error, case-insensitive"
        );
        let (text, _) = walk(port, "q=op_0199").await;
        let want: Vec<String> = (1990..2000).map(|i| format!("op_{i:05}")).collect();
        assert_eq!(text, want, "{n}: the text of a name, never recorded");
        let (none, _) = walk(port, "q=50%25_").await;
        assert!(none.is_empty(), "{n}: wildcards are text: {none:?}");

        let (pending, _) = walk(port, "status=pending").await;
        assert_eq!(
            pending.len(),
            1350 + 500 + 3,
            "{n}: recorded pending, never recorded, orphans"
        );
        assert!(!pending.contains(&"op_00010".to_owned()), "{n}");
        cleanup(&seq, &p, &[]).await;
    }
}

/// The `value`s of the confirmation's `op` fields: `NAME VERSION`.
fn drawn(body: &str) -> Vec<String> {
    body.split("name=\"op\" value=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// A bulk retry's form body: filters, operations as drawn, and `extra` fields.
fn form(ops: &[&String], extra: &str) -> String {
    let mut body = String::from("status=failed&tag=billing");
    for op in ops {
        body.push_str("&op=");
        body.push_str(&op.replace(' ', "+"));
    }
    body.push_str(extra);
    body
}

async fn status_of(seq: &Sequencer, name: &str) -> Status {
    let page = seq
        .status_page(&sequencer::StatusQuery {
            names: Some(vec![name.to_owned()]),
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("status");
    page.entries.first().map(|e| e.status).expect("listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_retry_applies_to_the_filtered_operations_that_did_not_change() {
    for b in backends().await {
        let n = b.name;
        FAIL.store(true, Ordering::SeqCst);
        let p = prefix();
        // bk_00000 .. bk_00002 tagged billing, bk_00003 and bk_00004 not.
        let seq = build(&b, builder(&b, &p, registry("bk", 5, failing, |i| i < 3))).await;
        for i in 0..5 {
            let _ = seq.execute(&format!("bk_{i:05}")).await;
        }
        let port = serve(dashboard::router_with(
            seq.clone(),
            DashboardOptions::default().token(TOKEN),
        ))
        .await;
        let read_only = serve(dashboard::router_with(
            seq.clone(),
            DashboardOptions::default().token(TOKEN).read_only(true),
        ))
        .await;

        let list = get(port, "/admin/ops?status=failed&tag=billing").await;
        assert!(
            list.body
                .contains("/admin/ops/bulk/retry?status=failed&amp;tag=billing"),
            "{n}: {}",
            list.body
        );
        let confirm = get(port, "/admin/ops/bulk/retry?status=failed&tag=billing&q=").await;
        assert_eq!(confirm.status, 200, "{n}: {}", confirm.body);
        let ops = drawn(&confirm.body);
        let names: Vec<&str> = ops.iter().filter_map(|o| o.split(' ').next()).collect();
        assert_eq!(
            names,
            ["bk_00000", "bk_00001", "bk_00002"],
            "{n}: the filtered ones"
        );
        assert!(
            confirm.body.contains("<strong>3</strong> operation(s)"),
            "{n}: {}",
            confirm.body
        );

        // Refused: no token, another site, read-only; nothing changes.
        let all: Vec<&String> = ops.iter().collect();
        let token = format!("&token={TOKEN}");
        for (at, headers, body, why) in [
            (port, vec![], form(&all, ""), "no token"),
            (
                port,
                vec!["Origin: https://evil.example"],
                form(&all, &token),
                "another origin",
            ),
            (
                port,
                vec!["Sec-Fetch-Site: cross-site"],
                form(&all, &token),
                "a cross-site fetch",
            ),
            (read_only, vec![], form(&all, &token), "read-only"),
        ] {
            let r = request(at, "POST", "/admin/ops/bulk/retry", &headers, &body).await;
            assert_eq!(r.status, 403, "{n}: {why}: {}", r.body);
        }
        for i in 0..5 {
            assert_eq!(
                status_of(&seq, &format!("bk_{i:05}")).await,
                Status::Failed,
                "{n}: refused, so unchanged"
            );
        }

        // bk_00001 fails again after the confirmation was drawn (another try: its version changes); a version of
        // bk_00003, which the filter does not match, is slipped into the form.
        let _ = seq.retry("bk_00001").await;
        assert_eq!(status_of(&seq, "bk_00001").await, Status::Failed, "{n}");
        let other = get(port, "/admin/ops/bulk/retry?status=failed&tag=&q=bk_00003").await;
        let forged = drawn(&other.body);
        assert_eq!(forged.len(), 1, "{n}: {}", other.body);
        FAIL.store(false, Ordering::SeqCst);
        let mut sent = all.clone();
        sent.push(&forged[0]);
        let r = request(
            port,
            "POST",
            "/admin/ops/bulk/retry",
            &[],
            &form(&sent, &format!("{token}&actor=bob&reason=upstream+back")),
        )
        .await;
        assert_eq!(r.status, 409, "{n}: not every one was done: {}", r.body);
        assert!(r.body.contains("2 of 4 done"), "{n}: {}", r.body);
        assert!(
            r.body.contains("changed since"),
            "{n}: the stale one says why: {}",
            r.body
        );
        assert!(
            r.body.contains("no longer matches the filter"),
            "{n}: {}",
            r.body
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        for name in ["bk_00000", "bk_00002"] {
            while status_of(&seq, name).await != Status::Completed {
                assert!(Instant::now() < deadline, "{n}: {name} never completed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for name in ["bk_00001", "bk_00003", "bk_00004"] {
            assert_eq!(
                status_of(&seq, name).await,
                Status::Failed,
                "{n}: {name} left alone"
            );
        }
        // One audit entry per operation acted on (the stale one's refusal too), none for the forged one.
        let log = seq.ledger().audit_log(20).await.expect("the audit log");
        let mut seen: Vec<(String, String)> = log
            .iter()
            .map(|a| (a.target.clone().unwrap_or_default(), a.outcome.clone()))
            .collect();
        seen.sort();
        let want = [
            ("bk_00000", "ok"),
            ("bk_00001", "error"),
            ("bk_00002", "ok"),
        ];
        assert_eq!(seen, want.map(|(a, b)| (a.to_owned(), b.to_owned())), "{n}");
        assert!(
            log.iter().all(|a| a.actor == "bob" && a.action == "retry"),
            "{n}"
        );

        // A single action on a stale view: the version drawn is not the row's now.
        let r = request(
            port,
            "POST",
            "/admin/ops/op/bk_00004/retry",
            &[],
            &format!("token={TOKEN}&expected=failed&version=failed:7:0:0"),
        )
        .await;
        assert_eq!(r.status, 409, "{n}: {}", r.body);
        assert!(
            r.body
                .contains("changed since the page you acted from was drawn"),
            "{n}: {}",
            r.body
        );
        assert_eq!(status_of(&seq, "bk_00004").await, Status::Failed, "{n}");
        let single = get(port, "/admin/ops/op/bk_00004/retry").await;
        assert!(
            single.body.contains("name=\"version\" value=\"failed:1:"),
            "{n}: {}",
            single.body
        );
        cleanup(&seq, &p, &[]).await;
    }
}

/// How many nodes the graph's SVG draws, and whether it draws `name`, in `status`.
fn nodes(body: &str) -> usize {
    body.matches("<g class=\"node ").count()
}

fn drawn_as(body: &str, name: &str, status: &str) -> bool {
    body.split("<g class=\"node ")
        .skip(1)
        .any(|g| g.starts_with(&format!("s-{status}")) && g.contains(&format!("<title>{name} (")))
}

/// The graph and the plan of a registry too large to draw whole (700 operations), read from the ledger's outline
/// (its open runs and which operations were recorded): the graph draws what is still to run (failed, running,
/// rolled back, never recorded), bounded and saying what it leaves out, never a completed one; the plan lists
/// what `process` would run: not the completed, skipped nor running ones; an operation completed then failed
/// (a later run) is due, one failed then completed is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_graph_and_the_plan_of_a_large_registry_show_what_is_left() {
    for b in backends().await {
        let n = b.name;
        let p = prefix();
        let reg = registry("gr", 700, noop, |_| false);
        let seq = build(&b, builder(&b, &p, reg)).await;
        let ledger = seq.ledger();
        let ops = format!("{p}seq_operations");
        // 650 recorded: 600 completed (the 7th to 9th skipped), 30 failed, 1 running, 1 rolled back, the others
        // pending; 50 never recorded. `gr_00003` completed then failed in a later run; `gr_00004` the reverse.
        let recorded: Vec<(&str, i64)> = seq.registry().operations()[..650]
            .iter()
            .map(|d| (d.meta.name, d.meta.timestamp.version() as i64))
            .collect();
        ledger
            .insert_pending(&recorded)
            .await
            .expect("pending rows");
        let ts = |i: usize| seq.registry().operations()[i].meta.timestamp.version();
        for sql in [
            format!("UPDATE {ops} SET status = 'completed', duration_ms = 20 WHERE name < 'gr_00600'"),
            format!("UPDATE {ops} SET status = 'skipped' WHERE name IN ('gr_00007', 'gr_00008', 'gr_00009')"),
            format!("UPDATE {ops} SET status = 'failed', duration_ms = 30 WHERE name >= 'gr_00600' AND name < 'gr_00630'"),
            format!("UPDATE {ops} SET status = 'running' WHERE name = 'gr_00630'"),
            format!("UPDATE {ops} SET status = 'rolled_back' WHERE name = 'gr_00631'"),
            format!("INSERT INTO {ops} (name, run, op_timestamp, status) VALUES ('gr_00003', 1, {}, 'failed')", ts(3)),
            format!("UPDATE {ops} SET status = 'failed' WHERE name = 'gr_00004'"),
            format!("INSERT INTO {ops} (name, run, op_timestamp, status) VALUES ('gr_00004', 1, {}, 'completed')", ts(4)),
        ] {
            sqlx::query(&sql)
                .execute(ledger.pool())
                .await
                .unwrap_or_else(|e| panic!("{n}: {sql}: {e}"));
        }
        let port = serve(dashboard::router_with(
            seq.clone(),
            DashboardOptions::default(),
        ))
        .await;

        // Left: gr_00003, 30 failed, the rolled-back one, 18 pending (632..650) and 50 never recorded: 100 to run,
        // and the running one: 101 drawn; 599 completed or skipped (600 - gr_00003 + …) not drawn.
        let graph = get(port, "/admin/ops/graph").await;
        assert_eq!(graph.status, 200, "{n}: {}", graph.body);
        assert!(
            graph.body.contains("700 operations are too many to draw")
                && graph
                    .body
                    .contains("599 completed or skipped are not drawn")
                && graph
                    .body
                    .contains("101 are still to run or need attention"),
            "{n}: says what it leaves out: {}",
            graph.body
        );
        assert_eq!(nodes(&graph.body), 101, "{n}: {}", graph.body);
        for (name, status) in [
            ("gr_00003", "failed"),
            ("gr_00600", "failed"),
            ("gr_00630", "running"),
            ("gr_00631", "rolled_back"),
            ("gr_00640", "pending"),
            ("gr_00699", "pending"),
        ] {
            assert!(
                drawn_as(&graph.body, name, status),
                "{n}: {name} drawn {status}"
            );
        }
        for name in ["gr_00000", "gr_00004", "gr_00008", "gr_00599"] {
            assert!(
                !graph.body.contains(&format!("<title>{name} (")),
                "{n}: {name} is done: not drawn"
            );
        }

        let plan = get(port, "/admin/ops/plan").await;
        assert_eq!(plan.status, 200, "{n}: {}", plan.body);
        assert!(
            plan.body.contains("100 operation(s) due"),
            "{n}: {}",
            plan.body
        );
        for name in ["gr_00003", "gr_00600", "gr_00631", "gr_00640", "gr_00699"] {
            assert!(
                plan.body.contains(&format!(">{name}</a>")),
                "{n}: {name} planned"
            );
        }
        for name in ["gr_00000", "gr_00004", "gr_00008", "gr_00630"] {
            assert!(
                !plan.body.contains(&format!(">{name}</a>")),
                "{n}: {name} not planned"
            );
        }
        let preview = seq
            .preview(&sequencer::ProcessOptions::default())
            .await
            .expect("a preview");
        assert_eq!(
            (
                preview.planned.len(),
                preview.last_durations.get("gr_00600")
            ),
            (100, Some(&30)),
            "{n}"
        );

        // More left than the graph draws: only the first 500 in execution order, and it says so.
        sqlx::query(&format!(
            "UPDATE {ops} SET status = 'failed' WHERE name < 'gr_00500'"
        ))
        .execute(ledger.pool())
        .await
        .expect("fail more");
        let graph = get(port, "/admin/ops/graph").await;
        assert_eq!(nodes(&graph.body), 500, "{n}");
        assert!(
            graph.body.contains(
                "the first 500 of them in execution order are drawn, the other 100 are not"
            ),
            "{n}: {}",
            graph.body
        );
        assert!(
            drawn_as(&graph.body, "gr_00000", "failed"),
            "{n}: first in order"
        );
        cleanup(&seq, &p, &[]).await;
    }
}
