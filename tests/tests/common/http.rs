//! HTTP/1.1 over a socket for the dashboard suites: one request per connection, and a router served nested at
//! `/admin/ops` on an ephemeral port.

use std::time::Duration;

use sequencer::dashboard::axum;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP/1.1 response: status, headers (lower-case names) and body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`); `extra` are more header lines.
pub async fn request(port: u16, method: &str, path: &str, extra: &[&str], body: &str) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if method == "POST" {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The values of `attr="…"` on a page, in order.
pub fn attrs(body: &str, attr: &str) -> Vec<String> {
    body.split(&format!("{attr}=\""))
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

pub async fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, &[], "").await
}

/// Serves `router` nested at `/admin/ops` on an ephemeral port.
pub async fn serve(router: axum::Router) -> u16 {
    let app = axum::Router::new().nest("/admin/ops", router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// The dashboards a mutation must be refused by: one with the token (`port`), one `read_only`, one with no token
/// configured (`no_token`).
pub struct Refusers {
    /// Actions allowed with the token.
    pub port: u16,
    /// The same ledger, read-only.
    pub read_only: u16,
    /// The same ledger, no token configured.
    pub no_token: u16,
}

/// Asserts that each way a mutation must be refused answers `POST path` with a 403: no token, a wrong token,
/// another origin, a cross-site fetch, read-only mode, no token configured. `what` names the case in messages.
pub async fn assert_refused(at: &Refusers, path: &str, token: &str, what: &str) {
    let form = format!("token={token}");
    let refusals: [(u16, &[&str], &str, &str); 6] = [
        (at.port, &[], "", "no token"),
        (at.port, &[], "token=wrong", "a wrong token"),
        (
            at.port,
            &["Origin: https://evil.example"],
            &form,
            "another origin",
        ),
        (
            at.port,
            &["Sec-Fetch-Site: cross-site"],
            &form,
            "a cross-site fetch",
        ),
        (at.read_only, &[], &form, "read-only"),
        (at.no_token, &[], "token=", "no token configured"),
    ];
    for (port, headers, body, why) in refusals {
        let r = request(port, "POST", path, headers, body).await;
        assert_eq!(r.status, 403, "{what}: {why}: {}", r.body);
    }
}
