//! When the nightly role applies a practice's captured deletes (issue 13).
//!
//! A practice's **processing window** is a span of local wall-clock time,
//! `[start, end)` in minutes after local midnight: 01:00 to 05:00 by
//! default. A window whose end is before its start crosses midnight
//! (23:00 to 02:00 is open from 23:00 until 02:00 the next day).
//!
//! The window is read on the wall clock of the practice's **time zone**,
//! chosen by [`Zone::choose`]:
//!
//! 1. the time zone of the practice's location record, as Ascend gives it
//!    (`timezone`, e.g. `America/Chicago`), when it names a known zone;
//! 2. else the practice's own setting (`practice window --time-zone`);
//! 3. else UTC.
//!
//! Daylight saving time follows the wall clock: on the night clocks spring
//! forward, a 01:00 to 05:00 window is open three hours (02:00 to 03:00
//! does not happen); on the night they fall back it is open five (01:00 to
//! 02:00 happens twice). A window never opens twice the same night and is
//! never skipped.
//!
//! Time zone names are looked up in the tz database compiled into the
//! program (`jiff`, bundled), so a container without `/usr/share/zoneinfo`
//! reads them the same.

use std::fmt;

use jiff::tz::TimeZone;
use model::PracticeStatus;
use time::OffsetDateTime;

/// Minutes in a day.
const DAY_MINUTES: u16 = 24 * 60;

/// A processing window: `[start, end)` in minutes after local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: u16,
    end: u16,
}

/// A window or a time of day that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// A time of day that is not `HH:MM` from 00:00 to 23:59.
    #[error("{0:?} is not a time of day: give HH:MM, from 00:00 to 23:59 (e.g. 01:00)")]
    BadTime(String),
    /// A minute count outside one day.
    #[error("{0} minutes after midnight is not a time of day (0 to 1439)")]
    BadMinute(i64),
    /// Start and end equal: an empty (or whole-day) window is ambiguous.
    #[error(
        "the window starts and ends at the same time ({0}); give an end after the start, or \
         before it for a window that crosses midnight"
    )]
    Empty(String),
}

impl Window {
    /// 01:00 to 05:00.
    pub const DEFAULT: Window = Window {
        start: 60,
        end: 300,
    };

    /// A window from `start` to `end` minutes after local midnight.
    pub fn new(start: i64, end: i64) -> Result<Window, WindowError> {
        let minute = |m: i64| {
            u16::try_from(m)
                .ok()
                .filter(|m| *m < DAY_MINUTES)
                .ok_or(WindowError::BadMinute(m))
        };
        let (start, end) = (minute(start)?, minute(end)?);
        if start == end {
            return Err(WindowError::Empty(hhmm(start)));
        }
        Ok(Window { start, end })
    }

    /// Its start, in minutes after local midnight.
    pub fn start_minute(self) -> u16 {
        self.start
    }

    /// Its end (excluded), in minutes after local midnight.
    pub fn end_minute(self) -> u16 {
        self.end
    }

    /// Whether it crosses midnight.
    pub fn crosses_midnight(self) -> bool {
        self.end < self.start
    }

    /// Whether a local wall-clock minute of the day is inside it.
    pub fn contains_minute(self, minute: u16) -> bool {
        if self.crosses_midnight() {
            minute >= self.start || minute < self.end
        } else {
            minute >= self.start && minute < self.end
        }
    }

    /// Whether the window is open at `at` on `zone`'s wall clock.
    pub fn is_open(self, zone: &Zone, at: OffsetDateTime) -> bool {
        self.contains_minute(zone.local_minute(at))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", hhmm(self.start), hhmm(self.end))
    }
}

/// `HH:MM` of a minute of the day.
pub fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// Reads `HH:MM` (or `H:MM`), 00:00 to 23:59, as minutes after midnight.
pub fn parse_hhmm(text: &str) -> Result<u16, WindowError> {
    let bad = || WindowError::BadTime(text.chars().take(32).collect());
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let digits = |s: &str, max: u16| {
        (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
            .filter(|n| *n <= max)
    };
    let h = digits(h, 23).ok_or_else(bad)?;
    let m = digits(m, 59).filter(|_| m.len() == 2).ok_or_else(bad)?;
    Ok(h * 60 + m)
}

/// A name that is not a time zone of the tz database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a time zone of the tz database; give an IANA name such as America/Chicago \
     or UTC"
)]
pub struct UnknownTimeZone(pub String);

/// Checks a time zone name against the bundled tz database; returns its
/// canonical spelling.
pub fn parse_time_zone(name: &str) -> Result<String, UnknownTimeZone> {
    let name = name.trim();
    let unknown = || UnknownTimeZone(name.chars().take(64).collect());
    if name.is_empty() {
        return Err(unknown());
    }
    let zone = TimeZone::get(name).map_err(|_| unknown())?;
    Ok(zone.iana_name().unwrap_or(name).to_owned())
}

/// Where a practice's time zone came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneSource {
    /// Its location record in Ascend.
    Location,
    /// The practice's own setting.
    Setting,
    /// Neither gave a known zone.
    Utc,
}

impl ZoneSource {
    /// `location`, `setting` or `utc`.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneSource::Location => "location",
            ZoneSource::Setting => "setting",
            ZoneSource::Utc => "utc",
        }
    }
}

/// The time zone a practice's window is read in.
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
    name: String,
    source: ZoneSource,
}

impl Zone {
    /// The location record's zone when it names a known one, else the
    /// practice's setting when it does, else UTC (see the module's doc).
    pub fn choose(location: Option<&str>, setting: Option<&str>) -> Zone {
        let known = |name: Option<&str>| {
            let name = name?.trim();
            if name.is_empty() {
                return None;
            }
            TimeZone::get(name).ok().map(|tz| (tz, name.to_owned()))
        };
        if let Some((tz, name)) = known(location) {
            return Zone {
                tz,
                name,
                source: ZoneSource::Location,
            };
        }
        if let Some((tz, name)) = known(setting) {
            return Zone {
                tz,
                name,
                source: ZoneSource::Setting,
            };
        }
        Zone::utc()
    }

    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            tz: TimeZone::UTC,
            name: "UTC".to_owned(),
            source: ZoneSource::Utc,
        }
    }

    /// Its name, e.g. `America/Chicago`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it came from.
    pub fn source(&self) -> ZoneSource {
        self.source
    }

    /// The wall-clock minute of the day at `at` in this zone.
    pub fn local_minute(&self, at: OffsetDateTime) -> u16 {
        // Outside jiff's range (years -9999 to 9999, far beyond any clock
        // this runs on): read the instant as UTC.
        let local = jiff::Timestamp::new(at.unix_timestamp(), 0)
            .map(|ts| ts.to_zoned(self.tz.clone()).time())
            .unwrap_or_else(|_| {
                let utc = at.to_offset(time::UtcOffset::UTC);
                jiff::civil::Time::constant(
                    i8::try_from(utc.hour()).unwrap_or(0),
                    i8::try_from(utc.minute()).unwrap_or(0),
                    0,
                    0,
                )
            });
        let hour = u16::try_from(local.hour()).unwrap_or(0);
        let minute = u16::try_from(local.minute()).unwrap_or(0);
        hour * 60 + minute
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from the {})", self.name, self.source.as_str())
    }
}

/// Why a practice's captured deletes are not applied now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Paused, removed or `auth_failed`: its data is left as it is.
    NotSyncing(PracticeStatus),
    /// Outside its processing window.
    WindowClosed,
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::NotSyncing(status) => {
                write!(f, "the practice is {status}: its data is left as it is")
            }
            Hold::WindowClosed => f.write_str("outside its processing window"),
        }
    }
}

/// Whether a nightly pass applies a practice's captured deletes at `at`:
/// only a syncing practice (initial sync or active; a paused, removed or
/// `auth_failed` practice's data is left as it is), and only inside its
/// window unless `ignore_window` (operators, tests).
pub fn admit(
    status: PracticeStatus,
    window: Window,
    zone: &Zone,
    at: OffsetDateTime,
    ignore_window: bool,
) -> Result<(), Hold> {
    if !status.is_syncing() {
        return Err(Hold::NotSyncing(status));
    }
    if !ignore_window && !window.is_open(zone, at) {
        return Err(Hold::WindowClosed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn window(start: &str, end: &str) -> Window {
        Window::new(
            i64::from(parse_hhmm(start).expect("start")),
            i64::from(parse_hhmm(end).expect("end")),
        )
        .expect("window")
    }

    #[test]
    fn times_of_day_are_read_strictly() {
        assert_eq!(parse_hhmm("01:00"), Ok(60));
        assert_eq!(parse_hhmm("1:00"), Ok(60));
        assert_eq!(parse_hhmm(" 23:59 "), Ok(1439));
        assert_eq!(parse_hhmm("00:00"), Ok(0));
        for bad in [
            "", "24:00", "12:60", "12:5", "1200", "-1:00", "a:00", "12:00:00", "123:00",
        ] {
            assert!(
                matches!(parse_hhmm(bad), Err(WindowError::BadTime(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(Window::new(60, 60), Err(WindowError::Empty(_))));
        assert!(matches!(
            Window::new(-1, 60),
            Err(WindowError::BadMinute(-1))
        ));
        assert!(matches!(
            Window::new(0, 1440),
            Err(WindowError::BadMinute(1440))
        ));
        assert_eq!(Window::DEFAULT.to_string(), "01:00 to 05:00");
    }

    #[test]
    fn a_window_is_start_inclusive_end_exclusive() {
        let w = Window::DEFAULT;
        assert!(!w.contains_minute(59));
        assert!(w.contains_minute(60));
        assert!(w.contains_minute(299));
        assert!(!w.contains_minute(300));
        assert!(!w.crosses_midnight());
    }

    #[test]
    fn a_window_may_cross_midnight() {
        let w = window("23:00", "02:00");
        assert!(w.crosses_midnight());
        for open in ["23:00", "23:59", "00:00", "01:59"] {
            assert!(w.contains_minute(parse_hhmm(open).expect("t")), "{open}");
        }
        for closed in ["02:00", "12:00", "22:59"] {
            assert!(
                !w.contains_minute(parse_hhmm(closed).expect("t")),
                "{closed}"
            );
        }
    }

    #[test]
    fn the_window_is_read_on_the_practices_wall_clock() {
        let chicago = Zone::choose(Some("America/Chicago"), None);
        assert_eq!(chicago.source(), ZoneSource::Location);
        // 07:30 UTC in January is 01:30 in Chicago (CST, UTC-6): open.
        assert!(Window::DEFAULT.is_open(&chicago, datetime!(2026-01-15 07:30 UTC)));
        // 05:30 UTC is 23:30 the day before: closed.
        assert!(!Window::DEFAULT.is_open(&chicago, datetime!(2026-01-15 05:30 UTC)));
        // In UTC, 01:30 UTC is open and 07:30 is not.
        let utc = Zone::utc();
        assert!(Window::DEFAULT.is_open(&utc, datetime!(2026-01-15 01:30 UTC)));
        assert!(!Window::DEFAULT.is_open(&utc, datetime!(2026-01-15 07:30 UTC)));
    }

    #[test]
    fn daylight_saving_follows_the_wall_clock() {
        let chicago = Zone::choose(None, Some("America/Chicago"));
        assert_eq!(chicago.source(), ZoneSource::Setting);
        // Summer (CDT, UTC-5): 06:30 UTC is 01:30 local: open; in winter
        // the same UTC time is 00:30: closed.
        assert!(Window::DEFAULT.is_open(&chicago, datetime!(2026-07-15 06:30 UTC)));
        assert!(!Window::DEFAULT.is_open(&chicago, datetime!(2026-01-15 06:30 UTC)));
        // Spring forward, 2026-03-08: 01:59 CST is 07:59 UTC; a minute
        // later it is 03:00 CDT. The window 01:00-05:00 is open throughout
        // and closes at 05:00 CDT (10:00 UTC): three hours that night.
        assert!(Window::DEFAULT.is_open(&chicago, datetime!(2026-03-08 07:00 UTC)));
        assert!(Window::DEFAULT.is_open(&chicago, datetime!(2026-03-08 08:00 UTC)));
        assert!(Window::DEFAULT.is_open(&chicago, datetime!(2026-03-08 09:59 UTC)));
        assert!(!Window::DEFAULT.is_open(&chicago, datetime!(2026-03-08 10:00 UTC)));
        // A window inside the skipped hour (02:00-03:00) is never open
        // that night: its minutes do not happen.
        let skipped = window("02:00", "03:00");
        for minute in 0..(4 * 60) {
            let at = datetime!(2026-03-08 06:00 UTC) + time::Duration::minutes(minute);
            assert!(!skipped.is_open(&chicago, at), "{at}");
        }
        // Fall back, 2026-11-01: 01:00-02:00 happens twice (06:00-07:00
        // UTC in CDT, 07:00-08:00 UTC in CST); the window is open in both
        // and closes at 05:00 CST (11:00 UTC): five hours that night.
        assert!(Window::DEFAULT.is_open(&chicago, datetime!(2026-11-01 06:30 UTC)));
        assert!(Window::DEFAULT.is_open(&chicago, datetime!(2026-11-01 07:30 UTC)));
        assert!(Window::DEFAULT.is_open(&chicago, datetime!(2026-11-01 10:59 UTC)));
        assert!(!Window::DEFAULT.is_open(&chicago, datetime!(2026-11-01 11:00 UTC)));
        assert!(!Window::DEFAULT.is_open(&chicago, datetime!(2026-11-01 05:59 UTC)));
    }

    #[test]
    fn the_zone_is_the_locations_else_the_settings_else_utc() {
        let both = Zone::choose(Some("America/Denver"), Some("America/Chicago"));
        assert_eq!(
            (both.name(), both.source()),
            ("America/Denver", ZoneSource::Location)
        );
        let unknown_location = Zone::choose(Some("Mars/Olympus"), Some("America/Chicago"));
        assert_eq!(
            (unknown_location.name(), unknown_location.source()),
            ("America/Chicago", ZoneSource::Setting)
        );
        let blank = Zone::choose(Some(" "), None);
        assert_eq!((blank.name(), blank.source()), ("UTC", ZoneSource::Utc));
        let neither = Zone::choose(None, Some("Nowhere/Else"));
        assert_eq!(neither.source(), ZoneSource::Utc);
    }

    #[test]
    fn time_zone_names_are_checked_against_the_bundled_database() {
        assert_eq!(
            parse_time_zone("America/Phoenix").as_deref(),
            Ok("America/Phoenix")
        );
        assert_eq!(parse_time_zone("UTC").as_deref(), Ok("UTC"));
        assert!(parse_time_zone("America/Atlantis").is_err());
        assert!(parse_time_zone("").is_err());
    }

    #[test]
    fn only_syncing_practices_in_their_window_are_admitted() {
        let utc = Zone::utc();
        let open = datetime!(2026-01-15 02:00 UTC);
        let closed = datetime!(2026-01-15 12:00 UTC);
        let w = Window::DEFAULT;
        assert_eq!(admit(PracticeStatus::Active, w, &utc, open, false), Ok(()));
        assert_eq!(
            admit(PracticeStatus::InitialSync, w, &utc, open, false),
            Ok(())
        );
        assert_eq!(
            admit(PracticeStatus::Active, w, &utc, closed, false),
            Err(Hold::WindowClosed)
        );
        assert_eq!(admit(PracticeStatus::Active, w, &utc, closed, true), Ok(()));
        for status in [
            PracticeStatus::Paused,
            PracticeStatus::Removed,
            PracticeStatus::AuthFailed,
        ] {
            assert_eq!(
                admit(status, w, &utc, open, true),
                Err(Hold::NotSyncing(status)),
                "{status}"
            );
        }
    }
}
