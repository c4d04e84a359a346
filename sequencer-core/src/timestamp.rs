//! Operation timestamps: the order key of every operation.

use std::fmt;

/// The moment an operation was written, its primary order key.
///
/// Stored as the number `YYYYMMDDHHMMSS` (`20240115120000`), so that it compares like the date-time it names
/// and equals the version of an `sqlx` schema migration written at the same second.
///
/// ```
/// use sequencer_core::Timestamp;
/// let ts: Timestamp = "2024_01_15_120000".parse().unwrap();
/// assert_eq!(ts.version(), 20240115120000);
/// assert_eq!(ts.to_string(), "2024_01_15_120000");
/// assert_eq!(ts, "20240115120000".parse().unwrap());
/// assert!("2024_02_30_120000".parse::<Timestamp>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// Why a string is not a [`Timestamp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimestampError {
    /// Neither `YYYY_MM_DD_HHMMSS` nor `YYYYMMDDHHMMSS`.
    Malformed(String),
    /// Well formed, but not a real date-time (for example 30 February).
    Impossible(String, &'static str),
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimestampError::Malformed(s) => write!(
                f,
                "malformed timestamp `{s}`: expected `YYYY_MM_DD_HHMMSS` (e.g. `2024_01_15_120000`) or `YYYYMMDDHHMMSS`"
            ),
            TimestampError::Impossible(s, why) => write!(f, "impossible timestamp `{s}`: {why}"),
        }
    }
}

impl std::error::Error for TimestampError {}

impl Timestamp {
    /// Builds a timestamp from its number `YYYYMMDDHHMMSS` without checking it. Generated code uses this for
    /// values the macro has already validated; everyone else should use [`Timestamp::from_version`] or `parse`.
    #[doc(hidden)]
    pub const fn from_version_unchecked(version: u64) -> Self {
        Timestamp(version)
    }

    /// Builds a timestamp from its number `YYYYMMDDHHMMSS`, checking that it is a real date-time.
    pub fn from_version(version: u64) -> Result<Self, TimestampError> {
        let digits = format!("{version:014}");
        if digits.len() != 14 {
            return Err(TimestampError::Malformed(version.to_string()));
        }
        check_fields(&digits, &version.to_string())?;
        Ok(Timestamp(version))
    }

    /// The number `YYYYMMDDHHMMSS`, comparable with an `sqlx` migration version.
    pub const fn version(self) -> u64 {
        self.0
    }

    /// Calendar fields `(year, month, day, hour, minute, second)`.
    pub const fn fields(self) -> (u32, u32, u32, u32, u32, u32) {
        let v = self.0;
        (
            (v / 10_000_000_000) as u32,
            (v / 100_000_000 % 100) as u32,
            (v / 1_000_000 % 100) as u32,
            (v / 10_000 % 100) as u32,
            (v / 100 % 100) as u32,
            (v % 100) as u32,
        )
    }

    /// The timestamp of a moment given as seconds since the Unix epoch (UTC); `None` outside years 1–9999.
    pub fn from_unix_seconds(secs: i64) -> Option<Self> {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        if !(1..=9999).contains(&y) {
            return None;
        }
        let (h, mi, s) = (rem / 3600, rem / 60 % 60, rem % 60);
        let v = y as u64 * 10_000_000_000
            + m as u64 * 100_000_000
            + d as u64 * 1_000_000
            + (h * 10_000 + mi * 100 + s) as u64;
        Some(Timestamp(v))
    }

    /// Seconds since the Unix epoch, reading the timestamp as UTC.
    pub fn unix_seconds(self) -> i64 {
        let (y, mo, d, h, mi, s) = self.fields();
        days_from_civil(y as i64, mo, d) * 86_400 + (h * 3600 + mi * 60 + s) as i64
    }
}

impl fmt::Display for Timestamp {
    /// The canonical form `YYYY_MM_DD_HHMMSS`, used in ledger names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s) = self.fields();
        write!(f, "{y:04}_{mo:02}_{d:02}_{h:02}{mi:02}{s:02}")
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = match s.len() {
            17 => {
                let b = s.as_bytes();
                if b[4] != b'_' || b[7] != b'_' || b[10] != b'_' {
                    return Err(TimestampError::Malformed(s.to_owned()));
                }
                [&s[0..4], &s[5..7], &s[8..10], &s[11..17]].concat()
            }
            14 => s.to_owned(),
            _ => return Err(TimestampError::Malformed(s.to_owned())),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimestampError::Malformed(s.to_owned()));
        }
        check_fields(&digits, s)?;
        digits
            .parse()
            .map(Timestamp)
            .map_err(|_| TimestampError::Malformed(s.to_owned()))
    }
}

fn check_fields(digits: &str, shown: &str) -> Result<(), TimestampError> {
    let num = |r: std::ops::Range<usize>| digits[r].parse::<u32>().unwrap_or(u32::MAX);
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    let (hour, minute, second) = (num(8..10), num(10..12), num(12..14));
    let impossible = |why| Err(TimestampError::Impossible(shown.to_owned(), why));
    if year == 0 {
        return impossible("year 0000 does not exist");
    }
    if !(1..=12).contains(&month) {
        return impossible("month must be 01 to 12");
    }
    if day == 0 || day > days_in_month(year, month) {
        return impossible("that month has no such day");
    }
    if hour > 23 {
        return impossible("hour must be 00 to 23");
    }
    if minute > 59 {
        return impossible("minute must be 00 to 59");
    }
    if second > 59 {
        return impossible("second must be 00 to 59");
    }
    Ok(())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_to_the_same_version() {
        let a: Timestamp = "2024_01_15_120000".parse().unwrap();
        let b: Timestamp = "20240115120000".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.version(), 20240115120000);
        assert_eq!(a.to_string(), "2024_01_15_120000");
    }

    #[test]
    fn leap_days() {
        assert!("2024_02_29_000000".parse::<Timestamp>().is_ok());
        assert!("2000_02_29_000000".parse::<Timestamp>().is_ok());
        assert!(matches!(
            "2023_02_29_000000".parse::<Timestamp>(),
            Err(TimestampError::Impossible(..))
        ));
        assert!(matches!(
            "1900_02_29_000000".parse::<Timestamp>(),
            Err(TimestampError::Impossible(..))
        ));
    }

    #[test]
    fn rejects_malformed_and_impossible() {
        for bad in [
            "2024-01-15 12:00:00",
            "2024_01_15",
            "2024_01_15_12000x",
            "",
            "2024_01_15-120000",
        ] {
            assert!(
                matches!(bad.parse::<Timestamp>(), Err(TimestampError::Malformed(_))),
                "{bad}"
            );
        }
        for bad in [
            "2024_13_01_000000",
            "2024_04_31_000000",
            "2024_01_01_240000",
            "2024_01_01_236000",
            "2024_01_01_000060",
            "0000_01_01_000000",
        ] {
            assert!(
                matches!(
                    bad.parse::<Timestamp>(),
                    Err(TimestampError::Impossible(..))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ordering_follows_time() {
        let a: Timestamp = "2023_12_31_235959".parse().unwrap();
        let b: Timestamp = "2024_01_01_000000".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.unix_seconds() - a.unix_seconds(), 1);
        assert_eq!(
            "1970_01_01_000000"
                .parse::<Timestamp>()
                .unwrap()
                .unix_seconds(),
            0
        );
    }

    #[test]
    fn unix_seconds_round_trip() {
        for ts in [
            "1970_01_01_000000",
            "2000_02_29_235959",
            "2024_01_15_120000",
            "2099_12_31_000001",
        ] {
            let t: Timestamp = ts.parse().unwrap();
            assert_eq!(
                Timestamp::from_unix_seconds(t.unix_seconds()),
                Some(t),
                "{ts}"
            );
        }
    }

    #[test]
    fn from_version_checks() {
        assert!(Timestamp::from_version(20240115120000).is_ok());
        assert!(Timestamp::from_version(20240230120000).is_err());
        assert!(Timestamp::from_version(2024).is_err());
    }
}
