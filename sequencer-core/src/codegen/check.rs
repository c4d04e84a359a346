//! Checks that need no type information: function signatures, referenced functions, contradictory keys, and the
//! dependencies and graph of an inline module or of an operations directory. Checking an [`InlineModule`]
//! yields its [`OpModel`]s.

use std::collections::{HashMap, HashSet};

use proc_macro2::{Ident, Span};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr, ReturnType, Type};

use super::attr::{Dep, OpAttr};
use super::errors::Errors;
use super::model::{DepModel, InlineModule, OpFile, OpModel, ParsedOp};
use crate::graph::{self, GraphError, OpNode};
use crate::meta::checksum;
use crate::suggest::did_you_mean;

// Kept at their old paths for callers of `codegen::check`; defined in `model`.
pub use super::model::{FnKind, SigSpans};

/// Reports a function (`what`, e.g. "operation") that is not `async` or is generic; `true` when it is neither.
pub fn async_not_generic(f: &ItemFn, what: &str, expected: &str, errors: &mut Errors) -> bool {
    let name = &f.sig.ident;
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
    ok
}

/// Checks a function's signature; reports every problem and returns the spans if it has the right shape.
pub fn signature(f: &ItemFn, kind: FnKind, errors: &mut Errors) -> Option<SigSpans> {
    let name = f.sig.ident.to_string();
    let (what, expected) = (kind.what(), kind.expected(&name));
    let mut ok = async_not_generic(f, &what, &expected, errors);
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
            let ret = if matches!(kind, FnKind::Condition(_)) {
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
    fns: &HashMap<String, ItemFn>,
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

/// The functions named by `before`, `after`, `failed`, `should_run` and `throttle_on`.
pub fn hooks(a: &OpAttr, fns: &HashMap<String, ItemFn>, errors: &mut Errors) {
    let keys = [
        (&a.before, FnKind::Hook("before")),
        (&a.after, FnKind::Hook("after")),
        (&a.failed, FnKind::Failed),
        (&a.should_run, FnKind::Condition("should_run")),
        (&a.throttle_on, FnKind::Condition("throttle_on")),
    ];
    for (path, kind) in keys {
        if let Some(p) = path {
            referenced_fn(p, kind, fns, errors);
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

/// Checks every operation of an inline module, in order, then the module's dependency graph: the models of the
/// operations that have a timestamp.
pub fn inline_module(module: InlineModule, errors: &mut Errors) -> Vec<OpModel> {
    let InlineModule { ops, fns, .. } = module;
    let by_fn: HashMap<String, String> = ops
        .iter()
        .filter_map(|op| {
            let (ts, _) = op.attr.timestamp?;
            let name = op.attr.ledger_name(ts, &op.item.sig.ident);
            Some((op.item.sig.ident.to_string(), name))
        })
        .collect();
    let op_fns: HashSet<String> = ops.iter().map(|op| op.item.sig.ident.to_string()).collect();
    let mut models: Vec<OpModel> = Vec::new();
    let mut edges: Vec<Vec<(usize, String)>> = Vec::new();
    for op in ops {
        let ParsedOp {
            item: f,
            tokens,
            args,
            attr: a,
            errors: attr_errors,
        } = op;
        errors.append(attr_errors);
        let sig = signature(&f, FnKind::Operation, errors);
        contradictions(&a, errors);
        if let Some(p) = &a.rollback {
            referenced_fn(p, FnKind::Hook("rollback"), &fns, errors);
        }
        hooks(&a, &fns, errors);
        let Some((timestamp, _)) = a.timestamp else {
            if !a.keys.contains_key("timestamp") {
                errors.push(syn::Error::new_spanned(
                    &f.sig.ident,
                    format!("operation `{}` needs a `timestamp`, e.g. `#[operation(timestamp = \"2024_01_15_120000\")]`", f.sig.ident),
                ));
            }
            continue;
        };
        let (deps, internal) = inline_deps(&a, &by_fn, &op_fns, &fns, errors);
        let name = a.ledger_name(timestamp, &f.sig.ident);
        edges.push(internal);
        models.push(OpModel {
            ident: f.sig.ident.clone(),
            vis: f.vis.clone(),
            timestamp,
            name,
            rollback: a.rollback.clone(),
            checksum: checksum(format!("{args} {tokens}").as_bytes()),
            attr: a,
            deps,
            sig: sig.unwrap_or_default(),
        });
    }
    inline_graph(&models, &edges, errors);
    models
}

/// Resolves the `depends_on` entries of an inline operation: the resolved entries, and the edges inside the
/// module as (entry index, ledger name).
fn inline_deps(
    a: &OpAttr,
    by_fn: &HashMap<String, String>,
    op_fns: &HashSet<String>,
    fns: &HashMap<String, ItemFn>,
    errors: &mut Errors,
) -> (Vec<DepModel>, Vec<(usize, String)>) {
    let mut deps = Vec::new();
    let mut internal = Vec::new();
    for (entry, d) in a.depends_on.iter().enumerate() {
        match d {
            Dep::Migration(v, span) => deps.push(DepModel::Migration(*v, *span)),
            Dep::Name(lit) => {
                internal.push((entry, lit.value()));
                deps.push(DepModel::Operation(lit.clone()));
            }
            Dep::Path(p) => {
                let local = p.get_ident().cloned().or_else(|| self_path(p));
                match local {
                    Some(ident) if by_fn.contains_key(&ident.to_string()) => {
                        let name = &by_fn[&ident.to_string()];
                        internal.push((entry, name.clone()));
                        deps.push(DepModel::Operation(syn::LitStr::new(
                            name,
                            Span::call_site(),
                        )));
                    }
                    // An operation whose own attribute has errors: those errors say enough.
                    Some(ident) if op_fns.contains(&ident.to_string()) => {}
                    Some(ident) => unknown_ident_dep(&ident, p, fns, by_fn, errors),
                    None => deps.push(DepModel::External(p.clone())),
                }
            }
        }
    }
    (deps, internal)
}

fn self_path(p: &syn::Path) -> Option<Ident> {
    (p.segments.len() == 2 && p.segments[0].ident == "self").then(|| p.segments[1].ident.clone())
}

fn unknown_ident_dep(
    ident: &Ident,
    p: &syn::Path,
    fns: &HashMap<String, ItemFn>,
    ops: &HashMap<String, String>,
    errors: &mut Errors,
) {
    let name = ident.to_string();
    let msg = if fns.contains_key(&name) {
        format!("`{name}` is a plain function, not an operation: add `#[operation(timestamp = \"...\")]` to it to depend on it")
    } else {
        let mut msg =
            format!("unknown dependency `{name}`: no operation of this module has that name");
        if let Some(s) = did_you_mean(&name, ops.keys().map(String::as_str)) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        }
        msg.push_str("\nto depend on an operation of another module, write its path, e.g. `super::other_module::op`");
        msg
    };
    errors.push(syn::Error::new_spanned(p, msg));
}

/// Runs the shared graph validator over an inline module and turns its findings into spanned errors.
fn inline_graph(models: &[OpModel], edges: &[Vec<(usize, String)>], errors: &mut Errors) {
    let nodes: Vec<OpNode> = models
        .iter()
        .zip(edges)
        .map(|(m, d)| OpNode {
            name: &m.name,
            timestamp: m.timestamp,
            depends_on: d.iter().map(|(_, n)| n.as_str()).collect(),
        })
        .collect();
    let Err(found) = graph::validate(&nodes) else {
        return;
    };
    let names = |i: usize| models[i].name.clone();
    let entry_span =
        |op: usize, entry: usize| models[op].attr.depends_on[edges[op][entry].0].span();
    for e in found {
        let msg = e.message(&names);
        match &e {
            GraphError::DuplicateName { first, second, .. } => {
                errors.at(name_span(&models[*second]), &msg);
                errors.at(
                    name_span(&models[*first]),
                    format!("first operation named `{}` is here", models[*first].name),
                );
            }
            GraphError::UnknownDependency { op, entry, .. }
            | GraphError::SelfDependency { op, entry } => errors.at(entry_span(*op, *entry), msg),
            GraphError::Cycle {
                closing: (op, entry),
                ..
            } => errors.at(entry_span(*op, *entry), msg),
        }
    }
}

fn name_span(m: &OpModel) -> Span {
    m.attr
        .name
        .as_ref()
        .map(|n| n.span())
        .or(m.attr.timestamp.map(|t| t.1))
        .unwrap_or_else(|| m.ident.span())
}

/// Validates the graph of an operations directory: cycles and duplicate names become messages about the
/// directory. Unknown and self dependencies are reported inside each file, on the entry itself.
pub fn directory_graph(files: &[OpFile], parsed: &[(&OpFile, OpAttr)], messages: &mut Vec<String>) {
    let by_name: HashMap<String, String> = files
        .iter()
        .map(|f| (f.name.clone(), f.ledger_name()))
        .collect();
    let ledger: Vec<String> = parsed.iter().map(|(f, _)| f.ledger_name()).collect();
    let deps: Vec<Vec<String>> = parsed
        .iter()
        .map(|(_, a)| {
            a.depends_on
                .iter()
                .filter_map(|d| match d {
                    Dep::Path(p) => p
                        .get_ident()
                        .and_then(|i| by_name.get(&i.to_string()).cloned()),
                    Dep::Name(l) => Some(l.value()).filter(|n| ledger.contains(n)),
                    Dep::Migration(..) => None,
                })
                .collect()
        })
        .collect();
    let nodes: Vec<OpNode> = parsed
        .iter()
        .zip(&ledger)
        .zip(&deps)
        .map(|(((f, _), name), d)| OpNode {
            name,
            timestamp: f.timestamp,
            depends_on: d.iter().map(String::as_str).collect(),
        })
        .collect();
    if let Err(found) = graph::validate(&nodes) {
        for e in found {
            // Unknown and self dependencies are reported inside the file, on the entry itself.
            if let GraphError::Cycle {
                closing: (op, entry),
                ..
            }
            | GraphError::DuplicateName {
                second: op,
                first: entry,
                ..
            } = &e
            {
                let msg = e.message(&|i| ledger[i].clone());
                let at = match e {
                    GraphError::Cycle { .. } => format!(
                        " (closed by `depends_on` entry `{}` in `{}`)",
                        deps[*op][*entry], parsed[*op].0.file_name
                    ),
                    _ => String::new(),
                };
                messages.push(format!("{msg}{at}"));
            }
        }
    }
}

/// In an operations file the timestamp and the name come from the file name.
pub fn file_keys(a: &OpAttr, errors: &mut Errors) {
    for key in ["timestamp", "name"] {
        if let Some(span) = a.keys.get(key) {
            errors.at(
                *span,
                format!(
                    "in an operations directory the {key} comes from the file name: remove `{key}`"
                ),
            );
        }
    }
}

/// The rollback of an operations file: `rollback = f`, else its function named `rollback`, if any.
pub fn file_rollback(
    a: &OpAttr,
    fns: &HashMap<String, ItemFn>,
    errors: &mut Errors,
) -> Option<syn::Path> {
    match &a.rollback {
        Some(p) => {
            referenced_fn(p, FnKind::Hook("rollback"), fns, errors);
            Some(p.clone())
        }
        None => fns.get("rollback").map(|r| {
            signature(r, FnKind::Hook("rollback"), errors);
            syn::parse_quote!(rollback)
        }),
    }
}

/// Resolves the `depends_on` entries of the operations file `own` against the ledger names of its directory's
/// files (by name part).
pub fn file_deps(
    a: &OpAttr,
    siblings: &HashMap<String, String>,
    own: &str,
    errors: &mut Errors,
) -> Vec<DepModel> {
    let mut deps = Vec::new();
    for d in &a.depends_on {
        let (ledger, shown) = match d {
            // The generated `Dependency` is spanned at the call site, unlike in an inline module.
            Dep::Migration(v, _) => {
                deps.push(DepModel::Migration(*v, Span::call_site()));
                continue;
            }
            Dep::Path(p) => match p.get_ident() {
                Some(i) => (siblings.get(&i.to_string()).cloned(), i.to_string()),
                None => {
                    deps.push(DepModel::External(p.clone()));
                    continue;
                }
            },
            Dep::Name(l) => (
                siblings.values().find(|n| **n == l.value()).cloned(),
                l.value(),
            ),
        };
        match ledger {
            Some(n) if n == own => errors.at(d.span(), format!("`{own}` depends on itself")),
            Some(n) => deps.push(DepModel::Operation(LitStr::new(&n, Span::call_site()))),
            None => {
                let mut msg = format!("unknown dependency `{shown}`: no file of this operations directory is named so");
                let candidates: Vec<&str> = siblings
                    .keys()
                    .chain(siblings.values())
                    .map(String::as_str)
                    .collect();
                if let Some(s) = did_you_mean(&shown, candidates) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                }
                errors.at(d.span(), msg);
            }
        }
    }
    deps
}
