//! Timestamps as the API writes them (`2016-04-20T01:14:04.737Z`) and dates
//! (`1985-03-02`), formatted and parsed without allocation.
//!
//! Internally an instant is milliseconds since the Unix epoch (`i64`) and a
//! date is days since the epoch. The civil-calendar conversions are Howard
//! Hinnant's `days_from_civil` / `civil_from_days`.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::textbuf::TextBuf;

pub(crate) const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of days since 1970-01-01.
pub(crate) const fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Milliseconds since the epoch of a UTC civil time.
pub(crate) const fn ms_of(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, ms: i64) -> i64 {
    days_from_civil(y, mo, d) * MS_PER_DAY + ((h * 60 + mi) * 60 + s) * 1000 + ms
}

/// An instant, displayed and serialised as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ts(pub i64);

impl Ts {
    fn text(self) -> TextBuf<32> {
        let days = self.0.div_euclid(MS_PER_DAY);
        let rem = self.0.rem_euclid(MS_PER_DAY) as u64;
        let mut b = date_text(days);
        b.push_byte(b'T')
            .push_padded(rem / 3_600_000, 2)
            .push_byte(b':')
            .push_padded(rem / 60_000 % 60, 2)
            .push_byte(b':')
            .push_padded(rem / 1000 % 60, 2)
            .push_byte(b'.')
            .push_padded(rem % 1000, 3)
            .push_byte(b'Z');
        b
    }
}

fn date_text(days: i64) -> TextBuf<32> {
    let (y, m, d) = civil_from_days(days);
    let mut b = TextBuf::new();
    b.push_padded(y.clamp(0, 9999) as u64, 4)
        .push_byte(b'-')
        .push_padded(m as u64, 2)
        .push_byte(b'-')
        .push_padded(d as u64, 2);
    b
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str().unwrap_or_default())
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text().as_str().unwrap_or_default())
    }
}

/// A calendar date (days since the epoch), displayed as `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Date(pub i64);

impl Date {
    pub(crate) const fn of_ms(ms: i64) -> Self {
        Self(ms.div_euclid(MS_PER_DAY))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(date_text(self.0).as_str().unwrap_or_default())
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(date_text(self.0).as_str().unwrap_or_default())
    }
}

/// The simulator's clock: wall-clock now, in milliseconds since the epoch.
/// Everything the simulator stamps (writes, tokens, the request log) reads
/// it, and so does the day its world is placed at when none is fixed
/// ([`crate::SimConfig::today`]).
pub(crate) fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// The Julian day of 1970-01-01.
const EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// Days since 1970-01-01 of a calendar date.
pub(crate) fn days_of_date(date: time::Date) -> i64 {
    i64::from(date.to_julian_day()) - EPOCH_JULIAN_DAY
}

/// The calendar date of days since 1970-01-01, if `time` can hold it.
pub(crate) fn date_of_days(days: i64) -> Option<time::Date> {
    let julian = i32::try_from(days.checked_add(EPOCH_JULIAN_DAY)?).ok()?;
    time::Date::from_julian_day(julian).ok()
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    let mut v = 0i64;
    for c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Parses an ISO-8601 date or date-time into milliseconds since the epoch:
/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`, `...:SS`, `...:SS.f{1,9}`, followed by
/// `Z`, `±HH:MM`, `±HHMM` or nothing (UTC). A space stands for `+` in the
/// offset, because an unencoded `+` in a query string decodes to a space.
pub(crate) fn parse_instant(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let y = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let mo = digits(b, 5, 2)?;
    let d = digits(b, 8, 2)?;
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    if b.len() == 10 {
        return Some(ms_of(y, mo, d, 0, 0, 0, 0));
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let h = digits(b, 11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let mi = digits(b, 14, 2)?;
    let mut i = 16;
    let mut sec = 0;
    let mut ms = 0;
    if b.get(i) == Some(&b':') {
        sec = digits(b, i + 1, 2)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let frac = b.get(start..i)?;
            if frac.is_empty() || frac.len() > 9 {
                return None;
            }
            for (k, c) in frac.iter().take(3).enumerate() {
                ms += i64::from(c - b'0') * [100, 10, 1][k];
            }
        }
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(c @ (b'+' | b'-' | b' ')) => {
            let sign = if *c == b'-' { -1 } else { 1 };
            let oh = digits(b, i + 1, 2)?;
            let om = match b.get(i + 3) {
                Some(b':') if b.len() == i + 6 => digits(b, i + 4, 2)?,
                Some(_) if b.len() == i + 5 => digits(b, i + 3, 2)?,
                None => 0,
                _ => return None,
            };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    Some(ms_of(y, mo, d, h, mi, sec, ms) - offset_min * 60_000)
}

const fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_api_and_agrees_with_the_time_crate() {
        assert_eq!(
            Ts(1_461_114_844_737).to_string(),
            "2016-04-20T01:14:04.737Z"
        );
        assert_eq!(Ts(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Date(0).to_string(), "1970-01-01");
        let mut ms = 0i64;
        while ms < 4_000_000_000_000 {
            let ours = Ts(ms).to_string();
            let Ok(theirs) =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            else {
                panic!("time rejected {ms}");
            };
            assert_eq!(
                ours[..19],
                theirs
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()[..19],
                "at {ms}"
            );
            assert_eq!(parse_instant(&ours), Some(ms));
            ms += 987_654_321_123;
        }
    }

    #[test]
    fn calendar_dates_convert_both_ways() {
        for (y, m, d) in [(1970, 1, 1), (2016, 4, 20), (2024, 2, 29), (2026, 12, 4)] {
            let days = days_from_civil(y, m, d);
            let Some(date) = date_of_days(days) else {
                panic!("{y}-{m}-{d} out of range");
            };
            assert_eq!(
                (
                    i64::from(date.year()),
                    date.month() as i64,
                    i64::from(date.day())
                ),
                (y, m, d)
            );
            assert_eq!(days_of_date(date), days);
            assert_eq!(Date(days).to_string(), date.to_string());
        }
        assert_eq!(date_of_days(i64::MAX), None);
    }

    #[test]
    fn parses_dates_offsets_and_rejects_garbage() {
        let base = ms_of(2026, 11, 20, 0, 0, 0, 0);
        assert_eq!(parse_instant("2026-11-20"), Some(base));
        assert_eq!(parse_instant("2026-11-20T00:00:00Z"), Some(base));
        assert_eq!(parse_instant("2026-11-20T00:00:00.000Z"), Some(base));
        assert_eq!(parse_instant("2026-11-20T01:00:00.000+01:00"), Some(base));
        assert_eq!(parse_instant("2026-11-20T01:00:00.000 01:00"), Some(base));
        assert_eq!(parse_instant("2026-11-19T23:00:00-0100"), Some(base));
        assert_eq!(parse_instant("2026-11-20T00:00:00.5Z"), Some(base + 500));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-11-20T25:00:00Z",
            "2026-11-20Tx",
            "2026-11-20T00:00:00.Z",
            "2026-11-20T00:00:00ZZ",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }
}
