//! The dashboard's batches and tasks pages on every backend, nested under `/admin/ops`: batches with their
//! progress and members (linked to their operation or task run), task runs counted and filtered by task and state,
//! every page paginated with a cursor, batch names, task arguments and errors escaped, an `encrypted` task's
//! arguments and errors never shown, and the retry of a failed task run refused without the token, read-only,
//! cross-site and on a stale view, then done with the token and recorded in the audit log; task runs are not
//! listed among the operations; a batch cancelled from its page behind the same refusals, its running member
//! seeing it and its member not started not starting. And `prune` deleting
//! the old progress samples of ended runs, keeping a running run's.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use common::http::{assert_refused, attrs, get, request, serve, Refusers};
use common::{backends, build, builder, cleanup, prefix};
use sequencer::crypto::Keyring;
use sequencer::dashboard::{self, DashboardOptions};
use sequencer::ledger::{MemberState, Status};
use sequencer::{sqlx, BatchMember, Sequencer, WorkOptions};

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;
    use serde::{Deserialize, Serialize};

    /// What to charge.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Charge {
        pub note: String,
    }

    /// Secret data.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Secret {
        pub ssn: String,
    }

    #[operation(timestamp = "2025_04_01_000000")]
    async fn step(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Fails when its note says `fail`.
    #[task]
    pub async fn charge(_ctx: &Ctx, args: Charge) -> Result<()> {
        if args.note.contains("fail") {
            anyhow::bail!("<script>alert(3)</script> declined");
        }
        Ok(())
    }

    /// In a batch: waits (up to a minute) until its batch is cancelled; fails if it never is.
    #[operation(timestamp = "2025_04_01_000001")]
    async fn watcher(ctx: &Ctx) -> Result<()> {
        let batch = ctx
            .batch()
            .ok_or_else(|| anyhow::anyhow!("not in a batch"))?;
        for _ in 0..600 {
            if batch.cancelled().await? {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::bail!("the batch was never cancelled")
    }

    /// Queued after `watcher` in the same batch: must not start once the batch is cancelled.
    #[operation(timestamp = "2025_04_01_000002")]
    async fn later(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[task(encrypted)]
    pub async fn secret(_ctx: &Ctx, args: Secret) -> Result<()> {
        anyhow::bail!("refused the ssn {}", args.ssn)
    }
}

const STEP: &str = "2025_04_01_000000_step";
const WATCHER: &str = "2025_04_01_000001_watcher";
const LATER: &str = "2025_04_01_000002_later";
const TOKEN: &str = "pages-t0ken";
const SSN: &str = "123-45-6789";

/// Runs `sql` (written for `?` placeholders) with PostgreSQL's numbered ones where needed.
fn sql(seq: &Sequencer, s: &str) -> String {
    if seq.ledger().dialect() == sequencer::ledger::Dialect::Postgres {
        sequencer::ledger::number_placeholders(s)
    } else {
        s.to_owned()
    }
}

/// A page's "next" link, unescaped.
fn next(body: &str) -> Option<String> {
    body.split("class=\"next\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(|h| h.replace("&amp;", "&"))
}

/// Every value of `attr` across the pages from `url` on, following "next"; and how many pages.
async fn walk(port: u16, url: &str, attr: &str, per_page: usize) -> (Vec<String>, usize) {
    let (mut all, mut url) = (Vec::new(), url.to_owned());
    for pages in 1..50 {
        let page = get(port, &url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        let got = attrs(&page.body, attr);
        assert!(got.len() <= per_page, "{url}: {} rows", got.len());
        all.extend(got);
        match next(&page.body) {
            Some(n) => url = n,
            None => return (all, pages),
        }
    }
    panic!("{url}: more than 50 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_and_tasks_pages_paginate_escape_mask_and_retry_behind_the_token() {
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    for b in backends().await {
        let n = b.name;
        let p = prefix();
        let keys = Keyring::new(Some(&key), []).expect("a key");
        let seq = build(&b, builder(&b, &p, ops::registry()).encryption_keys(keys)).await;
        let ledger = seq.ledger();

        // A real batch, named with markup: an operation and a task run, in this process.
        let info = seq
            .batch(vec![
                BatchMember::from(STEP),
                BatchMember::task::<ops::charge>(ops::Charge {
                    note: "<script>alert(2)</script>".into(),
                }),
            ])
            .name("<script>alert(1)</script>")
            .dispatch_and_wait()
            .await
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!((info.total, info.pending), (2, 0), "{n}");
        // A failed task run, and an encrypted one that failed with its secret in the error.
        let _ = seq
            .dispatch_sync::<ops::charge>(ops::Charge {
                note: "fail".into(),
            })
            .await;
        let _ = seq
            .dispatch_sync::<ops::secret>(ops::Secret { ssn: SSN.into() })
            .await;
        let failed_run = 2;
        assert_eq!(
            ledger
                .row_of("charge", failed_run)
                .await
                .unwrap()
                .map(|r| r.status),
            Some(Status::Failed),
            "{n}"
        );
        assert_eq!(
            ledger.row_of("secret", 1).await.unwrap().map(|r| r.status),
            Some(Status::Failed),
            "{n}"
        );

        let opts = DashboardOptions::default().token(TOKEN);
        let port = serve(dashboard::router_with(seq.clone(), opts.clone())).await;
        let read_only = serve(dashboard::router_with(seq.clone(), opts.read_only(true))).await;
        let no_token = serve(dashboard::router_with(
            seq.clone(),
            DashboardOptions::default(),
        ))
        .await;

        // The batches page: the batch, its progress, its name escaped; the new pages in the nav.
        let list = get(port, "/admin/ops/batches").await;
        assert_eq!(list.status, 200, "{n}: {}", list.body);
        for part in [
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "2 of 2 done",
            "<progress max=\"2\" value=\"2\"",
            &format!("href=\"/admin/ops/batch/{}\"", info.id.0),
            "href=\"/admin/ops/batches\"",
            "href=\"/admin/ops/tasks\"",
        ] {
            assert!(list.body.contains(part), "{n}: {part} in {}", list.body);
        }
        assert!(!list.body.contains("<script>alert"), "{n}: injected");

        // One batch: its members, linked to the operation and to the task run.
        let one = get(port, &format!("/admin/ops/batch/{}", info.id.0)).await;
        assert_eq!(one.status, 200, "{n}: {}", one.body);
        assert!(
            one.body.contains(&format!("href=\"/admin/ops/op/{STEP}\""))
                && one.body.contains("href=\"/admin/ops/task/charge/1\""),
            "{n}: member links: {}",
            one.body
        );
        assert!(!one.body.contains("<script>alert"), "{n}: injected");
        assert_eq!(
            get(port, "/admin/ops/batch/999999").await.status,
            404,
            "{n}"
        );
        assert_eq!(get(port, "/admin/ops/batch/nope").await.status, 404, "{n}");

        // The tasks page: counts by task and state, arguments and errors escaped, the encrypted task masked.
        let tasks = get(port, "/admin/ops/tasks").await;
        assert_eq!(tasks.status, 200, "{n}: {}", tasks.body);
        for part in [
            "data-task=\"charge\"",
            "data-task=\"secret\"",
            "&lt;script&gt;alert(2)&lt;/script&gt;",
            "&lt;script&gt;alert(3)&lt;/script&gt; declined",
            "[encrypted task: not shown]",
            "href=\"/admin/ops/task/charge/2/retry\"",
        ] {
            assert!(tasks.body.contains(part), "{n}: {part} in {}", tasks.body);
        }
        let secret_page = get(port, "/admin/ops/task/secret/1").await;
        assert_eq!(secret_page.status, 200, "{n}: {}", secret_page.body);
        for page in [&tasks.body, &secret_page.body] {
            assert!(!page.contains(SSN), "{n}: an encrypted task's data shown");
            assert!(!page.contains("<script>alert"), "{n}: injected");
        }
        assert!(
            secret_page.body.contains("[encrypted task: not shown]"),
            "{n}: {}",
            secret_page.body
        );
        let charge_page = get(port, "/admin/ops/task/charge/1").await;
        assert!(
            charge_page
                .body
                .contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
            "{n}: {}",
            charge_page.body
        );
        assert_eq!(
            get(port, "/admin/ops/task/charge/99").await.status,
            404,
            "{n}"
        );
        // Filters in the URL.
        let failed = get(port, "/admin/ops/tasks?task=charge&status=failed").await;
        assert_eq!(
            attrs(&failed.body, "data-run"),
            ["charge/2"],
            "{n}: {}",
            failed.body
        );
        let bogus = get(port, "/admin/ops/tasks?status=bogus").await;
        assert!(bogus.body.contains("is not a status"), "{n}");

        // Task runs are not operations: the operations page does not list them (as orphaned rows).
        let operations = get(port, "/admin/ops").await;
        assert!(
            operations.body.contains(&format!("data-op=\"{STEP}\""))
                && !operations.body.contains("data-op=\"charge\"")
                && !operations.body.contains("data-op=\"secret\""),
            "{n}: {}",
            operations.body
        );

        // The retry of a failed task run: every refusal is a 403 that changes nothing.
        let retry = format!("/admin/ops/task/charge/{failed_run}/retry");
        let form = format!("token={TOKEN}");
        let at = Refusers {
            port,
            read_only,
            no_token,
        };
        assert_refused(&at, &retry, TOKEN, n).await;
        assert_eq!(
            get(read_only, &retry).await.status,
            403,
            "{n}: confirm read-only"
        );
        let ro_page = get(read_only, "/admin/ops/tasks").await;
        assert!(
            !ro_page.body.contains("/retry\""),
            "{n}: read-only offers no retry"
        );
        // A stale view: drawn when the run was in another state.
        let stale = request(
            port,
            "POST",
            &retry,
            &[],
            &format!("{form}&expected=running"),
        )
        .await;
        assert_eq!(stale.status, 409, "{n}: {}", stale.body);
        let status = |run: i64| {
            let ledger = ledger.clone();
            async move {
                ledger
                    .row_of("charge", run)
                    .await
                    .unwrap()
                    .map(|r| r.status)
            }
        };
        assert_eq!(
            status(failed_run).await,
            Some(Status::Failed),
            "{n}: refusals did nothing"
        );
        let confirm = get(port, &retry).await;
        assert!(
            confirm.body.contains("name=\"expected\" value=\"failed\""),
            "{n}: {}",
            confirm.body
        );
        let version = attrs(&confirm.body, "value")
            .into_iter()
            .find(|v| v.starts_with("failed:"))
            .expect("a version");
        // With the token, from the same origin: queued again.
        let same = format!("Origin: http://127.0.0.1:{port}");
        let signed =
            format!("{form}&actor=alice&reason=card+fixed&expected=failed&version={version}");
        let r = request(
            port,
            "POST",
            &retry,
            &[&same, "Sec-Fetch-Site: same-origin"],
            &signed,
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        assert_eq!(
            r.header("location"),
            Some(format!("/admin/ops/task/charge/{failed_run}?done=retry").as_str()),
            "{n}"
        );
        assert_eq!(
            status(failed_run).await,
            Some(Status::Pending),
            "{n}: queued again"
        );
        let again = request(port, "POST", &retry, &[], &signed).await;
        assert_eq!(again.status, 409, "{n}: a stale version: {}", again.body);
        let log = ledger.audit_log(10).await.expect("the audit log");
        let taken: Vec<_> = log
            .iter()
            .map(|a| {
                (
                    a.action.as_str(),
                    a.target.as_deref(),
                    a.outcome.as_str(),
                    a.actor.as_str(),
                )
            })
            .collect();
        assert!(
            taken.contains(&("retry_task", Some("charge"), "ok", "alice")),
            "{n}: {taken:?}"
        );
        assert_eq!(
            log.iter().filter(|a| a.action == "retry_task").count(),
            3,
            "{n}: the stale refusals and the retry, not the 403s: {taken:?}"
        );

        // Pagination: 130 more runs of `charge`, 60 more batches, 250 members of one.
        for run in 10..140 {
            assert!(
                ledger
                    .insert_task_run("charge", run, &format!("{{\"note\":\"n{run}\"}}"))
                    .await
                    .expect("a task run"),
                "{n}"
            );
        }
        let (runs, pages) = walk(port, "/admin/ops/tasks?task=charge", "data-run", 100).await;
        let unique: HashSet<&String> = runs.iter().collect();
        assert_eq!(
            (runs.len(), unique.len(), pages),
            (132, 132, 2),
            "{n}: {runs:?}"
        );
        assert_eq!(
            runs.first().map(String::as_str),
            Some("charge/139"),
            "{n}: newest first"
        );
        let (every, _) = walk(port, "/admin/ops/tasks", "data-run", 100).await;
        assert_eq!(every.len(), 133, "{n}: every task's runs");

        let batches = format!("{p}seq_job_batches");
        let members = format!("{p}seq_batch_members");
        let mut tx = ledger.pool().begin().await.expect("a transaction");
        for i in 0..60 {
            sqlx::query(&sql(&seq, &format!(
                "INSERT INTO {batches} (kind, name, queue, in_process, total, pending, failed, skipped, allow_failures, created_at) \
                 VALUES ('batch', ?, NULL, 0, 250, 250, 0, 0, 0, 1735689600000)"
            )))
            .bind(format!("bulk {i}"))
            .execute(&mut *tx)
            .await
            .expect("a batch");
        }
        tx.commit().await.expect("commit");
        let last: i64 = sqlx::query_scalar(&format!("SELECT MAX(id) FROM {batches}"))
            .fetch_one(ledger.pool())
            .await
            .expect("an id");
        let mut tx = ledger.pool().begin().await.expect("a transaction");
        for position in 0..250i64 {
            sqlx::query(&sql(&seq, &format!(
                "INSERT INTO {members} (batch_id, position, name, run, state) VALUES (?, ?, ?, 0, 'pending')"
            )))
            .bind(last)
            .bind(position)
            .bind(format!("member_{position:03}"))
            .execute(&mut *tx)
            .await
            .expect("a member");
        }
        tx.commit().await.expect("commit");
        let (ids, pages) = walk(port, "/admin/ops/batches", "data-batch", 50).await;
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len(), pages), (61, 61, 2), "{n}");
        assert_eq!(ids.first(), Some(&last.to_string()), "{n}: newest first");
        let (positions, pages) = walk(
            port,
            &format!("/admin/ops/batch/{last}"),
            "data-member",
            200,
        )
        .await;
        let want: Vec<String> = (0..250).map(|i| i.to_string()).collect();
        assert_eq!((positions, pages), (want, 2), "{n}: members in order");

        cleanup(&seq, &p, &[]).await;
    }
}

/// The batch page's cancel action: refused without the token, read-only, cross-origin and on a stale view; with the
/// token the running member sees `cancelled()`, the one not started does not start, and the audit log has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_cancelled_from_its_page_behind_the_token() {
    for b in backends().await {
        let n = b.name;
        let p = prefix();
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let keys = Keyring::new(Some(&key), []).expect("a key");
        let seq = build(&b, builder(&b, &p, ops::registry()).encryption_keys(keys)).await;
        let ledger = seq.ledger();
        let id = seq
            .batch([WATCHER, LATER])
            .name("reprice")
            .dispatch()
            .await
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        // One worker, one job at a time: the watcher runs, `later` waits behind it.
        let stop = sequencer::CancellationToken::new();
        let worker = tokio::spawn({
            let (seq, stop) = (seq.clone(), stop.clone());
            async move {
                let opts = WorkOptions {
                    concurrency: 1,
                    ..WorkOptions::default()
                };
                seq.work(&opts, stop).await
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while seq
            .ledger()
            .row_of(WATCHER, 0)
            .await
            .unwrap()
            .map(|r| r.status)
            != Some(Status::Running)
        {
            assert!(Instant::now() < deadline, "{n}: the watcher never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let opts = DashboardOptions::default().token(TOKEN);
        let port = serve(dashboard::router_with(seq.clone(), opts.clone())).await;
        let read_only = serve(dashboard::router_with(seq.clone(), opts.read_only(true))).await;
        let no_token = serve(dashboard::router_with(
            seq.clone(),
            DashboardOptions::default(),
        ))
        .await;
        let page = format!("/admin/ops/batch/{}", id.0);
        let cancel = format!("{page}/cancel");
        let shown = get(port, &page).await;
        assert!(
            shown.body.contains(&format!("href=\"{cancel}\"")),
            "{n}: a running batch offers cancel: {}",
            shown.body
        );
        assert!(
            !get(read_only, &page).await.body.contains(&cancel),
            "{n}: read-only offers no cancel"
        );
        assert_eq!(
            get(read_only, &cancel).await.status,
            403,
            "{n}: confirm read-only"
        );
        assert_eq!(
            get(no_token, &cancel).await.status,
            403,
            "{n}: confirm without token"
        );
        let at = Refusers {
            port,
            read_only,
            no_token,
        };
        assert_refused(&at, &cancel, TOKEN, n).await;
        let form = format!("token={TOKEN}");
        let stale = request(
            port,
            "POST",
            &cancel,
            &[],
            &format!("{form}&expected=completed"),
        )
        .await;
        assert_eq!(stale.status, 409, "{n}: a stale view: {}", stale.body);
        let info = ledger.batch_info(id).await.unwrap().expect("the batch");
        assert!(
            info.cancelled_at.is_none(),
            "{n}: the refusals cancelled nothing"
        );

        let confirm = get(port, &cancel).await;
        assert_eq!(confirm.status, 200, "{n}: {}", confirm.body);
        assert!(
            confirm.body.contains("name=\"expected\" value=\"running\""),
            "{n}: {}",
            confirm.body
        );
        let same = format!("Origin: http://127.0.0.1:{port}");
        let signed =
            format!("{form}&actor=bob&reason=wrong+prices&expected=running&version=running");
        let r = request(
            port,
            "POST",
            &cancel,
            &[&same, "Sec-Fetch-Site: same-origin"],
            &signed,
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        assert_eq!(
            r.header("location"),
            Some(format!("{page}?done=cancel").as_str()),
            "{n}"
        );
        let info = common::batch::finished(&seq, id, n).await;
        assert!(info.cancelled_at.is_some(), "{n}: cancelled: {info}");
        stop.cancel();
        worker.await.expect("the worker").expect("work");
        assert_eq!(
            ledger.row_of(WATCHER, 0).await.unwrap().map(|r| r.status),
            Some(Status::Completed),
            "{n}: the running member saw `cancelled()`"
        );
        let members = ledger.batch_members(id).await.unwrap();
        let later = members
            .iter()
            .find(|m| m.name == LATER)
            .expect("the member");
        assert_eq!(
            (later.state, later.reason.as_deref()),
            (MemberState::Skipped, Some("batch cancelled")),
            "{n}: the member not started did not start"
        );
        assert!(!seq.has_executed(LATER).await.unwrap(), "{n}");
        let again = request(port, "POST", &cancel, &[], &signed).await;
        assert_eq!(
            again.status, 409,
            "{n}: nothing left to cancel: {}",
            again.body
        );
        let done = get(port, &format!("{page}?done=cancel")).await;
        assert!(
            done.body.contains("Cancelled:") && !done.body.contains(&format!("href=\"{cancel}\"")),
            "{n}: {}",
            done.body
        );

        let log = ledger.audit_log(10).await.expect("the audit log");
        let target = id.0.to_string();
        let taken: Vec<_> = log
            .iter()
            .map(|a| {
                (
                    a.action.as_str(),
                    a.target.as_deref(),
                    a.outcome.as_str(),
                    a.actor.as_str(),
                    a.before.as_deref(),
                    a.after.as_deref(),
                )
            })
            .collect();
        assert!(
            taken.contains(&(
                "cancel_batch",
                Some(target.as_str()),
                "ok",
                "bob",
                Some("running"),
                Some("cancelled")
            )),
            "{n}: {taken:?}"
        );
        assert_eq!(
            log.iter().filter(|a| a.action == "cancel_batch").count(),
            3,
            "{n}: the stale refusal, the cancel and the one too many, not the 403s: {taken:?}"
        );
        let audit = get(port, "/admin/ops/audit").await;
        assert!(
            audit.body.contains(&format!("href=\"{page}\"")),
            "{n}: the audit log links the batch: {}",
            audit.body
        );
        cleanup(&seq, &p, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_old_progress_samples_of_ended_runs_only() {
    for b in backends().await {
        let n = b.name;
        let p = prefix();
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let keys = Keyring::new(Some(&key), []).expect("a key");
        let seq = build(&b, builder(&b, &p, ops::registry()).encryption_keys(keys)).await;
        let ledger = seq.ledger();
        ledger
            .insert_pending(&[("ended", 1), ("going", 2)])
            .await
            .expect("rows");
        let ops = format!("{p}seq_operations");
        let samples = format!("{p}seq_progress_samples");
        sqlx::query(&format!(
            "UPDATE {ops} SET status = 'completed' WHERE name = 'ended'"
        ))
        .execute(ledger.pool())
        .await
        .expect("ended");
        sqlx::query(&format!(
            "UPDATE {ops} SET status = 'running' WHERE name = 'going'"
        ))
        .execute(ledger.pool())
        .await
        .expect("running");
        let now = sequencer::ledger::now_ms();
        let day = 86_400_000;
        // `(name, at)`: two days old or a minute old, of the ended run and of the running one.
        for (name, at) in [
            ("ended", now - 2 * day),
            ("ended", now - 60_000),
            ("going", now - 2 * day),
            ("going", now - 60_000),
        ] {
            sqlx::query(&sql(
                &seq,
                &format!(
                    "INSERT INTO {samples} (name, run, at, done, total) VALUES (?, 0, ?, 1, 10)"
                ),
            ))
            .bind(name)
            .bind(at)
            .execute(ledger.pool())
            .await
            .expect("a sample");
        }
        seq.prune(Duration::from_secs(86_400)).await.expect("prune");
        let left: Vec<(String, i64)> =
            sqlx::query_as(&format!("SELECT name, at FROM {samples} ORDER BY name, at"))
                .fetch_all(ledger.pool())
                .await
                .expect("samples");
        assert_eq!(
            left,
            [
                ("ended".to_owned(), now - 60_000),
                ("going".to_owned(), now - 2 * day),
                ("going".to_owned(), now - 60_000),
            ],
            "{n}: the old sample of the ended run is gone, the running run keeps its history"
        );
        cleanup(&seq, &p, &[]).await;
    }
}
