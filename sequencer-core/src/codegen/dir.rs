//! The directory form: `#[operations("operations")] mod ops {}` and `#[operation]` on `handle` in each file.
//!
//! The module attribute lists the directory, checks every file name, validates the whole graph and emits one
//! `#[path] mod` per file (so rustc tracks each file and reports errors at their real spans) plus `registry()`.
//! Inside each file, `#[operation(...)]` learns its timestamp and name from its own file name. Reading the
//! directory and its files is here; the checks are in [`check`], the tokens in [`expand`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Item, ItemFn, LitStr};

use super::attr;
use super::check;
use super::errors::Errors;
use super::expand;
use super::model::{crate_path, is_operation_attr, FnKind, OpFile, OpModel};
use crate::meta::checksum;
use crate::timestamp::{Timestamp, TimestampError};

/// The pattern every file of an operations directory follows.
pub const FILE_PATTERN: &str = "YYYY_MM_DD_HHMMSS_name.rs";

/// Splits `2024_01_15_120000_create_users.rs` into its timestamp and name.
pub fn parse_file_name(file: &str) -> Result<(Timestamp, String), String> {
    let bad = || {
        format!("file `{file}` does not match `{FILE_PATTERN}` (e.g. `2024_01_15_120000_create_users.rs`); rename it or move it out of the operations directory")
    };
    let stem = file.strip_suffix(".rs").ok_or_else(bad)?;
    if stem.len() < 19 || stem.as_bytes()[17] != b'_' || !stem.is_char_boundary(17) {
        return Err(bad());
    }
    let ts: Timestamp = stem[..17].parse().map_err(|e: TimestampError| match e {
        TimestampError::Malformed(_) => bad(),
        other => format!("file `{file}`: {other}"),
    })?;
    let name = &stem[18..];
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid || syn::parse_str::<syn::Ident>(name).is_err() {
        return Err(format!("file `{file}`: the name after the timestamp must be a snake_case Rust identifier, not `{name}`"));
    }
    Ok((ts, name.to_owned()))
}

/// Lists the operation files of a directory; every other entry (but dotfiles) is an error.
fn list(dir: &Path, errors: &mut Vec<String>) -> Vec<OpFile> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!(
                "cannot read operations directory `{}`: {e}",
                dir.display()
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<OpFile> = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            continue;
        }
        match parse_file_name(&file_name) {
            Ok((timestamp, name)) => files.push(OpFile {
                path: entry.path(),
                file_name,
                timestamp,
                name,
            }),
            Err(e) => errors.push(e),
        }
    }
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for f in &files {
        if let Some(other) = seen.insert(&f.name, &f.file_name) {
            errors.push(format!("`{other}` and `{}` are both named `{}`: each operation of a directory needs its own name", f.file_name, f.name));
        }
    }
    errors.sort();
    files
}

/// The `#[operation]` attribute and the other functions of a parsed operation file.
fn find_handle(file: &syn::File) -> Option<(TokenStream, HashMap<String, ItemFn>)> {
    let mut args = None;
    let mut fns = HashMap::new();
    for item in &file.items {
        if let Item::Fn(f) = item {
            if f.sig.ident == "handle" {
                args = f
                    .attrs
                    .iter()
                    .find(|a| is_operation_attr(a))
                    .map(|a| match &a.meta {
                        syn::Meta::List(l) => l.tokens.clone(),
                        _ => TokenStream::new(),
                    });
            }
            fns.insert(f.sig.ident.to_string(), f.clone());
        }
    }
    args.map(|a| (a, fns))
}

/// The items `#[operations("dir")] mod ops {}` adds to its module: one `#[path] mod` per file and `registry()`.
pub fn operations_dir(
    lit: &LitStr,
    manifest_dir: Option<PathBuf>,
    krate: &TokenStream,
    errors: &mut Errors,
) -> TokenStream {
    let Some(root) = manifest_dir else {
        errors.at(
            lit.span(),
            "CARGO_MANIFEST_DIR is not set: build with cargo",
        );
        return expand::registry_fn(krate, Vec::new(), Vec::new());
    };
    let dir = root.join(lit.value());
    if !dir.is_dir() {
        errors.at(lit.span(), format!("operations directory `{}` not found; the path is relative to the crate root (the directory of Cargo.toml)", lit.value()));
        return expand::registry_fn(krate, Vec::new(), Vec::new());
    }
    let mut messages = Vec::new();
    let files = list(&dir, &mut messages);
    let mut parsed = Vec::new();
    for f in &files {
        let source = std::fs::read_to_string(&f.path).unwrap_or_default();
        // A file that does not parse is reported by rustc itself, at the right place, when it compiles the module.
        let Ok(file) = syn::parse_file(&source) else {
            continue;
        };
        match find_handle(&file) {
            Some((args, _)) => parsed.push((f, attr::parse(args, &mut Errors::default()))),
            None => messages.push(format!(
                "`{}` has no `#[operation(...)] pub async fn handle(ctx: &Ctx) -> Result<()>`",
                f.file_name
            )),
        }
    }
    check::directory_graph(&files, &parsed, &mut messages);
    let clean = errors.is_empty();
    for m in &messages {
        errors.at(lit.span(), format!("in `{}`: {m}", lit.value()));
    }
    expand::directory(&files, clean && messages.is_empty(), krate)
}

/// The expansion of `#[operation(...)]` outside an `#[operations]` module: on `handle` in an operations file.
pub fn operation_in_file(
    args: TokenStream,
    item: TokenStream,
    file: Option<PathBuf>,
) -> TokenStream {
    let mut errors = Errors::default();
    let f: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            errors.at(Span::call_site(), "`#[operation]` goes on an `async fn`");
            let errs = errors.to_compile_errors();
            return quote!(#item #errs);
        }
    };
    let located = file.as_ref().and_then(|p| {
        let name = p.file_name()?.to_string_lossy().into_owned();
        parse_file_name(&name)
            .ok()
            .map(|(ts, op)| (p.clone(), ts, op))
    });
    let Some((path, timestamp, op_name)) = located.filter(|_| f.sig.ident == "handle") else {
        let file_name = file
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        if let Some(Err(why)) = file_name
            .as_deref()
            .filter(|_| f.sig.ident == "handle")
            .map(parse_file_name)
        {
            errors.at(
                Span::call_site(),
                format!(
                    "`#[operation]` on `handle` belongs in an operations directory file, but {why}"
                ),
            );
            let errs = errors.to_compile_errors();
            return quote!(#f #errs);
        }
        errors.at(
            Span::call_site(),
            "`#[operation]` must be inside a `#[sequencer::operations] mod { ... }`, or on `pub async fn handle` in a \
             `YYYY_MM_DD_HHMMSS_name.rs` file of a directory loaded with `#[sequencer::operations(\"dir\")] mod ops {}`",
        );
        let errs = errors.to_compile_errors();
        return quote!(#f #errs);
    };
    let a = attr::parse(args, &mut errors);
    check::file_keys(&a, &mut errors);
    let source = std::fs::read_to_string(&path).unwrap_or_default();
    let fns = syn::parse_file(&source)
        .map(|file| find_handle(&file).map(|(_, fns)| fns).unwrap_or_default())
        .unwrap_or_default();
    let sig = check::signature(&f, FnKind::Operation, &mut errors);
    check::contradictions(&a, &mut errors);
    check::hooks(&a, &fns, &mut errors);
    let rollback = check::file_rollback(&a, &fns, &mut errors);

    let mut siblings: HashMap<String, String> = HashMap::new();
    if let Some(dir) = path.parent() {
        for s in list(dir, &mut Vec::new()) {
            siblings.insert(s.name.clone(), s.ledger_name());
        }
    }
    let own = format!("{timestamp}_{op_name}");
    let deps = check::file_deps(&a, &siblings, &own, &mut errors);
    let errs = errors.to_compile_errors();
    let mut clean = f.clone();
    clean.attrs.retain(|a| !is_operation_attr(a));
    if !errors.is_empty() {
        return quote!(#clean #errs);
    }
    let model = OpModel {
        ident: f.sig.ident.clone(),
        vis: f.vis.clone(),
        timestamp,
        name: own,
        rollback,
        checksum: checksum(source.as_bytes()),
        attr: a,
        deps,
        sig: sig.unwrap_or_default(),
    };
    let generated = expand::operation_impl(&model, &crate_path(None));
    quote!(#clean #generated)
}
