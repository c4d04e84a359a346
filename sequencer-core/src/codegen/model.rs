//! The model: an inline `#[operations]` module taken apart, the files of an operations directory, and each
//! operation once it is checked.
//!
//! Parsing builds an [`InlineModule`] (the module's functions, and those marked `#[operation(...)]` with their
//! attribute parsed) or lists [`OpFile`]s; checking turns each operation into an [`OpModel`]; expansion reads
//! `OpModel`s only.

use std::collections::HashMap;
use std::path::PathBuf;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, ToTokens};
use syn::{Item, ItemFn, LitStr, Visibility};

use super::attr::{self, OpAttr};
use super::errors::Errors;
use super::task_attr::{self, TaskAttr};
use crate::timestamp::Timestamp;

/// The arguments of `#[operations]`: `#[operations]`, `#[operations("dir")]`, either with `crate = "path"`.
pub struct ModuleArgs {
    /// The directory of operation files, relative to the crate root.
    pub dir: Option<LitStr>,
    /// The path of the `sequencer` crate in generated code.
    pub krate: TokenStream,
}

impl ModuleArgs {
    /// Parses the arguments; on error reports it and falls back to no directory and `::sequencer`.
    pub fn parse(args: TokenStream, errors: &mut Errors) -> ModuleArgs {
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
            Ok((dir, krate)) => ModuleArgs {
                dir,
                krate: crate_path(krate),
            },
            Err(e) => {
                errors.push(syn::Error::new(
                    e.span(),
                    "expected no arguments, a directory (`#[operations(\"operations\")]`) and/or `crate = \"path::to::sequencer\"`",
                ));
                ModuleArgs {
                    dir: None,
                    krate: crate_path(None),
                }
            }
        }
    }
}

/// `crate = "path"` override, else `::sequencer`.
pub fn crate_path(path: Option<syn::Path>) -> TokenStream {
    path.map_or_else(|| quote!(::sequencer), |p| p.to_token_stream())
}

/// Whether an attribute is `#[operation(...)]` (also as `#[sequencer::operation(...)]`).
pub fn is_operation_attr(a: &syn::Attribute) -> bool {
    a.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "operation")
        && (a.path().segments.len() == 1
            || a.path()
                .segments
                .first()
                .is_some_and(|s| s.ident == "sequencer"))
}

/// Whether an attribute is `#[task(...)]` (also as `#[sequencer::task(...)]`).
pub fn is_task_attr(a: &syn::Attribute) -> bool {
    a.path().segments.last().is_some_and(|s| s.ident == "task")
        && (a.path().segments.len() == 1
            || a.path()
                .segments
                .first()
                .is_some_and(|s| s.ident == "sequencer"))
}

/// Whether an attribute is `#[operation]` or `#[task]`.
fn is_marker(a: &syn::Attribute) -> bool {
    is_operation_attr(a) || is_task_attr(a)
}

/// A function of an inline module marked `#[task(...)]`, the attribute taken off and parsed.
pub struct ParsedTask {
    /// The function's attributes, visibility and signature (its body left out).
    pub item: ItemFn,
    /// The function's tokens, without its `#[task]` attribute, for the checksum.
    pub tokens: TokenStream,
    /// The tokens inside `#[task(...)]`, for the checksum.
    pub args: TokenStream,
    /// The parsed attribute: what parsed, even where there were errors.
    pub attr: TaskAttr,
    /// The attribute's errors, reported when the task is checked.
    pub errors: Errors,
}

/// Everything needed to generate one task's companion type and definition: a checked task.
pub struct TaskModel {
    /// The function, and the name of its companion type.
    pub ident: Ident,
    /// Visibility of the function, given to the companion type.
    pub vis: Visibility,
    /// Ledger name: `name = "..."`, else the function's name.
    pub name: String,
    /// Parsed attribute.
    pub attr: TaskAttr,
    /// The type of the data argument.
    pub args_ty: syn::Type,
    /// Where to point type errors.
    pub sig: SigSpans,
    /// Checksum of the source.
    pub checksum: u64,
}

/// A function of an inline module marked `#[operation(...)]`, the attribute taken off and parsed.
pub struct ParsedOp {
    /// The function's visibility and signature (its body left out).
    pub item: ItemFn,
    /// The function's tokens, without its `#[operation]` attribute, for the checksum.
    pub tokens: TokenStream,
    /// The tokens inside `#[operation(...)]`, for the checksum.
    pub args: TokenStream,
    /// The parsed attribute: what parsed, even where there were errors.
    pub attr: OpAttr,
    /// The attribute's errors, reported when the operation is checked.
    pub errors: Errors,
}

/// An inline `#[operations] mod ops { ... }` taken apart.
pub struct InlineModule {
    /// The functions marked `#[operation(...)]`, in order.
    pub ops: Vec<ParsedOp>,
    /// The functions marked `#[task(...)]`, in order.
    pub tasks: Vec<ParsedTask>,
    /// Every function of the module by name, operations included, for the keys that name one.
    pub fns: HashMap<String, ItemFn>,
}

impl InlineModule {
    /// Takes the `#[operation]` attributes off the module's items, keeping every item otherwise unchanged, and
    /// parses them. Misplaced and repeated attributes are reported here.
    pub fn parse(items: &mut [Item], errors: &mut Errors) -> InlineModule {
        let mut ops = Vec::new();
        let mut tasks = Vec::new();
        let mut fns = HashMap::new();
        for item in items.iter_mut() {
            let Item::Fn(f) = item else {
                strip_misplaced(item, errors);
                continue;
            };
            if let Some(task) = take_task(f, errors) {
                fns.insert(f.sig.ident.to_string(), signature_only(f));
                if let Some(mut task) = task {
                    task.tokens = verbatim(item);
                    tasks.push(task);
                }
                continue;
            }
            let mut found = Vec::new();
            f.attrs.retain(|a| {
                let op = is_operation_attr(a);
                if op {
                    found.push(a.clone());
                }
                !op
            });
            if found.len() > 1 {
                errors.push(syn::Error::new_spanned(
                    &found[1],
                    "`#[operation]` given twice on one function",
                ));
            }
            fns.insert(f.sig.ident.to_string(), signature_only(f));
            let Some(a) = found.into_iter().next() else {
                continue;
            };
            let Some(args) = attr_args(
                a.meta,
                "write `#[operation(timestamp = \"...\", ...)]`",
                errors,
            ) else {
                continue;
            };
            let mut attr_errors = Errors::default();
            let attr = attr::parse(args.clone(), &mut attr_errors);
            let sig = signature_only(f);
            let tokens = verbatim(item);
            ops.push(ParsedOp {
                item: sig,
                tokens,
                args,
                attr,
                errors: attr_errors,
            });
        }
        InlineModule { ops, tasks, fns }
    }
}

/// The function without its body, for the checks that read its signature: a copy that does not clone every
/// statement of the body.
fn signature_only(f: &ItemFn) -> ItemFn {
    ItemFn {
        attrs: Vec::new(),
        vis: f.vis.clone(),
        sig: f.sig.clone(),
        block: Box::new(syn::Block {
            brace_token: f.block.brace_token,
            stmts: Vec::new(),
        }),
    }
}

/// Replaces a function of the module by its tokens, printed once: the module emits them as they are, and the
/// checksum reads them (the same tokens syn prints for the function, so the checksum does not change).
fn verbatim(item: &mut Item) -> TokenStream {
    let tokens = item.to_token_stream();
    *item = Item::Verbatim(tokens.clone());
    tokens
}

/// The tokens inside `#[operation(...)]` or `#[task(...)]` (none for the bare attribute); `#[what = ...]` is
/// reported with `message`.
fn attr_args(meta: syn::Meta, message: &str, errors: &mut Errors) -> Option<TokenStream> {
    match meta {
        syn::Meta::List(l) => Some(l.tokens),
        syn::Meta::Path(_) => Some(TokenStream::new()),
        syn::Meta::NameValue(nv) => {
            errors.push(syn::Error::new_spanned(nv, message));
            None
        }
    }
}

/// Takes `#[task]` off a function: `None` when it has none; `Some(None)` when it is refused (given twice, or
/// with `#[operation]` too).
fn take_task(f: &mut ItemFn, errors: &mut Errors) -> Option<Option<ParsedTask>> {
    let found: Vec<syn::Attribute> = f
        .attrs
        .iter()
        .filter(|a| is_task_attr(a))
        .cloned()
        .collect();
    let first = found.first()?.clone();
    f.attrs.retain(|a| !is_task_attr(a));
    if found.len() > 1 {
        errors.push(syn::Error::new_spanned(
            &found[1],
            "`#[task]` given twice on one function",
        ));
        return Some(None);
    }
    if let Some(op) = f.attrs.iter().find(|a| is_operation_attr(a)) {
        errors.push(syn::Error::new_spanned(
            op,
            "a function is an operation or a task, not both: keep `#[operation]` (runs once) or `#[task]` (runs each time it is dispatched, with its data)",
        ));
        f.attrs.retain(|a| !is_operation_attr(a));
        return Some(None);
    }
    let Some(args) = attr_args(
        first.meta,
        "write `#[task(queue = \"...\", ...)]` or `#[task]`",
        errors,
    ) else {
        return Some(None);
    };
    let mut attr_errors = Errors::default();
    let attr = task_attr::parse(args.clone(), &mut attr_errors);
    Some(Some(ParsedTask {
        item: signature_only(f),
        tokens: TokenStream::new(),
        args,
        attr,
        errors: attr_errors,
    }))
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
    for a in attrs.iter().filter(|a| is_marker(a)) {
        let what = if is_task_attr(a) { "task" } else { "operation" };
        errors.push(syn::Error::new_spanned(
            a,
            format!("`#[{what}]` goes on an `async fn`"),
        ));
    }
    attrs.retain(|a| !is_marker(a));
}

/// Takes `#[operation]` off the functions of a directory module, which holds no inline operations.
pub fn strip_inline_operations(items: &mut [Item], errors: &mut Errors) {
    for item in items.iter_mut() {
        if let Item::Fn(f) = item {
            if f.attrs.iter().any(is_task_attr) {
                f.attrs.retain(|a| !is_task_attr(a));
                errors.push(syn::Error::new_spanned(
                    &f.sig.ident,
                    "tasks are declared in an inline `#[sequencer::operations] mod { ... }`, not in an operations directory module",
                ));
            }
            if f.attrs.iter().any(is_operation_attr) {
                f.attrs.retain(|a| !is_operation_attr(a));
                errors.push(syn::Error::new_spanned(
                    &f.sig.ident,
                    "an operations directory module holds no inline operations: move this one to its own file or module",
                ));
            }
        }
    }
}

/// One file of an operations directory, named `YYYY_MM_DD_HHMMSS_name.rs`.
pub struct OpFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its file name.
    pub file_name: String,
    /// The timestamp of its file name.
    pub timestamp: Timestamp,
    /// The name part of its file name: its module's name.
    pub name: String,
}

impl OpFile {
    /// `<timestamp>_<name>`.
    pub fn ledger_name(&self) -> String {
        format!("{}_{}", self.timestamp, self.name)
    }
}

/// Everything needed to generate one operation's companion type and definition: a checked operation.
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
    /// The resolved `depends_on` entries, in order.
    pub deps: Vec<DepModel>,
    /// Where to point type errors.
    pub sig: SigSpans,
    /// The rollback function, if any.
    pub rollback: Option<syn::Path>,
    /// Checksum of the source.
    pub checksum: u64,
}

/// One resolved `depends_on` entry.
pub enum DepModel {
    /// Another operation of the same module or directory, by ledger name; the literal keeps the user's span
    /// where the entry was written as a string.
    Operation(LitStr),
    /// A schema migration by version, and the span of the generated `Dependency`.
    Migration(i64, Span),
    /// An operation of another module, by path: resolved by the compiler through its companion type.
    External(syn::Path),
}

/// The spans generated code uses to point type errors at the user's signature.
#[derive(Clone, Copy)]
pub struct SigSpans {
    /// The type of the `ctx` parameter.
    pub ctx: Span,
    /// The return type.
    pub output: Span,
}

impl Default for SigSpans {
    /// The call site, for an operation whose signature was reported wrong (it is never expanded).
    fn default() -> Self {
        SigSpans {
            ctx: Span::call_site(),
            output: Span::call_site(),
        }
    }
}

/// What a referenced function must look like.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FnKind {
    /// The operation itself: `async fn(ctx: &Ctx) -> Result<()>`.
    Operation,
    /// `rollback`, `before`, `after`: same signature.
    Hook(&'static str),
    /// `failed`: `async fn(ctx: &Ctx, error: &Error) -> Result<()>`.
    Failed,
    /// `should_run` or `throttle_on` (the key): `async fn(ctx: &Ctx) -> bool`.
    Condition(&'static str),
}

impl FnKind {
    /// How many parameters the function takes.
    pub fn params(self) -> usize {
        if self == FnKind::Failed {
            2
        } else {
            1
        }
    }

    /// The signature expected of a function `name`, for messages.
    pub fn expected(self, name: &str) -> String {
        match self {
            FnKind::Operation | FnKind::Hook(_) => {
                format!("`async fn {name}(ctx: &Ctx) -> Result<()>`")
            }
            FnKind::Failed => format!("`async fn {name}(ctx: &Ctx, error: &Error) -> Result<()>`"),
            FnKind::Condition(_) => format!("`async fn {name}(ctx: &Ctx) -> bool`"),
        }
    }

    /// What the function is, for messages: "operation", "`rollback` fn", ...
    pub fn what(self) -> String {
        match self {
            FnKind::Operation => "operation".into(),
            FnKind::Hook(key) => format!("`{key}` fn"),
            FnKind::Failed => "`failed` fn".into(),
            FnKind::Condition(key) => format!("`{key}` fn"),
        }
    }
}
