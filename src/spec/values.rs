//! Spec values that accept more than one shape ("a code, a list or a range").
//!
//! Each has a hand-written visitor instead of `serde(untagged)`, so that a wrong value is reported with
//! what was expected rather than "data did not match any variant", and a hand-written JSON Schema.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeInclusive;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A matrix axis: one value or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element()? {
                    values.push(value);
                }
                Ok(OneOrMany(values))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let value = T::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(OneOrMany(vec![value]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                // YAML reads `ami-1` as text but a bare `1234` as a number; axes are text.
                self.visit_string(v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_string(v.to_string())
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

impl<T: Serialize> Serialize for OneOrMany<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<T>();
        json_schema!({
            "description": "One value or a list of values.",
            "anyOf": [one, { "type": "array", "items": one, "minItems": 1 }]
        })
    }
}

/// The security group axis: each value is a set of groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroups(pub Vec<Vec<String>>);

impl<'de> Deserialize<'de> for SecurityGroups {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecurityGroups;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a group, a list of groups (one set) or a list of lists (several sets)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(SecurityGroups(vec![vec![v.to_string()]]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // `[sg-a, sg-b]` is one set of two groups; `[[sg-a], [sg-b]]` is two sets.
                let mut groups = Vec::new();
                let mut sets = Vec::new();
                while let Some(item) = seq.next_element::<GroupOrSet>()? {
                    match item {
                        GroupOrSet::Group(g) => groups.push(g),
                        GroupOrSet::Set(s) => sets.push(s),
                    }
                }
                match (groups.is_empty(), sets.is_empty()) {
                    (false, false) => {
                        Err(de::Error::custom("mixes groups and lists of groups: write every value as a list"))
                    }
                    (false, true) => Ok(SecurityGroups(vec![groups])),
                    _ => Ok(SecurityGroups(sets)),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

enum GroupOrSet {
    Group(String),
    Set(Vec<String>),
}

impl<'de> Deserialize<'de> for GroupOrSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GroupOrSet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a security group id or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(GroupOrSet::Group(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut set = Vec::new();
                while let Some(g) = seq.next_element::<String>()? {
                    set.push(g);
                }
                Ok(GroupOrSet::Set(set))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl Serialize for SecurityGroups {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl JsonSchema for SecurityGroups {
    fn schema_name() -> Cow<'static, str> {
        "SecurityGroups".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A group, one set of groups, or a list of sets.",
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } },
                { "type": "array", "items": { "type": "array", "items": { "type": "string" } } }
            ]
        })
    }
}

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

/// A size in bytes, written `256M`, `1G`, `512K` or a plain byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn mebibytes(self) -> u64 {
        self.0 / (1024 * 1024)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &s[digits.len()..];
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| format!("invalid size `{s}`: expected a number with K, M or G, like 256M"))?;
        let multiplier: u64 = match unit.to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KI" | "KIB" => 1 << 10,
            "M" | "MB" | "MI" | "MIB" => 1 << 20,
            "G" | "GB" | "GI" | "GIB" => 1 << 30,
            _ => return Err(format!("invalid size unit `{unit}`: expected K, M or G")),
        };
        n.checked_mul(multiplier).map(ByteSize).ok_or_else(|| format!("size `{s}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 256M or 1G")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}M", self.mebibytes()))
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size like 256M or 1G.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]+\\s*([KMG]i?B?|B)?$|\\$\\{" }
            ]
        })
    }
}

/// `ephemeral`, or the name of an existing key pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeyPair {
    #[default]
    Ephemeral,
    Existing(String),
}

impl<'de> Deserialize<'de> for KeyPair {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match name.as_str() {
            "ephemeral" => KeyPair::Ephemeral,
            _ => KeyPair::Existing(name),
        })
    }
}

impl Serialize for KeyPair {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            KeyPair::Ephemeral => serializer.serialize_str("ephemeral"),
            KeyPair::Existing(name) => serializer.serialize_str(name),
        }
    }
}

impl JsonSchema for KeyPair {
    fn schema_name() -> Cow<'static, str> {
        "KeyPair".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`ephemeral` (one ed25519 key per run, made locally, imported into each region and deleted at the end) or an existing key pair's name.",
            "type": "string",
            "minLength": 1
        })
    }
}

/// Schema stand-in for `humantime_serde` durations.
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
