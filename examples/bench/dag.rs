//! 2. DAG makespan: seeded random DAGs run by the `graph` orchestrator, against the critical path, against
//!    `max(CP, W/p)` when bounded, and against level-by-level "waves".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sequencer::orchestrator::{Due, Run};
use sequencer::{
    BoxFuture, Dependency, DependencyGraph, Orchestrator, Outcome, ProcessOptions, RunReport,
    SequencerError,
};

use crate::ops::{random_dag, registry, sleeper, DURATIONS};
use crate::opts::Opts;
use crate::scheduling::ready_queue;
use crate::setup::{completed, scratch_dir, sequencer, sqlite_url, AnyError};
use crate::table::{verdict, Row, Samples, Table, REPS};

/// Level-by-level scheduling, as a reference: every operation of a level must end before the next level
/// starts; at most `concurrency` at once within a level.
struct Waves;

impl Orchestrator for Waves {
    fn name(&self) -> &'static str {
        "waves"
    }

    fn orchestrate<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<RunReport, SequencerError>> {
        Box::pin(async move {
            let due = run.due();
            let index: HashMap<&str, usize> = due
                .iter()
                .enumerate()
                .map(|(i, d)| (d.def().meta.name, i))
                .collect();
            // Plan order puts every dependency first, so one pass computes the levels.
            let mut level = vec![0usize; due.len()];
            for (i, d) in due.iter().enumerate() {
                for dep in d.def().meta.depends_on {
                    if let Dependency::Operation(name) = dep {
                        if let Some(&j) = index.get(name) {
                            level[i] = level[i].max(level[j] + 1);
                        }
                    }
                }
            }
            let levels = level.iter().max().map_or(0, |m| m + 1);
            let mut report = RunReport::default();
            for l in 0..levels {
                let wave: Vec<Due> = due
                    .iter()
                    .zip(&level)
                    .filter(|(_, &x)| x == l)
                    .map(|(d, _)| *d)
                    .collect();
                let gate = Arc::new(tokio::sync::Semaphore::new(run.concurrency()));
                let mut tasks = tokio::task::JoinSet::new();
                for d in wave {
                    let (run, gate) = (run.clone(), gate.clone());
                    tasks.spawn(async move {
                        let _permit = gate.acquire_owned().await;
                        (d.def().meta.name, run.execute(&d).await)
                    });
                }
                while let Some(joined) = tasks.join_next().await {
                    let (name, outcome) =
                        joined.map_err(|e| SequencerError::Usage(e.to_string()))?;
                    let kind = match outcome? {
                        done @ Outcome::Completed { .. } => done,
                        other => Outcome::Failed {
                            error: format!("{other:?}"),
                            allowed_to_fail: false,
                        },
                    };
                    report.results.push((name.to_owned(), kind));
                }
            }
            Ok(report)
        })
    }
}

struct Dag {
    deps: Vec<Vec<usize>>,
    ms: Vec<u64>,
}

impl Dag {
    fn new(n: usize, seed: u64, heavy: bool) -> Dag {
        let deps = random_dag(n, seed);
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        let ms = (0..n)
            .map(|_| {
                if heavy {
                    // Pareto (α = 1.2) from 10 ms, capped at 2 s: most short, a few very long.
                    let u = rng.f64().max(1e-9);
                    (10.0 / u.powf(1.0 / 1.2)).min(2_000.0) as u64
                } else {
                    rng.u64(10..=100)
                }
            })
            .collect();
        Dag { deps, ms }
    }

    fn critical_path(&self) -> u64 {
        let mut finish = vec![0u64; self.ms.len()];
        for i in 0..self.ms.len() {
            let start = self.deps[i].iter().map(|&j| finish[j]).max().unwrap_or(0);
            finish[i] = start + self.ms[i];
        }
        finish.into_iter().max().unwrap_or(0)
    }

    fn work(&self) -> u64 {
        self.ms.iter().sum()
    }
}

/// Runs the DAG on a fresh SQLite ledger with the orchestrator, `runs` times (each later one with `--repeat`, so
/// the ledger has recorded the durations of the one before); the makespan of each run, in milliseconds.
async fn makespan(
    dag: &Dag,
    tag: &str,
    orchestrator: Arc<dyn Orchestrator>,
    concurrency: usize,
    runs: usize,
) -> Result<Vec<f64>, AnyError> {
    let reg = registry(tag, &dag.deps, sleeper, false)?;
    if let Ok(mut m) = DURATIONS.write() {
        for (def, ms) in reg.operations().iter().zip(&dag.ms) {
            m.insert(def.meta.name, Duration::from_millis(*ms));
        }
    }
    let url = sqlite_url(&scratch_dir(), tag);
    let seq = sequencer(&url, "", reg).await?.using_arc(orchestrator);
    let mut spans = Vec::with_capacity(runs);
    for run in 0..runs {
        let opts = ProcessOptions {
            concurrency: Some(concurrency),
            repeat: run > 0,
            ..Default::default()
        };
        let started = Instant::now();
        let report = seq.process(&opts).await?;
        spans.push(started.elapsed().as_secs_f64() * 1e3);
        if completed(&report) != dag.ms.len() {
            return Err(format!(
                "{tag} run {}: {} of {} completed",
                run + 1,
                completed(&report),
                dag.ms.len()
            )
            .into());
        }
    }
    Ok(spans)
}

pub(crate) async fn row_dag(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
    let sizes: &[usize] = if opts.quick { &[100] } else { &[200, 1_000] };
    for &n in sizes {
        // `--quick`: the heavy-tailed graph only, whose second run is the learned schedule's goal; the full run
        // has both.
        let shapes: &[bool] = if opts.quick { &[true] } else { &[false, true] };
        for &heavy in shapes {
            let dag = Dag::new(n, 42 + n as u64, heavy);
            let (cp, w) = (dag.critical_path() as f64, dag.work() as f64);
            let shape = format!(
                "{n} ops, {} ms, CP {:.2} s, W {:.1} s",
                if heavy {
                    "Pareto 10–2000"
                } else {
                    "10–100"
                },
                cp / 1e3,
                w / 1e3
            );
            // `--quick`: at 100 operations W/16 is under the critical path, so p = 16 has the unbounded figure's
            // bound; it is left out there to keep the three repetitions within the quick run's time.
            let bounds: &[Option<usize>] = if opts.quick {
                &[None, Some(4)]
            } else {
                &[None, Some(16), Some(4)]
            };
            for &p in bounds {
                let conc = p.unwrap_or(n);
                let bound = match p {
                    None => cp,
                    Some(p) => cp.max(w / p as f64),
                };
                let tag = format!("d{n}{}{conc}", if heavy { "h" } else { "u" });
                // REPS repetitions, the graph, the waves and (unbounded) the bare floor taking turns, so that a
                // load that comes and goes weighs on each.
                let (mut firsts, mut ours, mut waves, mut bares) = (
                    Samples::default(),
                    Samples::default(),
                    Samples::default(),
                    Samples::default(),
                );
                // `--quick`: the waves and the bare floor, which compare but do not judge, once.
                let baselines = if opts.quick { 1 } else { REPS };
                for rep in 0..REPS {
                    // The graph twice: the second run's priority knows the durations the first recorded.
                    let spans =
                        makespan(&dag, &format!("{tag}g"), Arc::new(DependencyGraph), conc, 2)
                            .await?;
                    firsts.push(spans[0] / 1e3);
                    ours.push(spans[1] / 1e3);
                    if rep >= baselines {
                        continue;
                    }
                    let w = makespan(&dag, &format!("{tag}w"), Arc::new(Waves), conc, 1).await?;
                    waves.push(w[0] / 1e3);
                    // Unbounded, the floor tokio's 1 ms timer leaves: the same sleeps, no ledger, no scheduler.
                    if p.is_none() {
                        let ms = Arc::new(dag.ms.clone());
                        let t = ready_queue(&dag.deps, move |i| {
                            let d = Duration::from_millis(ms[i]);
                            async move {
                                tokio::time::sleep(d).await;
                                Ok(())
                            }
                        })
                        .await?;
                        bares.push(t.as_secs_f64());
                    }
                }
                // Seconds over the bound, of a median.
                let of_bound = |s: &Samples| s.median() * 1e3 / bound;
                let r = of_bound(&ours);
                let bare = if p.is_none() {
                    format!(
                        "; tokio ready-queue, same sleeps, no ledger: {} = {:.3}",
                        bares.show(2, "s"),
                        of_bound(&bares)
                    )
                } else {
                    String::new()
                };
                let goal = if p.is_none() { 1.02 } else { 1.05 };
                table.push(Row {
                    row: "2",
                    figure: format!(
                        "DAG makespan, {shape}, {}",
                        match p {
                            None => "unbounded: / CP".to_owned(),
                            Some(p) => format!("p = {p}: / max(CP, W/p)"),
                        }
                    ),
                    ours: format!(
                        "second run {} = {r:.3} (first, nothing recorded: {} = {:.3})",
                        ours.show(2, "s"),
                        firsts.show(2, "s"),
                        of_bound(&firsts)
                    ),
                    baseline: format!(
                        "waves {} = {:.3}{bare}",
                        waves.show(2, "s"),
                        of_bound(&waves)
                    ),
                    ratio: format!("{:.2} × faster than waves", waves.median() / ours.median()),
                    goal: format!("≤ {goal:.2}"),
                    met: verdict(r <= goal),
                });
            }
        }
    }
    Ok(())
}
