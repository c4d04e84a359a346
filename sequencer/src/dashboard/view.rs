//! What every page shares: the layout, the served script and style, and how values are formatted.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::home;
use crate::ledger::Status;

const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// `GET /assets/app.js`: the dashboard's only script (live updates, the remembered token).
pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// `GET /assets/app.css`.
pub(crate) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// A whole page: `base` is the path the router is nested at.
pub(crate) fn page(base: &str, title: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sequencer" }
                link rel="stylesheet" href={ (base) "/assets/app.css" };
                script src={ (base) "/assets/app.js" } defer {}
            }
            body data-base=(base) {
                nav {
                    a.brand href={ (home(base)) } { "sequencer" }
                    a href={ (home(base)) } { "Operations" }
                    a href={ (base) "/batches" } { "Batches" }
                    a href={ (base) "/tasks" } { "Tasks" }
                    a href={ (base) "/plan" } { "Plan" }
                    a href={ (base) "/graph" } { "Graph" }
                    a href={ (base) "/queues" } { "Queues" }
                    a href={ (base) "/audit" } { "Audit log" }
                    a href={ (base) "/metrics" } { "Metrics" }
                }
                main { (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// A page with a status code: a refusal or a failed action.
pub(crate) fn message(base: &str, status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p.message { (text) }
        p { a href={ (home(base)) } { "Back to the operations" } }
    };
    (status, page(base, title, body)).into_response()
}

/// A status as a coloured badge.
pub(crate) fn badge(status: Status) -> Markup {
    html! { span class={ "badge s-" (status.as_str()) } data-status=(status.as_str()) { (status.as_str()) } }
}

/// A state that is not an operation's status (a batch's, a member's) as a coloured badge.
pub(crate) fn state_badge(state: &str) -> Markup {
    html! { span class={ "badge s-" (state) } data-state=(state) { (state) } }
}

/// A duration in milliseconds, short: `850ms`, `4.2s`, `3m 04s`, `2h 05m`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub(crate) fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A progress bar with its numbers and ETA; nothing without a reported total.
pub(crate) fn progress(done: Option<i64>, total: Option<i64>, eta_ms: Option<i64>) -> Markup {
    match (done, total) {
        (Some(done), Some(total)) if total > 0 => {
            let pct = (done as f64 / total as f64 * 100.0).clamp(0.0, 100.0);
            html! {
                span.progress {
                    progress max=(total) value=(done) {}
                    span.pct { (format!("{pct:.0}%")) " (" (done) "/" (total) ")" }
                    span.eta { @if let Some(eta) = eta_ms { "ETA " (duration(eta)) } }
                }
            }
        }
        _ => html! { span.progress {} },
    }
}

/// What an `encrypted` operation shows instead of its errors and checkpoints.
pub(crate) const MASKED: &str = "[encrypted operation: not shown]";

#[cfg(test)]
mod tests {
    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00");
        assert_eq!(super::time(1_709_251_199_000), "2024-02-29 23:59:59");
        assert_eq!(super::duration(850), "850ms");
        assert_eq!(super::duration(4_200), "4.2s");
        assert_eq!(super::duration(184_000), "3m 04s");
        assert_eq!(super::duration(7_500_000), "2h 05m");
    }
}
