//! Literal helpers: reading strings, integers, paths, lists and durations out of attribute expressions, and
//! writing durations, options and string lists back as tokens.

extern crate proc_macro;

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{Expr, ExprLit, Lit, LitStr};

use crate::time::parse_duration;

/// A string literal (also inside an invisible group, as macro_rules! passes it).
pub fn lit_str(e: &Expr) -> Option<LitStr> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        Expr::Group(g) => lit_str(&g.expr),
        _ => None,
    }
}

/// An integer literal that fits `N`.
pub fn int<N: std::str::FromStr>(e: &Expr) -> Option<N>
where
    N::Err: std::fmt::Display,
{
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse().ok(),
        Expr::Group(g) => int(&g.expr),
        _ => None,
    }
}

/// A path without a qualified self type: `undo`, `super::other::op`.
pub fn path(e: &Expr) -> Option<syn::Path> {
    match e {
        Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        Expr::Group(g) => path(&g.expr),
        _ => None,
    }
}

/// The elements of an array expression `[a, b, c]`.
pub fn list(e: &Expr) -> Option<Vec<Expr>> {
    match e {
        Expr::Array(a) => Some(a.elems.iter().cloned().collect()),
        Expr::Group(g) => list(&g.expr),
        _ => None,
    }
}

/// A duration: an integer number of seconds or a humantime string.
pub fn duration(key: &str, e: &Expr) -> syn::Result<Duration> {
    if let Some(secs) = int::<u64>(e) {
        return Ok(Duration::from_secs(secs));
    }
    match lit_str(e) {
        Some(s) => parse_duration(&s.value())
            .map_err(|err| syn::Error::new(s.span(), format!("`{key}`: {err}"))),
        None => Err(syn::Error::new_spanned(
            e,
            format!("`{key}` expects a duration: a number of seconds or a string such as \"2m\""),
        )),
    }
}

/// Tokens building a `Duration` at compile time, in a scope holding `expand::scope`'s names (`Duration`).
pub fn duration_tokens(d: Duration) -> TokenStream {
    let secs = proc_macro2::Literal::u64_unsuffixed(d.as_secs());
    let nanos = proc_macro2::Literal::u32_unsuffixed(d.subsec_nanos());
    quote!(Duration::new(#secs, #nanos))
}

/// `Some(v)` or `None`, in a scope holding `expand::scope`'s names (which import both from `core`, so that a
/// user's item of the same name does not shadow them).
pub fn opt<T: ToTokens>(v: Option<T>) -> TokenStream {
    v.map_or(quote!(None), |t| quote!(Some(#t)))
}

/// A `&[&str]` of the strings.
pub fn strs(v: &[String]) -> TokenStream {
    quote!(&[#(#v),*])
}

/// The line `span` starts on, as an integer literal when a procedural macro is running (the compiler knows its
/// source); otherwise (unit tests over `proc_macro2` tokens) `::core::line!()` spanned at it. The literal costs
/// the compiler nothing to expand; a `line!()` per operation is one more macro expansion each.
pub fn line_tokens(span: proc_macro2::Span) -> TokenStream {
    if proc_macro::is_available() {
        let line = u32::try_from(span.unwrap().line()).unwrap_or(0);
        proc_macro2::Literal::u32_unsuffixed(line).into_token_stream()
    } else {
        quote::quote_spanned!(span=> ::core::line!())
    }
}
