//! The commands that only read: `status`, `logs`, `errors` and `graph`.

use std::process::ExitCode;

use super::output::{print, print_json, print_status_json, println, status_table, when};
use crate::ledger::Status;
use crate::{Sequencer, SequencerError};

/// `status`: every operation and its latest run, filtered by `--pending`, `--failed` or `--completed`, then the
/// runs of each task by state and the batches and chains not finished yet.
pub(super) async fn status(
    seq: &Sequencer,
    pending: bool,
    failed: bool,
    completed: bool,
    json: bool,
) -> Result<ExitCode, SequencerError> {
    let entries: Vec<_> = seq
        .status()
        .await?
        .into_iter()
        .filter(|e| {
            (!pending || e.status == Status::Pending)
                && (!failed || matches!(e.status, Status::Failed | Status::Interrupted))
                && (!completed || e.status == Status::Completed)
        })
        .collect();
    let batches = seq.open_batches().await?;
    // Task runs, per task: `reprice: 998 completed, 2 queued`.
    let tasks: Vec<_> = seq
        .task_status()
        .await?
        .into_iter()
        .filter(|t| t.runs() > 0)
        .collect();
    if json {
        print_status_json(&entries, &tasks, &batches);
        return Ok(ExitCode::SUCCESS);
    }
    status_table(&entries);
    if !tasks.is_empty() {
        println!("\nTasks:");
        for t in tasks {
            println!("  {t}");
        }
    }
    if !batches.is_empty() {
        println!();
        for b in &batches {
            println!("{b}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How many log lines `status NAME` shows.
const STATUS_LOG_LINES: usize = 20;

/// `status NAME`: one operation's latest run and its last log lines.
pub(super) async fn status_of(
    seq: &Sequencer,
    name: &str,
    json: bool,
) -> Result<ExitCode, SequencerError> {
    let ledger_name = seq.find(name).map(|d| d.meta.name).unwrap_or(name);
    let Some(entry) = seq
        .status()
        .await?
        .into_iter()
        .find(|e| e.name == ledger_name)
    else {
        // Neither in the registry nor in the ledger: the error names the closest operation.
        seq.find(name)?;
        return Ok(ExitCode::SUCCESS);
    };
    let lines = seq.logs(ledger_name, 0).await?;
    let last = &lines[lines.len().saturating_sub(STATUS_LOG_LINES)..];
    if json {
        let both = serde_json::json!({ "status": entry, "logs": last });
        print_json(serde_json::to_string_pretty(&both));
        return Ok(ExitCode::SUCCESS);
    }
    status_table(std::slice::from_ref(&entry));
    if !last.is_empty() {
        println!();
        println!("Last log lines (`logs {name}` shows every kept line):");
        for l in last {
            println!("{}  {}", when(l.at), l.line);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `logs NAME [--follow]`: the log lines of an operation's latest run; `--follow` waits for new ones until the run
/// ends.
pub(super) async fn logs(
    seq: &Sequencer,
    name: &str,
    follow: bool,
    json: bool,
) -> Result<ExitCode, SequencerError> {
    let ledger_name = seq.find(name)?.meta.name;
    let mut after = 0;
    loop {
        // Whether the run goes on is read before its lines: the lines of a run that ended are all there.
        let running = follow
            && seq
                .status()
                .await?
                .iter()
                .any(|e| e.name == ledger_name && e.status == Status::Running);
        for l in seq.logs(ledger_name, after).await? {
            after = l.id;
            if json {
                print_json(serde_json::to_string(&l));
            } else {
                println!("{}  {}", when(l.at), l.line);
            }
        }
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `errors [NAME]`: recorded errors with their causes.
pub(super) async fn errors(
    seq: &Sequencer,
    name: Option<&str>,
    json: bool,
) -> Result<ExitCode, SequencerError> {
    let errors = seq.errors(name).await?;
    if json {
        print_json(serde_json::to_string_pretty(&errors));
        return Ok(ExitCode::SUCCESS);
    }
    if errors.is_empty() {
        println!("No errors recorded.");
    }
    for e in errors {
        let what = if e.attempt == 0 {
            "rollback".to_owned()
        } else {
            format!("attempt {}", e.attempt)
        };
        println!("{} (run {}, {what}): {}", e.name, e.run, e.message);
        for cause in e.chain.lines().skip(1) {
            println!("    caused by: {cause}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `graph --format F`: the dependency graph, as text, Graphviz or Mermaid.
pub(super) async fn graph(seq: &Sequencer, format: &str) -> Result<ExitCode, SequencerError> {
    let format: crate::render::GraphFormat = format
        .parse()
        .map_err(|e: crate::render::UnknownGraphFormat| SequencerError::Usage(e.to_string()))?;
    print!("{}", seq.graph(format).await?);
    Ok(ExitCode::SUCCESS)
}
