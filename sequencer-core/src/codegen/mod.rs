//! Parsing and code generation for the macros.
