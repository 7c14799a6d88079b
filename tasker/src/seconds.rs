//! Durations as configuration files write them: a number of seconds.

use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error as _};

/// The longest duration a file may give, so `Duration::from_secs_f64` can never overflow.
const MAX_SECONDS: f64 = 1e9;

/// Reads a non-negative number of seconds (`30`, `0.5`) as a [`Duration`].
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    if (0.0..MAX_SECONDS).contains(&seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(D::Error::custom(format!(
            "must be a number of seconds, not {seconds}"
        )))
    }
}

/// As [`deserialize`], for an optional duration (`null` or absent: none).
pub(crate) fn option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    match Option::<f64>::deserialize(deserializer)? {
        None => Ok(None),
        Some(seconds) if (0.0..MAX_SECONDS).contains(&seconds) => {
            Ok(Some(Duration::from_secs_f64(seconds)))
        }
        Some(seconds) => Err(D::Error::custom(format!(
            "must be a number of seconds, not {seconds}"
        ))),
    }
}
