//! Parsing, checking and code generation behind `sequencer-macros` (feature `codegen`).
//!
//! The proc-macro crate is a thin shim over the three entry points here, so all of this can be unit-tested
//! with `proc_macro2` tokens. The flow is thiserror's: parse ([`attr`]) → check ([`check`]) → expand
//! ([`expand`]), with every error collected and reported together, and the user's functions always emitted.

pub mod attr;
pub mod check;
pub mod dir;
pub mod expand;
pub mod middleware;

use proc_macro2::TokenStream;
use quote::ToTokens;

pub use dir::operation_in_file;
pub use expand::operations_module;

/// Collects every `syn::Error` of one macro invocation, so they are all reported together.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error.
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    /// Adds an error at a span.
    pub fn at(&mut self, span: proc_macro2::Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    /// Whether nothing went wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The `compile_error!` invocations of every error (empty if none).
    pub fn to_compile_errors(&self) -> TokenStream {
        self.0
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}

/// `crate = "path"` override, else `::sequencer`.
pub fn crate_path(path: Option<syn::Path>) -> TokenStream {
    path.map_or_else(|| quote::quote!(::sequencer), |p| p.to_token_stream())
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
