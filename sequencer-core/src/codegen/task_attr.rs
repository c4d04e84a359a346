//! Parsing `#[task(...)]` arguments into [`TaskAttr`]: the keys a task shares with operations (parsed as
//! `#[operation]` parses them), the keys computed from a task's arguments, and the keys that mean nothing for a
//! task, each refused with the reason.

use proc_macro2::TokenStream;
use syn::{LitStr, Meta};

use super::attr::{keyed_metas, OpAttr};
use super::errors::Errors;
use super::lit::{list, lit_str, path};

/// Every key `#[task(...)]` accepts.
pub const TASK_KEYS: &[&str] = &[
    "name",
    "queue",
    "retries",
    "backoff",
    "retry_until",
    "max_exceptions",
    "timeout",
    "fail_on_timeout",
    "unique",
    "unique_for",
    "without_overlapping",
    "rate_limit_key",
    "middleware",
    "tags",
    "before",
    "after",
    "failed",
    "should_run",
    "throttle_on",
    "transaction",
    "encrypted",
    "environments",
    "idempotent",
];

/// Keys of `#[operation]` that mean nothing for a task, and what to do instead.
const NOT_FOR_TASKS: &[(&str, &str)] = &[
    ("timestamp", "a task runs each time it is dispatched (`seq.dispatch::<ops::NAME>(args)`), not once in timestamp order; remove `timestamp`"),
    ("depends_on", "a task runs when it is dispatched, not after other operations; dispatch it from the operation it must follow"),
    ("rollback", "`rollback` undoes one-time operations; write the undo of a task as another task"),
    ("execute_at", "give the time when dispatching: `seq.dispatch::<ops::NAME>(args).at(time)`"),
    ("delay", "give the delay when dispatching: `seq.dispatch::<ops::NAME>(args).delay(duration)`"),
    ("asynchronous", "a dispatched task always goes to the workers' queue (`seq.dispatch_sync` runs it in this process); remove `asynchronous`"),
    ("allowed_to_fail", "a task run is no part of a `process` run, so its failure stops nothing; remove `allowed_to_fail`"),
];

/// A key computed from a task's arguments, or fixed.
#[derive(Clone)]
pub enum KeyAttr {
    /// `unique = "reprice"`: the same key for every run.
    Fixed(LitStr),
    /// `unique = customer_key`: `fn customer_key(args: &Args) -> String` of the module.
    Fn(syn::Path),
}

/// The parsed arguments of one `#[task(...)]`.
#[derive(Default)]
pub struct TaskAttr {
    /// The keys shared with operations, parsed as `#[operation]` parses them (`unique` and a `tags` function
    /// excepted: they are below). Every key given is in `base.keys`.
    pub base: OpAttr,
    /// `unique = f` or `unique = "key"`.
    pub unique: Option<KeyAttr>,
    /// `without_overlapping = f` or `without_overlapping = "key"`.
    pub overlap: Option<KeyAttr>,
    /// `rate_limit_key = f`: the rate limits of `middleware` count per key.
    pub rate_key: Option<syn::Path>,
    /// `tags = f`: `fn f(args: &Args) -> Vec<String>`, the run's tags besides the fixed ones.
    pub tags_fn: Option<syn::Path>,
}

impl TaskAttr {
    /// The functions of the module this attribute names, with the key naming each.
    pub fn key_fns(&self) -> Vec<(&'static str, &syn::Path)> {
        let mut out = Vec::new();
        if let Some(KeyAttr::Fn(p)) = &self.unique {
            out.push(("unique", p));
        }
        if let Some(KeyAttr::Fn(p)) = &self.overlap {
            out.push(("without_overlapping", p));
        }
        if let Some(p) = &self.rate_key {
            out.push(("rate_limit_key", p));
        }
        if let Some(p) = &self.tags_fn {
            out.push(("tags", p));
        }
        out
    }
}

/// Parses the tokens inside `#[task(...)]`. Errors go to `errors`; what parsed is kept.
pub fn parse(args: TokenStream, errors: &mut Errors) -> TaskAttr {
    let mut attr = TaskAttr::default();
    let refused = |key: &str| {
        NOT_FOR_TASKS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(k, why)| format!("`{k}` has no meaning for a task: {why}"))
    };
    for entry in keyed_metas(args, "task", TASK_KEYS, &refused, &mut attr.base.keys) {
        if let Err(e) = entry.and_then(|(key, meta)| attr.set(key, &meta)) {
            errors.push(e);
        }
    }
    attr
}

impl TaskAttr {
    fn set(&mut self, key: &'static str, meta: &Meta) -> syn::Result<()> {
        let value = match (key, meta) {
            ("unique" | "without_overlapping" | "rate_limit_key", Meta::NameValue(nv)) => &nv.value,
            ("tags", Meta::NameValue(nv)) if list(&nv.value).is_none() => &nv.value,
            _ => return self.base.set(key, meta),
        };
        let example = match key {
            "unique" => "`unique = customer_key`, where `fn customer_key(args: &Reprice) -> String`, or a fixed key `unique = \"reprice\"`",
            "without_overlapping" => "`without_overlapping = customer_key`, where `fn customer_key(args: &Reprice) -> String`, or a fixed key `without_overlapping = \"reprice\"`",
            "rate_limit_key" => "`rate_limit_key = customer_key`, where `fn customer_key(args: &Reprice) -> String`",
            _ => "`tags = tags_of`, where `fn tags_of(args: &Reprice) -> Vec<String>`, or a list `tags = [\"billing\"]`",
        };
        if let Some(p) = path(value) {
            match key {
                "unique" => self.unique = Some(KeyAttr::Fn(p)),
                "without_overlapping" => self.overlap = Some(KeyAttr::Fn(p)),
                "rate_limit_key" => self.rate_key = Some(p),
                _ => self.tags_fn = Some(p),
            }
            return Ok(());
        }
        match (key, lit_str(value)) {
            ("unique" | "without_overlapping", Some(s)) if !s.value().trim().is_empty() => {
                let fixed = Some(KeyAttr::Fixed(s));
                if key == "unique" {
                    self.unique = fixed;
                } else {
                    self.overlap = fixed;
                }
                Ok(())
            }
            _ => Err(syn::Error::new_spanned(
                value,
                format!("`{key}` of a task expects a function of its data, e.g. {example}"),
            )),
        }
    }
}
