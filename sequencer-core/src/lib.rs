//! Shared core of the `sequencer` crate: timestamps, operation metadata and the
//! dependency-graph validator.
//!
//! This crate is small and free of async and database dependencies. The `sequencer-macros` crate calls it at
//! compile time (with the `codegen` feature, which adds the attribute parser and code generator) and the
//! runtime calls the very same [`graph::validate`] at start-up, so a registry assembled at run time is held to
//! the same rules as one checked by the compiler.
#![warn(missing_docs)]

#[cfg(feature = "codegen")]
pub mod codegen;
pub mod graph;
pub mod meta;
pub mod suggest;
mod time;
mod timestamp;
mod zone;

pub use graph::{validate, GraphError, OpNode, Plan};
pub use meta::{
    Backoff, Dependency, Hooks, Middleware, OperationMeta, RetryPolicy, Schedule, SourceLocation,
    Unique,
};
pub use time::{parse_duration, parse_execute_at, DurationError};
pub use timestamp::{Timestamp, TimestampError};
pub use zone::{
    check_time_zone, format_in_zone, next_time_of_day, next_time_of_day_in, split_zoned_time,
    ZonedTime,
};
