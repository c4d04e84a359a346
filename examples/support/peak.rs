//! This process's peak resident memory, shared by the examples that print it (`backfill`, `bench`) through
//! `#[path]`.

/// This process's peak resident memory (VmHWM), KiB; 0 where `/proc` does not say.
pub(crate) fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
