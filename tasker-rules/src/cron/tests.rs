//! The cron parser on each accepted form and each refusal (with its exact position), and the
//! matcher against known dates and a naive scan.

use super::*;

fn cron(expression: &str) -> Cron {
    match parse_cron(expression) {
        Ok(cron) => cron,
        Err(problem) => panic!("{problem}"),
    }
}

/// The column, length and message of the problem with `expression`.
fn problem(expression: &str) -> (usize, usize, String) {
    match parse_cron(expression) {
        Ok(cron) => panic!("`{expression}` parsed: {cron:?}"),
        Err(problem) => (problem.column, problem.len, problem.message),
    }
}

fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> CivilTime {
    CivilTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    }
}

fn next(expression: &str, from: CivilTime) -> Option<CivilTime> {
    cron(expression).next_at_or_after(from)
}

fn set(values: &[u32]) -> u64 {
    values.iter().fold(0, |bits, value| bits | 1 << value)
}

fn seconds_since_epoch(time: CivilTime) -> i64 {
    days_from_civil(time.year.into(), time.month, time.day) * 86_400
        + i64::from(time.hour * 3600 + time.minute * 60 + time.second)
}

fn from_seconds(seconds: i64) -> CivilTime {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400) as u32;
    at(
        year as i32,
        month,
        day,
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
    )
}

#[test]
fn accepts_the_standard_forms() {
    for good in [
        "* * * * *",
        "0 0 * * *",
        "*/5 * * * *",
        "0 9-17 * * 1-5",
        "0,15,30,45 * * * *",
        "5/15 * * * *",
        "10-50/20 * * * *",
        "0 0 1 JAN *",
        "0 0 1 jan-Mar *",
        "0 0 ? * MON",
        "0 0 1 * ?",
        "0 0 * * 7",
        "0 0 * * sat-sun",
        "0 0 * * FRI-SUN",
        "  0\t0  * * *  ",
        "0 0 0 * * *",
        "*/15 * * * * *",
        "59 59 23 31 12 6",
        "0 0 29 2 *",
        "0 0 31 1-12 *",
        "0 0 30 2 MON",
        "0 0 31 4 */2",
        "00 07 * * *",
        "0 0 1,15 */3 *",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        " @Daily ",
    ] {
        assert!(parse_cron(good).is_ok(), "{good}: {:?}", parse_cron(good));
    }
    // Exactly at the length limit passes.
    let longest = format!("0 0 * * *{}", " ".repeat(MAX_CRON_LEN - 9));
    assert_eq!(longest.len(), MAX_CRON_LEN);
    assert!(parse_cron(&longest).is_ok());
}

#[test]
fn fields_become_the_right_values() {
    let five = cron("5/15 10-22/5 */2 JAN-MAR FRI-SUN");
    assert_eq!(five.seconds, set(&[0]));
    assert_eq!(five.minutes, set(&[5, 20, 35, 50]));
    assert_eq!(five.hours, set(&[10, 15, 20]));
    assert_eq!(five.days, set(&(1..=31).step_by(2).collect::<Vec<_>>()));
    assert_eq!(five.months, set(&[1, 2, 3]));
    assert_eq!(five.weekdays, set(&[0, 5, 6]));
    assert!(five.either_day);
    assert!(!five.has_seconds());

    let six = cron("1,2,3 0 0 ? * 7");
    assert_eq!(six.seconds, set(&[1, 2, 3]));
    assert_eq!(six.weekdays, set(&[0]));
    assert!(!six.either_day);
    assert!(six.has_seconds());

    assert_eq!(cron("0 0 * * 0-7").weekdays, set(&[0, 1, 2, 3, 4, 5, 6]));
    assert_eq!(cron("0 0 * * 5/1").weekdays, set(&[0, 5, 6]));
    assert_eq!(cron("0 0 * * */7").weekdays, set(&[0]));
    assert_eq!(cron("0 0 * dec *").months, set(&[12]));
    assert_eq!(cron("0 */8 * * *").hours, set(&[0, 8, 16]));
}

#[test]
fn ranges_with_steps() {
    assert_eq!(cron("10-50/20 * * * *").minutes, set(&[10, 30, 50]));
    assert_eq!(cron("0 20/1 * * *").hours, set(&[20, 21, 22, 23]));
    assert_eq!(cron("0 0 25/3 * *").days, set(&[25, 28, 31]));
}

#[test]
fn macros_are_their_expansions() {
    for (name, standard) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ] {
        assert_eq!(cron(name), cron(standard), "{name}");
    }
}

#[test]
fn refusals_name_their_spot() {
    let fields = "expected 5 fields (minute hour day month weekday) or 6 (with seconds first)";
    let cases: &[(&str, usize, usize, &str)] = &[
        ("", 1, 1, "cron expression is empty"),
        ("   ", 1, 3, "cron expression is empty"),
        ("0", 1, 1, &format!("{fields}, found 1")),
        ("  0 0 *", 3, 5, &format!("{fields}, found 3")),
        ("0 0 * * * * 1 2", 13, 3, &format!("{fields}, found 8")),
        ("1,,2 * * * *", 3, 1, "empty item in the minute field"),
        ("1, * * * *", 2, 1, "empty item in the minute field"),
        (",1 * * * *", 1, 1, "empty item in the minute field"),
        ("0 0 1,,2 * *", 7, 1, "empty item in the day-of-month field"),
        ("61 * * * *", 1, 2, "minute `61` is out of range 0-59"),
        ("0 61 * * *", 3, 2, "hour `61` is out of range 0-23"),
        ("0 24 * * *", 3, 2, "hour `24` is out of range 0-23"),
        ("0 0 0 * *", 5, 1, "day-of-month `0` is out of range 1-31"),
        ("0 0 32 * *", 5, 2, "day-of-month `32` is out of range 1-31"),
        ("0 0 * 13 *", 7, 2, "month `13` is out of range 1-12"),
        ("0 0 * * 8", 9, 1, "day-of-week `8` is out of range 0-7"),
        ("60 * * * * *", 1, 2, "second `60` is out of range 0-59"),
        (
            "0 99999999999 * * *",
            3,
            11,
            "hour `99999999999` is out of range 0-23",
        ),
        (
            "0 0 * FOO *",
            7,
            3,
            "unknown month `FOO`; use 1-12 or JAN-DEC",
        ),
        (
            "0 0 * * MONDAY",
            9,
            6,
            "unknown day-of-week `MONDAY`; use 0-7 or SUN-SAT",
        ),
        ("0 x * * *", 3, 1, "hour `x` is not a number"),
        ("0 0 MON * *", 5, 3, "day-of-month `MON` is not a number"),
        (
            "0 5-1 * * *",
            3,
            3,
            "hour range `5-1` starts after it ends; ranges do not wrap around",
        ),
        (
            "0 0 * * FRI-MON",
            9,
            7,
            "day-of-week range `FRI-MON` starts after it ends; ranges do not wrap around",
        ),
        ("*/0 * * * *", 3, 1, "minute step `0` is out of range 1-59"),
        (
            "*/60 * * * *",
            3,
            2,
            "minute step `60` is out of range 1-59",
        ),
        ("0 */24 * * *", 5, 2, "hour step `24` is out of range 1-23"),
        ("*/x * * * *", 3, 1, "minute step `x` is not a number"),
        ("*/ * * * *", 2, 1, "minute step is missing after `/`"),
        ("5- * * * *", 2, 1, "minute range `5-` has no end"),
        ("0 0 L * *", 5, 1, "`L` (last day) is not supported"),
        ("0 0 LW * *", 5, 2, "`L` (last day) is not supported"),
        ("0 0 l * *", 5, 1, "`L` (last day) is not supported"),
        ("0 0 * * 5L", 9, 2, "`L` (last day) is not supported"),
        (
            "0 0 15W * *",
            5,
            3,
            "`W` (nearest weekday) is not supported",
        ),
        (
            "0 0 * * 5#3",
            10,
            1,
            "`#` (nth weekday of the month) is not supported",
        ),
        ("H * * * *", 1, 1, "`H` (hashed value) is not supported"),
        ("H/15 * * * *", 1, 1, "`H` (hashed value) is not supported"),
        ("0 1-H * * *", 5, 1, "`H` (hashed value) is not supported"),
        (
            "? * * * *",
            1,
            1,
            "`?` is only allowed in the day-of-month and day-of-week fields, not the minute \
             field",
        ),
        ("0 0 * * * é", 11, 1, "unexpected character `é`"),
        ("é 0 * * *", 1, 1, "unexpected character `é`"),
        ("0 0 * * *\n", 10, 1, "unexpected character `\\n`"),
        ("0\u{a0}0 * * *", 2, 1, "unexpected character `\\u{a0}`"),
        ("0 0.5 * * *", 4, 1, "unexpected `.` in the hour field"),
        (
            "0 0 * * 1-5-6",
            12,
            1,
            "unexpected `-` in the day-of-week field",
        ),
        (
            "0 0 * * -5",
            9,
            1,
            "unexpected `-` in the day-of-week field",
        ),
        ("*/5/2 * * * *", 4, 1, "unexpected `/` in the minute field"),
        ("0 @daily * * *", 3, 1, "unexpected `@` in the hour field"),
        (
            "@reboot",
            1,
            7,
            "`@reboot` (run at startup) is not supported; a schedule needs a time",
        ),
        (
            "@often",
            1,
            6,
            "unknown macro `@often`; use @yearly, @annually, @monthly, @weekly, @daily, \
             @midnight or @hourly",
        ),
        (
            " @daily 0  1",
            9,
            4,
            "`@daily` stands alone; remove the fields after it",
        ),
        (
            "0 0 30 2 *",
            5,
            2,
            "day-of-month `30` never falls in month `2`, so the expression never fires",
        ),
        (
            "0 0 31 4,6,9,11 *",
            5,
            2,
            "day-of-month `31` never falls in months `4,6,9,11`, so the expression never fires",
        ),
        (
            "0 0 30,31 FEB ?",
            5,
            5,
            "day-of-month `30,31` never falls in month `FEB`, so the expression never fires",
        ),
    ];
    for &(expression, column, len, message) in cases {
        assert_eq!(
            problem(expression),
            (column, len, message.to_owned()),
            "{expression:?}"
        );
    }

    let long = format!("0 0 * * *{}", " ".repeat(MAX_CRON_LEN - 8));
    assert_eq!(
        problem(&long),
        (
            1,
            129,
            "cron expression is 129 bytes long, over the maximum of 128".to_owned()
        )
    );
    // Columns and lengths count characters, the limit bytes.
    assert_eq!(
        problem(&"é".repeat(65)),
        (
            1,
            65,
            "cron expression is 130 bytes long, over the maximum of 128".to_owned()
        )
    );
}

#[test]
fn display_quotes_the_expression_and_names_the_column() {
    let shown = |expression: &str| match parse_cron(expression) {
        Ok(cron) => format!("parsed: {cron:?}"),
        Err(problem) => problem.to_string(),
    };
    assert_eq!(
        shown("0 24 * * *"),
        "`0 24 * * *`: hour `24` is out of range 0-23 (column 3)"
    );
    assert_eq!(
        shown("0 0 * * 5#3"),
        "`0 0 * * 5#3`: `#` (nth weekday of the month) is not supported (column 10)"
    );
    assert_eq!(
        shown("0 0 *"),
        "`0 0 *`: expected 5 fields (minute hour day month weekday) or 6 (with seconds \
         first), found 3 (column 1)"
    );
    assert_eq!(
        shown("0 0 * * *\n"),
        "`0 0 * * *\\n`: unexpected character `\\n` (column 10)"
    );
    assert_eq!(
        shown(&"0".repeat(200)),
        format!(
            "`{}…`: cron expression is 200 bytes long, over the maximum of 128 (column 1)",
            "0".repeat(32)
        )
    );
}

#[test]
fn calendar_math() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(weekday(0), 4);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(1969, 12, 31), -1);
    assert_eq!(weekday(-1), 3);
    // 2026-03-07 is a Saturday, 2026-03-13 a Friday, 2000-01-01 a Saturday.
    assert_eq!(weekday(days_from_civil(2026, 3, 7)), 6);
    assert_eq!(weekday(days_from_civil(2026, 3, 13)), 5);
    assert_eq!(weekday(days_from_civil(2000, 1, 1)), 6);
    for (year, days) in [
        (1900, 28),
        (2000, 29),
        (2028, 29),
        (2100, 28),
        (0, 29),
        (-4, 29),
    ] {
        assert_eq!(days_in_month(year, 2), days, "{year}");
    }
    for day in (-800_000..800_000).step_by(97) {
        let (year, month, dom) = civil_from_days(day);
        assert!((1..=days_in_month(year, month)).contains(&dom), "{day}");
        assert_eq!(days_from_civil(year, month, dom), day);
    }
    // Consecutive days follow each other through a leap year end to end.
    let mut previous = civil_from_days(days_from_civil(2027, 12, 31));
    for day in days_from_civil(2028, 1, 1)..=days_from_civil(2029, 1, 1) {
        let current = civil_from_days(day);
        assert!(current > previous);
        previous = current;
    }
    assert_eq!(previous, (2029, 1, 1));
}

#[test]
fn either_day_rule() {
    let fri13 = cron("0 0 13 * FRI");
    let midnight = |month, day| at(2026, month, day, 0, 0, 0);
    assert!(fri13.matches(midnight(3, 13))); // Friday the 13th
    assert!(fri13.matches(midnight(3, 6))); // a Friday
    assert!(fri13.matches(midnight(4, 13))); // a Monday, the 13th
    assert!(!fri13.matches(midnight(4, 14)));

    let thirteenth = cron("0 0 13 * *");
    assert!(thirteenth.matches(midnight(4, 13)));
    assert!(!thirteenth.matches(midnight(3, 6)));
    let friday = cron("0 0 * * FRI");
    assert!(friday.matches(midnight(3, 6)));
    assert!(!friday.matches(midnight(4, 13)));

    // `*/2` restricts: odd days or Mondays.
    let odd_or_monday = cron("0 0 */2 * MON");
    assert!(odd_or_monday.matches(midnight(3, 3))); // odd Tuesday
    assert!(odd_or_monday.matches(midnight(3, 16))); // even Monday
    assert!(!odd_or_monday.matches(midnight(3, 4))); // even Wednesday

    // `?` does not.
    assert!(!cron("0 0 ? * MON").matches(midnight(3, 3)));
    assert!(cron("0 0 1 * ?").matches(midnight(3, 1)));
    assert!(!cron("0 0 1 * ?").matches(midnight(3, 2)));
    assert_eq!(next("0 0 13 * FRI", midnight(3, 1)), Some(midnight(3, 6)));
}

#[test]
fn next_crosses_each_boundary() {
    let from = at(2026, 3, 7, 12, 0, 30);
    let cases = [
        ("* * * * *", from, at(2026, 3, 7, 12, 1, 0)),
        (
            "* * * * *",
            at(2026, 3, 7, 12, 0, 0),
            at(2026, 3, 7, 12, 0, 0),
        ),
        (
            "30 * * * *",
            at(2026, 3, 7, 12, 31, 0),
            at(2026, 3, 7, 13, 30, 0),
        ),
        (
            "0 0 * * *",
            at(2026, 3, 7, 0, 0, 1),
            at(2026, 3, 8, 0, 0, 0),
        ),
        (
            "0 0 1 * *",
            at(2026, 1, 31, 23, 59, 59),
            at(2026, 2, 1, 0, 0, 0),
        ),
        (
            "0 0 1 1 *",
            at(2026, 6, 15, 8, 0, 0),
            at(2027, 1, 1, 0, 0, 0),
        ),
        ("@yearly", at(2026, 1, 1, 0, 0, 0), at(2026, 1, 1, 0, 0, 0)),
        (
            "59 23 31 12 *",
            at(2026, 12, 31, 23, 59, 1),
            at(2027, 12, 31, 23, 59, 0),
        ),
        (
            "30 15 10 * * *",
            at(2026, 3, 7, 10, 15, 31),
            at(2026, 3, 8, 10, 15, 30),
        ),
        (
            "0 0 29 2 *",
            at(2027, 3, 1, 0, 0, 0),
            at(2028, 2, 29, 0, 0, 0),
        ),
        // 2100 is not a leap year: the next 29 February is eight years on.
        (
            "0 0 29 2 *",
            at(2097, 3, 1, 0, 0, 0),
            at(2104, 2, 29, 0, 0, 0),
        ),
        (
            "0 0 31 * *",
            at(2026, 4, 15, 0, 0, 0),
            at(2026, 5, 31, 0, 0, 0),
        ),
        (
            "0 0 30 * *",
            at(2026, 2, 1, 0, 0, 0),
            at(2026, 3, 30, 0, 0, 0),
        ),
        (
            "0 0 31 4-6 *",
            at(2026, 1, 1, 0, 0, 0),
            at(2026, 5, 31, 0, 0, 0),
        ),
        (
            "0 0 28-31 2 *",
            at(2026, 2, 28, 0, 0, 1),
            at(2027, 2, 28, 0, 0, 0),
        ),
        (
            "*/15 * * * * *",
            at(2026, 3, 7, 12, 0, 1),
            at(2026, 3, 7, 12, 0, 15),
        ),
        (
            "*/15 * * * * *",
            at(2026, 3, 7, 12, 59, 46),
            at(2026, 3, 7, 13, 0, 0),
        ),
        (
            "*/15 * * * * *",
            at(2026, 12, 31, 23, 59, 50),
            at(2027, 1, 1, 0, 0, 0),
        ),
        ("0 9 * * MON-FRI", from, at(2026, 3, 9, 9, 0, 0)),
        (
            "0 9 * * MON-FRI",
            at(2026, 3, 9, 9, 0, 1),
            at(2026, 3, 10, 9, 0, 0),
        ),
        (
            "0 9 * * MON-FRI",
            at(2026, 3, 13, 9, 0, 1),
            at(2026, 3, 16, 9, 0, 0),
        ),
        ("0 0 * * 7", from, at(2026, 3, 8, 0, 0, 0)),
        ("0 0 * * 0", from, at(2026, 3, 8, 0, 0, 0)),
        ("0 0 * * sun", from, at(2026, 3, 8, 0, 0, 0)),
        (
            "0 0 * * SAT-SUN",
            at(2026, 3, 8, 0, 0, 1),
            at(2026, 3, 14, 0, 0, 0),
        ),
        ("@weekly", from, at(2026, 3, 8, 0, 0, 0)),
    ];
    for (expression, from, expected) in cases {
        assert_eq!(
            next(expression, from),
            Some(expected),
            "{expression} from {from:?}"
        );
        assert!(cron(expression).matches(expected), "{expression}");
    }
}

#[test]
fn every_hour_and_seconds() {
    for (expression, every) in [
        ("* * * * *", true),
        ("0 */1 * * *", true),
        ("0 0-23 * * *", true),
        ("0 0-11,12-23 * * *", true),
        ("@hourly", true),
        ("0 * * * * *", true),
        ("@daily", false),
        ("0 */2 * * *", false),
        ("0 1-23 * * *", false),
    ] {
        assert_eq!(cron(expression).every_hour(), every, "{expression}");
    }
    assert!(cron("0 * * * * *").has_seconds());
    assert!(!cron("* * * * *").has_seconds());
    assert!(!cron("@hourly").has_seconds());
    // The seconds field makes a different schedule even when it says 0.
    assert_ne!(cron("0 * * * * *"), cron("* * * * *"));
}

#[test]
fn invalid_times_never_match() {
    let every = cron("* * * * * *");
    for invalid in [
        at(2026, 13, 1, 0, 0, 0),
        at(2026, 0, 1, 0, 0, 0),
        at(2026, 2, 29, 0, 0, 0),
        at(2026, 2, 30, 0, 0, 0),
        at(2026, 4, 31, 0, 0, 0),
        at(2026, 1, 0, 0, 0, 0),
        at(2026, 1, 1, 24, 0, 0),
        at(2026, 1, 1, 0, 60, 0),
        at(2026, 1, 1, 0, 0, 60),
        at(2026, u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX),
    ] {
        assert_eq!(every.next_at_or_after(invalid), None, "{invalid:?}");
        assert!(!every.matches(invalid), "{invalid:?}");
    }
    let leap_day = at(2028, 2, 29, 0, 0, 0);
    assert_eq!(every.next_at_or_after(leap_day), Some(leap_day));
}

#[test]
fn ends_of_the_year_range() {
    let every_minute = cron("* * * * *");
    assert_eq!(
        every_minute.next_at_or_after(at(i32::MAX, 12, 31, 23, 59, 30)),
        None
    );
    assert_eq!(
        every_minute.next_at_or_after(at(i32::MAX, 12, 31, 23, 58, 30)),
        Some(at(i32::MAX, 12, 31, 23, 59, 0))
    );
    let start = at(i32::MIN, 1, 1, 0, 0, 0);
    assert_eq!(every_minute.next_at_or_after(start), Some(start));
    assert_eq!(
        cron("0 0 29 2 *").next_at_or_after(at(0, 1, 1, 0, 0, 0)),
        Some(at(0, 2, 29, 0, 0, 0))
    );
}

#[test]
fn next_agrees_with_a_naive_scan() {
    let expressions = [
        "*/15 * * * * *",
        "7,41 */7 3-20/4 * * *",
        "*/20 30 */5 ? * TUE-THU",
        "0 */10 * * *",
        "15 9-17 * * MON-FRI",
        "0 0 */2 * SUN",
        "30 4 1,15 * 5",
        "0 12 * * 0,6",
        "0 0 28-31 * *",
        "59 23 * 2,3 *",
    ];
    let starts = [
        at(2026, 2, 27, 22, 59, 59),
        at(2028, 2, 28, 23, 30, 17),
        at(2026, 12, 30, 5, 0, 0),
    ];
    let window = 2 * 86_400;
    for expression in expressions {
        let cron = cron(expression);
        // Every match of a five-field expression is on a whole minute.
        let stride = if cron.has_seconds() { 1 } else { 60 };
        for from in starts {
            let first = seconds_since_epoch(from);
            let aligned = first + (stride - first.rem_euclid(stride)) % stride;
            let naive = (aligned..first + window)
                .step_by(stride as usize)
                .map(from_seconds)
                .find(|&time| cron.matches(time));
            let found = cron.next_at_or_after(from);
            match naive {
                Some(time) => assert_eq!(found, Some(time), "{expression} from {from:?}"),
                None => assert!(
                    found.is_some_and(|time| seconds_since_epoch(time) >= first + window),
                    "{expression} from {from:?}: {found:?}"
                ),
            }
        }
    }
}

#[test]
fn any_input_is_parsed_or_refused_inside_itself() {
    let pieces = [
        "*", "?", "-", "/", ",", "#", "@", "0", "7", "59", "60", "L", "W", "H", "MON", "JAN", "é",
        " ", "\t",
    ];
    let from = at(2026, 3, 7, 12, 0, 30);
    for a in pieces {
        for b in pieces {
            for c in pieces {
                let field = format!("{a}{b}{c}");
                for slot in 0..6 {
                    let mut fields = ["0"; 6];
                    fields[slot] = &field;
                    let expression = fields.join(" ");
                    match parse_cron(&expression) {
                        Ok(cron) => {
                            if let Some(next) = cron.next_at_or_after(from) {
                                assert!(next >= from && cron.matches(next), "{expression}");
                            }
                        }
                        Err(problem) => {
                            let chars = expression.chars().count();
                            assert!(problem.column >= 1 && problem.len >= 1, "{expression}");
                            assert!(problem.column + problem.len - 1 <= chars, "{expression}");
                            assert!(!problem.to_string().is_empty());
                        }
                    }
                }
            }
        }
    }
}
