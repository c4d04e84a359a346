//! Long runs on every backend (issue 17): `pause` / `resume` of a running operation at its checkpoints, with real
//! processes; log lines kept with the run (`ctx.log`, `logs NAME`, `status NAME`), capped and sealed; and the
//! `throttle_on` condition backing a run off at its checkpoints.

mod common;

use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{backends, pool, prefix, Backend};
use sequencer::crypto::Keyring;
use sequencer::sqlx;
use sequencer::Event;

const NAME: &str = "2024_08_01_000000_c_items";

fn seqckpt(b: &Backend, p: &str, args: &[&str], sleep_ms: &str) -> Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_seqckpt"), &b.url, p, args);
    c.env("SEQTEST_SLEEP_MS", sleep_ms);
    c
}

/// Runs the CLI to its end: `(exit code, stdout, stderr)`.
fn cli(b: &Backend, p: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = seqckpt(b, p, args, "0").output().expect("run the CLI");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn progress(pool: &sqlx::AnyPool, p: &str) -> Option<(String, Option<i64>)> {
    let q = format!("SELECT status, progress_done FROM {p}seq_operations WHERE name = '{NAME}'");
    sqlx::query_as(&q).fetch_optional(pool).await.ok().flatten()
}

async fn items(pool: &sqlx::AnyPool, p: &str) -> Vec<i64> {
    let mut v: Vec<i64> = sqlx::query_scalar(&format!("SELECT item FROM {p}items"))
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Waits until `status` prints a line for the operation that starts with `what` (its status) or contains it.
fn wait_for_status(b: &Backend, p: &str, what: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = cli(b, p, &["status"]);
        let progressed = |l: &str| what != "running" || l.contains("progress ");
        if out
            .lines()
            .any(|l| l.contains(NAME) && l.contains(what) && progressed(l))
        {
            return out;
        }
        assert!(
            child.try_wait().expect("child").is_none(),
            "{}: the run ended before `status` showed `{what}`: {out}",
            b.name
        );
        assert!(
            Instant::now() < deadline,
            "{}: never `{what}`: {out}",
            b.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_a_run_at_its_checkpoint_until_resume() {
    for b in backends().await {
        let p = prefix();
        let pool = pool(&b).await;
        let (code, _, err) = cli(&b, &p, &["pause", "c_items"]);
        assert_eq!(code, Some(2), "{}: nothing running to pause: {err}", b.name);

        let mut child = seqckpt(&b, &p, &["process"], "100").spawn().expect("spawn");
        wait_for_status(&b, &p, "running", &mut child);
        let (code, out, err) = cli(&b, &p, &["pause", "c_items"]);
        assert_eq!(code, Some(0), "{}: {out}{err}", b.name);
        let status = wait_for_status(&b, &p, "paused", &mut child);
        assert!(status.contains("paused"), "{}: {status}", b.name);

        // Held: no progress, no item, while the lease is renewed and the process waits.
        let held = items(&pool, &p).await;
        let at = progress(&pool, &p).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            items(&pool, &p).await,
            held,
            "{}: no item while paused",
            b.name
        );
        assert_eq!(progress(&pool, &p).await, at, "{}", b.name);
        assert!(held.len() < 40, "{}: it paused early ({held:?})", b.name);
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}: still running",
            b.name
        );

        let (code, out, err) = cli(&b, &p, &["resume", "c_items"]);
        assert_eq!(code, Some(0), "{}: {out}{err}", b.name);
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {stdout}", b.name);
        assert_eq!(
            items(&pool, &p).await,
            (0..40).collect::<Vec<i64>>(),
            "{}: every item once",
            b.name
        );
        let (code, _, _) = cli(&b, &p, &["resume", "c_items"]);
        assert_eq!(code, Some(2), "{}: nothing paused", b.name);

        // Its log lines are kept with the run: `logs` and `status NAME` show them.
        let (code, logs, _) = cli(&b, &p, &["logs", "c_items"]);
        assert_eq!(code, Some(0), "{}", b.name);
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 40, "{}: {logs}", b.name);
        assert!(lines[0].ends_with("  handled item 0"), "{}: {logs}", b.name);
        assert!(
            lines[39].ends_with("  handled item 39"),
            "{}: {logs}",
            b.name
        );
        let (_, status, _) = cli(&b, &p, &["status", "c_items"]);
        assert!(
            status.contains("completed")
                && status.contains("handled item 39")
                && !status.contains("handled item 19\n"),
            "{}: the last 20 lines: {status}",
            b.name
        );
        common::drop_tables(&pool, &p, &["items"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_cancelled_ends_interrupted_and_resumes_on_retry() {
    for b in backends().await {
        let p = prefix();
        let pool = pool(&b).await;
        let mut child = seqckpt(&b, &p, &["process"], "100").spawn().expect("spawn");
        wait_for_status(&b, &p, "running", &mut child);
        assert_eq!(cli(&b, &p, &["pause", "c_items"]).0, Some(0), "{}", b.name);
        wait_for_status(&b, &p, "paused", &mut child);
        assert_eq!(cli(&b, &p, &["cancel", "c_items"]).0, Some(0), "{}", b.name);
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{}: cancelled: {stdout}",
            b.name
        );
        assert_eq!(
            progress(&pool, &p).await.map(|r| r.0),
            Some("interrupted".into()),
            "{}",
            b.name
        );
        assert_eq!(cli(&b, &p, &["retry", "c_items"]).0, Some(0), "{}", b.name);
        assert_eq!(
            items(&pool, &p).await,
            (0..40).collect::<Vec<i64>>(),
            "{}",
            b.name
        );
        common::drop_tables(&pool, &p, &["items"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_on_holds_a_run_back_while_it_returns_true() {
    for b in backends().await {
        let p = prefix();
        let pool = pool(&b).await;
        let flag = std::env::temp_dir().join(format!("sequencer-throttle-{p}"));
        std::fs::write(&flag, b"").expect("throttle file");
        let mut child = seqckpt(&b, &p, &["process"], "10")
            .env("SEQTEST_THROTTLE_FILE", &flag)
            .spawn()
            .expect("spawn");
        wait_for_status(&b, &p, "throttled now", &mut child);
        // Held back at its first checkpoint, after the first item.
        let held = items(&pool, &p).await;
        assert_eq!(held, [0], "{}", b.name);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(items(&pool, &p).await, held, "{}: held back", b.name);
        // `logs --follow` prints the lines as they come, and ends with the run.
        let follow = seqckpt(&b, &p, &["logs", "c_items", "--follow"], "0")
            .spawn()
            .expect("follow");
        std::fs::remove_file(&flag).expect("remove the throttle file");
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {stdout}", b.name);
        assert!(
            stdout.contains(&format!("THROTTLED   {NAME}: backed off")),
            "{}: {stdout}",
            b.name
        );
        assert_eq!(
            items(&pool, &p).await,
            (0..40).collect::<Vec<i64>>(),
            "{}",
            b.name
        );
        let followed = follow.wait_with_output().expect("follow ends with the run");
        let followed = String::from_utf8_lossy(&followed.stdout);
        assert_eq!(followed.lines().count(), 40, "{}: {followed}", b.name);
        assert!(
            followed.ends_with("  handled item 39\n"),
            "{}: {followed}",
            b.name
        );
        let (_, status, _) = cli(&b, &p, &["status"]);
        assert!(
            status.contains("throttled "),
            "{}: the time it was held back: {status}",
            b.name
        );
        assert!(!status.contains("throttled now"), "{}: {status}", b.name);
        common::drop_tables(&pool, &p, &["items"]).await;
    }
}

/// How many times the throttled operation below asked its condition.
static ASKED: AtomicU64 = AtomicU64::new(0);

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_09_01_000000", encrypted)]
    pub async fn secret_log(ctx: &Ctx) -> Result<()> {
        ctx.log("card 4242 charged").await?;
        Ok(())
    }

    #[operation(timestamp = "2024_09_01_000001")]
    pub async fn chatty(ctx: &Ctx) -> Result<()> {
        for i in 0..1_250 {
            ctx.log(format!("line {i}")).await?;
        }
        Ok(())
    }

    /// True for its first three looks: the run backs off 100 + 200 + 400 ms at its first checkpoint.
    async fn busy(_ctx: &Ctx) -> bool {
        super::ASKED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3
    }

    #[operation(timestamp = "2024_09_01_000002", throttle_on = busy)]
    pub async fn throttled(ctx: &Ctx) -> Result<()> {
        for i in 0..3u32 {
            ctx.checkpoint(&i).await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_sealed_capped_and_throttling_is_recorded() {
    for b in backends().await {
        let p = prefix();
        let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let keys = Keyring::new(Some(key), []).expect("key");
        let seq = common::build(
            &b,
            common::builder(&b, &p, ops::registry()).encryption_keys(keys),
        )
        .await;
        ASKED.store(0, Ordering::SeqCst);
        let mut events = seq.subscribe();
        let report = seq.execute_all().await.expect("run");
        assert!(report.succeeded(), "{}: {report:?}", b.name);

        // Sealed in the ledger, opened through the sequencer.
        let text = if b.name == "MariaDB" {
            "CHAR(2000)"
        } else {
            "TEXT"
        };
        let stored: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT CAST(line AS {text}) FROM {p}seq_logs WHERE name = '2024_09_01_000000_secret_log'"
        ))
        .fetch_all(seq.ledger().pool())
        .await
        .expect("read logs");
        assert_eq!(stored.len(), 1, "{}", b.name);
        assert!(!stored[0].contains("4242"), "{}: {}", b.name, stored[0]);
        let shown = seq.logs("secret_log", 0).await.expect("logs");
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].line, "card 4242 charged", "{}", b.name);

        // The last 1,000 lines of a run are kept, trimmed every 100 lines: after line 1199 the run kept
        // 200..=1199, then wrote 50 more.
        let lines = seq.logs("chatty", 0).await.expect("logs");
        assert_eq!(lines.len(), 1_050, "{}", b.name);
        assert_eq!(lines[0].line, "line 200", "{}", b.name);
        assert_eq!(lines[1_049].line, "line 1249", "{}", b.name);
        assert!(lines.windows(2).all(|w| w[0].id < w[1].id));
        let after = seq.logs("chatty", lines[1_047].id).await.expect("logs");
        assert_eq!(after.len(), 2, "{}: only the newer lines", b.name);

        // Throttled: backed off while the condition said so, and recorded.
        let mut throttled = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let Event::OperationThrottled {
                name, throttled_ms, ..
            } = e
            {
                throttled.push((name, throttled_ms));
            }
        }
        assert_eq!(throttled.len(), 1, "{}: {throttled:?}", b.name);
        assert!(throttled[0].1 >= 700, "{}: {throttled:?}", b.name);
        let status = seq.status().await.expect("status");
        let entry = status
            .iter()
            .find(|e| e.name.ends_with("_throttled"))
            .expect("entry");
        assert!(
            entry.throttled_ms.unwrap_or(0) >= 700,
            "{}: {entry:?}",
            b.name
        );
        assert!(!entry.throttled, "{}", b.name);
        assert_eq!(
            ASKED.load(Ordering::SeqCst),
            6,
            "{}: 3 checkpoints, 3 more looks",
            b.name
        );
        common::cleanup(&seq, &p, &[]).await;
    }
}
