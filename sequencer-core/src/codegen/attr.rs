//! Parsing `#[operation(...)]` arguments into [`OpAttr`], collecting every error with its span.

use std::collections::HashMap;
use std::time::Duration;

use proc_macro2::{Ident, Span, TokenStream};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

use super::errors::Errors;
use super::lit::{int, list, lit_str, path};
use super::middleware::{self, MiddlewareAttr};
use crate::meta::Schedule;
use crate::suggest::did_you_mean;
use crate::time::parse_execute_at;
use crate::timestamp::Timestamp;

// Kept at their old paths for callers of `codegen::attr`; defined in `lit`.
pub use super::lit::{duration, duration_tokens};

/// Every key `#[operation(...)]` accepts, in the order the docs list them.
pub const KEYS: &[&str] = &[
    "timestamp",
    "name",
    "depends_on",
    "rollback",
    "allowed_to_fail",
    "retries",
    "backoff",
    "retry_until",
    "max_exceptions",
    "timeout",
    "fail_on_timeout",
    "execute_at",
    "delay",
    "asynchronous",
    "queue",
    "unique",
    "unique_for",
    "middleware",
    "tags",
    "before",
    "after",
    "failed",
    "transaction",
    "encrypted",
    "environments",
    "should_run",
    "idempotent",
    "throttle_on",
    "estimate",
];

/// One `depends_on` entry.
#[derive(Clone)]
pub enum Dep {
    /// An operation by Rust path: `create_users` or `super::other::op`.
    Path(syn::Path),
    /// An operation by ledger name: `"2024_01_15_120000_create_users"`.
    Name(LitStr),
    /// A schema migration: `migration(20240115120000)`.
    Migration(i64, Span),
}

impl Dep {
    /// The tokens of the entry, for spans.
    pub fn span(&self) -> Span {
        match self {
            Dep::Path(p) => p.span(),
            Dep::Name(l) => l.span(),
            Dep::Migration(_, s) => *s,
        }
    }
}

/// `execute_at` as written.
#[derive(Clone)]
pub enum ExecuteAt {
    /// A time of day or an instant.
    Fixed(Schedule),
    /// `"02:00 Europe/Berlin"`: a time of day in a time zone, checked against the bundled tz database.
    Zoned {
        /// Hour, minute, second.
        time: (u8, u8, u8),
        /// The zone's name.
        zone: String,
    },
    /// A function computing the due time.
    Fn(syn::Path),
}

/// `backoff` as written.
#[derive(Clone)]
pub enum BackoffAttr {
    /// `backoff = 30` or `backoff = "30s"`.
    Fixed(Duration),
    /// `backoff = [1, 5, 10]`.
    List(Vec<Duration>),
}

/// The parsed arguments of one `#[operation(...)]`; each field holds the key of the same name.
#[allow(missing_docs)]
#[derive(Default)]
pub struct OpAttr {
    /// Where each key was set, to report keys set twice and contradictions.
    pub keys: HashMap<&'static str, Span>,
    pub timestamp: Option<(Timestamp, Span)>,
    pub name: Option<LitStr>,
    pub depends_on: Vec<Dep>,
    pub rollback: Option<syn::Path>,
    pub allowed_to_fail: bool,
    pub retries: Option<u32>,
    pub backoff: Option<BackoffAttr>,
    pub retry_until: Option<Duration>,
    pub max_exceptions: Option<u32>,
    pub timeout: Option<Duration>,
    pub fail_on_timeout: bool,
    pub estimate: Option<Duration>,
    pub execute_at: Option<ExecuteAt>,
    pub delay: Option<Duration>,
    pub asynchronous: bool,
    pub queue: Option<String>,
    pub unique: Option<String>,
    pub unique_for: Option<Duration>,
    pub middleware: Vec<MiddlewareAttr>,
    pub tags: Vec<String>,
    pub before: Option<syn::Path>,
    pub after: Option<syn::Path>,
    pub failed: Option<syn::Path>,
    pub transaction: bool,
    pub encrypted: bool,
    pub environments: Vec<String>,
    pub should_run: Option<syn::Path>,
    pub idempotent: bool,
    pub throttle_on: Option<syn::Path>,
}

/// Parses the tokens inside `#[operation(...)]`. Errors go to `errors`; what parsed is kept.
pub fn parse(args: TokenStream, errors: &mut Errors) -> OpAttr {
    let mut attr = OpAttr::default();
    for entry in keyed_metas(args, "operation", KEYS, &|_| None, &mut attr.keys) {
        if let Err(e) = entry.and_then(|(key, meta)| attr.set(key, &meta)) {
            errors.push(e);
        }
    }
    attr
}

/// The entries of an attribute (`#[what(key = value, flag, ...)]`) in order, each with its key, or the error of
/// an unknown key (with a suggestion among `keys`), of a key `refused` says why not to use, or of a key set
/// twice. Where each key was set goes to `seen`.
pub fn keyed_metas(
    args: TokenStream,
    what: &str,
    keys: &[&'static str],
    refused: &dyn Fn(&str) -> Option<String>,
    seen: &mut HashMap<&'static str, Span>,
) -> Vec<syn::Result<(&'static str, Meta)>> {
    let metas =
        match syn::parse::Parser::parse2(Punctuated::<Meta, Token![,]>::parse_terminated, args) {
            Ok(m) => m,
            Err(e) => return vec![Err(e)],
        };
    let mut out = Vec::new();
    for meta in metas {
        let ident = meta.path().get_ident().map_or_else(
            || meta.path().to_token_stream().to_string(),
            ToString::to_string,
        );
        if let Some(why) = refused(&ident) {
            out.push(Err(syn::Error::new_spanned(meta.path(), why)));
            continue;
        }
        let Some(&key) = keys.iter().find(|k| **k == ident) else {
            out.push(Err(syn::Error::new_spanned(
                meta.path(),
                unknown_key_message(what, keys, &ident),
            )));
            continue;
        };
        let span = meta.path().span();
        if seen.insert(key, span).is_some() {
            out.push(Err(syn::Error::new(
                span,
                format!("`{key}` set multiple times"),
            )));
            continue;
        }
        out.push(Ok((key, meta)));
    }
    out
}

fn unknown_key_message(what: &str, keys: &[&str], key: &str) -> String {
    let mut msg = format!("unknown `{what}` key `{key}`");
    if let Some(s) = did_you_mean(key, keys.iter().copied()) {
        msg.push_str(&format!("; did you mean `{s}`?"));
    }
    let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    msg.push_str(&format!("\nexpected one of: {}", list.join(", ")));
    msg
}

const FLAGS: &[&str] = &[
    "allowed_to_fail",
    "fail_on_timeout",
    "asynchronous",
    "transaction",
    "encrypted",
    "idempotent",
];

impl OpAttr {
    /// The ledger name of the operation `ident` with timestamp `ts`: `name = "..."`, else `<timestamp>_<fn name>`.
    pub fn ledger_name(&self, ts: Timestamp, ident: &Ident) -> String {
        self.name
            .as_ref()
            .map_or_else(|| format!("{ts}_{ident}"), LitStr::value)
    }

    /// Sets one key from its attribute entry (shared by `#[operation]` and `#[task]`).
    pub fn set(&mut self, key: &'static str, meta: &Meta) -> syn::Result<()> {
        if FLAGS.contains(&key) {
            let on = flag(key, meta)?;
            match key {
                "allowed_to_fail" => self.allowed_to_fail = on,
                "fail_on_timeout" => self.fail_on_timeout = on,
                "asynchronous" => self.asynchronous = on,
                "transaction" => self.transaction = on,
                "encrypted" => self.encrypted = on,
                _ => self.idempotent = on,
            }
            return Ok(());
        }
        let value = match meta {
            Meta::NameValue(nv) => &nv.value,
            _ => {
                return Err(syn::Error::new_spanned(
                    meta,
                    format!("`{key}` needs a value: {}", example(key)),
                ))
            }
        };
        let wrong = |what: &str| {
            syn::Error::new_spanned(
                value,
                format!("`{key}` expects {what}, e.g. {}", example(key)),
            )
        };
        match key {
            "timestamp" => {
                let s = lit_str(value).ok_or_else(|| wrong("a string"))?;
                let ts = s
                    .value()
                    .parse::<Timestamp>()
                    .map_err(|e| syn::Error::new(s.span(), e.to_string()))?;
                self.timestamp = Some((ts, s.span()));
            }
            "name" => {
                let s = lit_str(value).ok_or_else(|| wrong("a string"))?;
                check_name(&s)?;
                self.name = Some(s);
            }
            "depends_on" => {
                self.depends_on = list(value)
                    .ok_or_else(|| wrong("a list"))?
                    .iter()
                    .map(dep)
                    .collect::<syn::Result<_>>()?
            }
            "rollback" => {
                self.rollback = Some(path(value).ok_or_else(|| wrong("a function name"))?)
            }
            "before" => self.before = Some(path(value).ok_or_else(|| wrong("a function name"))?),
            "after" => self.after = Some(path(value).ok_or_else(|| wrong("a function name"))?),
            "failed" => self.failed = Some(path(value).ok_or_else(|| wrong("a function name"))?),
            "should_run" => {
                self.should_run = Some(path(value).ok_or_else(|| wrong("a function name"))?)
            }
            "throttle_on" => {
                self.throttle_on = Some(path(value).ok_or_else(|| wrong("a function name"))?)
            }
            "retries" => {
                let n = int::<u32>(value).ok_or_else(|| wrong("a number of tries"))?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`retries` counts tries and must be at least 1",
                    ));
                }
                self.retries = Some(n);
            }
            "max_exceptions" => {
                let n = int::<u32>(value).ok_or_else(|| wrong("a number of errors"))?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`max_exceptions` must be at least 1",
                    ));
                }
                self.max_exceptions = Some(n);
            }
            "backoff" => self.backoff = Some(backoff(value)?),
            "retry_until" => self.retry_until = Some(duration(key, value)?),
            "timeout" => {
                let d = duration(key, value)?;
                if d.is_zero() {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`timeout` must be longer than zero",
                    ));
                }
                self.timeout = Some(d);
            }
            "estimate" => {
                let d = duration(key, value)?;
                if d.is_zero() {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`estimate` must be longer than zero",
                    ));
                }
                self.estimate = Some(d);
            }
            "delay" => self.delay = Some(duration(key, value)?),
            "unique_for" => self.unique_for = Some(duration(key, value)?),
            "execute_at" => {
                self.execute_at = Some(if let Some(p) = path(value) {
                    ExecuteAt::Fn(p)
                } else {
                    let s = lit_str(value)
                        .ok_or_else(|| wrong("a time, an instant or a function name"))?;
                    let at = |e| syn::Error::new(s.span(), e);
                    match crate::zone::split_zoned_time(&s.value()) {
                        Some(zoned) => {
                            let (h, m, sec, zone) = zoned.map_err(at)?;
                            crate::zone::check_time_zone(zone).map_err(at)?;
                            ExecuteAt::Zoned {
                                time: (h, m, sec),
                                zone: zone.to_owned(),
                            }
                        }
                        None => ExecuteAt::Fixed(parse_execute_at(&s.value()).map_err(at)?),
                    }
                })
            }
            "queue" => self.queue = Some(non_empty(value, key)?),
            "unique" => self.unique = Some(non_empty(value, key)?),
            "tags" => self.tags = str_list(key, value)?,
            "environments" => self.environments = str_list(key, value)?,
            "middleware" => {
                self.middleware = list(value)
                    .ok_or_else(|| wrong("a list"))?
                    .iter()
                    .map(middleware::parse)
                    .collect::<syn::Result<_>>()?
            }
            _ => unreachable!("every key of KEYS is handled"),
        }
        Ok(())
    }
}

/// An example of each key, for error messages.
pub fn example(key: &str) -> &'static str {
    match key {
        "timestamp" => "`timestamp = \"2024_01_15_120000\"`",
        "name" => "`name = \"backfill_orders\"`",
        "depends_on" => "`depends_on = [create_users, \"2024_01_15_120000_other\", migration(20240115120000)]`",
        "rollback" => "`rollback = undo_backfill`",
        "retries" => "`retries = 5`",
        "max_exceptions" => "`max_exceptions = 3`",
        "backoff" => "`backoff = 30`, `backoff = \"2m\"` or `backoff = [1, 5, 10]`",
        "retry_until" => "`retry_until = \"1h\"`",
        "timeout" => "`timeout = \"2m\"`",
        "estimate" => "`estimate = \"5m\"`",
        "delay" => "`delay = \"10m\"`",
        "unique_for" => "`unique_for = \"1h\"`",
        "execute_at" => "`execute_at = \"02:00\"` (UTC), `execute_at = \"02:00 Europe/Berlin\"`, `execute_at = \"2026-12-01T02:00:00Z\"` or `execute_at = due_time`",
        "queue" => "`queue = \"imports\"`",
        "unique" => "`unique = \"import-users\"`",
        "tags" => "`tags = [\"billing\", \"priority:high\"]`",
        "environments" => "`environments = [\"production\"]`",
        "middleware" => "`middleware = [rate_limited(\"api\", 60/min), without_overlapping(\"key\"), throttle_exceptions(10, \"5m\")]`",
        "before" | "after" | "failed" | "should_run" => "`before = prepare` (a function of this module)",
        "throttle_on" => "`throttle_on = replicas_lagging` (an `async fn(ctx: &Ctx) -> bool` of this module)",
        _ => "a bare flag, e.g. `#[operation(timestamp = \"2024_01_15_120000\", idempotent)]`",
    }
}

fn flag(key: &str, meta: &Meta) -> syn::Result<bool> {
    match meta {
        Meta::Path(_) => Ok(true),
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit {
                lit: Lit::Bool(b), ..
            }) => Ok(b.value),
            other => Err(syn::Error::new_spanned(
                other,
                format!("`{key}` is a flag: write `{key}` alone (or `{key} = false`)"),
            )),
        },
        Meta::List(l) => Err(syn::Error::new_spanned(
            l,
            format!("`{key}` is a flag: write `{key}` alone"),
        )),
    }
}

fn non_empty(e: &Expr, key: &str) -> syn::Result<String> {
    let s = lit_str(e).ok_or_else(|| {
        syn::Error::new_spanned(
            e,
            format!("`{key}` expects a string, e.g. {}", example(key)),
        )
    })?;
    if s.value().trim().is_empty() {
        return Err(syn::Error::new(
            s.span(),
            format!("`{key}` must not be empty"),
        ));
    }
    Ok(s.value())
}

fn str_list(key: &str, e: &Expr) -> syn::Result<Vec<String>> {
    let items = list(e).ok_or_else(|| {
        syn::Error::new_spanned(
            e,
            format!("`{key}` expects a list of strings, e.g. {}", example(key)),
        )
    })?;
    let mut out: Vec<String> = Vec::new();
    for item in &items {
        let v = non_empty(item, key)?;
        if out.contains(&v) {
            return Err(syn::Error::new_spanned(
                item,
                format!("`{v}` is listed twice in `{key}`"),
            ));
        }
        out.push(v);
    }
    Ok(out)
}

fn check_name(s: &LitStr) -> syn::Result<()> {
    let v = s.value();
    if v.is_empty()
        || v.len() > 191
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
    {
        return Err(syn::Error::new(
            s.span(),
            "`name` must be 1 to 191 characters of ASCII letters, digits, `_`, `-`, `.` or `:`",
        ));
    }
    Ok(())
}

fn backoff(e: &Expr) -> syn::Result<BackoffAttr> {
    if let Some(items) = list(e) {
        if items.is_empty() {
            return Err(syn::Error::new_spanned(
                e,
                "`backoff` list must not be empty",
            ));
        }
        let ds = items
            .iter()
            .map(|i| duration("backoff", i))
            .collect::<syn::Result<Vec<_>>>()?;
        return Ok(BackoffAttr::List(ds));
    }
    Ok(BackoffAttr::Fixed(duration("backoff", e)?))
}

fn dep(e: &Expr) -> syn::Result<Dep> {
    if let Some(p) = path(e) {
        return Ok(Dep::Path(p));
    }
    if let Some(s) = lit_str(e) {
        return Ok(Dep::Name(s));
    }
    if let Expr::Call(call) = e {
        if path(&call.func).is_some_and(|p| p.is_ident("migration")) {
            let version = match (call.args.len(), call.args.first().and_then(int::<i64>)) {
                (1, Some(v)) if v > 0 => v,
                _ => {
                    return Err(syn::Error::new_spanned(
                        &call.args,
                        "`migration(...)` takes one positive migration version, e.g. `migration(20240115120000)`",
                    ))
                }
            };
            return Ok(Dep::Migration(version, e.span()));
        }
    }
    Err(syn::Error::new_spanned(
        e,
        "a dependency is an operation (`create_users`, `super::other::op`), a ledger name (\"2024_01_15_120000_op\") or `migration(VERSION)`",
    ))
}
