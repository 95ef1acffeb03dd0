//! The matrix and the launch fields as written: named values whose meaning belongs to the provider.
//!
//! `matrix:` maps axis names to one value or a list of values, next to `include` and `exclude`;
//! `launch:` holds a few fields of its own (key pair, user data, tags) and any launch field of the
//! provider fixed for every cell. Which names exist and what their values may be is the provider's
//! word (`provider::Field`), checked in `plan` with each value's place in the file. Here the values
//! stay as YAML: hand-written visitors keep serde's path tracking, without `flatten` or `untagged`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::model::LaunchSpec;

/// Named values in the order written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(pub Vec<(String, serde_yaml::Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    fields.push((key, map.next_value()?));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The image matrix: every combination of the axes, minus `exclude`, plus `include`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatrixSpec {
    /// Each axis: a name the provider knows and one value or a list of values, in the order written.
    pub axes: Fields,
    /// Drop every cell that matches all the keys of an entry.
    pub exclude: Vec<Fields>,
    /// Add keys to the cells an entry matches, or add the entry as a cell of its own.
    pub include: Vec<Fields>,
}

impl<'de> Deserialize<'de> for MatrixSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MatrixSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of axes (with `include` and `exclude`)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MatrixSpec, A::Error> {
                let mut matrix = MatrixSpec::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "include" => matrix.include = map.next_value()?,
                        "exclude" => matrix.exclude = map.next_value()?,
                        _ => {
                            let value = map.next_value()?;
                            matrix.axes.0.push((key, value));
                        }
                    }
                }
                Ok(matrix)
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Serialize for MatrixSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in &self.axes.0 {
            map.serialize_entry(k, v)?;
        }
        if !self.exclude.is_empty() {
            map.serialize_entry("exclude", &self.exclude)?;
        }
        if !self.include.is_empty() {
            map.serialize_entry("include", &self.include)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LaunchSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LaunchSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of launch settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LaunchSpec, A::Error> {
                let mut launch = LaunchSpec::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "key_pair" => launch.key_pair = map.next_value()?,
                        "keep_private_key" => launch.keep_private_key = map.next_value()?,
                        "user_data" => launch.user_data = map.next_value()?,
                        "tags" => launch.tags = map.next_value::<BTreeMap<String, String>>()?,
                        // A provider's launch field, fixed for every cell: checked by the plan.
                        _ => {
                            let value = map.next_value()?;
                            launch.fields.0.push((key, value));
                        }
                    }
                }
                Ok(launch)
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl schemars::JsonSchema for MatrixSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MatrixSpec".into()
    }
    // The axes are the providers' launch fields: `providers::spec_schema` adds them.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The image matrix: each axis (a launch field of the provider) one value or a list; every combination of the axes, minus `exclude`, plus `include`.",
            "type": "object",
            "properties": {
                "exclude": { "description": "Drop every cell that matches all the keys of an entry.", "type": "array", "items": { "type": "object" } },
                "include": { "description": "Add keys to the cells an entry matches, or add the entry as a cell of its own.", "type": "array", "items": { "type": "object" } }
            }
        })
    }
}
