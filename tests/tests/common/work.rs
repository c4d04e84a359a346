//! Helpers of the worker suites: the `seqwork` binary and the tables it writes.

use std::collections::HashMap;
use std::process::{Child, Command};

use sequencer::sqlx;

use super::{command, pool, run_ok, Backend};

/// The operations of `work_ops`.
pub const N: usize = 1000;

pub fn seqwork(b: &Backend, p: &str, args: &[&str], sleep_ms: &str) -> Command {
    let mut c = command(env!("CARGO_BIN_EXE_seqwork"), &b.url, p, args);
    c.env("SEQTEST_SLEEP_MS", sleep_ms);
    c
}

/// One `work --until-idle` process with the default settings (4 at a time, a 2 s lease): it recovers what it finds
/// and drains the queue; it must exit cleanly.
pub fn work_until_idle(b: &Backend, p: &str) {
    let args = ["work", "--until-idle", "--concurrency", "4", "--lease", "2"];
    run_ok(b, &mut seqwork(b, p, &args, "0"));
}

/// How many times each name was logged in `{p}work_log` (none while the database cannot be read).
pub async fn log_counts(pool: &sqlx::AnyPool, p: &str) -> HashMap<String, i64> {
    counts_by_name(pool, &format!("{p}work_log"))
        .await
        .unwrap_or_default()
}

/// How many rows of `table` (a log table with a `name` column) have each name.
pub async fn counts_by_name(
    pool: &sqlx::AnyPool,
    table: &str,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as(&format!("SELECT name, COUNT(*) FROM {table} GROUP BY name"))
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The log counts and the runs' statuses once they hold still, read again every 300 ms until two reads agree: a
/// statement a process killed with kill -9 had already sent still runs to its end on the server (an operation's
/// `INSERT` into the log commits after the kill), so what a killed worker did is only known once it has.
pub async fn settled(
    pool: &sqlx::AnyPool,
    p: &str,
) -> (HashMap<String, i64>, HashMap<String, String>) {
    let mut last = (log_counts(pool, p).await, statuses(pool, p).await);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = (log_counts(pool, p).await, statuses(pool, p).await);
        if now == last {
            return now;
        }
        last = now;
    }
}

pub async fn statuses(pool: &sqlx::AnyPool, p: &str) -> HashMap<String, String> {
    let rows: Vec<(String, String)> =
        sqlx::query_as(&format!("SELECT name, status FROM {p}seq_operations"))
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    rows.into_iter()
        .map(|(n, s)| (n.split_at(18).1.to_owned(), s))
        .collect()
}

/// The runs of `{p}seq_operations` that did not complete, with their errors, and the jobs that are not done, one
/// per line (for a failing assertion's message).
pub async fn failures(pool: &sqlx::AnyPool, p: &str) -> String {
    let runs: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT name, run, status, last_error FROM {p}seq_operations WHERE status <> 'completed'"
    ))
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let jobs: Vec<(i64, String, i64, String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT id, name, run, status, last_error FROM {p}seq_jobs WHERE status <> 'done'"
    ))
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let runs = runs
        .into_iter()
        .map(|(n, r, s, e)| format!("run {n} #{r} {s}: {}\n", e.unwrap_or_default()));
    let jobs = jobs
        .into_iter()
        .map(|(i, n, r, s, e)| format!("job {i} {n} #{r} {s}: {}\n", e.unwrap_or_default()));
    runs.chain(jobs).collect()
}

pub async fn job_count(pool: &sqlx::AnyPool, p: &str, status: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {p}jobs WHERE status = '{status}'"
    ))
    .fetch_one(pool)
    .await
    .unwrap_or(-1)
}

pub async fn cleanup(pool: &sqlx::AnyPool, p: &str) {
    super::drop_tables(pool, p, &["work_log"]).await;
}

pub async fn setup(b: &Backend, p: &str) -> sqlx::AnyPool {
    let pool = pool(b).await;
    sqlx::query(&format!(
        "CREATE TABLE {p}work_log (name VARCHAR(191) NOT NULL)"
    ))
    .execute(&pool)
    .await
    .expect("log table");
    // Under the default `sequential` orchestrator each queued operation waits for the one planned before it;
    // these are independent, and the suites run them side by side.
    let out = run_ok(
        b,
        &mut seqwork(b, p, &["process", "--orchestrator", "graph"], "0"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("queued: ").count(),
        N,
        "{}: every asynchronous operation is queued, none run here",
        b.name
    );
    pool
}

/// Worker processes that are killed when the test ends, even when it fails.
/// Worker processes, their outputs read as they write them: a worker whose stdout pipe fills (a line per job
/// it runs and ends, ~80 bytes: 800 jobs fill Linux's 64 KiB) would block in `println!` and stop renewing its
/// leases, and its runs would be found expired.
pub struct Workers(pub Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The threads reading each drained child's stdout and stderr, by pid.
type Readers = HashMap<u32, (ReadThread, ReadThread)>;
type ReadThread = std::thread::JoinHandle<Vec<u8>>;
static READERS: std::sync::Mutex<Option<Readers>> = std::sync::Mutex::new(None);

/// Starts reading `child`'s piped stdout and stderr into memory (see [`Workers`]); [`Workers::stop`] returns them.
pub fn drained(mut child: Child) -> Child {
    fn read(pipe: Option<impl std::io::Read + Send + 'static>) -> ReadThread {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            out
        })
    }
    let readers = (read(child.stdout.take()), read(child.stderr.take()));
    READERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(child.id(), readers);
    child
}

impl Workers {
    /// These processes, drained (see [`drained`]).
    pub fn new(children: Vec<Child>) -> Workers {
        Workers(children.into_iter().map(drained).collect())
    }

    /// `n` worker processes, each started from `command()`.
    pub fn start(n: usize, mut command: impl FnMut() -> Command) -> Workers {
        Workers::new(
            (0..n)
                .map(|_| command().spawn().expect("start a worker"))
                .collect(),
        )
    }

    /// Kills the first worker with SIGKILL (`kill -9`, a worker that dies mid-run), waits for it and lets it go.
    pub fn kill_first(&mut self) {
        let mut first = self.0.remove(0);
        first.kill().expect("kill -9");
        first.wait().expect("the killed worker");
    }

    /// Stops every worker with SIGTERM and waits for each: their outputs.
    pub fn stop(&mut self) -> Vec<std::process::Output> {
        for w in &self.0 {
            terminate(w);
        }
        self.wait()
    }

    /// Waits for every worker to exit (`--until-idle`): their outputs.
    pub fn wait(&mut self) -> Vec<std::process::Output> {
        self.0
            .drain(..)
            .map(|mut w| {
                let status = w.wait().expect("wait for a worker");
                let readers = READERS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                    .and_then(|r| r.remove(&w.id()));
                let (stdout, stderr) = match readers {
                    Some((o, e)) => (o.join().unwrap_or_default(), e.join().unwrap_or_default()),
                    None => (Vec::new(), Vec::new()),
                };
                std::process::Output {
                    status,
                    stdout,
                    stderr,
                }
            })
            .collect()
    }
}

/// Sends SIGTERM.
pub fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}
