//! What guards the dashboard: the response headers (a strict Content-Security-Policy), and the check every action
//! passes first: not read-only, a same-origin request, the right token.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::DashboardOptions;

/// The header an action's token may come in (besides `Authorization: Bearer` and the `token` form field).
pub(crate) const TOKEN_HEADER: &str = "x-sequencer-token";

/// No inline script or style, nothing from elsewhere, no framing, forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response.
pub(crate) async fn headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Why an action was refused (each is a 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `--read-only` / [`DashboardOptions::read_only`].
    ReadOnly,
    /// No token is configured: nothing can be changed.
    NoTokenConfigured,
    /// `Sec-Fetch-Site` or `Origin` says another site sent it.
    CrossSite,
    /// No token, or the wrong one.
    BadToken,
}

impl Refusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::ReadOnly => "This dashboard is read-only.",
            Refusal::NoTokenConfigured => {
                "This dashboard is read-only: no SEQUENCER_DASHBOARD_TOKEN is set where it runs."
            }
            Refusal::CrossSite => "Refused: the request came from another site.",
            Refusal::BadToken => "Refused: the token is missing or wrong.",
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        StatusCode::FORBIDDEN
    }
}

/// The refusal page of an action's confirmation (or any page that leads only to actions) when this dashboard
/// takes none: read-only, or no token configured. `None` when actions are enabled.
pub(crate) fn refused_unless_enabled(opts: &DashboardOptions, base: &str) -> Option<Response> {
    if opts.actions_enabled() {
        return None;
    }
    let r = if opts.read_only {
        Refusal::ReadOnly
    } else {
        Refusal::NoTokenConfigured
    };
    Some(super::view::message(
        base,
        r.status(),
        "Refused",
        r.message(),
    ))
}

/// Whether an action may proceed: checked first by every action handler, before it reads anything else.
pub(crate) fn authorize(
    opts: &DashboardOptions,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), Refusal> {
    if opts.read_only {
        return Err(Refusal::ReadOnly);
    }
    let Some(expected) = opts.token.as_deref() else {
        return Err(Refusal::NoTokenConfigured);
    };
    same_origin(headers)?;
    let presented = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .or(form_token);
    match presented {
        Some(p) if bool::from(p.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(Refusal::BadToken),
    }
}

/// Refuses a request a browser says another site sent: `Sec-Fetch-Site` other than `same-origin` (or `none`, a
/// user's own navigation), or an `Origin` whose host is not the request's `Host` (nor `X-Forwarded-Host`, which a
/// reverse proxy sets and a cross-site page cannot). A request without either header (curl, scripts) passes on
/// to the token check.
fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(site) = headers.get("sec-fetch-site") {
        match site.to_str() {
            Ok("same-origin") | Ok("none") => {}
            _ => return Err(Refusal::CrossSite),
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| Refusal::CrossSite)?;
    let Some((_, host)) = origin.split_once("://") else {
        return Err(Refusal::CrossSite); // `null`, or garbage
    };
    let host = host.trim_end_matches('/');
    let hosts = [header::HOST.as_str(), "x-forwarded-host"];
    let matches = hosts.iter().any(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(host))
    });
    if matches {
        Ok(())
    } else {
        Err(Refusal::CrossSite)
    }
}

/// Whether a dashboard may listen on `addr`: a loopback address always, any other only with a token (what
/// `serve` checks before it binds).
pub fn bind_allowed(addr: &std::net::SocketAddr, opts: &DashboardOptions) -> bool {
    addr.ip().is_loopback() || opts.has_token()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn actions_need_the_token_from_the_same_site() {
        let opts = DashboardOptions::default().token("s3cret");
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(authorize(&opts, &with(&[host]), Some("s3cret")), Ok(()));
        assert_eq!(
            authorize(&opts, &with(&[host]), Some("s3cre")),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            authorize(&opts, &with(&[host]), None),
            Err(Refusal::BadToken)
        );
        let bearer = ("authorization", "Bearer s3cret");
        assert_eq!(authorize(&opts, &with(&[host, bearer]), None), Ok(()));
        let evil = ("origin", "https://evil.example");
        assert_eq!(
            authorize(&opts, &with(&[host, evil]), Some("s3cret")),
            Err(Refusal::CrossSite)
        );
        let same = ("origin", "http://127.0.0.1:8080");
        assert_eq!(
            authorize(&opts, &with(&[host, same]), Some("s3cret")),
            Ok(())
        );
        let proxied = [
            host,
            ("origin", "https://ops.example"),
            ("x-forwarded-host", "ops.example"),
        ];
        assert_eq!(authorize(&opts, &with(&proxied), Some("s3cret")), Ok(()));
        let cross = ("sec-fetch-site", "cross-site");
        assert_eq!(
            authorize(&opts, &with(&[host, cross]), Some("s3cret")),
            Err(Refusal::CrossSite)
        );
        let null = ("origin", "null");
        assert_eq!(
            authorize(&opts, &with(&[host, null]), Some("s3cret")),
            Err(Refusal::CrossSite)
        );
    }

    #[test]
    fn without_a_token_or_read_only_nothing_passes() {
        let h = with(&[("host", "localhost")]);
        assert_eq!(
            authorize(&DashboardOptions::default(), &h, Some("x")),
            Err(Refusal::NoTokenConfigured)
        );
        assert_eq!(
            authorize(&DashboardOptions::default().token("  "), &h, Some("  ")),
            Err(Refusal::NoTokenConfigured)
        );
        let ro = DashboardOptions::default().token("t").read_only(true);
        assert_eq!(authorize(&ro, &h, Some("t")), Err(Refusal::ReadOnly));
    }

    #[test]
    fn a_remote_bind_needs_a_token() {
        let remote: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let local: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let v6: std::net::SocketAddr = "[::1]:8080".parse().expect("addr");
        let none = DashboardOptions::default();
        assert!(!bind_allowed(&remote, &none));
        assert!(bind_allowed(&local, &none));
        assert!(bind_allowed(&v6, &none));
        assert!(bind_allowed(&remote, &none.token("t")));
    }
}
