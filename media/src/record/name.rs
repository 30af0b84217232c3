//! Names of recording directories: the broadcast's UTC start time in ISO 8601 basic format with
//! milliseconds, `20261124T044012.345Z`. Only digits, `T`, `.` and `Z`, so it is safe in any file system
//! and URL, and names sort by time. No I/O.

/// Directory name for a broadcast that started at `unix_ms`.
pub fn dir_name(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(unix_ms);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{ms:03}Z")
}

/// The same instant in ISO 8601 extended format (`2026-11-24T04:40:12.345Z`), for JSON.
pub fn iso8601(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(unix_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// Unix milliseconds of a directory name made by [`dir_name`]; `None` for anything else, which is how
/// the HTTP side refuses names that could escape the recordings directory.
pub fn parse_dir_name(name: &str) -> Option<u64> {
    let b = name.as_bytes();
    let shape_ok = b.len() == 20
        && b[8] == b'T'
        && b[15] == b'.'
        && b[19] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 15 | 19) || c.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let num = |r: std::ops::Range<usize>| name.get(r).and_then(|s| s.parse::<u64>().ok());
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s, ms) = (num(9..11)?, num(11..13)?, num(13..15)?, num(16..19)?);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || s > 59
    {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    let ms_total = ((days as u64 * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms;
    // Rejects 31 February and the like: the name must be the canonical one.
    (dir_name(ms_total) == name).then_some(ms_total)
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
fn civil(unix_ms: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let ms = unix_ms % 1000;
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, ms)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_utc_and_round_trip() {
        // 2026-11-24T04:40:12.345Z, checked with `date -u -d @1795495212`.
        let ms = 1_795_495_212_345;
        assert_eq!(dir_name(ms), "20261124T044012.345Z");
        assert_eq!(iso8601(ms), "2026-11-24T04:40:12.345Z");
        assert_eq!(parse_dir_name("20261124T044012.345Z"), Some(ms));
        assert_eq!(dir_name(0), "19700101T000000.000Z");
        // A leap day.
        assert_eq!(dir_name(1_709_164_800_000), "20240229T000000.000Z");
        for ms in [0, 951_782_400_000, 1_709_251_199_999, 4_102_444_800_000] {
            assert_eq!(parse_dir_name(&dir_name(ms)), Some(ms));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "..",
            "20261124T044012.345",
            "20261124T044012.345Z/..",
            "20261324T044012.345Z",
            "20260231T000000.000Z",
            "2026112xT044012.345Z",
            "20261124t044012.345Z",
            "20261124T246012.345Z",
        ] {
            assert_eq!(parse_dir_name(bad), None, "{bad}");
        }
    }
}
