//! `middleware = [...]` entries: `rate_limited`, `without_overlapping`, `throttle_exceptions` and their settings.

use std::time::Duration;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, LitStr};

use super::lit::{duration, int, lit_str, path};
use crate::suggest::did_you_mean;

/// One parsed `middleware = [...]` entry; expansion turns it into a `Middleware` value spanned at the entry.
#[derive(Clone)]
pub enum MiddlewareAttr {
    /// `rate_limited("api")` or `rate_limited("api", 60/min)`.
    RateLimited {
        /// The limiter's name, as written.
        limiter: LitStr,
        /// `(count, per)`, if given.
        limit: Option<(u32, Duration)>,
        /// The whole entry.
        span: Span,
    },
    /// `without_overlapping("key").release_after("60s").expire_after("180s")`.
    WithoutOverlapping {
        /// The lock key, as written.
        key: LitStr,
        /// `.release_after(..)`.
        release_after: Option<Duration>,
        /// `.expire_after(..)`.
        expire_after: Option<Duration>,
        /// The whole entry.
        span: Span,
    },
    /// `audit`: a layer registered on the builder by that name.
    Named {
        /// The name, as written.
        name: syn::Ident,
    },
    /// `throttle_exceptions(10, "5m").backoff("5s").by("key")`.
    ThrottleExceptions {
        /// Errors allowed within `window`.
        max: u32,
        /// The window the errors are counted in.
        window: Duration,
        /// `.backoff(..)`.
        backoff: Option<Duration>,
        /// `.by(..)`, as written.
        by: Option<LitStr>,
        /// The whole entry.
        span: Span,
    },
}

/// One middleware call, possibly with builder methods: `without_overlapping("k").release_after("60s")`.
pub fn parse(e: &Expr) -> syn::Result<MiddlewareAttr> {
    // A bare name: a layer registered on the builder by that name, checked by `build()`.
    if let Some(name) = path(e).and_then(|p| p.get_ident().cloned()) {
        let builtin = ["rate_limited", "without_overlapping", "throttle_exceptions"];
        if builtin.contains(&name.to_string().as_str()) {
            return Err(syn::Error::new_spanned(
                &name,
                format!("`{name}` takes its settings in parentheses, e.g. `rate_limited(\"api\")`, `without_overlapping(\"key\")`, `throttle_exceptions(10, \"5m\")`"),
            ));
        }
        return Ok(MiddlewareAttr::Named { name });
    }
    let mut methods = Vec::new();
    let mut cur = e;
    while let Expr::MethodCall(m) = cur {
        methods.push(m);
        cur = &m.receiver;
    }
    methods.reverse();
    let bad = || {
        syn::Error::new_spanned(
            e,
            "unknown middleware; expected one of: `rate_limited(\"limiter\")`, `rate_limited(\"limiter\", 60/min)`, \
             `without_overlapping(\"key\")`, `throttle_exceptions(10, \"5m\")`, or the name of a layer registered \
             with `.named_layer(\"name\", layer)`",
        )
    };
    let Expr::Call(call) = cur else {
        return Err(bad());
    };
    let Some(func) = path(&call.func).and_then(|p| p.get_ident().map(ToString::to_string)) else {
        return Err(bad());
    };
    let args: Vec<&Expr> = call.args.iter().collect();
    let method_arg = |m: &syn::ExprMethodCall, allowed: &[&str]| -> syn::Result<(String, Expr)> {
        let name = m.method.to_string();
        if !allowed.contains(&name.as_str()) || m.args.len() != 1 {
            let list: Vec<String> = allowed.iter().map(|a| format!("`.{a}(..)`")).collect();
            return Err(syn::Error::new_spanned(
                &m.method,
                format!("`{func}` takes the settings {}", list.join(", ")),
            ));
        }
        Ok((name, m.args[0].clone()))
    };
    let span = e.span();
    match func.as_str() {
        "rate_limited" => {
            if let Some(m) = methods.first() {
                return Err(syn::Error::new_spanned(
                    &m.method,
                    "`rate_limited` takes no settings",
                ));
            }
            let limiter = args
                .first()
                .and_then(|a| lit_str(a))
                .filter(|_| (1..=2).contains(&args.len()));
            let Some(limiter) = limiter else {
                return Err(syn::Error::new_spanned(&call.args, "`rate_limited` takes a limiter name and an optional rate: `rate_limited(\"api\", 60/min)`"));
            };
            let limit = args.get(1).map(|r| rate(r)).transpose()?;
            Ok(MiddlewareAttr::RateLimited {
                limiter,
                limit,
                span,
            })
        }
        "without_overlapping" => {
            let Some(key) = args
                .first()
                .and_then(|a| lit_str(a))
                .filter(|_| args.len() == 1)
            else {
                return Err(syn::Error::new_spanned(
                    &call.args,
                    "`without_overlapping` takes a lock key: `without_overlapping(\"key\")`",
                ));
            };
            let (mut release_after, mut expire_after) = (None, None);
            for m in methods {
                let (name, arg) = method_arg(m, &["release_after", "expire_after"])?;
                let d = Some(duration(&name, &arg)?);
                if name == "release_after" {
                    release_after = d
                } else {
                    expire_after = d
                }
            }
            Ok(MiddlewareAttr::WithoutOverlapping {
                key,
                release_after,
                expire_after,
                span,
            })
        }
        "throttle_exceptions" => {
            let max = args
                .first()
                .and_then(|a| int::<u32>(a))
                .filter(|n| *n > 0 && args.len() == 2);
            let Some(max) = max else {
                return Err(syn::Error::new_spanned(&call.args, "`throttle_exceptions` takes a count and a window: `throttle_exceptions(10, \"5m\")`"));
            };
            let window = duration("throttle_exceptions", args[1])?;
            let (mut backoff, mut by) = (None, None);
            for m in methods {
                let (name, arg) = method_arg(m, &["backoff", "by"])?;
                if name == "backoff" {
                    backoff = Some(duration(&name, &arg)?);
                } else {
                    by = Some(lit_str(&arg).ok_or_else(|| {
                        syn::Error::new_spanned(&arg, "`.by(..)` takes a key string")
                    })?);
                }
            }
            Ok(MiddlewareAttr::ThrottleExceptions {
                max,
                window,
                backoff,
                by,
                span,
            })
        }
        _ => {
            let known = ["rate_limited", "without_overlapping", "throttle_exceptions"];
            match did_you_mean(&func, known) {
                Some(s) => Err(syn::Error::new_spanned(
                    &call.func,
                    format!("unknown middleware `{func}`; did you mean `{s}`?"),
                )),
                None => Err(bad()),
            }
        }
    }
}

/// `60/min`, `10/s`, `1000/hour`, `5/day`.
fn rate(e: &Expr) -> syn::Result<(u32, Duration)> {
    let bad = || {
        syn::Error::new_spanned(e, "a rate is `COUNT/UNIT` with UNIT one of `s`, `sec`, `second`, `min`, `minute`, `h`, `hour`, `day`, e.g. `60/min`")
    };
    let Expr::Binary(b) = e else {
        return Err(bad());
    };
    if !matches!(b.op, syn::BinOp::Div(_)) {
        return Err(bad());
    }
    let n = int::<u32>(&b.left).filter(|n| *n > 0).ok_or_else(bad)?;
    let unit = path(&b.right)
        .and_then(|p| p.get_ident().map(ToString::to_string))
        .ok_or_else(bad)?;
    let secs = match unit.as_str() {
        "s" | "sec" | "second" => 1,
        "min" | "minute" => 60,
        "hour" | "h" => 3600,
        "day" => 86_400,
        _ => return Err(bad()),
    };
    Ok((n, Duration::from_secs(secs)))
}
