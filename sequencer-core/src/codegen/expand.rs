//! Expansion: tokens from checked models only. Each operation's companion type and `Operation` impl, a
//! module's `registry()`, and the `#[path] mod` items of an operations directory.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use super::attr::{BackoffAttr, ExecuteAt, OpAttr};
use super::expand_task::task_impl;
use super::lit::{duration_tokens, opt, strs};
use super::middleware::MiddlewareAttr;
use super::model::{DepModel, FnKind, OpFile, SigSpans, TaskModel};
use crate::meta::Schedule;

// Kept at its old path for callers of `codegen::expand`; defined in `model`.
pub use super::model::OpModel;

/// The items a checked inline module gains: every operation's and task's companion type and impl, and
/// `registry()`.
pub fn operations(models: &[OpModel], tasks: &[TaskModel], krate: &TokenStream) -> TokenStream {
    let ops: Vec<TokenStream> = models.iter().map(|m| operation_impl(m, krate)).collect();
    let task_impls: Vec<TokenStream> = tasks.iter().map(|t| task_impl(t, krate)).collect();
    let idents = models.iter().map(|m| m.ident.to_token_stream()).collect();
    let task_idents = tasks.iter().map(|t| t.ident.to_token_stream()).collect();
    let registry = registry_fn(krate, idents, task_idents);
    quote!(#(#ops)* #(#task_impls)* #registry)
}

/// `pub fn registry()` over the given companion types of operations and of tasks.
pub fn registry_fn(
    krate: &TokenStream,
    ops: Vec<TokenStream>,
    tasks: Vec<TokenStream>,
) -> TokenStream {
    let (n, m) = (ops.len(), tasks.len());
    quote! {
        /// Every operation and task of this module, validated at compile time; pass it to
        /// `Sequencer::builder().registry(..)`.
        pub fn registry() -> #krate::__private::Registry {
            static OPERATIONS: [#krate::__private::OperationDef; #n] = [#(<#ops as #krate::__private::Operation>::DEF),*];
            static TASKS: [#krate::__private::TaskDef; #m] = [#(<#tasks as #krate::__private::Task>::DEF),*];
            #krate::__private::Registry::from_static_parts(&OPERATIONS, &TASKS)
        }
    }
}

/// The items an operations directory module gains: one `#[path] mod` per file (so rustc tracks each file and
/// reports errors at their real spans), and `registry()` over their `handle`s if the directory is `clean`.
pub fn directory(files: &[OpFile], clean: bool, krate: &TokenStream) -> TokenStream {
    let mods = files.iter().map(|f| {
        let path = f.path.to_string_lossy().into_owned();
        let ident = format_ident!("{}", f.name);
        let doc = format!("Operation `{}`.", f.ledger_name());
        quote!(#[doc = #doc] #[path = #path] pub mod #ident;)
    });
    let handles = if clean {
        files
            .iter()
            .map(|f| {
                let ident = format_ident!("{}", f.name);
                quote!(#ident::handle)
            })
            .collect()
    } else {
        Vec::new()
    };
    let registry = registry_fn(krate, handles, Vec::new());
    quote!(#(#mods)* #registry)
}

/// A dependency on an operation of another module, resolved through its companion type so that a wrong path is
/// a compile error on the user's tokens.
pub fn external_dep(p: &syn::Path) -> TokenStream {
    let span = p.span();
    quote_spanned!(span=> Dependency::Operation(<#p as Operation>::NAME))
}

/// One `Dependency` value.
fn dependency_tokens(d: &DepModel) -> TokenStream {
    match d {
        DepModel::Operation(name) => quote!(Dependency::Operation(#name)),
        DepModel::Migration(v, span) => quote_spanned!(*span=> Dependency::Migration(#v)),
        DepModel::External(p) => external_dep(p),
    }
}

/// The `Backoff` value.
fn backoff_tokens(b: Option<&BackoffAttr>) -> TokenStream {
    match b {
        None => quote!(Backoff::None),
        Some(BackoffAttr::Fixed(d)) => {
            let d = duration_tokens(*d);
            quote!(Backoff::Fixed(#d))
        }
        Some(BackoffAttr::List(list)) => {
            let ds = list.iter().copied().map(duration_tokens);
            quote!(Backoff::List(&[#(#ds),*]))
        }
    }
}

/// One `Middleware` value, spanned at its entry.
pub(crate) fn middleware_tokens(m: &MiddlewareAttr) -> TokenStream {
    match m {
        MiddlewareAttr::RateLimited {
            limiter,
            limit,
            span,
        } => {
            let limit = opt(limit.map(|(n, per)| {
                let per = duration_tokens(per);
                quote!((#n, #per))
            }));
            quote_spanned!(*span=> Middleware::RateLimited { limiter: #limiter, limit: #limit })
        }
        MiddlewareAttr::Named { name } => {
            let text = name.to_string();
            quote_spanned!(name.span()=> Middleware::Named(#text))
        }
        MiddlewareAttr::WithoutOverlapping {
            key,
            release_after,
            expire_after,
            span,
        } => {
            let release = opt(release_after.map(duration_tokens));
            let expire = opt(expire_after.map(duration_tokens));
            quote_spanned!(*span=> Middleware::WithoutOverlapping { key: #key, release_after: #release, expire_after: #expire })
        }
        MiddlewareAttr::ThrottleExceptions {
            max,
            window,
            backoff,
            by,
            span,
        } => {
            let window = duration_tokens(*window);
            let (backoff, by) = (opt(backoff.map(duration_tokens)), opt(by.as_ref()));
            quote_spanned!(*span=> Middleware::ThrottleExceptions { max: #max, window: #window, backoff: #backoff, by: #by })
        }
    }
}

/// The `Option<Schedule>` of `execute_at` or `delay`.
fn schedule_tokens(
    execute_at: Option<&ExecuteAt>,
    delay: Option<std::time::Duration>,
) -> TokenStream {
    match (execute_at, delay) {
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
        (
            Some(ExecuteAt::Zoned {
                time: (hour, minute, second),
                zone,
            }),
            _,
        ) => {
            quote!(::core::option::Option::Some(Schedule::TimeOfDayIn { hour: #hour, minute: #minute, second: #second, zone: #zone }))
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
    }
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
        FnKind::Condition(_) => quote_spanned! {span=>
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

/// The `RetryPolicy` of an attribute's `retries`, `backoff`, `retry_until` and `max_exceptions`.
pub(crate) fn retry_tokens(a: &OpAttr, krate: &TokenStream) -> TokenStream {
    let tries = a
        .retries
        .unwrap_or(if a.retry_until.is_some() { u32::MAX } else { 1 });
    let backoff = backoff_tokens(a.backoff.as_ref());
    let retry_until = opt(a.retry_until.map(duration_tokens));
    let max_exceptions = opt(a.max_exceptions);
    quote! {
        #krate::__private::RetryPolicy {
            tries: #tries,
            backoff: #backoff,
            retry_until: #retry_until,
            max_exceptions: #max_exceptions,
        }
    }
}

/// The wrapper fns of an attribute's `before`, `after`, `failed`, `should_run` and `throttle_on`, and the
/// `OperationDef` field values naming them.
pub(crate) struct HookTokens {
    pub items: TokenStream,
    pub before: TokenStream,
    pub after: TokenStream,
    pub failed: TokenStream,
    pub should_run: TokenStream,
    pub throttle_on: TokenStream,
}

impl HookTokens {
    /// The `OperationDef` fields naming the hooks: `before: .., after: .., failed: .., should_run: ..,
    /// throttle_on: ..`.
    pub(crate) fn def_fields(&self) -> TokenStream {
        let HookTokens {
            before,
            after,
            failed,
            should_run,
            throttle_on,
            ..
        } = self;
        quote!(before: #before, after: #after, failed: #failed, should_run: #should_run, throttle_on: #throttle_on,)
    }
}

/// The `OperationMeta` fields operations and tasks declare alike: retries, timeout, queue, middleware, tags,
/// hooks and flags.
pub(crate) fn common_meta_fields(a: &OpAttr, krate: &TokenStream) -> TokenStream {
    let retry = retry_tokens(a, krate);
    let timeout = opt(a.timeout.map(duration_tokens));
    let estimate = opt(a.estimate.map(duration_tokens));
    let queue = opt(a.queue.as_ref());
    let middleware = a.middleware.iter().map(middleware_tokens);
    let (tags, environments) = (strs(&a.tags), strs(&a.environments));
    let (before, after, failed) = (a.before.is_some(), a.after.is_some(), a.failed.is_some());
    let [fail_on_timeout, transaction, encrypted, conditional, idempotent] = [
        a.fail_on_timeout,
        a.transaction,
        a.encrypted,
        a.should_run.is_some(),
        a.idempotent,
    ];
    quote! {
        retry: #retry,
        timeout: #timeout,
        fail_on_timeout: #fail_on_timeout,
        estimate: #estimate,
        queue: #queue,
        middleware: &[#(#middleware),*],
        tags: #tags,
        hooks: #krate::__private::Hooks { before: #before, after: #after, failed: #failed },
        transaction: #transaction,
        encrypted: #encrypted,
        environments: #environments,
        conditional: #conditional,
        idempotent: #idempotent,
    }
}

/// See [`HookTokens`].
pub(crate) fn hooks_tokens(a: &OpAttr, krate: &TokenStream) -> HookTokens {
    let (before_fn, before) = hook(krate, "__before", a.before.as_ref(), FnKind::Hook("before"));
    let (after_fn, after) = hook(krate, "__after", a.after.as_ref(), FnKind::Hook("after"));
    let (failed_fn, failed) = hook(krate, "__failed", a.failed.as_ref(), FnKind::Failed);
    let (cond_fn, should_run) = hook(
        krate,
        "__should_run",
        a.should_run.as_ref(),
        FnKind::Condition("should_run"),
    );
    let (throttle_fn, throttle_on) = hook(
        krate,
        "__throttle_on",
        a.throttle_on.as_ref(),
        FnKind::Condition("throttle_on"),
    );
    HookTokens {
        items: quote!(#before_fn #after_fn #failed_fn #cond_fn #throttle_fn),
        before,
        after,
        failed,
        should_run,
        throttle_on,
    }
}

/// The companion type of one operation and its `Operation` impl.
pub fn operation_impl(m: &OpModel, krate: &TokenStream) -> TokenStream {
    let a = &m.attr;
    let (ident, vis, name) = (&m.ident, &m.vis, &m.name);
    let version = m.timestamp.version();
    let fn_name = ident.to_string();
    let checksum = m.checksum;
    let deps = m.deps.iter().map(dependency_tokens);
    let common = common_meta_fields(a, krate);
    let schedule = schedule_tokens(a.execute_at.as_ref(), a.delay);
    let unique = opt(a.unique.as_ref().map(|k| {
        let hold = opt(a.unique_for.map(duration_tokens));
        quote!(Unique { key: #k, hold_for: #hold })
    }));
    let [allowed_to_fail, asynchronous] = [a.allowed_to_fail, a.asynchronous];
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
    let hooks = hooks_tokens(a, krate);
    let (hook_fns, hook_fields) = (&hooks.items, hooks.def_fields());
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
                    #rb_fn #hook_fns
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
                            schedule: #schedule,
                            asynchronous: #asynchronous,
                            unique: #unique,
                            #common
                        },
                        handler: __handler,
                        rollback: #rb,
                        execute_at: #due,
                        #hook_fields
                    }
                };
            }
        };
    }
}
