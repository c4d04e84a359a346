//! `GET /metrics`: the Prometheus text exposition format, written by hand (a few gauges and one counter).

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::ledger::{now_ms, JobStatus, Status};
use crate::{StatusEntry, StatusQuery};

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<Shared>) -> Response {
    match render(&state).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the ledger could not be read: {e}\n"),
        )
            .into_response(),
    }
}

/// A label value, escaped as the format requires (backslash, double quote, line feed).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// A gauge with one sample per operation that has a value.
fn per_operation(out: &mut String, name: &str, text: &str, values: &[(&StatusEntry, Option<f64>)]) {
    help(out, name, "gauge", text);
    for (e, value) in values {
        if let Some(v) = value {
            let _ = writeln!(out, "{name}{{operation=\"{}\"}} {v}", label(&e.name));
        }
    }
}

async fn render(state: &Shared) -> Result<String, crate::SequencerError> {
    let seq = &state.seq;
    let mut out = String::new();

    help(
        &mut out,
        "sequencer_operations",
        "gauge",
        "Operations by the state of their latest run (counted at most every 15 seconds).",
    );
    let counts = super::list::counts(state).await?;
    for &s in Status::ALL {
        let n = counts.by_status.get(&s).copied().unwrap_or(0);
        let _ = writeln!(out, "sequencer_operations{{state=\"{}\"}} {n}", s.as_str());
    }

    let running = seq
        .status_page(&StatusQuery {
            status: Some(Status::Running),
            limit: 1_000,
            ..StatusQuery::default()
        })
        .await?
        .entries;
    help(
        &mut out,
        "sequencer_operation_progress_ratio",
        "gauge",
        "Progress of each running operation that reports one (ctx.progress), from 0 to 1.",
    );
    for e in &running {
        if let (Some(done), Some(total)) = (e.progress_done, e.progress_total) {
            if total > 0 {
                let ratio = (done as f64 / total as f64).clamp(0.0, 1.0);
                let _ = writeln!(
                    out,
                    "sequencer_operation_progress_ratio{{operation=\"{}\"}} {ratio}",
                    label(&e.name)
                );
            }
        }
    }
    let etas: Vec<_> = running
        .iter()
        .map(|e| (e, e.eta_ms.map(|ms| ms as f64 / 1000.0)))
        .collect();
    per_operation(&mut out, "sequencer_operation_eta_seconds",
        "Estimated seconds left of each running operation: at the rate of the last minutes, else from an earlier run.",
        &etas);
    let now = now_ms();
    let mut ages = Vec::with_capacity(running.len());
    for e in &running {
        let at = seq.ledger().checkpoint_written_at(&e.name, e.run).await?;
        ages.push((e, at.map(|at| (now - at).max(0) as f64 / 1000.0)));
    }
    per_operation(&mut out, "sequencer_operation_checkpoint_age_seconds",
        "Seconds since each running operation last wrote a checkpoint (a growing age flags a stuck run).",
        &ages);
    let throttled: Vec<_> = running
        .iter()
        .map(|e| (e, e.throttled_ms.map(|ms| ms as f64 / 1000.0)))
        .collect();
    per_operation(
        &mut out,
        "sequencer_operation_throttled_seconds",
        "Seconds each running operation's throttle_on condition held its run back so far.",
        &throttled,
    );

    help(
        &mut out,
        "sequencer_queue_jobs",
        "gauge",
        "Jobs of each queue by state.",
    );
    let queues = super::queues::names(seq);
    let mut blocked = 0;
    for q in queues {
        let counts = seq.ledger().job_counts(q).await?;
        blocked += counts.get(&JobStatus::Blocked).copied().unwrap_or(0);
        for &s in JobStatus::ALL {
            let n = counts.get(&s).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "sequencer_queue_jobs{{queue=\"{}\",state=\"{}\"}} {n}",
                label(q),
                s.as_str()
            );
        }
    }

    help(
        &mut out,
        "sequencer_operations_blocked",
        "gauge",
        "Operations whose job waits for operations it depends on to end (jobs blocked, every queue).",
    );
    let _ = writeln!(out, "sequencer_operations_blocked {blocked}");

    help(&mut out, "sequencer_dashboard_actions_total", "counter",
        "Actions asked of this dashboard since it started, by action and outcome (ok, refused, error).");
    let actions: Vec<((&str, &str), u64)> = state
        .actions
        .lock()
        .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
        .unwrap_or_default();
    let mut actions = actions;
    actions.sort_unstable();
    for ((action, outcome), n) in actions {
        let _ = writeln!(
            out,
            "sequencer_dashboard_actions_total{{action=\"{action}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
