//! What the commands print: stdout that survives a closed pipe, JSON, the status table, run summaries, and the
//! live progress of a run.

use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::{Outcome, RunReport, Sequencer, StatusEntry};

/// Writes to stdout and carries on when it is closed (`status | head`): the command still finishes its work and
/// records it, where `std`'s `println!` would panic half-way.
macro_rules! println {
    () => {
        $crate::cli::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(super) use println;

/// [`println!`]'s counterpart of `print!`.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!($($arg)*))
    };
}
pub(super) use print;

/// What [`println!`] and [`print!`] expand to.
pub(super) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_fmt(args);
}

/// Prints `--json` output: `print_json(serde_json::to_string_pretty(&value))` (an empty line if it failed).
pub(super) fn print_json(json: serde_json::Result<String>) {
    println!("{}", json.unwrap_or_default());
}

/// Awaits `work`, printing each operation as it starts and ends, under a progress bar on a terminal.
pub(super) async fn live<T>(seq: &Sequencer, work: impl std::future::Future<Output = T>) -> T {
    use std::io::IsTerminal;
    let mut events = seq.subscribe();
    let mut work = std::pin::pin!(work);
    let terminal = std::io::stdout().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let show =
        |e: crate::Event, bar: &mut Option<indicatif::ProgressBar>, printer: &mut Printer| {
            use crate::Event;
            match &e {
                Event::OperationsStarted { count, .. } if terminal => {
                    let pb = indicatif::ProgressBar::new(*count as u64);
                    let style = indicatif::ProgressStyle::with_template(
                        "[{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                    pb.set_style(style);
                    *bar = Some(pb);
                }
                Event::OperationStarted { name, .. } => {
                    if let Some(pb) = bar {
                        pb.set_message(name.clone());
                    }
                }
                Event::OperationProgress {
                    name, done, total, ..
                } => {
                    if let Some(pb) = bar {
                        pb.set_message(format!("{name} {done}/{total}"));
                    }
                }
                Event::OperationSucceeded { .. }
                | Event::OperationFailed { .. }
                | Event::OperationSkipped { .. } => {
                    if let Some(pb) = bar {
                        pb.inc(1);
                    }
                }
                Event::OperationsEnded { .. } => {
                    if let Some(pb) = bar.take() {
                        pb.finish_and_clear();
                    }
                }
                _ => {}
            }
            if let Some(line) = event_line(e) {
                match bar {
                    Some(pb) => pb.println(line),
                    None => printer.line(line),
                }
            }
        };
    let mut printer = Printer::new();
    loop {
        tokio::select! {
            result = &mut work => {
                while let Ok(e) = events.try_recv() {
                    show(e, &mut bar, &mut printer);
                }
                if let Some(pb) = bar.take() {
                    pb.finish_and_clear();
                }
                printer.finish().await;
                return result;
            }
            Ok(e) = events.recv() => show(e, &mut bar, &mut printer),
        }
    }
}

/// Prints the live lines on a thread of its own, so that a stdout nobody reads (a full pipe, a log driver that
/// blocks) never stalls the work they report: a worker blocked in a write would stop renewing its leases, and
/// its runs would be recovered as if it had died. Lines that do not fit while stdout is blocked are counted, and
/// the count is printed once it moves again.
struct Printer {
    tx: Option<std::sync::mpsc::SyncSender<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dropped: u64,
}

impl Printer {
    /// Lines held while stdout is blocked, before they are counted instead.
    const HELD: usize = 10_000;

    fn new() -> Printer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(Self::HELD);
        let thread = std::thread::Builder::new()
            .name("sequencer-stdout".into())
            .spawn(move || {
                for line in rx {
                    println!("{line}");
                }
            });
        match thread {
            Ok(thread) => Printer {
                tx: Some(tx),
                thread: Some(thread),
                dropped: 0,
            },
            // No thread to spare: print in place.
            Err(_) => Printer {
                tx: None,
                thread: None,
                dropped: 0,
            },
        }
    }

    fn dropped_note(&self) -> String {
        format!(
            "… {} line(s) not printed: stdout was not read as fast as they came",
            self.dropped
        )
    }

    fn line(&mut self, line: String) {
        let Some(tx) = &self.tx else {
            println!("{line}");
            return;
        };
        if self.dropped > 0 {
            if tx.try_send(self.dropped_note()).is_err() {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        if tx.try_send(line).is_err() {
            self.dropped += 1;
        }
    }

    /// Prints what is held (and the count of lines dropped), off the runtime's threads.
    async fn finish(&mut self) {
        let note = (self.dropped > 0).then(|| self.dropped_note());
        let (Some(tx), Some(thread)) = (self.tx.take(), self.thread.take()) else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(note) = note {
                let _ = tx.send(note);
            }
            drop(tx);
            let _ = thread.join();
        })
        .await;
    }
}

fn event_line(e: crate::Event) -> Option<String> {
    use crate::Event;
    Some(match e {
        Event::OperationStarted {
            name, attempt: 1, ..
        } => format!("RUNNING     {name}"),
        Event::OperationStarted { name, attempt, .. } => {
            format!("RUNNING     {name} (attempt {attempt})")
        }
        Event::OperationSucceeded {
            name, duration_ms, ..
        } => {
            format!("DONE        {name} ({duration_ms} ms)")
        }
        Event::OperationRetrying {
            name,
            attempt,
            delay_ms,
            error,
            ..
        } => {
            format!("RETRYING    {name}: attempt {attempt} failed: {error}; next in {delay_ms} ms")
        }
        Event::OperationFailed {
            name,
            error,
            allowed_to_fail,
            ..
        } => {
            let note = if allowed_to_fail {
                " (allowed to fail)"
            } else {
                ""
            };
            format!("FAILED      {name}{note}: {error}")
        }
        Event::OperationSkipped { name, reason, .. } => format!("SKIPPED     {name}: {reason}"),
        Event::OperationCancelled { name, reason, .. } => format!("CANCELLED   {name}: {reason}"),
        Event::OperationRolledBack { name, .. } => format!("ROLLED BACK {name}"),
        Event::OperationPaused { name, .. } => {
            format!("PAUSED      {name}: holds at its checkpoint until `resume {name}`")
        }
        Event::OperationResumed {
            name, paused_ms, ..
        } => {
            format!("RESUMED     {name} (paused {paused_ms} ms)")
        }
        Event::OperationThrottled {
            name, throttled_ms, ..
        } => {
            format!("THROTTLED   {name}: backed off {throttled_ms} ms")
        }
        Event::NoPendingOperations => "Nothing to run: no pending operations.".to_owned(),
        Event::MigrationsStarted { count } => format!("Migrating: {count} pending migration(s)."),
        Event::MigrationStarted {
            version,
            description,
        } => format!("MIGRATING   {version} {description}"),
        Event::MigrationEnded {
            version,
            description,
        } => format!("MIGRATED    {version} {description}"),
        Event::MigrationsEnded { applied } => format!("Migrations done: {applied} applied."),
        Event::NoPendingMigrations => "Nothing to migrate: no pending migrations.".to_owned(),
        Event::WaitingForWorker {
            name,
            queue,
            waited_secs,
        } => format!(
            "WAITING     {name}: no worker has taken it from queue `{queue}` for {waited_secs} s; start one with `work --queue {queue}`"
        ),
        Event::WorkerWaiting { queue, idle_secs: 0 } => format!(
            "Waiting for jobs on queue `{queue}` (and for due deferred operations); Ctrl-C or SIGTERM stops"
        ),
        Event::WorkerWaiting { queue, idle_secs } => format!(
            "Still waiting for jobs on queue `{queue}`: idle for {}",
            humantime::format_duration(std::time::Duration::from_secs(idle_secs))
        ),
        Event::BatchEnded {
            id,
            name,
            total,
            failed,
            skipped,
            cancelled,
        } => format!(
            "BATCH       {id}{}: ended, {total} member(s), {failed} failed, {skipped} skipped{}",
            name.map(|n| format!(" {n}")).unwrap_or_default(),
            if cancelled { ", cancelled" } else { "" }
        ),
        // Said on stderr by `process` itself.
        Event::WaitingForLock { .. } | Event::TaskStarted { .. } => return None,
        Event::OperationsStarted { .. }
        | Event::OperationsEnded { .. }
        | Event::OperationProgress { .. }
        | Event::BatchProgress { .. } => return None,
    })
}

pub(super) fn print_outcome(name: &str, o: &Outcome) {
    match o {
        Outcome::Completed { duration_ms } => {
            println!("DONE        {name} ({duration_ms} ms, not recorded)")
        }
        Outcome::Failed { error, .. } => println!("FAILED      {name}: {error}"),
        Outcome::Skipped { reason } => println!("SKIPPED     {name}: {reason}"),
        Outcome::NotClaimed => println!("NOT RUN     {name}"),
        Outcome::Deferred { reason } => println!("NOT RUN     {name}: {reason}"),
        Outcome::Retrying { error, retry_in_ms } => {
            println!("RETRYING    {name} in {retry_in_ms} ms: {error}")
        }
        Outcome::Cancelled { reason } => println!("CANCELLED   {name}: {reason}"),
    }
}

pub(super) fn summary(r: &RunReport) {
    let completed = r.count(|o| matches!(o, Outcome::Completed { .. }));
    let failed = r.count(|o| matches!(o, Outcome::Failed { .. }));
    let skipped = r.count(|o| matches!(o, Outcome::Skipped { .. }));
    let elsewhere = r.count(|o| matches!(o, Outcome::NotClaimed));
    let cancelled = r.count(|o| matches!(o, Outcome::Cancelled { .. }));
    if let Some(b) = r.batch {
        print!("Batch {b}: ");
        println!(
            "{completed} completed, {failed} failed, {skipped} skipped{}{}.",
            if cancelled > 0 {
                format!(", {cancelled} cancelled")
            } else {
                String::new()
            },
            if elsewhere > 0 {
                format!(", {elsewhere} run by another process")
            } else {
                String::new()
            }
        );
    }
    for (name, e) in &r.rollback_failures {
        println!("  rollback of {name} failed: {e}");
    }
    if !r.rolled_back.is_empty() {
        println!(
            "  rolled back after the failure: {}",
            r.rolled_back.join(", ")
        );
    }
    for (name, who) in &r.running_elsewhere {
        println!("  running elsewhere: {name}: {who}");
    }
    for (name, why) in &r.waiting {
        println!("  not run: {name}: {why}");
    }
    for (name, queue) in &r.queued {
        let work = if queue == crate::DEFAULT_QUEUE {
            "`work`".to_owned()
        } else {
            format!("`work --queue {queue}`")
        };
        match r.queued_after.iter().find(|(n, _)| n == name) {
            Some((_, after)) => println!(
                "  queued: {name} on `{queue}`, once {after} has completed (run {work} to process it)"
            ),
            None => println!("  queued: {name} on `{queue}` (run {work} to process it)"),
        }
    }
    for (name, at) in &r.scheduled {
        println!("  scheduled: {name}, due {}", when(*at));
    }
    for name in &r.rollbacks_interrupted {
        println!("  rollback interrupted: {name}: its rollback died before it returned and may have undone only part of it; `rollback --op {name}` finishes it, `mark {name} --completed` records it as it is");
    }
    for name in &r.stale {
        println!("  stale: {name}: an operation it depends on was rolled back under it (`rollback --cascade --force`); `retry {name}` runs it again once that has run, `mark {name} --completed` records it as it is");
    }
    for name in r
        .needs_attention
        .iter()
        .filter(|n| !r.rollbacks_interrupted.contains(n) && !r.stale.contains(n))
    {
        println!("  interrupted: {name}: it is neither idempotent nor retryable; `retry {name}` runs it again, `mark {name} --completed` records it done");
    }
}

/// `status`'s table: one line per operation, with its notes, written line by line through one buffer (a closed
/// stdout stops the writing, not the command).
pub(super) fn status_table(entries: &[StatusEntry]) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = write_status_table(&mut out, entries).and_then(|()| out.flush());
}

fn write_status_table(
    out: &mut impl std::io::Write,
    entries: &[StatusEntry],
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<12} {:<48} {:>5} {:>8} {:>10}  NOTE",
        "STATUS", "NAME", "BATCH", "ATTEMPTS", "DURATION"
    )?;
    for e in entries {
        let mut notes = Vec::new();
        if e.edited {
            notes.push("edited after it ran".to_owned());
        }
        if e.orphaned {
            notes.push("orphaned: not in the registry (`forget` removes it)".to_owned());
        }
        if let Some(r) = &e.skip_reason {
            notes.push(r.clone());
        }
        if let (Some(done), Some(total)) = (e.progress_done, e.progress_total) {
            let eta = e
                .eta_ms
                .map(|ms| format!(", ETA {}s", (ms + 999) / 1000))
                .unwrap_or_default();
            notes.push(format!("progress {done}/{total}{eta}"));
        }
        if let Some(job) = &e.job {
            notes.push(match job.status {
                crate::ledger::JobStatus::Blocked => format!(
                    "queued on `{}` once {} has completed",
                    job.queue,
                    job.blocked_by.join(", ")
                ),
                other => format!("job {other} on `{}`", job.queue),
            });
        }
        if e.pause_requested {
            notes.push("pausing at its next checkpoint".to_owned());
        }
        if e.throttled {
            notes.push("throttled now".to_owned());
        }
        if let Some(ms) = e.throttled_ms.filter(|ms| *ms > 0) {
            notes.push(format!("throttled {} s in all", (ms + 999) / 1000));
        }
        if let Some(err) = &e.error {
            notes.push(err.lines().next().unwrap_or_default().to_owned());
        }
        let batch = e.batch.map_or("-".to_owned(), |b| b.to_string());
        let duration = e.duration_ms.map_or("-".to_owned(), |d| format!("{d} ms"));
        writeln!(
            out,
            "{:<12} {:<48} {:>5} {:>8} {:>10}  {}",
            if e.paused {
                "paused"
            } else {
                e.status.as_str()
            },
            e.name,
            batch,
            e.attempts,
            duration,
            notes.join("; ")
        )?;
    }
    Ok(())
}

/// `status --json`: `{"batches": [..], "operations": [..], "tasks": [..]}`, pretty-printed, written as it is
/// made: each item becomes a JSON value (its keys sorted, as `serde_json::json!` sorts them) only while it is
/// written, so the output is never held whole, nor all the operations as values.
pub(super) fn print_status_json<B: Serialize, T: Serialize>(
    operations: &[StatusEntry],
    tasks: &[T],
    batches: &[B],
) {
    use std::io::Write;
    /// The keys in sorted order, as `json!` (a sorted map) prints them.
    #[derive(Serialize)]
    struct Both<'a, B, T> {
        batches: Values<'a, B>,
        operations: Values<'a, StatusEntry>,
        tasks: Values<'a, T>,
    }
    let both = Both {
        batches: Values(batches),
        operations: Values(operations),
        tasks: Values(tasks),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = serde_json::to_writer_pretty(&mut out, &both)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

/// A list serialized item by item, each as the [`serde_json::Value`] it converts to.
struct Values<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for Values<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&serde_json::to_value(item).map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

/// A Unix-milliseconds time as RFC 3339 (UTC).
pub(super) fn when(ms: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// 0 when every operation of the run succeeded, else 1.
/// 1 when an operation failed, 4 when one was cancelled (and none failed), 0 otherwise.
pub(super) fn exit_of(r: &RunReport) -> ExitCode {
    if !r.succeeded() {
        ExitCode::from(1)
    } else if r.count(|o| matches!(o, Outcome::Cancelled { .. })) > 0 {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}
