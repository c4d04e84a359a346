//! A fan-out / fan-in graph of twelve operations with sleeps, run with the orchestrator of your choice on a
//! throw-away SQLite ledger; prints the measured makespan beside the critical path.
//!
//! ```sh
//! cargo run --example dependency_graph -- graph        # or: sequential, batch, transactional, allowed-to-fail
//! cargo run --example dependency_graph -- graph 2      # with a concurrency of 2
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sequencer::{ProcessOptions, Sequencer};

/// How long each operation sleeps, in milliseconds.
const DURATIONS: &[(&str, u64)] = &[
    ("extract", 100),
    ("clean_a", 200),
    ("clean_b", 80),
    ("clean_c", 150),
    ("merge_ab", 120),
    ("enrich_c", 300),
    ("index", 100),
    ("report", 60),
    ("publish", 50),
    ("warm_cache", 250),
    ("audit", 90),
    ("notify", 20),
];

fn duration_of(name: &str) -> Duration {
    Duration::from_millis(
        DURATIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, ms)| *ms),
    )
}

#[sequencer::operations]
mod pipeline {
    use sequencer::prelude::*;

    async fn work(ctx: &Ctx) -> Result<()> {
        tokio::time::sleep(super::duration_of(ctx.operation().fn_name)).await;
        Ok(())
    }

    #[operation(timestamp = "2024_03_01_000000")]
    async fn extract(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000001", depends_on = [extract])]
    async fn clean_a(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000002", depends_on = [extract])]
    async fn clean_b(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000003", depends_on = [extract])]
    async fn clean_c(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000004", depends_on = [clean_a, clean_b])]
    async fn merge_ab(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000005", depends_on = [clean_c])]
    async fn enrich_c(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000006", depends_on = [merge_ab, enrich_c])]
    async fn index(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000007", depends_on = [merge_ab])]
    async fn report(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000008", depends_on = [index, report])]
    async fn publish(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000009")]
    async fn warm_cache(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000010")]
    async fn audit(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }

    #[operation(timestamp = "2024_03_01_000011", depends_on = [publish, audit])]
    async fn notify(ctx: &Ctx) -> Result<()> {
        work(ctx).await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("graph", String::as_str);
    let concurrency = args
        .get(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(sequencer::DEFAULT_CONCURRENCY);
    let Some(orchestrator) = sequencer::orchestrator::by_name(name) else {
        eprintln!(
            "unknown orchestrator `{name}`; expected one of {}",
            sequencer::orchestrator::NAMES.join(", ")
        );
        return ExitCode::from(2);
    };
    let dir = std::env::temp_dir().join(format!("sequencer-example-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let seq = match Sequencer::builder()
        .registry(pipeline::registry())
        .database(url)
        .build()
        .await
    {
        Ok(s) => s.using_arc(orchestrator),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let durations: HashMap<String, u64> = pipeline::registry()
        .operations()
        .iter()
        .map(|o| {
            (
                o.meta.name.to_owned(),
                duration_of(o.meta.fn_name).as_millis() as u64,
            )
        })
        .collect();
    let view = match sequencer::render::analyze(seq.registry(), &durations) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let report = seq
        .process(&ProcessOptions {
            concurrency: Some(concurrency),
            ..ProcessOptions::default()
        })
        .await;
    let makespan = started.elapsed().as_millis() as u64;
    let _ = std::fs::remove_dir_all(&dir);
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cp = view.critical_weight;
    let bound = cp.max(view.total_work.div_ceil(concurrency as u64));
    let names: Vec<&str> = view
        .critical_path
        .iter()
        .map(|&i| seq.registry().operations()[i].meta.fn_name)
        .collect();
    println!(
        "orchestrator     {} (concurrency {concurrency})",
        seq.orchestrator_name()
    );
    println!(
        "operations       {} ({} completed)",
        report.planned.len(),
        report.count(|o| matches!(o, sequencer::Outcome::Completed { .. }))
    );
    println!("critical path    {cp} ms: {}", names.join(" → "));
    println!("total work       {} ms", view.total_work);
    println!("makespan         {makespan} ms");
    println!("makespan / CP    {:.3}", makespan as f64 / cp as f64);
    println!(
        "makespan / max(CP, W/p)  {:.3}",
        makespan as f64 / bound as f64
    );
    ExitCode::from(u8::from(!report.succeeded()))
}
