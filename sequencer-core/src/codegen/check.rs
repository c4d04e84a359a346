//! Checks that need no type information: function signatures, referenced functions, contradictory keys.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

use super::attr::OpAttr;
use super::Errors;
use crate::suggest::did_you_mean;

/// What a referenced function must look like.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FnKind {
    /// The operation itself: `async fn(ctx: &Ctx) -> Result<()>`.
    Operation,
    /// `rollback`, `before`, `after`: same signature.
    Hook(&'static str),
    /// `failed`: `async fn(ctx: &Ctx, error: &Error) -> Result<()>`.
    Failed,
    /// `should_run`: `async fn(ctx: &Ctx) -> bool`.
    Condition,
}

impl FnKind {
    fn params(self) -> usize {
        if self == FnKind::Failed {
            2
        } else {
            1
        }
    }

    fn expected(self, name: &str) -> String {
        match self {
            FnKind::Operation | FnKind::Hook(_) => {
                format!("`async fn {name}(ctx: &Ctx) -> Result<()>`")
            }
            FnKind::Failed => format!("`async fn {name}(ctx: &Ctx, error: &Error) -> Result<()>`"),
            FnKind::Condition => format!("`async fn {name}(ctx: &Ctx) -> bool`"),
        }
    }

    fn what(self) -> String {
        match self {
            FnKind::Operation => "operation".into(),
            FnKind::Hook(key) => format!("`{key}` fn"),
            FnKind::Failed => "`failed` fn".into(),
            FnKind::Condition => "`should_run` fn".into(),
        }
    }
}

/// The spans generated code uses to point type errors at the user's signature.
#[derive(Clone, Copy)]
pub struct SigSpans {
    /// The type of the `ctx` parameter.
    pub ctx: Span,
    /// The return type.
    pub output: Span,
}

/// Checks a function's signature; reports every problem and returns the spans if it has the right shape.
pub fn signature(f: &ItemFn, kind: FnKind, errors: &mut Errors) -> Option<SigSpans> {
    let name = f.sig.ident.to_string();
    let (what, expected) = (kind.what(), kind.expected(&name));
    let mut ok = true;
    if f.sig.asyncness.is_none() {
        errors.at(
            f.sig.fn_token.span,
            format!("{what} `{name}` must be `async`: {expected}"),
        );
        ok = false;
    }
    if !f.sig.generics.params.is_empty() || f.sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &f.sig.generics,
            format!("{what} `{name}` cannot be generic: {expected}"),
        ));
        ok = false;
    }
    if f.sig.inputs.len() != kind.params() {
        let msg = format!(
            "{what} `{name}` takes {} parameter{}: {expected}",
            kind.params(),
            if kind.params() == 1 { "" } else { "s" }
        );
        let at = match f.sig.inputs.iter().nth(kind.params()) {
            Some(extra) => extra.span(),
            None if f.sig.inputs.is_empty() => f.sig.paren_token.span.join(),
            None => f.sig.inputs.span(),
        };
        errors.at(at, msg);
        ok = false;
    }
    let mut ctx = Span::call_site();
    for (i, input) in f.sig.inputs.iter().enumerate().take(kind.params()) {
        match input {
            FnArg::Receiver(r) => {
                errors.push(syn::Error::new_spanned(
                    r,
                    format!("{what} `{name}` must be a free function, not a method: {expected}"),
                ));
                ok = false;
            }
            FnArg::Typed(t) => match &*t.ty {
                Type::Reference(r) if r.mutability.is_none() => {
                    if i == 0 {
                        ctx = t.ty.span();
                    }
                }
                other => {
                    let param = if i == 0 { "ctx: &Ctx" } else { "error: &Error" };
                    errors.push(syn::Error::new_spanned(
                        other,
                        format!("{what} `{name}` takes `{param}` (a shared reference): {expected}"),
                    ));
                    ok = false;
                }
            },
        }
    }
    let output = match &f.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => {
            let ret = if kind == FnKind::Condition {
                "bool"
            } else {
                "Result<()>"
            };
            errors.at(
                f.sig.paren_token.span.close(),
                format!("{what} `{name}` must return `{ret}`: {expected}"),
            );
            ok = false;
            Span::call_site()
        }
    };
    ok.then_some(SigSpans { ctx, output })
}

/// Checks a function named by a key (`rollback = undo`): a single name must be a function of this module, of
/// the right shape. Paths to other modules are left to the type checker.
pub fn referenced_fn(
    path: &syn::Path,
    kind: FnKind,
    fns: &HashMap<String, &ItemFn>,
    errors: &mut Errors,
) {
    let Some(ident) = path.get_ident() else {
        return;
    };
    match fns.get(&ident.to_string()) {
        Some(f) => {
            signature(f, kind, errors);
        }
        None => {
            let mut msg = format!("cannot find {} `{ident}` in this module", kind.what());
            if let Some(s) = did_you_mean(&ident.to_string(), fns.keys().map(String::as_str)) {
                msg.push_str(&format!("; did you mean `{s}`?"));
            }
            msg.push_str(&format!(
                "\nexpected a function {} here",
                kind.expected(&ident.to_string())
            ));
            errors.push(syn::Error::new_spanned(path, msg));
        }
    }
}

/// Keys that make no sense without, or together with, another key.
pub fn contradictions(a: &OpAttr, errors: &mut Errors) {
    let key = |k: &str| a.keys.get(k).copied();
    let needs = |k: &str, other: &str, why: &str, errors: &mut Errors| {
        if let (Some(span), None) = (key(k), key(other)) {
            errors.at(span, format!("`{k}` needs `{other}`: {why}"));
        }
    };
    if a.fail_on_timeout {
        needs(
            "fail_on_timeout",
            "timeout",
            "there is no time limit to fail on; add e.g. `timeout = \"2m\"`",
            errors,
        );
    }
    needs(
        "unique_for",
        "unique",
        "add the key to hold, e.g. `unique = \"import-users\"`",
        errors,
    );
    if !a.asynchronous {
        if let Some(span) = key("queue") {
            errors.at(
                span,
                "`queue` needs `asynchronous`: only asynchronous operations go to a queue",
            );
        }
    }
    if let (Some(_), Some(span)) = (key("execute_at"), key("delay")) {
        errors.at(
            span,
            "`delay` and `execute_at` contradict each other: keep one",
        );
    }
    for k in ["backoff", "max_exceptions"] {
        if let (Some(span), None, None) = (key(k), key("retries"), key("retry_until")) {
            errors.at(span, format!("`{k}` needs `retries` or `retry_until`: without them the operation is tried once"));
        }
    }
    if a.retries == Some(1) {
        if let Some(span) = key("backoff") {
            errors.at(span, "`backoff` with `retries = 1` never waits: `retries` counts tries, so allow at least 2");
        }
    }
}
