//! `status:` of an HTTP probe: a code, a list of codes, or a range like `200-299`.

use std::borrow::Cow;
use std::fmt;
use std::ops::RangeInclusive;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Accepted HTTP status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMatcher(pub Vec<RangeInclusive<u16>>);

impl StatusMatcher {
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }

    /// The default: any success or redirect.
    pub fn success() -> Self {
        StatusMatcher(vec![200..=399])
    }
}

impl fmt::Display for StatusMatcher {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| if r.start() == r.end() { r.start().to_string() } else { format!("{}-{}", r.start(), r.end()) })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

fn parse_status_part<E: de::Error>(text: &str) -> Result<RangeInclusive<u16>, E> {
    let bad = || E::custom(format!("invalid status `{text}`: expected a code like 200 or a range like 200-299"));
    let code = |s: &str| -> Result<u16, E> {
        let c: u16 = s.trim().parse().map_err(|_| bad())?;
        if (100..=599).contains(&c) {
            Ok(c)
        } else {
            Err(E::custom(format!("invalid status {c}: HTTP codes are 100 to 599")))
        }
    };
    match text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(E::custom(format!("invalid status range `{text}`: {lo} is above {hi}")));
            }
            Ok(lo..=hi)
        }
        None => {
            let c = code(text)?;
            Ok(c..=c)
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusMatcher;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code, a list of codes, or a range like 200-299")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(StatusMatcher(vec![parse_status_part(&v.to_string())?]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(StatusMatcher(vec![parse_status_part(&v.to_string())?]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StatusMatcher(vec![parse_status_part(v)?]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut ranges = Vec::new();
                while let Some(one) = seq.next_element::<StatusMatcher>()? {
                    ranges.extend(one.0);
                }
                if ranges.is_empty() {
                    return Err(de::Error::custom("empty status list: give at least one code"));
                }
                Ok(StatusMatcher(ranges))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl Serialize for StatusMatcher {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for StatusMatcher {
    fn schema_name() -> Cow<'static, str> {
        "StatusMatcher".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let range = json_schema!({ "type": "string", "pattern": "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$" });
        let code = json_schema!({ "type": "integer", "minimum": 100, "maximum": 599 });
        json_schema!({
            "description": "A status code, a list of codes, or a range like 200-299.",
            "anyOf": [code, range, { "type": "array", "items": { "anyOf": [code, range] }, "minItems": 1 }]
        })
    }
}
