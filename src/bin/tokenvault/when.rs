//! Times on the command line: RFC 3339 in UTC for output; RFC 3339 or Unix seconds for input;
//! and durations in seconds (`--lock-timeout`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// `t` as RFC 3339 in UTC, to the second: `2026-03-01T12:00:00Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = unix(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How far `t` is from `now`, for people: `in 59m`, `expired 2h ago`.
pub(crate) fn relative(t: SystemTime, now: SystemTime) -> String {
    match t.duration_since(now) {
        Ok(ahead) => format!("in {}", span(ahead)),
        Err(behind) => format!("expired {} ago", span(behind.duration())),
    }
}

/// Parses `--expires-at` and similar: Unix seconds (`1767225600`) or RFC 3339
/// (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00+01:00`, fractions of a second ignored).
pub(crate) fn parse(text: &str) -> Result<SystemTime, String> {
    let bad = || {
        format!("{text:?} is neither Unix seconds nor an RFC 3339 time like 2026-01-01T00:00:00Z")
    };
    if let Ok(secs) = text.parse::<i64>() {
        return from_unix(secs).ok_or_else(bad);
    }
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if b.len() < 20
        || !sep(4, b"-")
        || !sep(7, b"-")
        || !sep(10, b"Tt ")
        || !sep(13, b":")
        || !sep(16, b":")
    {
        return Err(bad());
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return Err(bad());
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    // Skip a fraction of a second, then read the offset.
    let mut at = 19;
    if sep(at, b".") {
        at += 1;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
    }
    let offset = match b.get(at..) {
        Some(b"Z" | b"z") => 0,
        Some([sign @ (b'+' | b'-'), _, _, b':', _, _]) => {
            let (Some(oh), Some(om)) = (digits(at + 1..at + 3), digits(at + 4..at + 6)) else {
                return Err(bad());
            };
            let minutes = oh * 60 + om;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return Err(bad()),
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    from_unix(secs).ok_or_else(bad)
}

/// Parses a duration in seconds, with an optional fraction (`2`, `0.5`).
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is not a duration in seconds (0 or more)"))
}

fn from_unix(secs: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// A duration for people, in its two largest units: `3d 4h`, `59m`, `12s`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for secs in [0i64, 1, 951_782_400, 1_767_225_600, 4_102_444_800, -86_400] {
            let t = from_unix(secs).unwrap_or(UNIX_EPOCH);
            assert_eq!(unix(parse(&rfc3339(t)).unwrap_or(UNIX_EPOCH)), secs);
        }
        assert_eq!(
            rfc3339(from_unix(951_782_400).unwrap_or(UNIX_EPOCH)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn offsets_and_errors() {
        let utc = parse("2026-01-01T00:00:00Z").map(unix);
        assert_eq!(utc, Ok(1_767_225_600));
        assert_eq!(parse("2026-01-01T01:00:00.250+01:00").map(unix), utc);
        assert_eq!(parse("1767225600").map(unix), utc);
        for bad in [
            "tomorrow",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
