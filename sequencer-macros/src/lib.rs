//! Procedural macros of sequencer. Use them through the `sequencer` crate.
//!
//! This crate is a thin shim: parsing, checking and code generation live in `sequencer-core`'s `codegen`
//! module, where they are unit-tested without a compiler in the loop.
#![warn(missing_docs)]

use proc_macro::TokenStream;

/// Marks an inline module whose `#[operation(...)]` functions form a registry checked at compile time, or,
/// with a directory argument (`#[operations("operations")] mod ops {}`), loads a directory of operation files.
///
/// Use it as `#[sequencer::operations]`: the `sequencer` crate's re-export documents both forms, the
/// `crate = "path"` override and what is generated.
#[proc_macro_attribute]
pub fn operations(args: TokenStream, item: TokenStream) -> TokenStream {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from);
    sequencer_core::codegen::operations_module(args.into(), item.into(), manifest_dir).into()
}

/// Declares one operation: inside a `#[operations]` module, or on `handle` in a file of an operations directory.
///
/// Use it through `sequencer::prelude::*` (or as `#[sequencer::operation]`): the `sequencer` crate's re-export
/// lists every key with its value forms, default and meaning.
#[proc_macro_attribute]
pub fn operation(args: TokenStream, item: TokenStream) -> TokenStream {
    let file = proc_macro::Span::call_site().local_file();
    sequencer_core::codegen::operation_in_file(args.into(), item.into(), file).into()
}

/// Declares a task, an operation that carries data, inside a `#[operations]` module.
///
/// Use it through `sequencer::prelude::*` (or as `#[sequencer::task]`): the `sequencer` crate's re-export lists
/// every key.
#[proc_macro_attribute]
pub fn task(_args: TokenStream, item: TokenStream) -> TokenStream {
    sequencer_core::codegen::task_outside_module(item.into()).into()
}
