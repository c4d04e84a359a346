//! Expansion: tokens from checked models only. Each operation's companion type and `Operation` impl, a
//! module's `registry()`, and the `#[path] mod` items of an operations directory.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use super::attr::{BackoffAttr, ExecuteAt, OpAttr};
use super::expand_task::task_impl;
use super::lit::{duration_tokens, line_tokens, opt, strs};
use super::middleware::MiddlewareAttr;
use super::model::{DepModel, FnKind, OpFile, SigSpans, TaskModel};
use crate::meta::Schedule;

// Kept at its old path for callers of `codegen::expand`; defined in `model`.
pub use super::model::OpModel;

/// The items a checked inline module gains: every operation's companion type, every task's with its `Task`
/// impl, the module's table of operation definitions and `registry()`.
///
/// What rustc does per operation is what an incremental build pays for, so the expansion keeps it small: the
/// definitions are one `const` array of plain data (each naming only the metadata fields that differ from their
/// defaults, its handler a closure boxing the function's future), the names one array of strings, and each
/// operation's companion type is an alias of `__SequencerOperation<I>`, its index in both: one item per
/// operation, with no body of its own, where a struct and an impl with two consts took four. The module's one
/// generic `Operation` impl reads `NAME` from the names and `DEF` from the table; `NAME` never reads the table,
/// so modules that name each other's operations in `depends_on` do not form a const cycle.
pub fn operations(models: &[OpModel], tasks: &[TaskModel], krate: &TokenStream) -> TokenStream {
    let aliases = models.iter().enumerate().map(|(i, m)| companion(m, i));
    let names = models.iter().map(|m| &m.name);
    let task_impls = tasks.iter().map(|t| task_impl(t, krate));
    let entries = models.iter().map(|m| operation_entry(m, krate));
    let n = models.len();
    let scope = scope(krate);
    let table = quote! {
        /// The definitions of this module's operations, in declaration order (generated).
        #[doc(hidden)]
        const __SEQUENCER_OPERATIONS: [#krate::__private::OperationDef; #n] = {
            #scope
            [#(#entries),*]
        };
        /// The ledger names of this module's operations, in declaration order (generated).
        #[doc(hidden)]
        const __SEQUENCER_NAMES: [&str; #n] = [#(#names),*];
        /// The companion type of this module's `I`-th operation (generated): each operation's companion type
        /// is an alias of it.
        #[doc(hidden)]
        pub struct __SequencerOperation<const I: usize>;
        const _: () = {
            use #krate::__private::{Operation, OperationDef};
            // A type that is not an operation, named in `depends_on`, gets the trait's own message; rustc does
            // not add that this hidden type implements it.
            #[diagnostic::do_not_recommend]
            impl<const I: usize> Operation for __SequencerOperation<I> {
                const NAME: &'static str = __SEQUENCER_NAMES[I];
                const DEF: OperationDef = __SEQUENCER_OPERATIONS[I];
            }
        };
    };
    let task_idents = tasks.iter().map(|t| t.ident.to_token_stream()).collect();
    let registry = registry_items(krate, quote!(__SEQUENCER_OPERATIONS), n, task_idents);
    quote!(#(#aliases)* #(#task_impls)* #table #registry)
}

/// The companion type of the `index`-th operation of an inline module: an alias of
/// `__SequencerOperation<index>`. Its name takes the macro's call site, so no `allow(non_camel_case_types)` is
/// needed.
fn companion(m: &OpModel, index: usize) -> TokenStream {
    let (vis, name) = (&m.vis, &m.name);
    let index = Literal::usize_unsuffixed(index);
    let doc =
        format!("Companion type of operation `{name}`: names it in `depends_on` of other modules.");
    let ident = Ident::new(&m.ident.to_string(), proc_macro2::Span::call_site());
    quote! {
        #[doc = #doc]
        #vis type #ident = __SequencerOperation<#index>;
    }
}

/// The names the generated definitions use, imported once per table; `__BASE`, the metadata every definition
/// starts from (its module and file; every other field at its default); and `__meta(..)`, which fills in what
/// each operation has of its own, so that a definition names only the fields that differ from their defaults.
pub(crate) fn scope(krate: &TokenStream) -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use #krate::__private::{
            handler_future as __handler_future, Backoff, Dependency, Hooks, Middleware, Operation, OperationDef,
            OperationMeta, RetryPolicy, Schedule, SourceLocation, Timestamp, Unique,
        };
        #[allow(unused_imports)]
        use ::core::{option::Option::{None, Some}, time::Duration};
        const __BASE: OperationMeta = OperationMeta {
            module_path: ::core::module_path!(),
            source: SourceLocation { file: ::core::file!(), line: 0 },
            ..OperationMeta::new("", Timestamp::from_version_unchecked(19_700_101_000_000))
        };
        #[allow(dead_code)]
        const fn __meta(
            name: &'static str,
            version: u64,
            fn_name: &'static str,
            line: u32,
            checksum: u64,
        ) -> OperationMeta {
            OperationMeta {
                name,
                timestamp: Timestamp::from_version_unchecked(version),
                fn_name,
                source: SourceLocation { file: __BASE.source.file, line },
                checksum,
                ..__BASE
            }
        }
    }
}

/// `pub fn registry()` over the given companion types of operations and of tasks.
pub fn registry_fn(
    krate: &TokenStream,
    ops: Vec<TokenStream>,
    tasks: Vec<TokenStream>,
) -> TokenStream {
    let n = ops.len();
    let defs = quote!([#(<#ops as #krate::__private::Operation>::DEF),*]);
    registry_items(krate, defs, n, tasks)
}

/// `pub fn registry()`: the `n` operation definitions of the array expression `defs`, and the given tasks.
fn registry_items(
    krate: &TokenStream,
    defs: TokenStream,
    n: usize,
    tasks: Vec<TokenStream>,
) -> TokenStream {
    let m = tasks.len();
    quote! {
        /// Every operation and task of this module, validated at compile time; pass it to
        /// `Sequencer::builder().registry(..)`.
        pub fn registry() -> #krate::__private::Registry {
            static OPERATIONS: [#krate::__private::OperationDef; #n] = #defs;
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

/// The `Schedule` of `execute_at` or `delay`, if either is set.
fn schedule_tokens(
    execute_at: Option<&ExecuteAt>,
    delay: Option<std::time::Duration>,
) -> Option<TokenStream> {
    Some(match (execute_at, delay) {
        (
            Some(ExecuteAt::Fixed(Schedule::TimeOfDay {
                hour,
                minute,
                second,
            })),
            _,
        ) => quote!(Schedule::TimeOfDay { hour: #hour, minute: #minute, second: #second }),
        (
            Some(ExecuteAt::Zoned {
                time: (hour, minute, second),
                zone,
            }),
            _,
        ) => {
            quote!(Schedule::TimeOfDayIn { hour: #hour, minute: #minute, second: #second, zone: #zone })
        }
        (Some(ExecuteAt::Fixed(Schedule::At(secs))), _) => quote!(Schedule::At(#secs)),
        (Some(_), _) => quote!(Schedule::Computed),
        (None, Some(d)) => {
            let d = duration_tokens(d);
            quote!(Schedule::Delay(#d))
        }
        (None, None) => return None,
    })
}

/// A hook wrapper fn with the user's spans, and its name (nothing for a hook that is not set).
fn hook(
    krate: &TokenStream,
    wrapper: &str,
    path: Option<&syn::Path>,
    kind: FnKind,
) -> (TokenStream, Option<TokenStream>) {
    let Some(p) = path else {
        return (TokenStream::new(), None);
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
    (item, Some(quote!(#w)))
}

/// The `retry` field, if an attribute sets `retries`, `backoff`, `retry_until` or `max_exceptions`.
fn retry_field(a: &OpAttr) -> Option<TokenStream> {
    if a.retries.is_none()
        && a.backoff.is_none()
        && a.retry_until.is_none()
        && a.max_exceptions.is_none()
    {
        return None;
    }
    let tries = a
        .retries
        .unwrap_or(if a.retry_until.is_some() { u32::MAX } else { 1 });
    // Only what differs from `RetryPolicy::ONCE`: fewer tokens to expand and lower per operation.
    let backoff = a.backoff.as_ref().map(|b| {
        let b = backoff_tokens(Some(b));
        quote!(backoff: #b,)
    });
    let retry_until = a.retry_until.map(|d| {
        let d = duration_tokens(d);
        quote!(retry_until: Some(#d),)
    });
    let max_exceptions = a.max_exceptions.map(|n| quote!(max_exceptions: Some(#n),));
    Some(quote! {
        retry: RetryPolicy { tries: #tries, #backoff #retry_until #max_exceptions ..RetryPolicy::ONCE },
    })
}

/// The wrapper fns of an attribute's `before`, `after`, `failed`, `should_run` and `throttle_on`, and the
/// `OperationDef` fields naming those that are set.
pub(crate) struct HookTokens {
    pub items: TokenStream,
    pub fields: TokenStream,
}

/// `name: Some(value),` for a value that is set; nothing for one at its default.
fn some_field(name: &str, value: Option<TokenStream>) -> TokenStream {
    value.map_or_else(TokenStream::new, |v| {
        let name = Ident::new(name, proc_macro2::Span::call_site());
        quote!(#name: Some(#v),)
    })
}

/// `name: true,` for a flag that is set; nothing for one that is not.
fn flag_field(name: &str, set: bool) -> TokenStream {
    if set {
        let name = Ident::new(name, proc_macro2::Span::call_site());
        quote!(#name: true,)
    } else {
        TokenStream::new()
    }
}

/// `name: &[..],` for a list that is not empty; nothing for an empty one.
fn list_field(name: &str, items: &[String]) -> TokenStream {
    if items.is_empty() {
        TokenStream::new()
    } else {
        let name = Ident::new(name, proc_macro2::Span::call_site());
        let items = strs(items);
        quote!(#name: #items,)
    }
}

/// The `OperationMeta` fields operations and tasks declare alike (retries, timeout, queue, middleware, tags,
/// hooks and flags), those that differ from their defaults only: the literal ends in a struct update.
pub(crate) fn common_meta_fields(a: &OpAttr) -> TokenStream {
    let retry = retry_field(a);
    let timeout = some_field("timeout", a.timeout.map(duration_tokens));
    let estimate = some_field("estimate", a.estimate.map(duration_tokens));
    let queue = some_field("queue", a.queue.as_ref().map(|q| quote!(#q)));
    let middleware = if a.middleware.is_empty() {
        TokenStream::new()
    } else {
        let m = a.middleware.iter().map(middleware_tokens);
        quote!(middleware: &[#(#m),*],)
    };
    let (tags, environments) = (
        list_field("tags", &a.tags),
        list_field("environments", &a.environments),
    );
    let (before, after, failed) = (a.before.is_some(), a.after.is_some(), a.failed.is_some());
    let hooks = if before || after || failed {
        quote!(hooks: Hooks { before: #before, after: #after, failed: #failed },)
    } else {
        TokenStream::new()
    };
    let flags = [
        ("fail_on_timeout", a.fail_on_timeout),
        ("transaction", a.transaction),
        ("encrypted", a.encrypted),
        ("conditional", a.should_run.is_some()),
        ("idempotent", a.idempotent),
    ]
    .map(|(name, set)| flag_field(name, set));
    quote!(#retry #timeout #estimate #queue #middleware #tags #hooks #(#flags)* #environments)
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
    let fields = [
        ("before", before),
        ("after", after),
        ("failed", failed),
        ("should_run", should_run),
        ("throttle_on", throttle_on),
    ]
    .map(|(name, value)| some_field(name, value));
    HookTokens {
        items: quote!(#before_fn #after_fn #failed_fn #cond_fn #throttle_fn),
        fields: quote!(#(#fields)*),
    }
}

/// One operation's `OperationDef` expression, in a scope holding [`scope`]'s names: its metadata (the fields
/// that differ from `__BASE`), a closure boxing the function's future as its handler, and, when the attribute
/// names hook functions, their wrappers in a block around it.
fn operation_entry(m: &OpModel, krate: &TokenStream) -> TokenStream {
    let a = &m.attr;
    let (ident, name) = (&m.ident, &m.name);
    let version = m.timestamp.version();
    let fn_name = ident.to_string();
    let checksum = m.checksum;
    let depends_on = if m.deps.is_empty() {
        TokenStream::new()
    } else {
        let deps = m.deps.iter().map(dependency_tokens);
        quote!(depends_on: &[#(#deps),*],)
    };
    let common = common_meta_fields(a);
    let schedule =
        schedule_tokens(a.execute_at.as_ref(), a.delay).map(|s| quote!(schedule: Some(#s),));
    let unique = some_field(
        "unique",
        a.unique.as_ref().map(|k| {
            let hold = opt(a.unique_for.map(duration_tokens));
            quote!(Unique { key: #k, hold_for: #hold })
        }),
    );
    let flags = [
        ("rollbackable", m.rollback.is_some()),
        ("allowed_to_fail", a.allowed_to_fail),
        ("asynchronous", a.asynchronous),
    ]
    .map(|(name, set)| flag_field(name, set));
    let line = line_tokens(ident.span());
    let own = quote!(__meta(#name, #version, #fn_name, #line, #checksum));
    let fields = quote!(#depends_on #schedule #unique #(#flags)* #common);
    let meta = if fields.is_empty() {
        own
    } else {
        quote!(OperationMeta { #fields ..#own })
    };

    let SigSpans {
        ctx: ctx_span,
        output,
    } = m.sig;
    let ctx_arg = quote_spanned!(ctx_span=> ctx);
    let called = Ident::new(&ident.to_string(), output);
    let call = quote_spanned!(output=> __handler_future(#called(#ctx_arg)));
    let def = quote!(OperationDef::new(#meta, |ctx| #call));

    let (rb_fn, rb) = hook(
        krate,
        "__rollback",
        m.rollback.as_ref(),
        FnKind::Hook("rollback"),
    );
    let hooks = hooks_tokens(a, krate);
    let due = match &a.execute_at {
        Some(ExecuteAt::Fn(p)) => {
            let span = p.span();
            Some(quote_spanned!(span=> {
                let due: fn() -> ::std::time::SystemTime = #p;
                due
            }))
        }
        _ => None,
    };
    if rb.is_none() && due.is_none() && hooks.items.is_empty() {
        return def;
    }
    let (hook_fns, hook_fields) = (&hooks.items, &hooks.fields);
    let (rollback, execute_at) = (some_field("rollback", rb), some_field("execute_at", due));
    quote! {{
        #rb_fn #hook_fns
        OperationDef { #rollback #execute_at #hook_fields ..#def }
    }}
}

/// The companion type of one operation of an operations directory (the `handle` of its file) and its
/// `Operation` impl, whose `DEF` holds the definition.
pub fn operation_impl(m: &OpModel, krate: &TokenStream) -> TokenStream {
    let (ident, vis, name) = (&m.ident, &m.vis, &m.name);
    let scope = scope(krate);
    let def = operation_entry(m, krate);
    let doc =
        format!("Companion type of operation `{name}`: names it in `depends_on` of other modules.");
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        impl #krate::__private::Operation for #ident {
            const NAME: &'static str = #name;
            const DEF: #krate::__private::OperationDef = {
                #scope
                #def
            };
        }
    }
}
