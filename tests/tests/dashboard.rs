//! The web dashboard on every backend, served on an ephemeral port and nested under `/admin/ops` as an application
//! would: pages show a completed, a failed and a running operation with every ledger value escaped, `/metrics`
//! has its series, and every action is refused without the token, in read-only mode, cross-site, and done with
//! the token (the failed operation is retried and completes, the running one is cancelled).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use common::http::{assert_refused, get, request, serve, Refusers};
use common::{backends, build, builder, cleanup, prefix};
use sequencer::crypto::Keyring;
use sequencer::dashboard::{self, axum, DashboardOptions};
use sequencer::ledger::Status;
use sequencer::Sequencer;

/// Whether `b_fails` fails (its retry succeeds once the test clears it).
static FAIL: AtomicBool = AtomicBool::new(true);

#[sequencer::operations]
mod ops {
    use super::FAIL;
    use sequencer::prelude::*;
    use std::sync::atomic::Ordering;

    #[operation(timestamp = "2025_03_01_000000", tags = ["setup"])]
    async fn a_done(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2025_03_01_000001", tags = ["billing"])]
    async fn b_fails(_ctx: &Ctx) -> Result<()> {
        if FAIL.load(Ordering::SeqCst) {
            let cause = anyhow::anyhow!("the <b>upstream</b> said no");
            return Err(cause.context("<script>alert('x')</script> broke"));
        }
        Ok(())
    }

    #[operation(timestamp = "2025_03_01_000002", tags = ["billing"])]
    async fn c_runs(ctx: &Ctx) -> Result<()> {
        for i in 0..3000u64 {
            ctx.progress(i, 3000).await?;
            ctx.checkpoint(&i).await?;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    #[operation(timestamp = "2025_03_01_000004", encrypted)]
    async fn d_secret(_ctx: &Ctx) -> Result<()> {
        anyhow::bail!("the password is hunter2")
    }

    #[operation(timestamp = "2025_03_01_000005", asynchronous, queue = "mail")]
    async fn f_mailer(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2025_03_01_000003", depends_on = [a_done])]
    async fn e_after(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

const A: &str = "2025_03_01_000000_a_done";
const B: &str = "2025_03_01_000001_b_fails";
const C: &str = "2025_03_01_000002_c_runs";
const D: &str = "2025_03_01_000004_d_secret";
const E: &str = "2025_03_01_000003_e_after";
const F: &str = "2025_03_01_000005_f_mailer";
const TOKEN: &str = "t0k-3n";

/// An audit record as the test compares it: action, target, outcome, status before and after.
type AuditRow<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

async fn status_of(seq: &Sequencer, name: &str) -> Status {
    seq.status()
        .await
        .expect("status")
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| e.status)
        .expect("listed")
}

async fn wait_for(seq: &Sequencer, name: &str, want: Status, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = status_of(seq, name).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {name} is {now}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_and_steers_operations() {
    for b in backends().await {
        FAIL.store(true, Ordering::SeqCst);
        let p = prefix();
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let keys = Keyring::new(Some(&key), []).expect("a key");
        let seq = build(&b, builder(&b, &p, ops::registry()).encryption_keys(keys)).await;
        let n = b.name;
        seq.execute(A).await.expect("a runs");
        let _ = seq.execute(B).await;
        let _ = seq.execute(D).await;
        assert_eq!(status_of(&seq, B).await, Status::Failed, "{n}");
        let running = seq.clone();
        let c = tokio::spawn(async move { running.execute(C).await });
        let deadline = Instant::now() + Duration::from_secs(60);
        while seq
            .status()
            .await
            .expect("status")
            .iter()
            .all(|e| e.name != C || e.status != Status::Running || e.progress_done.unwrap_or(0) < 2)
        {
            assert!(Instant::now() < deadline, "{n}: c never reported progress");
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

        // The operations page: every operation, statuses, the progress bar, escaped errors, strict headers.
        let list = get(port, "/admin/ops").await;
        assert_eq!(list.status, 200, "{n}: {}", list.body);
        for name in [A, B, C, E] {
            assert!(list.body.contains(name), "{n}: {name} listed");
        }
        assert!(list.body.contains("data-status=\"running\""), "{n}");
        assert!(
            list.body.contains("<progress max=\"3000\""),
            "{n}: a progress bar"
        );
        assert!(list.body.contains("ETA "), "{n}: an ETA");
        assert!(
            list.body
                .contains("&lt;script&gt;alert('x')&lt;/script&gt; broke")
                || list
                    .body
                    .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; broke"),
            "{n}: the error escaped: {}",
            list.body
        );
        assert!(
            !list.body.contains("<script>alert"),
            "{n}: no injected script"
        );
        assert!(
            list.body
                .contains("href=\"/admin/ops/op/2025_03_01_000001_b_fails\""),
            "{n}: links under the nest"
        );
        let csp = list.header("content-security-policy").expect("a CSP");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{n}: {csp}"
        );

        // Filters in the URL.
        let failed = get(port, "/admin/ops?status=failed").await;
        assert!(
            failed.body.contains(B) && !failed.body.contains(A),
            "{n}: status filter: {} {}",
            failed.status,
            failed.body
        );
        let billing = get(port, "/admin/ops?tag=billing").await;
        assert!(
            billing.body.contains(B) && billing.body.contains(C) && !billing.body.contains(A),
            "{n}: tag filter"
        );
        let text = get(port, "/admin/ops?q=upstream").await;
        assert!(
            text.body.contains(B) && !text.body.contains(C),
            "{n}: text filter on the error"
        );

        // One operation: its runs, its error with the cause, its dependents, its checkpoint.
        let one = get(port, &format!("/admin/ops/op/{B}")).await;
        assert_eq!(one.status, 200, "{n}");
        assert!(one.body.contains("Caused by:"), "{n}: the cause chain");
        assert!(
            one.body.contains("the &lt;b&gt;upstream&lt;/b&gt; said no"),
            "{n}: the cause escaped"
        );
        assert!(!one.body.contains("<b>upstream"), "{n}");
        // An encrypted operation's error is never shown, on either page, nor searchable.
        let secret = get(port, &format!("/admin/ops/op/{D}")).await;
        assert_eq!(secret.status, 200, "{n}");
        assert!(
            secret.body.contains("[encrypted operation: not shown]"),
            "{n}: masked"
        );
        for page in [&secret.body, &list.body] {
            assert!(!page.contains("hunter2"), "{n}: an encrypted error shown");
        }
        let search = get(port, "/admin/ops?q=hunter2").await;
        assert!(
            !search.body.contains(&format!("href=\"/admin/ops/op/{D}\"")),
            "{n}: found by its secret"
        );
        let a = get(port, &format!("/admin/ops/op/{A}")).await;
        assert!(
            a.body.contains(&format!("href=\"/admin/ops/op/{E}\"")),
            "{n}: dependents of a"
        );
        let cpage = get(port, &format!("/admin/ops/op/{C}")).await;
        assert!(
            cpage.body.contains("pre class=\"checkpoint\""),
            "{n}: c's checkpoint"
        );
        // Its diagnosis: the lease, a progress sample (written by `ctx.progress`), a checkpoint's age.
        for part in [
            "<th>Lease</th><td>expires in ",
            "<th>Last heartbeat</th>",
            "/3000, ",
        ] {
            assert!(cpage.body.contains(part), "{n}: {part} in {}", cpage.body);
        }
        assert!(
            !cpage.body.contains("none reported")
                && cpage.body.contains("<th>Last checkpoint</th><td>"),
            "{n}: {}",
            cpage.body
        );
        assert_eq!(get(port, "/admin/ops/op/nope").await.status, 404, "{n}");
        let graph = get(port, "/admin/ops/graph").await;
        assert!(
            graph.body.contains("<svg") && graph.body.contains(E),
            "{n}: the graph"
        );
        let js = get(port, "/admin/ops/assets/app.js").await;
        assert!(
            js.status == 200 && js.body.contains("EventSource"),
            "{n}: the script"
        );

        // The plan: what `process` would run now (the failed b and d again, and e; not a, done, nor c, running);
        // none has a rollback.
        let plan = get(port, "/admin/ops/plan").await;
        assert_eq!(plan.status, 200, "{n}");
        assert!(
            plan.body.contains("3 operation(s) due"),
            "{n}: {}",
            plan.body
        );
        for name in [B, D, E] {
            assert!(
                plan.body.contains(&format!(">{name}</a>")),
                "{n}: {name} planned"
            );
        }
        for name in [A, C] {
            assert!(
                !plan.body.contains(&format!(">{name}</a>")),
                "{n}: {name} not planned"
            );
        }
        assert!(
            plan.body.contains("<strong>none</strong>"),
            "{n}: no rollback flagged"
        );

        // Queues and workers.
        assert!(
            seq.ledger()
                .enqueue(F, 0, "mail")
                .await
                .expect("queue a job"),
            "{n}"
        );
        let queues = get(port, "/admin/ops/queues").await;
        assert_eq!(queues.status, 200, "{n}");
        assert!(
            queues.body.contains("<td>mail</td><td>0</td><td>1</td>"),
            "{n}: one job queued on mail: {}",
            queues.body
        );
        assert!(
            queues.body.contains("No worker holds a job.") && queues.body.contains("free"),
            "{n}"
        );

        // Metrics.
        let m = get(port, "/admin/ops/metrics").await;
        assert_eq!(m.status, 200, "{n}");
        for series in [
            "sequencer_operations{state=\"completed\"} 1",
            "sequencer_operations{state=\"failed\"} 2",
            "sequencer_operations{state=\"running\"} 1",
            "sequencer_operations{state=\"pending\"} 2",
            "sequencer_queue_jobs{queue=\"mail\",state=\"queued\"} 1",
            &format!("sequencer_operation_progress_ratio{{operation=\"{C}\"}} "),
            &format!("sequencer_operation_eta_seconds{{operation=\"{C}\"}} "),
            "sequencer_queue_jobs{queue=\"default\",state=\"queued\"} 0",
            &format!("sequencer_operation_checkpoint_age_seconds{{operation=\"{C}\"}} "),
            "sequencer_operations_blocked 0",
        ] {
            assert!(m.body.contains(series), "{n}: {series} in\n{}", m.body);
        }

        // Every refusal is a 403 that changes nothing.
        let form = format!("token={TOKEN}");
        let retry = format!("/admin/ops/op/{B}/retry");
        let at = Refusers {
            port,
            read_only,
            no_token,
        };
        assert_refused(&at, &retry, TOKEN, n).await;
        let r = request(
            read_only,
            "POST",
            &format!("/admin/ops/op/{C}/cancel"),
            &[&format!("X-Sequencer-Token: {TOKEN}")],
            "",
        )
        .await;
        assert_eq!(r.status, 403, "{n}: cancel in read-only");
        let r = request(no_token, "POST", "/admin/ops/process", &[], "").await;
        assert_eq!(r.status, 403, "{n}: process without a token configured");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            status_of(&seq, B).await,
            Status::Failed,
            "{n}: refused retries did nothing"
        );
        assert_eq!(status_of(&seq, C).await, Status::Running, "{n}");

        // An action taken on a page drawn when the operation was in another state is refused.
        let stale = request(
            port,
            "POST",
            &retry,
            &[],
            &format!("{form}&expected=running"),
        )
        .await;
        assert_eq!(stale.status, 409, "{n}: a stale view: {}", stale.body);
        assert!(
            stale.body.contains("no longer running"),
            "{n}: {}",
            stale.body
        );
        assert_eq!(
            status_of(&seq, B).await,
            Status::Failed,
            "{n}: the stale retry did nothing"
        );
        let confirm = get(port, &retry).await;
        assert!(
            confirm.body.contains("name=\"expected\" value=\"failed\""),
            "{n}: {}",
            confirm.body
        );

        // With the token, from the same origin: done.
        FAIL.store(false, Ordering::SeqCst);
        let same = format!("Origin: http://127.0.0.1:{port}");
        let signed =
            format!("{form}&actor=%3Cimg+src%3Dx%3E+alice&reason=upstream+fixed&expected=failed");
        let r = request(
            port,
            "POST",
            &retry,
            &[&same, "Sec-Fetch-Site: same-origin"],
            &signed,
        )
        .await;
        assert_eq!(r.status, 303, "{n}: retry: {}", r.body);
        assert_eq!(
            r.header("location"),
            Some(format!("/admin/ops/op/{B}?done=retry").as_str()),
            "{n}"
        );
        wait_for(&seq, B, Status::Completed, n).await;
        let again = request(port, "POST", &retry, &[], &form).await;
        assert_eq!(
            again.status, 409,
            "{n}: a completed operation is not retried"
        );

        let token_header = format!("X-Sequencer-Token: {TOKEN}");
        let r = request(
            port,
            "POST",
            &format!("/admin/ops/op/{C}/cancel"),
            &[&token_header],
            "",
        )
        .await;
        assert_eq!(r.status, 303, "{n}: cancel: {}", r.body);
        let _ = c.await;
        assert_eq!(
            status_of(&seq, C).await,
            Status::Interrupted,
            "{n}: cancelled at a checkpoint"
        );

        let r = request(
            port,
            "POST",
            &format!("/admin/ops/op/{E}/complete"),
            &[],
            &form,
        )
        .await;
        assert_eq!(r.status, 303, "{n}: mark completed: {}", r.body);
        assert_eq!(status_of(&seq, E).await, Status::Completed, "{n}");

        let m = get(port, "/admin/ops/metrics").await;
        for series in [
            "sequencer_dashboard_actions_total{action=\"retry\",outcome=\"refused\"} 4",
            "sequencer_dashboard_actions_total{action=\"retry\",outcome=\"ok\"} 1",
            "sequencer_dashboard_actions_total{action=\"retry\",outcome=\"error\"} 2",
            "sequencer_dashboard_actions_total{action=\"cancel\",outcome=\"ok\"} 1",
        ] {
            assert!(m.body.contains(series), "{n}: {series} in\n{}", m.body);
        }
        // The audit log: every authorised action, none of the refused ones, newest first.
        let log = seq.ledger().audit_log(50).await.expect("the audit log");
        let seen: Vec<AuditRow<'_>> = log
            .iter()
            .map(|a| {
                let target = a.target.as_deref().unwrap_or("");
                (
                    a.action.as_str(),
                    target,
                    a.outcome.as_str(),
                    a.before.as_deref(),
                    // A cancel returns before or after the operation reached its checkpoint.
                    match a.after.as_deref() {
                        Some("interrupted") if a.action == "cancel" => Some("running"),
                        after => after,
                    },
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("complete", E, "ok", Some("pending"), Some("completed")),
                ("cancel", C, "ok", Some("running"), Some("running")),
                ("retry", B, "error", Some("completed"), Some("completed")),
                ("retry", B, "ok", Some("failed"), Some("started")),
                ("retry", B, "error", Some("failed"), Some("failed")),
            ],
            "{n}"
        );
        assert_eq!(log[3].actor, "<img src=x> alice", "{n}");
        assert_eq!(log[3].reason.as_deref(), Some("upstream fixed"), "{n}");
        assert_eq!(log[0].actor, "dashboard", "{n}: the default actor");
        let page = get(port, "/admin/ops/audit").await;
        assert!(
            page.body.contains("&lt;img src=x&gt; alice") && !page.body.contains("<img src=x>"),
            "{n}: {}",
            page.body
        );
        assert!(page.body.contains("upstream fixed"), "{n}");
        cleanup(&seq, &p, &[]).await;
    }
}

/// Whether `bb_fails` fails (the browser test clears it before clicking retry).
static BROWSER_FAIL: AtomicBool = AtomicBool::new(true);

#[sequencer::operations]
mod browser_ops {
    use super::BROWSER_FAIL;
    use sequencer::prelude::*;
    use std::sync::atomic::Ordering;

    #[operation(timestamp = "2025_04_01_000000")]
    async fn ba_done(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2025_04_01_000001")]
    async fn bb_fails(_ctx: &Ctx) -> Result<()> {
        if BROWSER_FAIL.load(Ordering::SeqCst) {
            anyhow::bail!("the <i>browser</i> case failed");
        }
        Ok(())
    }

    #[operation(timestamp = "2025_04_01_000002", depends_on = [ba_done])]
    async fn bc_runs(ctx: &Ctx) -> Result<()> {
        for i in 0..6000u64 {
            ctx.progress(i, 6000).await?;
            ctx.checkpoint(&i).await?;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// `chromedriver` on the `PATH`.
fn chromedriver() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromedriver"))
        .find(|p| p.is_file())
}

/// Stops chromedriver when the test ends, passed or not.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In headless Chromium: the progress bar of the running operation moves without a reload, retry is clicked on
/// the failed one (the token typed into the confirmation) and it completes, the running one is cancelled (the
/// token remembered by the tab). Skipped, with a notice, where chromedriver is not installed, unless
/// `SEQUENCER_REQUIRE_SERVERS=1` (CI), where that is a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_browser_progress_moves_and_retry_and_cancel_work() {
    let Some(driver) = chromedriver() else {
        assert!(
            !common::servers_required(),
            "chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        let msg = "skipped the browser test: chromedriver is not installed (apt-get install chromium chromium-driver; SEQUENCER_REQUIRE_SERVERS=1 makes this an error)\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
        return;
    };
    const BA: &str = "2025_04_01_000000_ba_done";
    const BB: &str = "2025_04_01_000001_bb_fails";
    const BC: &str = "2025_04_01_000002_bc_runs";
    // SQLite only: the browser is the subject here, every backend is the other test's.
    let (b, file) = common::sqlite_file();
    let p = prefix();
    let seq = build(&b, builder(&b, &p, browser_ops::registry())).await;
    seq.execute(BA).await.expect("ba runs");
    let _ = seq.execute(BB).await;
    let running = seq.clone();
    let bc = tokio::spawn(async move { running.execute(BC).await });
    let port = serve(dashboard::router_with(
        seq.clone(),
        DashboardOptions::default().token(TOKEN),
    ))
    .await;

    let wd_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let _driver = Driver(
        std::process::Command::new(driver)
            .arg(format!("--port={wd_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let mut caps = serde_json::Map::new();
    let mut chrome = serde_json::json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        chrome["binary"] = "/usr/bin/chromium".into();
    }
    caps.insert("goog:chromeOptions".into(), chrome);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match fantoccini::ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{wd_port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "no WebDriver session: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let result = browse(&client, &seq, port, [BA, BB, BC]).await;
    let _ = client.close().await;
    result.expect("the browser session");
    let _ = bc.await;
    cleanup(&seq, &p, &[]).await;
    common::remove_sqlite(&file);
}

async fn browse(
    client: &fantoccini::Client,
    seq: &Sequencer,
    port: u16,
    [ba, bb, bc]: [&str; 3],
) -> Result<(), fantoccini::error::CmdError> {
    use fantoccini::Locator;
    let site = format!("http://127.0.0.1:{port}/admin/ops");
    client.goto(&site).await?;
    let source = client.source().await?;
    assert!(source.contains(ba) && source.contains(bb), "{source}");
    // Marks the document: a reload would lose the mark.
    client.execute("window.__kept = 42;", vec![]).await?;
    let bar = format!("tr[data-op=\"{bc}\"] progress");
    let value = || async {
        let v = client
            .execute(
                "return document.querySelector(arguments[0]).value;",
                vec![serde_json::json!(bar)],
            )
            .await?;
        Ok::<f64, fantoccini::error::CmdError>(v.as_f64().unwrap_or(0.0))
    };
    let first = value().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = value().await?;
        if now > first + 20.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the progress bar stayed at {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = client.execute("return window.__kept;", vec![]).await?;
    assert_eq!(kept, serde_json::json!(42), "the page was reloaded");
    shoot(client, "dashboard-operations.png").await?;
    client.goto(&format!("{site}/op/{bb}")).await?;
    shoot(client, "dashboard-operation.png").await?;
    client.goto(&format!("{site}/graph")).await?;
    shoot(client, "dashboard-graph.png").await?;
    client.goto(&format!("{site}/plan")).await?;
    shoot(client, "dashboard-plan.png").await?;
    // The batches page, reached from the nav.
    client
        .find(Locator::LinkText("Batches"))
        .await?
        .click()
        .await?;
    let batches = client.source().await?;
    assert!(
        batches.contains("Batches and chains") && batches.contains("No batch recorded"),
        "{batches}"
    );
    shoot(client, "dashboard-batches.png").await?;
    client
        .goto(&format!("{site}/bulk/retry?status=failed"))
        .await?;
    let bulk = client.source().await?;
    assert!(
        bulk.contains(&format!("value=\"{bb} failed:")),
        "the bulk confirmation lists the failed one: {bulk}"
    );
    shoot(client, "dashboard-bulk.png").await?;
    if std::env::var_os("SEQUENCER_SCREENSHOTS").is_some() {
        // Two progress samples (10 seconds apart) draw the progress history.
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    client.goto(&format!("{site}/op/{bc}")).await?;
    let diagnosis = client.source().await?;
    assert!(
        diagnosis.contains("Diagnosis") && diagnosis.contains("Last heartbeat"),
        "the running one's diagnosis: {diagnosis}"
    );
    shoot(client, "dashboard-diagnosis.png").await?;

    // Retry the failed one: its page, the action, the confirmation with the token typed in.
    BROWSER_FAIL.store(false, Ordering::SeqCst);
    client.goto(&format!("{site}/op/{bb}")).await?;
    client
        .find(Locator::Css("a[href$=\"/retry\"]"))
        .await?
        .click()
        .await?;
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name=token]"))
        .await?
        .send_keys(TOKEN)
        .await?;
    client
        .find(Locator::Css("form.confirm button"))
        .await?
        .click()
        .await?;
    let notice = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p.notice"))
        .await?
        .text()
        .await?;
    assert!(notice.contains("Retry started"), "{notice}");
    wait_for(seq, bb, Status::Completed, "browser retry").await;
    client.refresh().await?;
    let badge = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("h1 .badge"))
        .await?
        .text()
        .await?;
    assert_eq!(badge, "completed");

    // Cancel the running one: the tab remembers the token.
    client.goto(&format!("{site}/op/{bc}")).await?;
    client
        .find(Locator::Css("a[href$=\"/cancel\"]"))
        .await?
        .click()
        .await?;
    // The script fills the field once the page has loaded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let remembered = loop {
        let value = client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("input[name=token]"))
            .await?
            .prop("value")
            .await?;
        if value.as_deref() == Some(TOKEN) || Instant::now() > deadline {
            break value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        remembered.as_deref(),
        Some(TOKEN),
        "the token is remembered"
    );
    client
        .find(Locator::Css("form.confirm button"))
        .await?
        .click()
        .await?;
    let notice = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p.notice"))
        .await?
        .text()
        .await?;
    assert!(notice.contains("Cancel requested"), "{notice}");
    wait_for(seq, bc, Status::Interrupted, "browser cancel").await;
    Ok(())
}

/// With `SEQUENCER_SCREENSHOTS=DIR`, saves a screenshot of the page as `DIR/name` (how the guide's images are
/// made: `SEQUENCER_SCREENSHOTS=$PWD/sequencer/docs/images cargo test -p sequencer-tests --test dashboard in_a_browser`).
async fn shoot(client: &fantoccini::Client, name: &str) -> Result<(), fantoccini::error::CmdError> {
    let Some(dir) = std::env::var_os("SEQUENCER_SCREENSHOTS") else {
        return Ok(());
    };
    client.set_window_size(1280, 640).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await; // a live update or two
    let png = client.screenshot().await?;
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).expect("the screenshot directory");
    std::fs::write(dir.join(name), png).expect("a screenshot written");
    Ok(())
}

/// `serve` refuses an address other than loopback without a token (exit 2), before it binds.
#[test]
fn serve_refuses_a_remote_bind_without_a_token() {
    if std::env::var_os(dashboard::TOKEN_VARIABLE).is_some() {
        return; // the refusal needs the variable unset, and tests must not change the environment
    }
    let dir = std::env::temp_dir().join(format!("sequencer-dash-cli-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let code = sequencer::cli::run_from(
        Sequencer::builder().registry(ops::registry()),
        [
            "app",
            "--database",
            url.as_str(),
            "serve",
            "--bind",
            "0.0.0.0:0",
        ],
    );
    assert_eq!(code, std::process::ExitCode::from(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `metrics_router` (what `work --metrics` serves) has `/metrics` and nothing else.
#[tokio::test]
async fn the_metrics_router_serves_only_metrics() {
    let (b, file) = common::sqlite_file();
    let p = prefix();
    let seq = build(&b, builder(&b, &p, browser_ops::registry())).await;
    let app = dashboard::metrics_router(seq.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let m = get(port, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains("sequencer_operations{state=\"pending\"} 3"),
        "{}",
        m.body
    );
    assert_eq!(get(port, "/").await.status, 404);
    let r = request(
        port,
        "POST",
        &format!("/op/{B}/retry"),
        &[],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(r.status, 404, "no actions");
    cleanup(&seq, &p, &[]).await;
    common::remove_sqlite(&file);
}
