//! Integers as JSON Schema counts them: `427` and `427.0` alike. serde reads a number written
//! with a fraction or an exponent as a float and refuses it for an integer field, while the
//! schema the API publishes (`"type": "integer"`) accepts it; these read both.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::{Number, Value};

/// A whole number of type `T`, written as an integer or as a float with no fraction.
pub(crate) fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    whole(&Number::deserialize(deserializer)?).ok_or_else(|| {
        D::Error::custom(format!(
            "expected a whole number from {} to {}",
            i64::MIN,
            u64::MAX
        ))
    })
}

/// As [`deserialize`], for an optional field.
#[cfg(any(feature = "server", test))]
pub(crate) fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    match Option::<Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => whole(&number)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range"))),
    }
}

/// `value` with every float that is a whole number written as an integer (`427.0` as `427`),
/// or `None` when it holds none: a context the schema checks as JSON Schema counts integers
/// is then read by serde, which refuses a float for an integer field, as the schema does not.
pub(crate) fn whole_numbers(value: &Value) -> Option<Value> {
    fn has_whole_float(value: &Value) -> bool {
        match value {
            Value::Number(n) => n.is_f64() && whole::<i64>(n).is_some(),
            Value::Array(items) => items.iter().any(has_whole_float),
            Value::Object(map) => map.values().any(has_whole_float),
            _ => false,
        }
    }
    fn rewrite(value: &mut Value) {
        match value {
            Value::Number(n) if n.is_f64() => {
                if let Some(whole) = whole::<i64>(n) {
                    *n = whole.into();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(rewrite),
            Value::Object(map) => map.values_mut().for_each(rewrite),
            _ => {}
        }
    }
    has_whole_float(value).then(|| {
        let mut value = value.clone();
        rewrite(&mut value);
        value
    })
}

fn whole<T: TryFrom<i64> + TryFrom<u64>>(number: &Number) -> Option<T> {
    if let Some(n) = number.as_i64() {
        return T::try_from(n).ok();
    }
    if let Some(n) = number.as_u64() {
        return T::try_from(n).ok();
    }
    let f = number.as_f64()?;
    // Exactly representable and whole: within ±2^53 every integer is.
    if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
        #[expect(clippy::cast_possible_truncation, reason = "whole and within ±2^53")]
        return T::try_from(f as i64).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[test]
    fn whole_floats_become_integers_and_nothing_else_changes() {
        let context = json!({ "id": 427.0, "lines": [{ "qty": 2e3, "price": 2.5 }], "n": 7 });
        assert_eq!(
            super::whole_numbers(&context),
            Some(json!({ "id": 427, "lines": [{ "qty": 2000, "price": 2.5 }], "n": 7 }))
        );
        assert_eq!(
            super::whole_numbers(&json!({ "n": 7, "x": 0.5, "big": 1e300 })),
            None
        );
    }

    #[derive(Deserialize)]
    struct Row {
        #[serde(deserialize_with = "super::deserialize")]
        priority: i32,
        #[serde(default, deserialize_with = "super::option")]
        limit: Option<u32>,
    }

    fn read(text: &str) -> Result<(i32, Option<u32>), String> {
        serde_json::from_str::<Row>(text)
            .map(|r| (r.priority, r.limit))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_read_however_they_are_written() {
        assert_eq!(read(r#"{"priority": -3}"#), Ok((-3, None)));
        assert_eq!(
            read(r#"{"priority": -832543.0, "limit": 427.0}"#),
            Ok((-832543, Some(427)))
        );
        assert_eq!(read(r#"{"priority": 1e3}"#), Ok((1000, None)));
        assert!(read(r#"{"priority": 1.5}"#).is_err());
        assert!(read(r#"{"priority": 3000000000}"#).is_err(), "beyond i32");
        assert!(
            read(r#"{"priority": 0, "limit": -1}"#).is_err(),
            "negative for u32"
        );
        assert!(read(r#"{"priority": "3"}"#).is_err());
    }
}
