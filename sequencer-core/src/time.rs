//! Durations and due times as the attributes write them.

use std::fmt;
use std::time::Duration;

use crate::meta::Schedule;

/// Why a string is not a duration or a due time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError(pub String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DurationError {}

/// Parses a humantime duration such as `"90s"`, `"2m"`, `"1h 30m"` or `"500ms"`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(sequencer_core::parse_duration("2m").unwrap(), Duration::from_secs(120));
/// assert!(sequencer_core::parse_duration("2 fortnights").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        DurationError(format!("invalid duration `{s}`: {e}; write e.g. `\"30s\"`, `\"2m\"`, `\"1h 30m\"`, or a number of seconds"))
    })
}

/// Parses `execute_at`: a time of day `"HH:MM"` / `"HH:MM:SS"` (UTC), or an RFC 3339 instant
/// `"2026-12-01T02:00:00Z"`.
///
/// ```
/// use sequencer_core::{parse_execute_at, Schedule};
/// assert_eq!(parse_execute_at("02:00").unwrap(), Schedule::TimeOfDay { hour: 2, minute: 0, second: 0 });
/// assert!(matches!(parse_execute_at("2026-12-01T02:00:00Z").unwrap(), Schedule::At(1_796_090_400)));
/// assert!(parse_execute_at("25:00").is_err());
/// ```
pub fn parse_execute_at(s: &str) -> Result<Schedule, DurationError> {
    if s.contains('T') || s.contains(' ') && s.len() > 8 {
        let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
            DurationError(format!(
                "invalid `execute_at` instant `{s}`: {e}; write e.g. `\"2026-12-01T02:00:00Z\"`"
            ))
        })?;
        let secs = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        return Ok(Schedule::At(secs));
    }
    let bad = || {
        DurationError(format!("invalid `execute_at` time `{s}`: expected `\"HH:MM\"` or `\"HH:MM:SS\"` (UTC, 00:00 to 23:59:59) or an instant like `\"2026-12-01T02:00:00Z\"`"))
    };
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let num = |i: usize| {
        parts
            .get(i)
            .map_or(Ok(0), |p| p.parse::<u8>())
            .map_err(|_| bad())
    };
    let (hour, minute, second) = (num(0)?, num(1)?, num(2)?);
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    Ok(Schedule::TimeOfDay {
        hour,
        minute,
        second,
    })
}
