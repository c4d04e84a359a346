//! 4. Queue throughput and wake-up latency of `work` processes' loops on PostgreSQL (and a MariaDB line), against
//!    a floor measured in the same run: plain sqlx on an equivalent jobs table, each worker claiming a batch with
//!    `FOR UPDATE SKIP LOCKED` and acknowledging it with one batched `UPDATE`, with no sequencer code.

use std::time::{Duration, Instant};

use sequencer::sqlx::{self, Executor};
use sequencer::{DependencyGraph, ProcessOptions, Registry, WorkOptions};

use crate::ops::{noop, registry, stamp, STARTS};
use crate::opts::Opts;
use crate::setup::{
    bench_prefix, cpu_secs, drop_bench_tables, reachable, sequencer, server_cpu_secs, AnyError,
};
use crate::table::{verdict, Row, Samples, Table, REPS};

/// Jobs each worker runs at once, ours and the floor's (its claim size).
const CONCURRENCY: usize = 8;

pub(crate) async fn row_queue(opts: &Opts, table: &mut Table) -> Result<(), AnyError> {
    // `--quick`: the goal's line only (4 workers, PostgreSQL), with fewer jobs and probes, to stay within the
    // quick run's time on a loaded machine (each line sets up fresh tables and sequencers `REPS` times).
    let (jobs, probes, fleets): (usize, usize, &[usize]) = if opts.quick {
        (1_000, 50, &[4])
    } else {
        (10_000, 300, &[1, 4, 8])
    };
    if reachable(&opts.postgres).await {
        for &workers in fleets {
            let row = measure(&opts.postgres, workers, jobs, probes).await?;
            table.push(row);
        }
        drop_bench_tables(&opts.postgres).await?;
    } else {
        table.skip("4", "queue throughput, PostgreSQL", "server unreachable");
    }
    if opts.quick {
        table.skip("4", "queue throughput, MariaDB", "measured in the full run");
    } else if reachable(&opts.mysql).await {
        let row = measure(&opts.mysql, 4, jobs, 0).await?;
        table.push(row);
        drop_bench_tables(&opts.mysql).await?;
    } else {
        table.skip("4", "queue throughput, MariaDB", "server unreachable");
    }
    Ok(())
}

/// One line of row 4: ours and the floor, `REPS` times each taking turns, and (with `probes`) the wake-up.
async fn measure(url: &str, workers: usize, jobs: usize, probes: usize) -> Result<Row, AnyError> {
    let backend = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "MariaDB"
    };
    let deps = vec![Vec::new(); jobs];
    let reg = registry(&format!("q{workers}{}", &backend[..1]), &deps, noop, true)?;
    let (mut ours, mut floor) = (Samples::default(), Samples::default());
    let (mut ours_cpu, mut floor_cpu) = (Cpu::default(), Cpu::default());
    for _ in 0..REPS {
        let (rate, cpu) = throughput(url, workers, jobs, &reg).await?;
        ours.push(rate);
        ours_cpu.add(cpu);
        let (rate, cpu) = floor_throughput(url, workers, jobs).await?;
        floor.push(rate);
        floor_cpu.add(cpu);
    }
    let wake = if probes > 0 {
        let lat = wake_up(url, workers, probes).await?;
        let pct = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        Some((pct(0.5), pct(0.99)))
    } else {
        None
    };
    let rate = ours.median();
    let ratio = rate / floor.median();
    let goal_rate = workers == 4 && backend == "PostgreSQL";
    Ok(Row {
        row: "4",
        figure: format!("queue, {backend}, {workers} worker(s) × {CONCURRENCY}, {jobs} no-op jobs"),
        ours: match wake {
            Some((p50, p99)) => format!(
                "{}; wake-up p50 {p50:.1} ms, p99 {p99:.1} ms; {}",
                ours.show(0, "jobs/s"),
                ours_cpu.show()
            ),
            None => format!("{}; {}", ours.show(0, "jobs/s"), ours_cpu.show()),
        },
        baseline: format!(
            "{} raw sqlx, SKIP LOCKED claim of {CONCURRENCY} + 1 batched ack; {}",
            floor.show(0, "jobs/s"),
            floor_cpu.show()
        ),
        ratio: format!("{ratio:.2}"),
        goal: match (goal_rate, wake.is_some()) {
            (true, _) => "≥ 10,000 jobs/s; p50 ≤ 10 ms".into(),
            (false, true) => "p50 ≤ 10 ms".into(),
            (false, false) => "measured".into(),
        },
        met: match wake {
            Some((p50, _)) => verdict((!goal_rate || rate >= 10_000.0) && p50 <= 10.0),
            None => "",
        },
    })
}

/// Queues `jobs` no-op operations and drains them with `workers` workers; jobs per second.
async fn throughput(
    url: &str,
    workers: usize,
    jobs: usize,
    reg: &Registry,
) -> Result<(f64, Option<JobCpu>), AnyError> {
    drop_bench_tables(url).await?;
    let seq = sequencer(url, &bench_prefix("q_"), reg.clone()).await?;
    // The graph orchestrator queues independent operations at once (the default `sequential` one queues each
    // behind the one before it, a chain): the floor's jobs are independent too.
    let queued = seq
        .using(DependencyGraph)
        .process(&ProcessOptions::default())
        .await?
        .queued
        .len();
    if queued != jobs {
        return Err(format!("{queued} of {jobs} queued").into());
    }
    // Free the queueing pool's connections: eight workers of 12 fill PostgreSQL's default 100.
    seq.ledger().pool().close().await;
    let mut fleet = Vec::new();
    for _ in 0..workers {
        fleet.push(sequencer(url, &bench_prefix("q_"), reg.clone()).await?);
    }
    let work = WorkOptions {
        until_idle: true,
        concurrency: CONCURRENCY,
        ..Default::default()
    };
    let (started, cpu) = (Instant::now(), JobCpu::start(url));
    let mut tasks = tokio::task::JoinSet::new();
    for w in fleet {
        let work = work.clone();
        tasks.spawn(async move {
            let report = w.work(&work, Default::default()).await;
            (report, w)
        });
    }
    let (mut done, mut ended) = (0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (report, w) = r?;
        done += report?.completed;
        ended.push(w);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu.and_then(|c| c.per_job(url, jobs));
    for w in ended {
        w.ledger().pool().close().await;
    }
    if done != jobs {
        return Err(format!("{done} of {jobs} jobs completed").into());
    }
    Ok((jobs as f64 / secs, cpu))
}

/// CPU time per job of one drain: this process's (the workers') and the database server's, in µs.
#[derive(Clone, Copy)]
struct JobCpu {
    client: f64,
    server: f64,
}

impl JobCpu {
    /// The CPU seconds so far, as a starting point (`None` where `/proc` does not tell).
    fn start(url: &str) -> Option<JobCpu> {
        Some(JobCpu {
            client: cpu_secs(false)?,
            server: server_cpu_secs(url)?,
        })
    }

    /// The CPU spent since `self`, per job.
    fn per_job(self, url: &str, jobs: usize) -> Option<JobCpu> {
        let per = |now: f64, then: f64| (now - then) / jobs as f64 * 1e6;
        Some(JobCpu {
            client: per(cpu_secs(false)?, self.client),
            server: per(server_cpu_secs(url)?, self.server),
        })
    }
}

/// The medians of [`JobCpu`]s over the repetitions.
#[derive(Default)]
struct Cpu {
    client: Samples,
    server: Samples,
}

impl Cpu {
    fn add(&mut self, cpu: Option<JobCpu>) {
        if let Some(c) = cpu {
            self.client.push(c.client);
            self.server.push(c.server);
        }
    }

    /// `CPU per job: client N µs, server M µs` (medians), or nothing measured.
    fn show(&self) -> String {
        if self.client.values().is_empty() {
            return "CPU not measured".into();
        }
        format!(
            "CPU per job: client {:.0} µs, server {:.0} µs",
            self.client.median(),
            self.server.median()
        )
    }
}

/// The floor: the same number of jobs in a plain table, drained by `workers` loops on one connection each, each
/// claiming up to `CONCURRENCY` jobs with `FOR UPDATE SKIP LOCKED` and acknowledging them in one `UPDATE`, with a
/// lease and a worker name as ours writes; jobs per second.
async fn floor_throughput(
    url: &str,
    workers: usize,
    jobs: usize,
) -> Result<(f64, Option<JobCpu>), AnyError> {
    sqlx::any::install_default_drivers();
    let postgres = url.starts_with("postgres");
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(workers as u32 + 1)
        .connect(url)
        .await?;
    let t = &format!("{}jobs", bench_prefix("floor_"));
    pool.execute(format!("DROP TABLE IF EXISTS {t}").as_str())
        .await?;
    let id = if postgres {
        "BIGSERIAL PRIMARY KEY"
    } else {
        "BIGINT AUTO_INCREMENT PRIMARY KEY"
    };
    pool.execute(
        format!(
            "CREATE TABLE {t} (id {id}, queue VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, \
             worker VARCHAR(191) NULL, lease_until BIGINT NULL, available_at BIGINT NOT NULL, \
             attempts BIGINT NOT NULL, finished_at BIGINT NULL)"
        )
        .as_str(),
    )
    .await?;
    // The queue's order, as ours (schema 17 on PostgreSQL; InnoDB's indexes end with the key already).
    pool.execute(
        format!("CREATE INDEX {t}_take ON {t} (queue, status, available_at, id)").as_str(),
    )
    .await?;
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        let values = vec!["('default', 'queued', 0, 0)"; chunk.len()].join(", ");
        pool.execute(
            format!("INSERT INTO {t} (queue, status, available_at, attempts) VALUES {values}")
                .as_str(),
        )
        .await?;
    }
    let (started, cpu) = (Instant::now(), JobCpu::start(url));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let pool = pool.clone();
        tasks.spawn(async move { floor_worker(&pool, postgres, &format!("floor-{w}")).await });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        done += r??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu.and_then(|c| c.per_job(url, jobs));
    pool.execute(format!("DROP TABLE IF EXISTS {t}").as_str())
        .await?;
    pool.close().await;
    if done != jobs {
        return Err(format!("floor: {done} of {jobs} jobs acknowledged").into());
    }
    Ok((jobs as f64 / secs, cpu))
}

/// One floor worker: claim a batch, acknowledge it, until the table has no queued job; how many it acknowledged.
async fn floor_worker(
    pool: &sqlx::AnyPool,
    postgres: bool,
    worker: &str,
) -> Result<usize, AnyError> {
    let t = &format!("{}jobs", bench_prefix("floor_"));
    let mut done = 0;
    loop {
        let ids: Vec<i64> = if postgres {
            let claim = format!(
                "UPDATE {t} SET status = 'running', worker = $1, lease_until = 60000, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM {t} WHERE queue = 'default' AND status = 'queued' AND available_at <= 1 \
                 ORDER BY available_at, id LIMIT {CONCURRENCY} FOR UPDATE SKIP LOCKED) RETURNING id"
            );
            sqlx::query_scalar(&claim)
                .bind(worker)
                .fetch_all(pool)
                .await?
        } else {
            let mut tx = pool.begin().await?;
            let ids: Vec<i64> = sqlx::query_scalar(&format!(
                "SELECT id FROM {t} WHERE queue = 'default' AND status = 'queued' AND available_at <= 1 \
                 ORDER BY available_at, id LIMIT {CONCURRENCY} FOR UPDATE SKIP LOCKED"
            ))
            .fetch_all(&mut *tx)
            .await?;
            if !ids.is_empty() {
                let list = vec!["?"; ids.len()].join(", ");
                let take = format!(
                    "UPDATE {t} SET status = 'running', worker = ?, lease_until = 60000, attempts = attempts + 1 WHERE id IN ({list})"
                );
                let mut q = sqlx::query(&take).bind(worker);
                for id in &ids {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            ids
        };
        if ids.is_empty() {
            return Ok(done);
        }
        // The jobs are no-ops: acknowledged at once, in one statement.
        let marks: Vec<String> = (0..ids.len())
            .map(|i| {
                if postgres {
                    format!("${}", i + 2)
                } else {
                    "?".into()
                }
            })
            .collect();
        let ack = format!(
            "UPDATE {t} SET status = 'done', finished_at = 1, lease_until = NULL WHERE worker = {} AND id IN ({})",
            if postgres { "$1" } else { "?" },
            marks.join(", ")
        );
        let mut q = sqlx::query(&ack).bind(worker);
        for id in &ids {
            q = q.bind(*id);
        }
        q.execute(pool).await?;
        done += ids.len();
    }
}

/// Enqueues `probes` operations one at a time to `workers` idle workers; sorted enqueue-to-start latencies.
async fn wake_up(url: &str, workers: usize, probes: usize) -> Result<Vec<Duration>, AnyError> {
    let deps = vec![Vec::new(); probes];
    let reg = registry(&format!("w{workers}"), &deps, stamp, true)?;
    let seq = sequencer(url, &bench_prefix("w_"), reg.clone()).await?;
    let stop = sequencer::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let w = sequencer(url, &bench_prefix("w_"), reg.clone()).await?;
        let stop = stop.clone();
        tasks.spawn(async move { w.work(&WorkOptions::default(), stop).await });
    }
    // Let the workers reach their idle wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lat = Vec::new();
    for def in reg.operations() {
        let name = def.meta.name;
        let t0 = Instant::now();
        seq.enqueue(name).await?;
        let deadline = t0 + Duration::from_secs(10);
        loop {
            if let Some(t) = STARTS.lock().ok().and_then(|m| m.get(name).copied()) {
                lat.push(t.saturating_duration_since(t0));
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{name} did not start within 10 s").into());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Idle again before the next probe.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    lat.sort();
    Ok(lat)
}
