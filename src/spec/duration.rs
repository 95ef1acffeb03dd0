//! Durations in a spec: humantime text (`500ms`, `15s`, `1h30m`), at most a day.
//!
//! Used as `#[serde(with = "super::duration")]` in place of `humantime_serde`, so that no field can
//! carry a duration a deadline computation (`Instant + Duration`) would overflow on: every duration
//! is bounded where it is read, with the place of the value in the file. [`DurationSchema`] is how
//! such a field appears in the JSON Schema.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserializer, Serializer};

use super::limits::{MAX_DURATION, MAX_DURATION_TEXT};

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    // The check is made inside the visitor: serde_yaml gives an error raised there the place of the
    // value itself, not of the mapping around it.
    struct V;
    impl de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            let duration = humantime::parse_duration(v).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
            if duration > MAX_DURATION {
                return Err(E::custom(format!("duration `{}` is too long: at most {MAX_DURATION_TEXT}", v.trim())));
            }
            Ok(duration)
        }
    }
    deserializer.deserialize_str(V)
}

pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    humantime_serde::serialize(duration, serializer)
}

/// Schema stand-in for a duration field (`#[schemars(with = "DurationSchema")]`).
pub struct DurationSchema;

impl JsonSchema for DurationSchema {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration like 500ms, 15s, 5m or 1h30m, at most 24h.",
            "type": "string",
            // A `${VAR}` is only known when the spec is loaded: an editor lets it through.
            "pattern": "^\\s*([0-9]+\\s*[a-zµ]+\\s*)+$|\\$\\{"
        })
    }
}

/// `Option<Duration>` fields: absent or null is `None`, anything else as above.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] Duration);
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(d)| d))
    }

    pub fn serialize<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }
}
