//! `middleware = [...]` entries: `rate_limited`, `without_overlapping`, `throttle_exceptions` and their settings.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Expr;

use super::attr::{duration, duration_tokens, int, lit_str, path};

/// One middleware call, possibly with builder methods: `without_overlapping("k").release_after("60s")`.
pub fn parse(e: &Expr) -> syn::Result<TokenStream> {
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
             `without_overlapping(\"key\")`, `throttle_exceptions(10, \"5m\")`",
        )
    };
    let Expr::Call(call) = cur else {
        return Err(bad());
    };
    let Some(func) = path(&call.func).and_then(|p| p.get_ident().map(ToString::to_string)) else {
        return Err(bad());
    };
    let args: Vec<&Expr> = call.args.iter().collect();
    let opt = |v: Option<TokenStream>| {
        v.map_or(
            quote!(::core::option::Option::None),
            |t| quote!(::core::option::Option::Some(#t)),
        )
    };
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
            let limit = args.get(1).map(|r| rate(r)).transpose()?.map(|(n, per)| {
                let per = duration_tokens(per);
                quote!((#n, #per))
            });
            let limit = opt(limit);
            Ok(quote_spanned!(span=> Middleware::RateLimited { limiter: #limiter, limit: #limit }))
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
            let (mut release, mut expire) = (None, None);
            for m in methods {
                let (name, arg) = method_arg(m, &["release_after", "expire_after"])?;
                let d = Some(duration_tokens(duration(&name, &arg)?));
                if name == "release_after" {
                    release = d
                } else {
                    expire = d
                }
            }
            let (release, expire) = (opt(release), opt(expire));
            Ok(
                quote_spanned!(span=> Middleware::WithoutOverlapping { key: #key, release_after: #release, expire_after: #expire }),
            )
        }
        "throttle_exceptions" => {
            let max = args
                .first()
                .and_then(|a| int::<u32>(a))
                .filter(|n| *n > 0 && args.len() == 2);
            let Some(max) = max else {
                return Err(syn::Error::new_spanned(&call.args, "`throttle_exceptions` takes a count and a window: `throttle_exceptions(10, \"5m\")`"));
            };
            let window = duration_tokens(duration("throttle_exceptions", args[1])?);
            let (mut backoff, mut by) = (None, None);
            for m in methods {
                let (name, arg) = method_arg(m, &["backoff", "by"])?;
                if name == "backoff" {
                    backoff = Some(duration_tokens(duration(&name, &arg)?));
                } else {
                    by = Some(
                        lit_str(&arg)
                            .ok_or_else(|| {
                                syn::Error::new_spanned(&arg, "`.by(..)` takes a key string")
                            })?
                            .to_token_stream(),
                    );
                }
            }
            let (backoff, by) = (opt(backoff), opt(by));
            Ok(
                quote_spanned!(span=> Middleware::ThrottleExceptions { max: #max, window: #window, backoff: #backoff, by: #by }),
            )
        }
        _ => {
            let known = ["rate_limited", "without_overlapping", "throttle_exceptions"];
            match crate::suggest::did_you_mean(&func, known) {
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
