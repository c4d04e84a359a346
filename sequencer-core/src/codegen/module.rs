//! `#[operations] mod ops { ... }`: parse → check → expand for the inline form; the directory form is handed
//! to [`dir`](super::dir).

use std::path::PathBuf;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Item, ItemMod};

use super::check;
use super::check_task;
use super::dir::operations_dir;
use super::errors::Errors;
use super::expand;
use super::model::{strip_inline_operations, InlineModule, ModuleArgs};

/// The expansion of `#[sequencer::operations]` (arguments: an optional directory, optional `crate = path`).
pub fn operations_module(
    args: TokenStream,
    item: TokenStream,
    manifest_dir: Option<PathBuf>,
) -> TokenStream {
    let mut errors = Errors::default();
    let ModuleArgs { dir, krate } = ModuleArgs::parse(args, &mut errors);
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

    let generated = match dir {
        Some(dir) => {
            strip_inline_operations(items, &mut errors);
            operations_dir(&dir, manifest_dir, &krate, &mut errors)
        }
        None => {
            let mut parsed = InlineModule::parse(items, &mut errors);
            let tasks = std::mem::take(&mut parsed.tasks);
            let task_models = check_task::tasks(tasks, &parsed.fns, &mut errors);
            let models = check::inline_module(parsed, &mut errors);
            if errors.is_empty() {
                expand::operations(&models, &task_models, &krate)
            } else {
                expand::registry_fn(&krate, Vec::new(), Vec::new())
            }
        }
    };
    items.push(Item::Verbatim(generated));
    let errs = errors.to_compile_errors();
    quote!(#module #errs)
}

/// The expansion of `#[task(...)]` outside an `#[operations]` module: the function as it is, and an error saying
/// where tasks go.
pub fn task_outside_module(item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    errors.at(
        Span::call_site(),
        "`#[task]` must be inside a `#[sequencer::operations] mod ops { ... }`: the module's `registry()` lists it and \
         generates its companion type `ops::NAME` for `seq.dispatch::<ops::NAME>(args)`",
    );
    let errs = errors.to_compile_errors();
    quote!(#item #errs)
}
