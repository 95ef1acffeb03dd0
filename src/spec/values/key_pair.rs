//! `launch.key_pair`: `ephemeral` (a key made for the run) or the name of an existing key pair.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
