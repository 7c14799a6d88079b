//! Masking of sensitive values in what the engine publishes: event payloads, and whatever else
//! leaves the process (logs, spans, API and CLI output).

use serde_json::Value;

/// The seed's default list: a key containing any of these (ignoring case) is sensitive.
pub const DEFAULT_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "_key",
    "apikey",
    "crypt",
    "salt",
    "certificate",
    "otp",
    "ssn",
];

/// What replaces a sensitive value (the seed's `filter_mask`).
pub const DEFAULT_MASK: &str = "[FILTERED]";

/// Replaces the values of sensitive keys, at any depth, with a mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redactor {
    keys: Vec<String>,
    mask: String,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_KEYS.iter().copied(), DEFAULT_MASK)
    }
}

impl Redactor {
    /// A redactor for keys containing any of `keys` (ignoring case), masked with `mask`.
    pub fn new<I, S>(keys: I, mask: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            keys: keys
                .into_iter()
                .map(|k| k.as_ref().to_ascii_lowercase())
                .filter(|k| !k.is_empty())
                .collect(),
            mask: mask.into(),
        }
    }

    /// Whether values under `key` are masked.
    pub fn is_sensitive(&self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        self.keys.iter().any(|k| key.contains(k.as_str()))
    }

    /// Masks, in place, every value whose key is sensitive.
    pub fn redact(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if self.is_sensitive(key) {
                        *value = Value::String(self.mask.clone());
                    } else {
                        self.redact(value);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact(v)),
            _ => {}
        }
    }

    /// A masked copy of `value`.
    pub fn redacted(&self, value: &Value) -> Value {
        let mut copy = value.clone();
        self.redact(&mut copy);
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_sensitive_keys_at_any_depth() {
        let redactor = Redactor::default();
        let mut value = json!({
            "user": { "Password": "hunter2", "name": "ann" },
            "cards": [{ "api_key": "k", "last4": "4242" }],
            "access_token": { "nested": "t" },
            "SSN": 123,
        });
        redactor.redact(&mut value);
        assert_eq!(
            value,
            json!({
                "user": { "Password": "[FILTERED]", "name": "ann" },
                "cards": [{ "api_key": "[FILTERED]", "last4": "4242" }],
                "access_token": "[FILTERED]",
                "SSN": "[FILTERED]",
            })
        );
        let custom = Redactor::new(["iban"], "***");
        assert_eq!(
            custom.redacted(&json!({ "IBAN": "x", "password": "y" })),
            json!({ "IBAN": "***", "password": "y" })
        );
    }
}
