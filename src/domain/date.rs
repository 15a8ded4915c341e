//! Calendar dates as the contract writes them: `YYYY-MM-DD`, no time zone.

use chrono::{Datelike, NaiveDate};

/// A calendar date. The contract's dates carry no time zone and no time.
pub type Date = NaiveDate;

/// Parses a date written exactly `YYYY-MM-DD` (four, two and two digits) that
/// names a real calendar day. Returns `None` for anything else, including the
/// looser forms (`2025-6-2`, `+2025-06-02`) a general parser would accept.
pub fn parse_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|d| d.year() >= 1)
}

/// Writes a date as `YYYY-MM-DD`.
///
/// By hand for the years the contract can name: risk answers write a few
/// dates per line, and chrono's general formatter was a sixth of the cost of
/// answering a broad exposure.
pub fn format_date(date: Date) -> String {
    let year = date.year();
    if !(1..=9999).contains(&year) {
        return date.format("%Y-%m-%d").to_string();
    }
    let digits = |n: u32, out: &mut [u8]| {
        let mut n = n;
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    let mut text = *b"0000-00-00";
    digits(year as u32, &mut text[0..4]);
    digits(date.month(), &mut text[5..7]);
    digits(date.day(), &mut text[8..10]);
    String::from_utf8(text.to_vec()).expect("ASCII digits and dashes")
}

/// Writes an optional date, empty when not set.
pub fn format_optional_date(date: Option<Date>) -> String {
    date.map(format_date).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_calendar_days_only() {
        assert!(parse_date("2025-06-02").is_some());
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2025-02-29").is_none());
        assert!(parse_date("2025-13-01").is_none());
        assert!(parse_date("2025-04-31").is_none());
        assert!(parse_date("0000-01-01").is_none(), "there is no year 0");
        assert!(parse_date("0001-01-01").is_some());
    }

    #[test]
    fn refuses_loose_shapes() {
        for text in [
            "2025-6-2",
            "25-06-02",
            "2025/06/02",
            "+2025-06-02",
            " 2025-06-02",
            "2025-06-02T00:00",
            "",
        ] {
            assert!(parse_date(text).is_none(), "{text:?} should be refused");
        }
    }

    #[test]
    fn round_trips() {
        let d = parse_date("2025-11-08").unwrap();
        assert_eq!(format_date(d), "2025-11-08");
        assert_eq!(format_optional_date(None), "");
        assert_eq!(format_date(parse_date("0001-01-09").unwrap()), "0001-01-09");
        assert_eq!(format_date(parse_date("9999-12-31").unwrap()), "9999-12-31");
        let late = parse_date("9999-12-31").unwrap() + chrono::Days::new(1);
        assert_eq!(format_date(late), late.format("%Y-%m-%d").to_string());
    }
}
