//! trybuild cases of sequencer's macros live in tests/ui.
