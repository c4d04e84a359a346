//! `#[operations] mod ops { ... }`: the inline form, and the code generation both forms share.

use std::collections::HashMap;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Item, ItemFn, ItemMod, Visibility};

use super::attr::{self, duration_tokens, Dep, ExecuteAt, OpAttr};
use super::check::{self, FnKind, SigSpans};
use super::{crate_path, is_operation_attr, Errors};
use crate::graph::{self, GraphError, OpNode};
use crate::{Schedule, Timestamp};

/// Everything needed to generate one operation's companion type and definition.
pub struct OpModel {
    /// The function, and the name of its companion type.
    pub ident: Ident,
    /// Visibility of the function, given to the companion type.
    pub vis: Visibility,
    /// Order key.
    pub timestamp: Timestamp,
    /// Ledger name.
    pub name: String,
    /// Parsed attribute.
    pub attr: OpAttr,
    /// `Dependency` expressions, one per `depends_on` entry.
    pub deps: Vec<TokenStream>,
    /// Where to point type errors.
    pub sig: SigSpans,
    /// The rollback function, if any.
    pub rollback: Option<syn::Path>,
    /// Checksum of the source.
    pub checksum: u64,
}

/// The expansion of `#[sequencer::operations]` (arguments: optional `crate = path`).
pub fn operations_module(
    args: TokenStream,
    item: TokenStream,
    manifest_dir: Option<std::path::PathBuf>,
) -> TokenStream {
    let mut errors = Errors::default();
    let (dir, krate) = parse_args(args, &mut errors);
    let mut module: ItemMod = match syn::parse2(item.clone()) {
        Ok(m) => m,
        Err(_) => {
            errors.at(
                Span::call_site(),
                "`#[sequencer::operations]` goes on an inline module: `mod ops { ... }`",
            );
            let errs = errors.to_compile_errors();
            return quote!(#item #errs);
        }
    };
    let Some((_, items)) = module.content.as_mut() else {
        errors.push(syn::Error::new_spanned(
            &module,
            "`#[sequencer::operations]` needs an inline module `mod ops { ... }`; for a directory of files write `#[sequencer::operations(\"operations\")] mod ops {}`",
        ));
        let errs = errors.to_compile_errors();
        return quote!(#module #errs);
    };

    if let Some(dir) = dir {
        for item in items.iter_mut() {
            if let Item::Fn(f) = item {
                if f.attrs.iter().any(is_operation_attr) {
                    f.attrs.retain(|a| !is_operation_attr(a));
                    errors.push(syn::Error::new_spanned(
                        &f.sig.ident,
                        "an operations directory module holds no inline operations: move this one to its own file or module",
                    ));
                }
            }
        }
        let generated = super::dir::operations_dir(&dir, manifest_dir, &krate, &mut errors);
        items.push(Item::Verbatim(generated));
        let errs = errors.to_compile_errors();
        return quote!(#module #errs);
    }

    // Take the `#[operation]` attributes off, keeping every item otherwise unchanged.
    let mut found: Vec<(ItemFn, TokenStream)> = Vec::new();
    let mut fns: HashMap<String, ItemFn> = HashMap::new();
    for item in items.iter_mut() {
        match item {
            Item::Fn(f) => {
                let ops = f
                    .attrs
                    .iter()
                    .filter(|a| is_operation_attr(a))
                    .cloned()
                    .collect::<Vec<_>>();
                f.attrs.retain(|a| !is_operation_attr(a));
                if ops.len() > 1 {
                    errors.push(syn::Error::new_spanned(
                        &ops[1],
                        "`#[operation]` given twice on one function",
                    ));
                }
                fns.insert(f.sig.ident.to_string(), f.clone());
                if let Some(a) = ops.into_iter().next() {
                    let args = match a.meta {
                        syn::Meta::List(l) => l.tokens,
                        syn::Meta::Path(_) => TokenStream::new(),
                        syn::Meta::NameValue(nv) => {
                            errors.push(syn::Error::new_spanned(
                                nv,
                                "write `#[operation(timestamp = \"...\", ...)]`",
                            ));
                            continue;
                        }
                    };
                    found.push((f.clone(), args));
                }
            }
            other => strip_misplaced(other, &mut errors),
        }
    }
    let fn_refs: HashMap<String, &ItemFn> = fns.iter().map(|(k, v)| (k.clone(), v)).collect();

    // Parse and check each operation.
    let mut models: Vec<OpModel> = Vec::new();
    let mut graph_deps: Vec<Vec<(usize, String)>> = Vec::new();
    let by_fn: HashMap<String, String> = found
        .iter()
        .filter_map(|(f, args)| {
            let mut scratch = Errors::default();
            let a = attr::parse(args.clone(), &mut scratch);
            let ts = a.timestamp.as_ref()?.0;
            let name = a
                .name
                .as_ref()
                .map_or_else(|| format!("{ts}_{}", f.sig.ident), syn::LitStr::value);
            Some((f.sig.ident.to_string(), name))
        })
        .collect();
    for (f, args) in &found {
        let a = attr::parse(args.clone(), &mut errors);
        let sig = check::signature(f, FnKind::Operation, &mut errors);
        check::contradictions(&a, &mut errors);
        check_fn_keys(&a, &fn_refs, &mut errors);
        let Some((ts, _)) = a.timestamp else {
            if !a.keys.contains_key("timestamp") {
                errors.push(syn::Error::new_spanned(
                    &f.sig.ident,
                    format!("operation `{}` needs a `timestamp`, e.g. `#[operation(timestamp = \"2024_01_15_120000\")]`", f.sig.ident),
                ));
            }
            continue;
        };
        let mut deps = Vec::new();
        let mut internal = Vec::new();
        for (entry, d) in a.depends_on.iter().enumerate() {
            match d {
                Dep::Migration(v, span) => {
                    deps.push(quote_spanned!(*span=> Dependency::Migration(#v)))
                }
                Dep::Name(lit) => {
                    internal.push((entry, lit.value()));
                    deps.push(quote!(Dependency::Operation(#lit)));
                }
                Dep::Path(p) => {
                    let local = p.get_ident().cloned().or_else(|| self_path(p));
                    match local {
                        Some(ident) if by_fn.contains_key(&ident.to_string()) => {
                            let name = &by_fn[&ident.to_string()];
                            internal.push((entry, name.clone()));
                            deps.push(quote!(Dependency::Operation(#name)));
                        }
                        // An operation whose own attribute has errors: those errors say enough.
                        Some(ident) if found.iter().any(|(f, _)| f.sig.ident == ident) => {}
                        Some(ident) => unknown_ident_dep(&ident, p, &fns, &by_fn, &mut errors),
                        None => deps.push(external_dep(p)),
                    }
                }
            }
        }
        let name = a
            .name
            .as_ref()
            .map_or_else(|| format!("{ts}_{}", f.sig.ident), syn::LitStr::value);
        graph_deps.push(internal);
        models.push(OpModel {
            ident: f.sig.ident.clone(),
            vis: f.vis.clone(),
            timestamp: ts,
            name,
            rollback: a.rollback.clone(),
            checksum: crate::meta::checksum(format!("{args} {}", f.to_token_stream()).as_bytes()),
            attr: a,
            deps,
            sig: sig.unwrap_or(SigSpans {
                ctx: Span::call_site(),
                output: Span::call_site(),
            }),
        });
    }
    check_graph(&models, &graph_deps, &mut errors);

    let generated = if errors.is_empty() {
        let ops: Vec<TokenStream> = models.iter().map(|m| operation_impl(m, &krate)).collect();
        let idents = models.iter().map(|m| &m.ident);
        let registry = registry_fn(&krate, idents.map(|i| i.to_token_stream()).collect());
        quote!(#(#ops)* #registry)
    } else {
        registry_fn(&krate, Vec::new())
    };
    let generated: Item = Item::Verbatim(generated);
    items.push(generated);
    let errs = errors.to_compile_errors();
    quote!(#module #errs)
}

/// `#[operations]`, `#[operations("dir")]`, either with `crate = "path"`.
fn parse_args(args: TokenStream, errors: &mut Errors) -> (Option<syn::LitStr>, TokenStream) {
    let parsed = syn::parse::Parser::parse2(
        |input: syn::parse::ParseStream| {
            let dir = if input.peek(syn::LitStr) {
                Some(input.parse::<syn::LitStr>()?)
            } else {
                None
            };
            if dir.is_some() && !input.is_empty() {
                input.parse::<syn::Token![,]>()?;
            }
            let mut krate = None;
            if !input.is_empty() {
                input.parse::<syn::Token![crate]>()?;
                input.parse::<syn::Token![=]>()?;
                let lit: syn::LitStr = input.parse()?;
                krate = Some(lit.parse::<syn::Path>()?);
                let _ = input.parse::<Option<syn::Token![,]>>()?;
            }
            Ok((dir, krate))
        },
        args,
    );
    match parsed {
        Ok((dir, krate)) => (dir, crate_path(krate)),
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                "expected no arguments, a directory (`#[operations(\"operations\")]`) and/or `crate = \"path::to::sequencer\"`",
            ));
            (None, crate_path(None))
        }
    }
}

/// `#[operation]` on something that is not a function.
fn strip_misplaced(item: &mut Item, errors: &mut Errors) {
    let attrs = match item {
        Item::Const(i) => &mut i.attrs,
        Item::Static(i) => &mut i.attrs,
        Item::Struct(i) => &mut i.attrs,
        Item::Enum(i) => &mut i.attrs,
        Item::Mod(i) => &mut i.attrs,
        Item::Impl(i) => &mut i.attrs,
        _ => return,
    };
    for a in attrs.iter().filter(|a| is_operation_attr(a)) {
        errors.push(syn::Error::new_spanned(
            a,
            "`#[operation]` goes on an `async fn`",
        ));
    }
    attrs.retain(|a| !is_operation_attr(a));
}

fn self_path(p: &syn::Path) -> Option<Ident> {
    (p.segments.len() == 2 && p.segments[0].ident == "self").then(|| p.segments[1].ident.clone())
}

fn check_fn_keys(a: &OpAttr, fns: &HashMap<String, &ItemFn>, errors: &mut Errors) {
    let keys = [
        (&a.rollback, FnKind::Hook("rollback")),
        (&a.before, FnKind::Hook("before")),
        (&a.after, FnKind::Hook("after")),
        (&a.failed, FnKind::Failed),
        (&a.should_run, FnKind::Condition),
    ];
    for (path, kind) in keys {
        if let Some(p) = path {
            check::referenced_fn(p, kind, fns, errors);
        }
    }
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
        if let Some(s) = crate::suggest::did_you_mean(&name, ops.keys().map(String::as_str)) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        }
        msg.push_str("\nto depend on an operation of another module, write its path, e.g. `super::other_module::op`");
        msg
    };
    errors.push(syn::Error::new_spanned(p, msg));
}

/// A dependency on an operation of another module, resolved through its companion type so that a wrong path is
/// a compile error on the user's tokens.
pub fn external_dep(p: &syn::Path) -> TokenStream {
    let span = p.span();
    quote_spanned!(span=> Dependency::Operation(<#p as Operation>::NAME))
}

/// Runs the shared graph validator and turns its findings into spanned errors.
fn check_graph(models: &[OpModel], deps: &[Vec<(usize, String)>], errors: &mut Errors) {
    let nodes: Vec<OpNode> = models
        .iter()
        .zip(deps)
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
    let entry_span = |op: usize, entry: usize| models[op].attr.depends_on[deps[op][entry].0].span();
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

/// `pub fn registry()` over the given companion types.
pub fn registry_fn(krate: &TokenStream, ops: Vec<TokenStream>) -> TokenStream {
    let n = ops.len();
    quote! {
        /// Every operation of this module, validated at compile time; pass it to `Sequencer::builder().registry(..)`.
        pub fn registry() -> #krate::__private::Registry {
            static OPERATIONS: [#krate::__private::OperationDef; #n] = [#(<#ops as #krate::__private::Operation>::DEF),*];
            #krate::__private::Registry::from_static(&OPERATIONS)
        }
    }
}

fn opt<T: ToTokens>(v: Option<T>) -> TokenStream {
    v.map_or(
        quote!(::core::option::Option::None),
        |t| quote!(::core::option::Option::Some(#t)),
    )
}

fn strs(v: &[String]) -> TokenStream {
    quote!(&[#(#v),*])
}

/// A hook wrapper fn with the user's spans, and the expression naming it.
fn hook(
    krate: &TokenStream,
    wrapper: &str,
    path: Option<&syn::Path>,
    kind: FnKind,
) -> (TokenStream, TokenStream) {
    let Some(p) = path else {
        return (TokenStream::new(), quote!(::core::option::Option::None));
    };
    let w = format_ident!("{}", wrapper);
    let span = p.span();
    let item = match kind {
        FnKind::Failed => quote_spanned! {span=>
            fn #w<'a>(ctx: &'a #krate::__private::Ctx, error: &'a #krate::__private::Error) -> #krate::__private::BoxFuture<'a, #krate::__private::Result<()>> {
                #krate::__private::handler_future(#p(ctx, error))
            }
        },
        FnKind::Condition => quote_spanned! {span=>
            fn #w<'a>(ctx: &'a #krate::__private::Ctx) -> #krate::__private::BoxFuture<'a, bool> {
                #krate::__private::condition_future(#p(ctx))
            }
        },
        _ => quote_spanned! {span=>
            fn #w<'a>(ctx: &'a #krate::__private::Ctx) -> #krate::__private::BoxFuture<'a, #krate::__private::Result<()>> {
                #krate::__private::handler_future(#p(ctx))
            }
        },
    };
    (item, quote!(::core::option::Option::Some(#w)))
}

/// The companion type of one operation and its `Operation` impl.
pub fn operation_impl(m: &OpModel, krate: &TokenStream) -> TokenStream {
    let a = &m.attr;
    let (ident, vis, name) = (&m.ident, &m.vis, &m.name);
    let version = m.timestamp.version();
    let fn_name = ident.to_string();
    let checksum = m.checksum;
    let deps = &m.deps;
    let tries = a
        .retries
        .unwrap_or(if a.retry_until.is_some() { u32::MAX } else { 1 });
    let backoff = a.backoff.clone().unwrap_or_else(|| quote!(Backoff::None));
    let retry_until = opt(a.retry_until.map(duration_tokens));
    let max_exceptions = opt(a.max_exceptions);
    let timeout = opt(a.timeout.map(duration_tokens));
    let schedule = match (&a.execute_at, a.delay) {
        (
            Some(ExecuteAt::Fixed(Schedule::TimeOfDay {
                hour,
                minute,
                second,
            })),
            _,
        ) => {
            quote!(::core::option::Option::Some(Schedule::TimeOfDay { hour: #hour, minute: #minute, second: #second }))
        }
        (Some(ExecuteAt::Fixed(Schedule::At(secs))), _) => {
            quote!(::core::option::Option::Some(Schedule::At(#secs)))
        }
        (Some(_), _) => quote!(::core::option::Option::Some(Schedule::Computed)),
        (None, Some(d)) => {
            let d = duration_tokens(d);
            quote!(::core::option::Option::Some(Schedule::Delay(#d)))
        }
        (None, None) => quote!(::core::option::Option::None),
    };
    let queue = opt(a.queue.as_ref());
    let unique = opt(a.unique.as_ref().map(|k| {
        let hold = opt(a.unique_for.map(duration_tokens));
        quote!(Unique { key: #k, hold_for: #hold })
    }));
    let middleware = &a.middleware;
    let (tags, environments) = (strs(&a.tags), strs(&a.environments));
    let (before, after, failed) = (a.before.is_some(), a.after.is_some(), a.failed.is_some());
    let flags = [
        a.allowed_to_fail,
        a.fail_on_timeout,
        a.asynchronous,
        a.transaction,
        a.encrypted,
        a.should_run.is_some(),
        a.idempotent,
    ];
    let [allowed_to_fail, fail_on_timeout, asynchronous, transaction, encrypted, conditional, idempotent] =
        flags;
    let rollbackable = m.rollback.is_some();

    let SigSpans {
        ctx: ctx_span,
        output,
    } = m.sig;
    let ctx_arg = quote_spanned!(ctx_span=> ctx);
    let called = Ident::new(&ident.to_string(), output);
    let call = quote_spanned!(output=> #krate::__private::handler_future(#called(#ctx_arg)));
    let (rb_fn, rb) = hook(
        krate,
        "__rollback",
        m.rollback.as_ref(),
        FnKind::Hook("rollback"),
    );
    let (before_fn, before_hook) =
        hook(krate, "__before", a.before.as_ref(), FnKind::Hook("before"));
    let (after_fn, after_hook) = hook(krate, "__after", a.after.as_ref(), FnKind::Hook("after"));
    let (failed_fn, failed_hook) = hook(krate, "__failed", a.failed.as_ref(), FnKind::Failed);
    let (cond_fn, cond) = hook(
        krate,
        "__should_run",
        a.should_run.as_ref(),
        FnKind::Condition,
    );
    let due = match &a.execute_at {
        Some(ExecuteAt::Fn(p)) => {
            let span = p.span();
            quote_spanned!(span=> ::core::option::Option::Some({
                let due: fn() -> ::std::time::SystemTime = #p;
                due
            }))
        }
        _ => quote!(::core::option::Option::None),
    };
    let line = quote_spanned!(ident.span()=> ::core::line!());
    let doc =
        format!("Companion type of operation `{name}`: names it in `depends_on` of other modules.");
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        const _: () = {
            #[allow(unused_imports)]
            use #krate::__private::{Backoff, Dependency, Middleware, Operation, Schedule, Unique};

            impl #krate::__private::Operation for #ident {
                const NAME: &'static str = #name;
                const DEF: #krate::__private::OperationDef = {
                    fn __handler<'a>(ctx: &'a #krate::__private::Ctx) -> #krate::__private::BoxFuture<'a, #krate::__private::Result<()>> {
                        #call
                    }
                    #rb_fn #before_fn #after_fn #failed_fn #cond_fn
                    #krate::__private::OperationDef {
                        meta: #krate::__private::OperationMeta {
                            name: <Self as #krate::__private::Operation>::NAME,
                            timestamp: #krate::__private::Timestamp::from_version_unchecked(#version),
                            fn_name: #fn_name,
                            module_path: ::core::module_path!(),
                            source: #krate::__private::SourceLocation { file: ::core::file!(), line: #line },
                            checksum: #checksum,
                            depends_on: &[#(#deps),*],
                            rollbackable: #rollbackable,
                            allowed_to_fail: #allowed_to_fail,
                            retry: #krate::__private::RetryPolicy {
                                tries: #tries,
                                backoff: #backoff,
                                retry_until: #retry_until,
                                max_exceptions: #max_exceptions,
                            },
                            timeout: #timeout,
                            fail_on_timeout: #fail_on_timeout,
                            schedule: #schedule,
                            asynchronous: #asynchronous,
                            queue: #queue,
                            unique: #unique,
                            middleware: &[#(#middleware),*],
                            tags: #tags,
                            hooks: #krate::__private::Hooks { before: #before, after: #after, failed: #failed },
                            transaction: #transaction,
                            encrypted: #encrypted,
                            environments: #environments,
                            conditional: #conditional,
                            idempotent: #idempotent,
                        },
                        handler: __handler,
                        rollback: #rb,
                        before: #before_hook,
                        after: #after_hook,
                        failed: #failed_hook,
                        should_run: #cond,
                        execute_at: #due,
                    }
                };
            }
        };
    }
}
