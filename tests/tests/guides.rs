//! The README and the guides: every ```rust block is shown whole (no rustdoc hidden lines, no `ignore`, no SQL
//! built with `format!`), and the blocks that `cargo test --doc` only compiles (`no_run`: they need a server, or
//! would write `sequencer.db` in the working directory) or only declares (`#[tokio::test]`s) run here, on
//! throw-away SQLite ledgers. `build.rs` copies each block to `$OUT_DIR/guides/<file>_<n>.rs`; the modules below
//! include the very text the reader sees.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sequencer::ledger::Status;
use sequencer::{Sequencer, SequencerBuilder};

/// Includes the `n`th ```rust block of a guide: `guide!("getting-started_1")`.
macro_rules! guide {
    ($block:literal) => {
        include!(concat!(env!("OUT_DIR"), "/guides/", $block, ".rs"));
    };
}

/// A throw-away directory for one test's SQLite ledger, removed when dropped.
struct TempLedger {
    dir: PathBuf,
}

impl TempLedger {
    fn new(name: &str) -> TempLedger {
        let dir = std::env::temp_dir().join(format!(
            "sequencer-guides-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempLedger { dir }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.join("ledger.db").display())
    }

    /// Runs the CLI over `builder` with `--database` set to this ledger.
    fn cli(&self, builder: SequencerBuilder, command: &[&str]) -> ExitCode {
        let url = self.url();
        let args = ["app", "--database", url.as_str()]
            .into_iter()
            .chain(command.iter().copied());
        sequencer::cli::run_from(builder, args)
    }

    /// Builds `builder` on this ledger and runs `f` with it, in a runtime of its own.
    fn with<T>(&self, builder: SequencerBuilder, f: impl AsyncFnOnce(&Sequencer) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let seq = builder.database(self.url()).build().await.expect("build");
            f(&seq).await
        })
    }
}

impl Drop for TempLedger {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every operation's (function name, status).
async fn statuses(seq: &Sequencer) -> Vec<(String, Status)> {
    seq.status()
        .await
        .expect("status")
        .into_iter()
        .map(|e| (e.name.split_at(18).1.to_owned(), e.status))
        .collect()
}

fn examples_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/migrations")
}

#[allow(dead_code, unused_variables)] // the README shows `ctx` in signatures it does not use
mod readme {
    guide!("README_1");

    #[test]
    fn process_then_status() {
        let ledger = crate::TempLedger::new("readme");
        for command in ["process", "process", "status"] {
            let code = ledger.cli(
                sequencer::Sequencer::builder().registry(ops::registry()),
                &[command],
            );
            assert_eq!(code, std::process::ExitCode::SUCCESS, "{command}");
        }
        let got = ledger.with(
            sequencer::Sequencer::builder().registry(ops::registry()),
            crate::statuses,
        );
        use sequencer::ledger::Status::Completed;
        assert_eq!(
            got,
            [
                ("create_users".into(), Completed),
                ("backfill_orders".into(), Completed)
            ]
        );
    }
}

#[allow(dead_code)]
mod getting_started {
    guide!("getting-started_1");

    #[test]
    fn the_commands_of_the_guide() {
        let ledger = crate::TempLedger::new("getting-started");
        let commands: [&[&str]; 8] = [
            &["process"],
            &["process"],
            &["status"],
            &["process", "--dry-run"],
            &["graph"],
            &["rollback", "--op", "create_plans", "--cascade"],
            &["errors"],
            &["process"], // a rolled-back operation runs again
        ];
        for command in commands {
            let code = ledger.cli(
                sequencer::Sequencer::builder().registry(ops::registry()),
                command,
            );
            assert_eq!(code, ExitCode::SUCCESS, "{command:?}");
        }
        let plans: Vec<String> = ledger.with(
            sequencer::Sequencer::builder().registry(ops::registry()),
            async |seq| {
                sequencer::sqlx::query_scalar("SELECT name FROM plans ORDER BY name")
                    .fetch_all(seq.ledger().pool())
                    .await
                    .expect("plans")
            },
        );
        assert_eq!(plans, ["free", "pro"]);
    }
}

/// The directory form's snippet loads `operations/` from the crate it is compiled in: the doc test compiles it in
/// `sequencer/`, whose `operations/` holds the guide's two files; here they are loaded by their path.
mod declaring_operations {
    #[sequencer::operations("../sequencer/operations")]
    mod ops {}

    #[test]
    fn the_directory_form_loads_the_guides_files() {
        let order: Vec<_> = ops::registry()
            .ordered()
            .expect("valid")
            .iter()
            .map(|op| op.meta.name)
            .collect();
        // `seed_plans` depends on `create_accounts`, so it runs second despite its earlier timestamp.
        assert_eq!(
            order,
            [
                "2024_03_01_100000_create_accounts",
                "2024_03_01_090000_seed_plans"
            ]
        );
        let create = ops::registry()
            .get("2024_03_01_100000_create_accounts")
            .expect("loaded");
        assert!(create.rollback.is_some()); // its `rollback` fn was picked up by name
        use sequencer::Operation;
        assert_eq!(
            ops::create_accounts::handle::NAME,
            "2024_03_01_100000_create_accounts"
        );
    }
}

#[allow(dead_code)]
mod orchestrators_preview {
    guide!("orchestrators_1");

    #[tokio::test]
    async fn preview_then_run_on_a_ledger() {
        let ledger = sequencer::testing::ledger(Sequencer::builder().registry(ops::registry()))
            .await
            .expect("ledger");
        preview_then_run(&ledger.sequencer)
            .await
            .expect("the guide's run");
        use sequencer::ledger::Status::Completed;
        assert_eq!(
            crate::statuses(&ledger.sequencer).await,
            [("extract".into(), Completed), ("clean".into(), Completed)]
        );
    }
}

mod orchestrators_custom {
    guide!("orchestrators_3");

    #[sequencer::operations]
    mod ops {
        use sequencer::prelude::*;

        #[operation(timestamp = "2024_03_01_000000")]
        async fn first(_ctx: &Ctx) -> Result<()> {
            Err(Error::msg("boom"))
        }

        #[operation(timestamp = "2024_03_01_000001")]
        async fn second(_ctx: &Ctx) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn stops_at_the_first_failure() {
        let builder = sequencer::Sequencer::builder()
            .registry(ops::registry())
            .orchestrator(StopAtFirstFailure);
        let ledger = sequencer::testing::ledger(builder).await.expect("ledger");
        let report = ledger.sequencer.execute_all().await.expect("run");
        assert!(!report.succeeded());
        assert_eq!(report.results.len(), 1); // `second` never started
        assert_eq!(
            ledger.sequencer.orchestrator_name(),
            "stop-at-first-failure"
        );
    }
}

#[allow(dead_code)]
mod advanced_batches {
    guide!("advanced-operations_3");

    #[tokio::test]
    async fn batch_then_chain_on_a_ledger() {
        let ledger = sequencer::testing::ledger(builder()).await.expect("ledger");
        batch_then_chain(&ledger.sequencer)
            .await
            .expect("the guide's run");
        use sequencer::ledger::Status::Completed;
        assert_eq!(
            crate::statuses(&ledger.sequencer).await,
            [("step_a".into(), Completed), ("step_b".into(), Completed)]
        );
    }
}

#[allow(dead_code)]
mod advanced_guards {
    guide!("advanced-operations_5");

    #[tokio::test]
    async fn a_guard_refuses_the_run() {
        let ledger = sequencer::testing::ledger(guarded().environment("development"))
            .await
            .expect("ledger");
        let err = match ledger.sequencer.execute_all().await {
            Ok(report) => panic!("the guards let the run through: {report:?}"),
            Err(e) => e,
        };
        assert!(
            matches!(err, sequencer::SequencerError::Refused(_)),
            "{err}"
        );
        assert!(err.to_string().starts_with("refused: "), "{err}");
        assert!(ledger
            .sequencer
            .ledger()
            .rows()
            .await
            .expect("rows")
            .is_empty());
    }
}

#[allow(dead_code)]
mod advanced_rate_limits {
    guide!("advanced-operations_7");

    #[tokio::test]
    async fn both_limiters_let_their_operation_run() {
        let ledger = sequencer::testing::ledger(limited()).await.expect("ledger");
        let report = ledger.sequencer.execute_all().await.expect("run");
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(report.planned.len(), 2);
    }
}

#[allow(dead_code)]
mod advanced_tasks {
    guide!("advanced-operations_16");

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_backfill_runs_each_customer_once_on_a_worker() {
        let ledger = sequencer::testing::ledger(Sequencer::builder().registry(ops::registry()))
            .await
            .expect("ledger");
        let seq = &ledger.sequencer;
        let customers: Vec<i64> = (1..=120).collect();
        assert_eq!(backfill(seq, &customers).await.expect("backfill"), 120);
        // Still queued: a second backfill queues nobody twice.
        assert_eq!(backfill(seq, &customers).await.expect("backfill"), 0);
        let opts = sequencer::WorkOptions {
            queue: "billing".into(),
            until_idle: true,
            ..Default::default()
        };
        let report = seq
            .work(&opts, sequencer::CancellationToken::new())
            .await
            .expect("work");
        assert_eq!(report.completed, 120, "{report:?}");
        let status = seq.task_status().await.expect("status");
        assert_eq!(status[0].to_string(), "reprice: 120 completed");
    }
}

#[allow(dead_code)]
mod advanced_backfill {
    guide!("advanced-operations_17");

    #[tokio::test]
    async fn every_row_is_backfilled_once_in_batches() {
        let ledger =
            sequencer::testing::ledger(sequencer::Sequencer::builder().registry(ops::registry()))
                .await
                .expect("ledger");
        let pool = ledger.sequencer.ledger().pool();
        sequencer::sqlx::query("CREATE TABLE scores (id BIGINT PRIMARY KEY, score BIGINT NULL)")
            .execute(pool)
            .await
            .expect("table");
        sequencer::sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
             INSERT INTO scores (id) SELECT i FROM n",
        )
        .execute(pool)
        .await
        .expect("rows");
        let report = ledger.sequencer.execute_all().await.expect("run");
        assert!(report.succeeded(), "{report:?}");
        let wrong: i64 = sequencer::sqlx::query_scalar(
            "SELECT COUNT(*) FROM scores WHERE score IS NULL OR score <> id * 2",
        )
        .fetch_one(pool)
        .await
        .expect("count");
        assert_eq!(wrong, 0);
        let lines = ledger
            .sequencer
            .logs("backfill_scores", 0)
            .await
            .expect("logs");
        assert_eq!(
            lines.last().map(|l| l.line.as_str()),
            Some("done: 2500 rows")
        );
    }
}

#[allow(dead_code)]
mod advanced_csv {
    guide!("advanced-operations_18");

    #[tokio::test]
    async fn the_csv_is_imported_with_progress_by_rows() {
        let ledger =
            sequencer::testing::ledger(sequencer::Sequencer::builder().registry(ops::registry()))
                .await
                .expect("ledger");
        let pool = ledger.sequencer.ledger().pool();
        sequencer::sqlx::query("CREATE TABLE prices (sku TEXT PRIMARY KEY, cents BIGINT NOT NULL)")
            .execute(pool)
            .await
            .expect("table");
        let dir = crate::TempLedger::new("csv");
        let file = dir.dir.join("prices.csv");
        let mut text = String::from("sku,cents\n");
        for i in 0..2500 {
            text.push_str(&format!("sku-{i},{i}\n"));
        }
        std::fs::write(&file, text).expect("csv");
        // Only this test reads PRICES_CSV.
        std::env::set_var("PRICES_CSV", &file);
        let report = ledger
            .sequencer
            .execute("import_prices")
            .await
            .expect("run");
        assert!(report.succeeded(), "{report:?}");
        let n: i64 = sequencer::sqlx::query_scalar("SELECT COUNT(*) FROM prices")
            .fetch_one(pool)
            .await
            .expect("count");
        assert_eq!(n, 2500);
        let status = ledger.sequencer.status().await.expect("status");
        let import = status
            .iter()
            .find(|e| e.name.ends_with("import_prices"))
            .expect("entry");
        assert_eq!(
            (import.progress_done, import.progress_total),
            (Some(2500), Some(2500))
        );
    }
}

#[allow(dead_code)]
mod advanced_named_layers {
    guide!("advanced-operations_20");

    #[tokio::test]
    async fn the_audit_layer_logs_around_the_operation() {
        let ledger = sequencer::testing::ledger(builder()).await.expect("ledger");
        let report = ledger.sequencer.execute_all().await.expect("run");
        assert!(report.succeeded(), "{report:?}");
        let lines = ledger
            .sequencer
            .logs("purge_sessions", 0)
            .await
            .expect("logs");
        let lines: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            lines,
            ["audit: attempt 1 starts", "audit: attempt ended, ok = true"]
        );
    }
}

#[allow(dead_code)]
mod migrations_example {
    guide!("migrations_1");

    #[test]
    fn migrate_status_migrate() {
        let ledger = crate::TempLedger::new("migrations");
        let builder = || {
            sequencer::Sequencer::builder()
                .registry(ops::registry())
                .migrations(crate::examples_migrations())
                .strategy(sequencer::Strategy::migration())
        };
        for command in ["migrate", "status", "migrate"] {
            assert_eq!(
                ledger.cli(builder(), &[command]),
                ExitCode::SUCCESS,
                "{command}"
            );
        }
        let (free, invoices): (i64, i64) = ledger.with(builder(), async |seq| {
            let pool = seq.ledger().pool();
            let free =
                sequencer::sqlx::query_scalar("SELECT COUNT(*) FROM ex_users WHERE plan = 'free'")
                    .fetch_one(pool)
                    .await
                    .expect("users");
            let invoices = sequencer::sqlx::query_scalar("SELECT COUNT(*) FROM ex_invoices")
                .fetch_one(pool)
                .await
                .expect("invoices");
            (free, invoices)
        });
        // Three users seeded with bound values, each given the free plan, each with an invoice.
        assert_eq!((free, invoices), (3, 3));
    }
}

#[allow(dead_code)]
mod migrations_in_code {
    guide!("migrations_2");

    #[tokio::test]
    async fn migrate_on_a_ledger() {
        // The guide reads `migrations` from the working directory; here, the example's directory.
        let ledger =
            sequencer::testing::ledger(migrating().migrations(crate::examples_migrations()))
                .await
                .expect("ledger");
        let report = migrate(&ledger.sequencer).await.expect("migrate");
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(report.applied.len(), 3);
        assert_eq!(report.runs.len(), 1); // seed_users, right after 20240201000000
    }
}

#[allow(dead_code)]
mod migrations_revert {
    guide!("migrations_3");

    #[tokio::test]
    async fn revert_to_on_a_ledger() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/reversible");
        let ledger = sequencer::testing::ledger(
            sequencer::Sequencer::builder()
                .registry(sequencer_tests::rev_ops::ops::registry())
                .migrations(dir)
                .strategy(sequencer::Strategy::migration()),
        )
        .await
        .expect("ledger");
        let seq = &ledger.sequencer;
        assert!(seq.migrate().await.expect("migrate").succeeded());
        let report = revert_to(seq, 20240101000000).await.expect("revert");
        assert!(report.succeeded(), "{report:?}");
        let reverted: Vec<i64> = report.reverted.iter().map(|r| r.0).collect();
        assert_eq!(reverted, [20240301000000, 20240201000000]);
        // `r_late` and `r_needs_c` before C, then `r_fill_b` before B; `r_fill_a`, written before B, stays.
        assert_eq!(report.rolled_back.len(), 3, "{report:?}");
    }
}

#[allow(dead_code)]
mod workers_work {
    guide!("workers_2");

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_runs_the_queued_operation() {
        let ledger = sequencer::testing::ledger(Sequencer::builder().registry(ops::registry()))
            .await
            .expect("ledger");
        let seq = &ledger.sequencer;
        let queued = seq.execute_all().await.expect("process"); // queues the asynchronous operation
        assert_eq!(queued.queued.len(), 1);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let watch = async move {
            for _ in 0..600 {
                let done = crate::statuses(seq)
                    .await
                    .iter()
                    .all(|(_, s)| *s == sequencer::ledger::Status::Completed);
                if done {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            stop.cancel();
        };
        let (report, ()) = tokio::join!(work_imports(seq, shutdown), watch);
        let report = report.expect("work");
        assert_eq!(report.completed, 1, "{report:?}");
    }
}

#[allow(dead_code)]
mod workers_deferred {
    guide!("workers_3");

    #[tokio::test]
    async fn a_deferred_mail_waits_for_its_time() {
        let ledger = sequencer::testing::ledger(with_mail())
            .await
            .expect("ledger");
        let report = welcome(&ledger.sequencer, "ada@example.com")
            .await
            .expect("defer");
        assert_eq!(report.completed, 0); // not due for another minute
        let tasks = ledger.sequencer.task_status().await.expect("task status");
        let welcome = tasks
            .iter()
            .find(|t| t.name == "deferred:send_welcome")
            .expect("a deferred handler is a task");
        assert_eq!(welcome.queued, 1, "{welcome}");
    }
}

#[allow(dead_code)]
mod workers_encryption {
    guide!("workers_4");

    #[tokio::test]
    async fn errors_are_sealed_at_rest_and_opened_for_display() {
        let current_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let old_key = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
        let builder = sealed(current_key, &[old_key]).expect("keys");
        let ledger = sequencer::testing::ledger(builder).await.expect("ledger");
        assert!(!ledger
            .sequencer
            .execute_all()
            .await
            .expect("run")
            .succeeded());
        let rows = ledger.sequencer.ledger().rows().await.expect("rows");
        let stored = rows[0].last_error.as_deref().expect("an error");
        assert!(
            sequencer::crypto::is_sealed(stored) && !stored.contains("abc123"),
            "{stored}"
        );
        let errors = ledger.sequencer.errors(None).await.expect("errors"); // decrypted for display
        assert!(errors[0].message.contains("abc123"), "{:?}", errors[0]);
        assert!(sealed("not base64", &[]).is_err());
    }
}

// The testing guide's blocks are tests: included here, their `#[tokio::test]`s run.
mod testing_run {
    guide!("testing_1");
}

mod testing_ledger {
    guide!("testing_2");
}

mod testing_fake_dispatcher {
    guide!("testing_4");
}

mod testing_detached {
    guide!("testing_5");
}

#[allow(dead_code)]
mod cli {
    use std::process::ExitCode;

    guide!("cli_1");

    #[test]
    fn the_exit_codes_of_the_guide() {
        let ledger = crate::TempLedger::new("cli");
        let cases: [(&[&str], u8); 10] = [
            (&["--help"], 0),
            (&["--version"], 0),
            (&["process", "--no-such-flag"], 2),
            (&["process"], 1), // invite_users fails
            (&["status", "--failed"], 0),
            (&["execute", "nope"], 2), // unknown operation
            (&["mark", "invite_users", "--completed"], 0),
            (&["process", "--isolate"], 0),
            (&["rollback", "--step", "1"], 1), // no rollback: reported as not undone
            (&["--env", "production", "status", "--json"], 0),
        ];
        for (command, expected) in cases {
            let code = ledger.cli(
                sequencer::Sequencer::builder().registry(ops::registry()),
                command,
            );
            assert_eq!(code, ExitCode::from(expected), "{command:?}");
        }
    }
}

#[allow(dead_code)]
mod ledger_schema {
    guide!("ledger-schema_1");

    #[tokio::test]
    async fn the_prefix_names_every_table() {
        let ledger = sequencer::testing::ledger(billing()).await.expect("ledger");
        ledger.sequencer.execute_all().await.expect("run");
        let tables: Vec<String> = sequencer::sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'billing_seq_%' ORDER BY name",
        )
        .fetch_all(ledger.sequencer.ledger().pool())
        .await
        .expect("tables");
        assert_eq!(
            tables,
            [
                "billing_seq_audit",
                "billing_seq_batch_members",
                "billing_seq_batches",
                "billing_seq_checkpoints",
                "billing_seq_deferred",
                "billing_seq_errors",
                "billing_seq_job_batches",
                "billing_seq_jobs",
                "billing_seq_locks",
                "billing_seq_logs",
                "billing_seq_operations",
                "billing_seq_progress_samples",
                "billing_seq_rate_limits",
                "billing_seq_schema_versions",
                "billing_seq_throttles",
            ]
        );
        // `sequencer::ledger::TABLES` names them all.
        let mut named: Vec<String> = sequencer::ledger::TABLES
            .iter()
            .map(|t| format!("billing_seq_{t}"))
            .collect();
        named.sort();
        assert_eq!(tables, named);
    }
}

/// What is wrong with the ```rust blocks of one Markdown text: rustdoc hidden lines, `ignore`d blocks, blocks
/// without a language (rustdoc compiles them as Rust), and SQL built with `format!`.
fn problems(file: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let fence = line.trim_start();
        match &mut block {
            None if fence.starts_with("```") => {
                let info = fence.trim_start_matches('`').trim();
                let is_rust = info.is_empty() || info.split(',').any(|w| w.trim() == "rust");
                if info.is_empty() {
                    out.push(format!("{file}:{n}: a block without a language is compiled as Rust: say ```rust or ```text"));
                }
                if info.split(',').any(|w| w.trim() == "ignore") {
                    out.push(format!(
                        "{file}:{n}: `ignore` block: use `no_run` (still compiled) instead"
                    ));
                }
                if is_rust {
                    block = Some((n, String::new()));
                } else {
                    block = Some((0, String::new())); // another language: skipped until its end
                }
            }
            None => {}
            Some((start, code)) if fence.trim_end() == "```" => {
                if *start > 0 {
                    for p in format_sql(code) {
                        out.push(format!("{file}:{start}: SQL built with `format!`: bind the values instead: {p}"));
                    }
                }
                block = None;
            }
            Some((start, code)) if *start > 0 => {
                let t = line.trim();
                if t == "#" || t.starts_with("# ") {
                    out.push(format!(
                        "{file}:{n}: rustdoc hidden line `{t}`: show the whole code"
                    ));
                }
                code.push_str(line);
                code.push('\n');
            }
            Some(_) => {} // a block of another language
        }
    }
    out
}

/// The `format!(..)` calls of `code` whose text holds a SQL statement keyword.
fn format_sql(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("format!(") {
        let call = &rest[at..];
        let mut depth = 0;
        let mut end = call.len();
        for (i, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let text = &call[..end];
        let upper = text.to_uppercase();
        if ["SELECT ", "INSERT ", "UPDATE ", "DELETE "]
            .iter()
            .any(|k| upper.contains(k))
        {
            out.push(text.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        rest = &call[end.max(1)..];
    }
    out
}

#[test]
fn every_rust_block_of_the_readme_and_the_guides_is_shown_whole() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("sequencer/docs")).expect("sequencer/docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    assert!(files.len() >= 10, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        found.extend(problems(&name, &text));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_finds_hidden_lines_ignore_and_format_sql() {
    let text = "```rust\nlet n = 1;\n# fn main() {\n#\n    sqlx::query(&format!(\n        \"update t set a = {n}\"\n    ));\nlet s = format!(\"{n} rows\");\n```\n\n```text\n# not code\n```\n\n```rust,ignore\nfn f() {}\n```\n\n```\nfn g() {}\n```\n";
    let found = problems("x.md", text);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert!(
        found[0].starts_with("x.md:3: rustdoc hidden line"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("x.md:4: rustdoc hidden line"),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("x.md:1: SQL built with `format!`"),
        "{found:#?}"
    );
    assert!(
        found[3].starts_with("x.md:15: `ignore` block"),
        "{found:#?}"
    );
    assert!(
        found[4].starts_with("x.md:19: a block without a language"),
        "{found:#?}"
    );
}
