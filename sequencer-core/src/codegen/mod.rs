//! Parsing, checking and code generation behind `sequencer-macros` (feature `codegen`).
//!
//! The proc-macro crate is a thin shim over the two entry points here, so all of this can be unit-tested with
//! `proc_macro2` tokens. The flow is thiserror's: parse ([`attr`], [`middleware`] and [`lit`] into the [`model`])
//! → check ([`check`]) → expand ([`expand`]), with every error collected ([`errors`]) and reported together, and
//! the user's functions always emitted. [`module`] runs it for `#[operations] mod ops { ... }`, [`dir`] for a
//! directory of operation files.

pub mod attr;
pub mod check;
pub mod check_task;
pub mod dir;
pub mod errors;
pub mod expand;
pub mod expand_task;
pub mod lit;
pub mod middleware;
pub mod model;
pub mod module;
pub mod task_attr;

pub use dir::operation_in_file;
pub use errors::Errors;
pub use model::{crate_path, is_operation_attr, is_task_attr};
pub use module::{operations_module, task_outside_module};
