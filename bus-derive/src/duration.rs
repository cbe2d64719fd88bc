//! Durations written as string literals in `#[handler(...)]`: `"250ms"`,
//! `"2s"`, `"1m"`.

/// What a duration literal must look like, for error messages.
pub(crate) const EXPECTED: &str =
    "expected a whole number followed by `ms`, `s` or `m`, as in \"250ms\", \"2s\" or \"1m\"";

/// The number of milliseconds `text` stands for.
pub(crate) fn parse_millis(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "" if !number.is_empty() => {
            return Err(format!("`{text}` has no unit; {EXPECTED}"));
        }
        _ => return Err(format!("`{text}` is not a duration; {EXPECTED}")),
    };
    if number.is_empty() {
        return Err(format!("`{text}` has no number; {EXPECTED}"));
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_milliseconds_seconds_and_minutes() {
        assert_eq!(parse_millis("250ms"), Ok(250));
        assert_eq!(parse_millis("2s"), Ok(2_000));
        assert_eq!(parse_millis("1m"), Ok(60_000));
        assert_eq!(parse_millis("0ms"), Ok(0));
    }

    #[test]
    fn a_unit_is_required() {
        assert!(parse_millis("100").unwrap_err().contains("has no unit"));
    }

    #[test]
    fn a_number_is_required() {
        assert!(parse_millis("ms").unwrap_err().contains("has no number"));
        assert!(parse_millis("").is_err());
    }

    #[test]
    fn other_units_and_shapes_are_rejected() {
        for text in ["2h", "2 s", "1.5s", "-1s", "2sec", "s2", "2S"] {
            let error = parse_millis(text).unwrap_err();
            assert!(error.contains("is not a duration"), "{text}: {error}");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(parse_millis("99999999999999999999s").is_err());
        assert!(parse_millis(&format!("{}m", u64::MAX / 60_000 + 1)).is_err());
        assert_eq!(
            parse_millis(&format!("{}m", u64::MAX / 60_000)),
            Ok(u64::MAX / 60_000 * 60_000)
        );
    }
}
