//! Checks of the tasks of an inline module: the signature (`async fn(ctx: &Ctx, args: Args) -> Result<()>`), the
//! functions the keys name (functions of `&Args`), the hooks, contradictory keys and duplicate names. Checking a
//! [`ParsedTask`] yields its [`TaskModel`].

use std::collections::{HashMap, HashSet};

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

use super::check;
use super::errors::Errors;
use super::middleware::MiddlewareAttr;
use super::model::{ParsedTask, SigSpans, TaskModel};
use crate::meta::checksum;
use crate::suggest::did_you_mean;

/// The signature a task must have, for messages.
fn expected(name: &str) -> String {
    format!("`async fn {name}(ctx: &Ctx, args: Args) -> Result<()>`, where `Args: Serialize + DeserializeOwned`")
}

/// Checks a task's signature; reports every problem and returns the spans and the data argument's type.
pub fn signature(f: &ItemFn, errors: &mut Errors) -> Option<(SigSpans, Type)> {
    let name = f.sig.ident.to_string();
    let expected = expected(&name);
    let mut ok = check::async_not_generic(f, "task", &expected, errors);
    if f.sig.inputs.len() != 2 {
        let at = match f.sig.inputs.iter().nth(2) {
            Some(extra) => extra.span(),
            None if f.sig.inputs.is_empty() => f.sig.paren_token.span.join(),
            None => f.sig.inputs.span(),
        };
        errors.at(
            at,
            format!("task `{name}` takes 2 parameters, the context and its data: {expected}"),
        );
        ok = false;
    }
    let mut ctx = Span::call_site();
    let mut args_ty = None;
    for (i, input) in f.sig.inputs.iter().enumerate().take(2) {
        let t = match input {
            FnArg::Receiver(r) => {
                errors.push(syn::Error::new_spanned(
                    r,
                    format!("task `{name}` must be a free function, not a method: {expected}"),
                ));
                ok = false;
                continue;
            }
            FnArg::Typed(t) => t,
        };
        match (i, &*t.ty) {
            (0, Type::Reference(r)) if r.mutability.is_none() => ctx = t.ty.span(),
            (0, other) => {
                errors.push(syn::Error::new_spanned(
                    other,
                    format!(
                        "task `{name}` takes `ctx: &Ctx` (a shared reference) first: {expected}"
                    ),
                ));
                ok = false;
            }
            (_, Type::Reference(r)) => {
                errors.push(syn::Error::new_spanned(
                    r,
                    format!(
                        "task `{name}` takes its data by value (e.g. `args: {}`): each run deserializes its own from the ledger",
                        r.elem.to_token_stream()
                    ),
                ));
                ok = false;
            }
            (_, ty) => args_ty = Some(ty.clone()),
        }
    }
    let output = match &f.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => {
            errors.at(
                f.sig.paren_token.span.close(),
                format!("task `{name}` must return `Result<()>`: {expected}"),
            );
            ok = false;
            Span::call_site()
        }
    };
    let ty = args_ty?;
    ok.then_some((SigSpans { ctx, output }, ty))
}

/// Checks a function a key names (`unique = customer_key`): a plain (not `async`) function of this module taking
/// one parameter, `&Args`. Paths to other modules are left to the type checker.
fn key_fn(key: &str, path: &syn::Path, fns: &HashMap<String, ItemFn>, errors: &mut Errors) {
    let Some(ident) = path.get_ident() else {
        return;
    };
    let returns = if key == "tags" {
        "Vec<String>"
    } else {
        "String"
    };
    let expected = format!("`fn {ident}(args: &Args) -> {returns}`, taking the task's data");
    let Some(f) = fns.get(&ident.to_string()) else {
        let mut msg = format!("cannot find `{key}` fn `{ident}` in this module");
        if let Some(s) = did_you_mean(&ident.to_string(), fns.keys().map(String::as_str)) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        }
        msg.push_str(&format!("\nexpected a function {expected} here"));
        errors.push(syn::Error::new_spanned(path, msg));
        return;
    };
    if let Some(a) = f.sig.asyncness {
        errors.at(
            a.span,
            format!("`{key}` fn `{ident}` must not be `async`: {expected}"),
        );
    }
    if f.sig.inputs.len() != 1 {
        errors.at(
            f.sig.paren_token.span.join(),
            format!("`{key}` fn `{ident}` takes 1 parameter: {expected}"),
        );
    }
    if let ReturnType::Default = f.sig.output {
        errors.at(
            f.sig.paren_token.span.close(),
            format!("`{key}` fn `{ident}` must return a value: {expected}"),
        );
    }
}

/// Checks every task of an inline module: the models of those without errors.
pub fn tasks(
    parsed: Vec<ParsedTask>,
    fns: &HashMap<String, ItemFn>,
    errors: &mut Errors,
) -> Vec<TaskModel> {
    let mut models = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    for t in parsed {
        let ParsedTask {
            item: f,
            tokens,
            args,
            attr: mut a,
            errors: attr_errors,
        } = t;
        errors.append(attr_errors);
        let sig = signature(&f, errors);
        for (key, p) in a.key_fns() {
            key_fn(key, p, fns, errors);
        }
        if let (Some(p), false) = (
            &a.rate_key,
            a.base
                .middleware
                .iter()
                .any(|m| matches!(m, MiddlewareAttr::RateLimited { .. })),
        ) {
            errors.push(syn::Error::new_spanned(
                p,
                "`rate_limit_key` needs a rate limit to key: add e.g. `middleware = [rate_limited(\"api\", 60/min)]`",
            ));
        }
        check::hooks(&a.base, fns, errors);
        // A task always goes to a queue: `queue` needs no `asynchronous` here.
        a.base.asynchronous = true;
        check::contradictions(&a.base, errors);
        let name = a
            .base
            .name
            .as_ref()
            .map_or_else(|| f.sig.ident.to_string(), syn::LitStr::value);
        if !names.insert(name.clone()) {
            let at = a
                .base
                .name
                .as_ref()
                .map_or_else(|| f.sig.ident.span(), syn::LitStr::span);
            errors.at(at, format!("two tasks of this module are named `{name}`: give one another `name = \"...\"`"));
            continue;
        }
        let Some((sig, args_ty)) = sig else {
            continue;
        };
        models.push(TaskModel {
            ident: f.sig.ident.clone(),
            vis: f.vis.clone(),
            name,
            checksum: checksum(format!("{args} {tokens}").as_bytes()),
            attr: a,
            args_ty,
            sig,
        });
    }
    models
}
