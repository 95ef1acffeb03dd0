//! `provider:` as written: one key naming the provider, its settings left raw. The spec knows no
//! provider: the registry (`crate::providers`) reads the section, each provider its own part, and
//! gives the JSON Schema its real shape.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The name of the schema definition the registry fills in for this section.
pub const PROVIDER_SECTION_DEF: &str = "ProviderSpec";

/// The `provider:` section: provider name -> its raw settings, in file order.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ProviderSection(serde_yaml::Mapping);

impl ProviderSection {
    /// Each provider named, with its raw settings, in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &serde_yaml::Value)> {
        self.0.iter().map(|(key, value)| (key.as_str().unwrap_or_default(), value))
    }
}

impl JsonSchema for ProviderSection {
    fn schema_name() -> Cow<'static, str> {
        PROVIDER_SECTION_DEF.into()
    }

    /// A reference only: the registry adds the definition, since only it knows the providers.
    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "$ref": format!("#/$defs/{PROVIDER_SECTION_DEF}") })
    }
}
