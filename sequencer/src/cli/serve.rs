//! `serve [--bind 127.0.0.1:8080] [--read-only]`: the web dashboard, until Ctrl-C or SIGTERM; and the metrics
//! endpoint of `work --metrics ADDR`.

use std::net::SocketAddr;
use std::process::ExitCode;

use super::output::println;
use crate::dashboard::{self, DashboardOptions};
use crate::{Sequencer, SequencerError};

/// Serves [`dashboard::router_with`] on `bind`; an address other than loopback needs a token.
pub(super) async fn serve(
    seq: &Sequencer,
    bind: SocketAddr,
    read_only: bool,
) -> Result<ExitCode, SequencerError> {
    let opts = DashboardOptions::from_env().read_only(read_only);
    if !dashboard::bind_allowed(&bind, &opts) {
        return Err(SequencerError::Usage(format!(
            "refusing to serve the dashboard on {bind}, which is not a loopback address, without a token: set {} (or bind 127.0.0.1 and reach it through a proxy with its own auth)",
            dashboard::TOKEN_VARIABLE
        )));
    }
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| SequencerError::Usage(format!("cannot listen on {bind}: {e}")))?;
    let mode = if opts.actions_enabled() {
        "actions need the token"
    } else if read_only {
        "read-only"
    } else {
        "read-only: set SEQUENCER_DASHBOARD_TOKEN to enable actions"
    };
    let addr = listener.local_addr().unwrap_or(bind);
    println!("Dashboard on http://{addr}/ ({mode}); Ctrl-C stops it.");
    axum::serve(listener, dashboard::router_with(seq.clone(), opts))
        .with_graceful_shutdown(super::work::wait_for_stop_signal())
        .await
        .map_err(|e| SequencerError::Usage(format!("the dashboard stopped: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// `work --metrics ADDR`: serves [`dashboard::metrics_router`] on `addr` in the background, for as long as the
/// process runs. Metrics change nothing, so any address is allowed.
pub(super) async fn metrics(seq: &Sequencer, addr: SocketAddr) -> Result<(), SequencerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| SequencerError::Usage(format!("cannot listen on {addr} for metrics: {e}")))?;
    let addr = listener.local_addr().unwrap_or(addr);
    println!("Metrics on http://{addr}/metrics");
    let router = dashboard::metrics_router(seq.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(())
}
