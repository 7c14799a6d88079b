//! How times are written wherever they leave the engine as text (REST, GraphQL, `--json`, the
//! CLI): RFC 3339 in UTC with microseconds, the precision both databases store, so every time
//! has the same shape (`2026-12-06T23:22:50.731156Z`).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Serializer;

/// `at` (UTC) as RFC 3339 with microseconds and `Z`.
pub fn format(at: NaiveDateTime) -> String {
    format_utc(at.and_utc())
}

/// `at` as RFC 3339 with microseconds and `Z`.
pub fn format_utc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Serialises a UTC `NaiveDateTime` field as [`format`] does.
pub(crate) fn serialize<S: Serializer>(at: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*at))
}

/// Serialises an optional UTC `NaiveDateTime` field as [`format`] does.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        at: &Option<NaiveDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, s),
            None => s.serialize_none(),
        }
    }
}

/// Serialises `DateTime<Utc>` fields as [`format_utc`] does (chrono alone varies the digits).
pub(crate) mod utc {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_utc(*at))
    }

    /// The same for an optional time.
    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }
    }

    /// The same for a list of times.
    pub(crate) mod list {
        use super::*;
        use serde::ser::SerializeSeq;

        pub(crate) fn serialize<S: Serializer>(
            all: &[DateTime<Utc>],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(all.len()))?;
            for at in all {
                seq.serialize_element(&format_utc(*at))?;
            }
            seq.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_time_has_the_same_shape() {
        let whole = DateTime::parse_from_rfc3339("2026-12-06T23:22:50Z").expect("time");
        let fine = DateTime::parse_from_rfc3339("2026-12-06T23:22:50.7311567Z").expect("time");
        assert_eq!(
            format_utc(whole.with_timezone(&Utc)),
            "2026-12-06T23:22:50.000000Z"
        );
        assert_eq!(format(fine.naive_utc()), "2026-12-06T23:22:50.731156Z");
    }
}
