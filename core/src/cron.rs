//! Cron schedules for `aegis.schedule_retention()` when pg_cron is not
//! installed: the standard five fields (minute hour day-of-month month
//! day-of-week) with `*`, `a`, `a-b`, `*/n`, `a-b/n` and comma lists, month
//! and weekday names (`jan`, `mon`), 7 as Sunday, and the macros `@hourly`,
//! `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`).
//! As in cron, when both day fields are restricted a day matching either
//! one matches. Times are UTC, like pg_cron's default.

use crate::CoreError;

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn err(reason: impl Into<String>) -> CoreError {
    CoreError::CronSchedule {
        reason: reason.into(),
    }
}

fn value(
    s: &str,
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    name_base: u32,
) -> Result<u32, CoreError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(name_base + i as u32);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| err(format!("{field}: \"{s}\" is not a number")))?;
    if v < lo || v > hi {
        return Err(err(format!("{field}: {v} is outside {lo}-{hi}")));
    }
    Ok(v)
}

/// Parse one field into a bit set; returns (bits, restricted).
fn field(
    s: &str,
    field_name: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(u64, bool), CoreError> {
    let mut bits = 0u64;
    let mut restricted = false;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st
                    .parse()
                    .map_err(|_| err(format!("{field_name}: step \"{st}\" is not a number")))?;
                if st == 0 {
                    return Err(err(format!("{field_name}: a step must be at least 1")));
                }
                (r, st)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, field_name, lo, hi, names, name_base)?;
            let b = value(b, field_name, lo, hi, names, name_base)?;
            if a > b {
                return Err(err(format!("{field_name}: range {a}-{b} runs backwards")));
            }
            (a, b)
        } else if range.is_empty() {
            return Err(err(format!("{field_name}: empty list element")));
        } else {
            let a = value(range, field_name, lo, hi, names, name_base)?;
            // "a/n" means from a to the end in steps of n, as in cron.
            (a, if step > 1 { hi } else { a })
        };
        if range != "*" || step > 1 {
            restricted = true;
        }
        let mut v = a;
        while v <= b {
            bits |= 1u64 << v;
            v += step;
        }
    }
    Ok((bits, restricted))
}

impl Schedule {
    /// Parse a schedule; errors name the field and what is wrong with it.
    pub fn parse(spec: &str) -> Result<Schedule, CoreError> {
        let spec = spec.trim();
        let expanded = match spec.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            s if s.starts_with('@') => return Err(err(format!("unknown macro \"{spec}\""))),
            _ => spec.to_string(),
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            )));
        }
        let (minutes, _) = field(parts[0], "minute", 0, 59, &[], 0)?;
        let (hours, _) = field(parts[1], "hour", 0, 23, &[], 0)?;
        let (days, days_restricted) = field(parts[2], "day of month", 1, 31, &[], 0)?;
        let (months, _) = field(parts[3], "month", 1, 12, &MONTHS, 1)?;
        let (mut weekdays, weekdays_restricted) =
            field(parts[4], "day of week", 0, 7, &WEEKDAYS, 0)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        let s = Schedule {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            days_restricted,
            weekdays_restricted,
        };
        // A schedule that never fires (30 February) is a mistake, not a plan.
        if s.next_after(0).is_none() {
            return Err(err(format!("\"{spec}\" never fires")));
        }
        Ok(s)
    }

    fn day_matches(&self, day: u32, month: u32, weekday: u32) -> bool {
        if self.months & (1 << month) == 0 {
            return false;
        }
        let d = self.days & (1 << day) != 0;
        let w = self.weekdays & (1 << weekday) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => d || w,
            (true, false) => d,
            (false, true) => w,
            (false, false) => true,
        }
    }

    /// The first matching minute strictly after `unix_secs` (UTC), as Unix
    /// seconds; None if nothing matches within eight years.
    pub fn next_after(&self, unix_secs: i64) -> Option<i64> {
        let start_min = unix_secs.div_euclid(60) + 1;
        let first_day = start_min.div_euclid(1440);
        let mut minute_of_day = start_min.rem_euclid(1440);
        for day in first_day..first_day + 366 * 8 {
            let (_, month, dom) = civil_from_days(day);
            let weekday = (day + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            if self.day_matches(dom, month, weekday) {
                for m in minute_of_day..1440 {
                    let (h, mi) = ((m / 60) as u32, (m % 60) as u32);
                    if self.hours & (1 << h) != 0 && self.minutes & (1u64 << mi) != 0 {
                        return Some((day * 1440 + m) * 60);
                    }
                }
            }
            minute_of_day = 0;
        }
        None
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 2026-11-22 23:30:00 UTC, a Sunday.
    const T: i64 = 1_795_390_200;

    fn next(spec: &str, t: i64) -> i64 {
        Schedule::parse(spec).unwrap().next_after(t).unwrap()
    }

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(T / 86_400), (2026, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn common_schedules() {
        assert_eq!(next("* * * * *", T), T + 60);
        assert_eq!(next("*/15 * * * *", T), T + 15 * 60); // 23:45
        assert_eq!(next("0 3 * * *", T), T + 3 * 3600 + 30 * 60); // 03:00 next day
        assert_eq!(next("@daily", T), T + 30 * 60);
        assert_eq!(next("@hourly", T), T + 30 * 60);
        assert_eq!(next("30 23 * * *", T), T + 86_400); // not the current minute
                                                        // Weekly on Monday 02:00 (tomorrow), also spelled mon and 1-1.
        let monday = T + 30 * 60 + 2 * 3600;
        assert_eq!(next("0 2 * * 1", T), monday);
        assert_eq!(next("0 2 * * MON", T), monday);
        // Sunday as 0 or 7: the next Sunday 00:00 is a week after today's.
        assert_eq!(next("0 0 * * 7", T), next("0 0 * * 0", T));
        // Monthly on the 1st: 2026-12-01 00:00.
        assert_eq!(next("@monthly", T), T + 30 * 60 + 8 * 86_400);
        // 29 February: the next one is in 2028.
        let leap = next("0 0 29 2 *", T);
        assert_eq!(civil_from_days(leap / 86_400), (2028, 2, 29));
    }

    #[test]
    fn day_fields_are_or_when_both_restricted() {
        // The 1st of the month or any Monday: tomorrow (Monday 23 Nov).
        assert_eq!(next("0 0 1 * 1", T), T + 30 * 60);
        // Only the 1st when the weekday field is *.
        assert_eq!(next("0 0 1 * *", T), T + 30 * 60 + 8 * 86_400);
    }

    #[test]
    fn errors_name_the_problem() {
        for (spec, needle) in [
            ("", "expected 5 fields"),
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("* 24 * * *", "hour: 24"),
            ("* * 0 * *", "day of month: 0"),
            ("* * * 13 *", "month: 13"),
            ("* * * * 8", "day of week: 8"),
            ("*/0 * * * *", "step must be at least 1"),
            ("5-1 * * * *", "runs backwards"),
            ("a * * * *", "is not a number"),
            ("1,,2 * * * *", "empty list element"),
            ("0 0 30 2 *", "never fires"),
            ("@fortnightly", "unknown macro"),
            ("0 0 * * *; DROP TABLE x", "expected 5 fields"),
        ] {
            let e = Schedule::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec:?}: {e}");
        }
    }

    proptest! {
        // next_after is strictly later, on a minute boundary, within the
        // window, and nothing in between matches (checked minute by minute
        // against a direct evaluation of the fields).
        #[test]
        fn next_is_the_first_match(
            minute in prop::sample::select(vec!["*", "0", "*/7", "5-20/5", "59"]),
            hour in prop::sample::select(vec!["*", "0", "3", "*/6", "22-23"]),
            dom in prop::sample::select(vec!["*", "1", "15", "31", "10-12"]),
            dow in prop::sample::select(vec!["*", "0", "1-5", "sat"]),
            t in 0i64..4_000_000_000,
        ) {
            let spec = format!("{minute} {hour} {dom} * {dow}");
            let s = Schedule::parse(&spec).unwrap();
            let n = s.next_after(t).unwrap();
            prop_assert!(n > t);
            prop_assert_eq!(n % 60, 0);
            let matches = |u: i64| {
                let day = u.div_euclid(86_400);
                let (_, mo, d) = civil_from_days(day);
                let wd = (day + 4).rem_euclid(7) as u32;
                let mi = u.rem_euclid(86_400);
                s.day_matches(d, mo, wd)
                    && s.hours & (1 << (mi / 3600)) != 0
                    && s.minutes & (1u64 << ((mi % 3600) / 60)) != 0
            };
            prop_assert!(matches(n));
            let mut u = (t.div_euclid(60) + 1) * 60;
            let mut steps = 0;
            while u < n && steps < 100_000 {
                prop_assert!(!matches(u), "{} matches before {}", u, n);
                u += 60;
                steps += 1;
            }
        }
    }
}
