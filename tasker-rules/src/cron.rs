//! Cron schedules: Vixie-cron expressions, with an optional leading seconds field, and when
//! they fire on a civil (time-zone-less) calendar.
//!
//! ```
//! use tasker_rules::{CivilTime, parse_cron};
//!
//! let weekdays = parse_cron("0 9 * * MON-FRI").map_err(|p| p.to_string());
//! let saturday = CivilTime { year: 2026, month: 3, day: 7, hour: 12, minute: 0, second: 0 };
//! let monday = CivilTime { year: 2026, month: 3, day: 9, hour: 9, minute: 0, second: 0 };
//! assert_eq!(weekdays.map(|cron| cron.next_at_or_after(saturday)), Ok(Some(monday)));
//!
//! let problem = parse_cron("0 24 * * *").map_err(|p| p.to_string());
//! assert_eq!(
//!     problem.err().as_deref(),
//!     Some("`0 24 * * *`: hour `24` is out of range 0-23 (column 3)")
//! );
//! ```

use std::fmt;

use crate::shorten;

#[cfg(test)]
mod tests;

/// Longest cron expression, in bytes (the width of the column it is stored in).
pub const MAX_CRON_LEN: usize = 128;

/// How far [`Cron::next_at_or_after`] looks ahead, in days: eight years, so a 29 February
/// schedule is found even across 2100, which is not a leap year.
const SEARCH_DAYS: i64 = 8 * 366;

/// A parsed cron expression: which seconds, minutes, hours, days and months it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    // Bit `n` set: the expression fires at value `n` of the field.
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Days of the month, bits 1-31.
    days: u64,
    /// Bits 1-12.
    months: u64,
    /// Bits 0-6, Sunday = 0 (a `7` in the expression sets bit 0).
    weekdays: u64,
    /// Both day fields are restricted, so a day matches when either does (Vixie cron's rule);
    /// otherwise the unrestricted one is full and both must match.
    either_day: bool,
    has_seconds: bool,
}

/// Why a cron expression is refused; `Display` is the message, naming the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronProblem {
    /// 1-based character column in the expression where the problem starts.
    pub column: usize,
    /// Length in characters of the offending part (at least 1).
    pub len: usize,
    /// What is wrong, without the position (e.g. "hour `24` is out of range 0-23").
    pub message: String,
    /// The expression refused, for `Display`.
    expression: String,
}

impl fmt::Display for CronProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.expression.len() > MAX_CRON_LEN {
            shorten(&self.expression)
        } else {
            self.expression.as_str().into()
        };
        f.write_str("`")?;
        // A newline or other control character would break the message's line.
        for c in shown.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        write!(f, "`: {} (column {})", self.message, self.column)
    }
}

/// A civil (time-zone-less) date and time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilTime {
    /// Year of the proleptic Gregorian calendar (0 is 1 BC).
    pub year: i32,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, from 1.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute, 0-59.
    pub minute: u32,
    /// Second, 0-59.
    pub second: u32,
}

impl CivilTime {
    /// Whether this is a real date and time (no month 13, no 30 February, no leap second).
    fn is_valid(&self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year.into(), self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
    }
}

/// Parses a cron expression: five fields `minute hour day-of-month month day-of-week`, or six
/// with a leading `second`, or one of the macros `@yearly`, `@annually`, `@monthly`,
/// `@weekly`, `@daily`, `@midnight` and `@hourly`.
pub fn parse_cron(expression: &str) -> Result<Cron, CronProblem> {
    parse(expression).map_err(|spot| CronProblem {
        column: spot.column,
        len: spot.len.max(1),
        message: spot.message,
        expression: expression.to_owned(),
    })
}

impl Cron {
    /// The first civil time at or after `from` that the expression matches, searching at most
    /// eight years (so 29 February schedules are found, even across 2100); `None` if none in
    /// that window, or if `from` is not a real date and time.
    pub fn next_at_or_after(&self, from: CivilTime) -> Option<CivilTime> {
        if !from.is_valid() {
            return None;
        }
        let first = days_from_civil(from.year.into(), from.month, from.day);
        let mut day = first;
        let mut start = (from.hour, from.minute, from.second);
        while day - first <= SEARCH_DAYS {
            let (year, month, dom) = civil_from_days(day);
            if !has(self.months, month) {
                // Skip to the first of the next month.
                day += i64::from(days_in_month(year, month).saturating_sub(dom)) + 1;
            } else {
                if self.day_matches(dom, weekday(day))
                    && let Some((hour, minute, second)) = self.first_time_from(start)
                {
                    return Some(CivilTime {
                        year: i32::try_from(year).ok()?,
                        month,
                        day: dom,
                        hour,
                        minute,
                        second,
                    });
                }
                day += 1;
            }
            start = (0, 0, 0);
        }
        None
    }

    /// Whether the expression matches `at`.
    pub fn matches(&self, at: CivilTime) -> bool {
        at.is_valid()
            && has(self.months, at.month)
            && self.day_matches(
                at.day,
                weekday(days_from_civil(at.year.into(), at.month, at.day)),
            )
            && has(self.hours, at.hour)
            && has(self.minutes, at.minute)
            && has(self.seconds, at.second)
    }

    /// Whether the hour field matches every hour (`*` or `*/1` or `0-23`), which the runtime
    /// uses to run a wildcard-hour schedule in both passes of a repeated (daylight-saving
    /// fall-back) hour.
    pub fn every_hour(&self) -> bool {
        self.hours == (1 << 24) - 1
    }

    /// Whether the expression has a seconds field (6 fields).
    pub fn has_seconds(&self) -> bool {
        self.has_seconds
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let (by_day, by_weekday) = (has(self.days, day), has(self.weekdays, weekday));
        if self.either_day {
            by_day || by_weekday
        } else {
            by_day && by_weekday
        }
    }

    /// The first time of day at or after `(hour, minute, second)` the expression matches.
    fn first_time_from(&self, (hour, minute, second): (u32, u32, u32)) -> Option<(u32, u32, u32)> {
        // Every set is non-empty, so each loop runs at most twice before returning.
        for h in bits_from(self.hours, hour) {
            let minute_from = if h == hour { minute } else { 0 };
            for m in bits_from(self.minutes, minute_from) {
                let second_from = if h == hour && m == minute { second } else { 0 };
                if let Some(s) = bits_from(self.seconds, second_from).next() {
                    return Some((h, m, s));
                }
            }
        }
        None
    }
}

/// Whether bit `n` of `set` is set.
fn has(set: u64, n: u32) -> bool {
    n < 64 && set & (1 << n) != 0
}

/// The set bits of `set` from bit `from` up, in order.
fn bits_from(set: u64, from: u32) -> impl Iterator<Item = u32> {
    let mut rest = if from >= 64 {
        0
    } else {
        set & (u64::MAX << from)
    };
    std::iter::from_fn(move || {
        (rest != 0).then(|| {
            let bit = rest.trailing_zeros();
            rest &= rest - 1;
            bit
        })
    })
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` of `year`; 0 for a month outside 1-12.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`, counting in 400-year eras of 146 097 days).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Years start in March, so the leap day is the last day of the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let march_based = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * march_based + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` days after 1970-01-01, as `(year, month, day)`: the inverse of
/// [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_based = (5 * day_of_year + 2) / 153;
    // Both in range by construction: day 1-31, month 1-12.
    let day = (day_of_year - (153 * march_based + 2) / 5 + 1) as u32;
    let month = (if march_based < 10 {
        march_based + 3
    } else {
        march_based - 9
    }) as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Day of the week of the date `days` days after 1970-01-01 (a Thursday), Sunday = 0.
fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

/// A problem found while parsing, before the expression is attached.
struct Spot {
    column: usize,
    len: usize,
    message: String,
}

/// A field of a cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Weekday,
}

impl Field {
    /// The lowest and highest value the field takes.
    fn range(self) -> (u32, u32) {
        match self {
            Self::Second | Self::Minute => (0, 59),
            Self::Hour => (0, 23),
            Self::Day => (1, 31),
            Self::Month => (1, 12),
            Self::Weekday => (0, 7),
        }
    }

    /// The value of a month or weekday name (any case), if `word` is one.
    fn name_value(self, word: &str) -> Option<u32> {
        const MONTHS: [&str; 12] = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        let (names, first) = match self {
            Self::Month => (&MONTHS[..], 1),
            Self::Weekday => (&WEEKDAYS[..], 0),
            _ => return None,
        };
        let index = names.iter().position(|n| n.eq_ignore_ascii_case(word))?;
        u32::try_from(index).ok().map(|index| index + first)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day-of-month",
            Self::Month => "month",
            Self::Weekday => "day-of-week",
        })
    }
}

/// A whitespace-separated word of the expression and its byte offset.
type Word<'a> = (usize, &'a str);

/// One lexical piece of a field item: a run of ASCII letters and digits, or one other
/// character.
struct Token<'a> {
    /// Byte offset in the expression.
    at: usize,
    text: &'a str,
}

impl Token<'_> {
    fn spot(&self, message: String) -> Spot {
        Spot {
            column: self.at + 1,
            len: self.text.chars().count(),
            message,
        }
    }
}

fn parse(expression: &str) -> Result<Cron, Spot> {
    let chars = expression.chars().count();
    if expression.len() > MAX_CRON_LEN {
        return Err(Spot {
            column: 1,
            len: chars,
            message: format!(
                "cron expression is {} bytes long, over the maximum of {MAX_CRON_LEN}",
                expression.len()
            ),
        });
    }
    // Past this check every character is ASCII, so a byte offset is a character column.
    if let Some((at, bad)) = expression
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_graphic() || c == ' ' || c == '\t'))
    {
        return Err(Spot {
            column: at + 1,
            len: 1,
            message: format!("unexpected character `{}`", bad.escape_debug()),
        });
    }
    let words = words(expression);
    match words.as_slice() {
        [] => Err(Spot {
            column: 1,
            len: chars,
            message: "cron expression is empty".to_owned(),
        }),
        [first, rest @ ..] if first.1.starts_with('@') => parse_macro(*first, rest),
        [minute, hour, day, month, weekday] => {
            parse_fields(None, [*minute, *hour, *day, *month, *weekday])
        }
        [second, minute, hour, day, month, weekday] => {
            parse_fields(Some(*second), [*minute, *hour, *day, *month, *weekday])
        }
        [first, .., last] => {
            // Too many: point at the extra fields; too few: at them all.
            let (from, _) = words.get(6).copied().unwrap_or(*first);
            Err(Spot {
                column: from + 1,
                len: last.0 + last.1.len() - from,
                message: format!(
                    "expected 5 fields (minute hour day month weekday) or 6 (with seconds \
                     first), found {}",
                    words.len()
                ),
            })
        }
        [only] => Err(Spot {
            column: only.0 + 1,
            len: only.1.len(),
            message: "expected 5 fields (minute hour day month weekday) or 6 (with seconds \
                      first), found 1"
                .to_owned(),
        }),
    }
}

/// The words of `expression` separated by spaces and tabs.
fn words(expression: &str) -> Vec<Word<'_>> {
    let mut words = Vec::new();
    let mut at = 0;
    for piece in expression.split([' ', '\t']) {
        if !piece.is_empty() {
            words.push((at, piece));
        }
        // Each separator is one byte.
        at += piece.len() + 1;
    }
    words
}

fn parse_macro((at, name): Word<'_>, rest: &[Word<'_>]) -> Result<Cron, Spot> {
    let name_spot = |message: String| Spot {
        column: at + 1,
        len: name.len(),
        message,
    };
    let standard = match name.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        "@reboot" => {
            return Err(name_spot(format!(
                "`{name}` (run at startup) is not supported; a schedule needs a time"
            )));
        }
        _ => {
            return Err(name_spot(format!(
                "unknown macro `{name}`; use @yearly, @annually, @monthly, @weekly, @daily, \
                 @midnight or @hourly"
            )));
        }
    };
    if let (Some(&(from, _)), Some(&(last_at, last))) = (rest.first(), rest.last()) {
        return Err(Spot {
            column: from + 1,
            len: last_at + last.len() - from,
            message: format!("`{name}` stands alone; remove the fields after it"),
        });
    }
    parse(standard)
}

fn parse_fields(second: Option<Word<'_>>, fields: [Word<'_>; 5]) -> Result<Cron, Spot> {
    let [minute, hour, day, month, weekday] = fields;
    let seconds = match second {
        Some(second) => parse_field(Field::Second, second)?,
        None => 1,
    };
    let cron = Cron {
        seconds,
        minutes: parse_field(Field::Minute, minute)?,
        hours: parse_field(Field::Hour, hour)?,
        days: parse_field(Field::Day, day)?,
        months: parse_field(Field::Month, month)?,
        weekdays: parse_field(Field::Weekday, weekday)?,
        either_day: is_restricted(day.1) && is_restricted(weekday.1),
        has_seconds: second.is_some(),
    };
    // With the weekday free, the days alone must fall in some month (29 February counts:
    // it comes in leap years).
    if !is_restricted(weekday.1) {
        let fits = (1..=12)
            .filter(|&m| has(cron.months, m))
            .any(|m| cron.days & ((1 << (days_in_month(2000, m) + 1)) - 2) != 0);
        if !fits {
            let months = if month.1.contains([',', '-', '/']) {
                "months"
            } else {
                "month"
            };
            return Err(Spot {
                column: day.0 + 1,
                len: day.1.len(),
                message: format!(
                    "day-of-month `{}` never falls in {months} `{}`, so the expression never \
                     fires",
                    day.1, month.1
                ),
            });
        }
    }
    Ok(cron)
}

/// Whether a field restricts its values: anything but a bare `*` or `?`, as in Vixie cron's
/// day-matching rule (so `*/2` is restricted).
fn is_restricted(field: &str) -> bool {
    field != "*" && field != "?"
}

/// The values of a field, as a bit set.
fn parse_field(field: Field, (at, text): Word<'_>) -> Result<u64, Spot> {
    let mut bits = 0;
    let mut item_at = at;
    let mut items = text.split(',').peekable();
    while let Some(item) = items.next() {
        if item.is_empty() {
            // An empty item has no width: point at the comma after it, or before it if last.
            let comma = if items.peek().is_some() {
                item_at
            } else {
                item_at.saturating_sub(1)
            };
            return Err(Spot {
                column: comma + 1,
                len: 1,
                message: format!("empty item in the {field} field"),
            });
        }
        let (low, high, step) = parse_item(field, &lex(item_at, item))?;
        for value in (low..=high).step_by(step as usize) {
            // Sunday is both 0 and 7.
            let value = if field == Field::Weekday {
                value % 7
            } else {
                value
            };
            bits |= 1 << value;
        }
        item_at += item.len() + 1;
    }
    Ok(bits)
}

/// Splits a field item into tokens; `at` is the item's byte offset in the expression.
fn lex(at: usize, item: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = item.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let mut end = start + c.len_utf8();
        if c.is_ascii_alphanumeric() {
            while let Some((next, _)) = chars.next_if(|&(_, n)| n.is_ascii_alphanumeric()) {
                end = next + 1;
            }
        }
        tokens.push(Token {
            at: at + start,
            // `start` and `end` are character boundaries.
            text: &item[start..end],
        });
    }
    tokens
}

/// The `(low, high, step)` of one non-empty item: `*`, `N`, `N-M`, each with an optional
/// `/STEP` (`N/STEP` runs from `N` to the field's maximum).
fn parse_item(field: Field, tokens: &[Token<'_>]) -> Result<(u32, u32, u32), Spot> {
    let (min, max) = field.range();
    let mut tokens = tokens.iter().peekable();
    let Some(first) = tokens.next() else {
        // `parse_field` refuses empty items first; an empty one would mean `*`.
        return Ok((min, max, 1));
    };
    let (low, mut high, single) = match first.text {
        "*" => (min, max, false),
        "?" if matches!(field, Field::Day | Field::Weekday) => (min, max, false),
        "?" => {
            return Err(first.spot(format!(
                "`?` is only allowed in the day-of-month and day-of-week fields, not the \
                 {field} field"
            )));
        }
        text if is_word(text) => {
            let low = value(field, first)?;
            match tokens.next_if(|t| t.text == "-") {
                None => (low, low, true),
                Some(dash) => {
                    let Some(end) = tokens.next().filter(|t| is_word(t.text)) else {
                        return Err(dash.spot(format!("{field} range `{text}-` has no end")));
                    };
                    let mut high = value(field, end)?;
                    // `FRI-SUN` means Friday to Sunday: the name `SUN` ending a range is 7.
                    if field == Field::Weekday && high == 0 && low > 0 && !is_number(end.text) {
                        high = 7;
                    }
                    if low > high {
                        return Err(Spot {
                            column: first.at + 1,
                            len: (end.at + end.text.len()).saturating_sub(first.at),
                            message: format!(
                                "{field} range `{text}-{}` starts after it ends; ranges do \
                                 not wrap around",
                                end.text
                            ),
                        });
                    }
                    (low, high, false)
                }
            }
        }
        _ => return Err(unexpected(field, first)),
    };
    let mut step = 1;
    if let Some(slash) = tokens.next_if(|t| t.text == "/") {
        let Some(number) = tokens.next() else {
            return Err(slash.spot(format!("{field} step is missing after `/`")));
        };
        step = step_value(field, number)?;
        if single {
            high = max;
        }
    }
    match tokens.next() {
        Some(extra) => Err(unexpected(field, extra)),
        None => Ok((low, high, step)),
    }
}

fn is_word(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The value of a number or name in `field`.
fn value(field: Field, token: &Token<'_>) -> Result<u32, Spot> {
    let (min, max) = field.range();
    let text = token.text;
    if is_number(text) {
        // A number too large for `u32` is out of range too.
        return match text.parse::<u32>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(token.spot(format!("{field} `{text}` is out of range {min}-{max}"))),
        };
    }
    if let Some(value) = field.name_value(text) {
        return Ok(value);
    }
    if let Some(message) = extension(text) {
        return Err(token.spot(message.to_owned()));
    }
    Err(token.spot(match field {
        Field::Month => format!("unknown month `{text}`; use 1-12 or JAN-DEC"),
        Field::Weekday => format!("unknown day-of-week `{text}`; use 0-7 or SUN-SAT"),
        _ => format!("{field} `{text}` is not a number"),
    }))
}

/// The step after a `/`: a number from 1 to the width of the field's range.
fn step_value(field: Field, token: &Token<'_>) -> Result<u32, Spot> {
    let (min, max) = field.range();
    let text = token.text;
    if !is_number(text) {
        return Err(token.spot(format!("{field} step `{text}` is not a number")));
    }
    match text.parse::<u32>() {
        Ok(step) if (1..=max - min).contains(&step) => Ok(step),
        _ => Err(token.spot(format!(
            "{field} step `{text}` is out of range 1-{}",
            max - min
        ))),
    }
}

/// The message for a word using a Quartz or Jenkins extension (`L`, `15W`, `5L`, `H`), if it
/// does.
fn extension(word: &str) -> Option<&'static str> {
    let letters = word.trim_start_matches(|c: char| c.is_ascii_digit());
    match letters.to_ascii_uppercase().as_str() {
        "L" | "LW" => Some("`L` (last day) is not supported"),
        "W" => Some("`W` (nearest weekday) is not supported"),
        "H" => Some("`H` (hashed value) is not supported"),
        _ => None,
    }
}

/// The problem with a token where none of its kind may stand.
fn unexpected(field: Field, token: &Token<'_>) -> Spot {
    let message = match token.text {
        "#" => "`#` (nth weekday of the month) is not supported".to_owned(),
        text => match extension(text) {
            Some(message) => message.to_owned(),
            None => format!("unexpected `{text}` in the {field} field"),
        },
    };
    token.spot(message)
}
