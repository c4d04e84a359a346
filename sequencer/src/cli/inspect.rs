//! The commands that only read: `status`, `errors` and `graph`.

use std::process::ExitCode;

use super::output::{print, print_json, println, status_table};
use crate::ledger::Status;
use crate::{Sequencer, SequencerError};

/// `status`: every operation and its latest run, filtered by `--pending`, `--failed` or `--completed`.
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
    if json {
        print_json(serde_json::to_string_pretty(&entries));
        return Ok(ExitCode::SUCCESS);
    }
    status_table(&entries);
    Ok(ExitCode::SUCCESS)
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
