//! Durations as operators type them: `90s`, `15m`, `2h`, `7d` (a bare number is seconds).

use std::time::Duration;

/// Parses `N` followed by `s`, `m`, `h` or `d` (or nothing, for seconds).
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: use s, m, h or d (`30d`)"
            ));
        }
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write a number and a unit (`30d`)"))?;
    let seconds = n * seconds_per;
    // Past a thousand years a duration means a mistake, and `from_secs_f64` would panic
    // beyond u64 seconds.
    if !(0.0..=1000.0 * 365.25 * 86_400.0).contains(&seconds) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_refusals() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        for bad in ["", "d", "30w", "-1d", "1e400d", "1..2s", "99999999999999d"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
