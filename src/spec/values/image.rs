//! An image as a spec names it: an id as it is, an id tied to its region (`eu-west-1:ami-0aaa`, the
//! form Packer writes), an SSM parameter holding the id (`ssm:/images/web`), the images of a Packer
//! manifest (`{ packer: build/packer-manifest.json, build: web-x86 }`) or a lookup by owner and name
//! (`{ lookup: { owners: [self], name: "web-*" } }`).
//!
//! A string is read by its form and a mapping by its one key, with a hand-written visitor (no
//! `untagged`): a wrong value says which forms exist. What each form resolves to is the provider's
//! business (ec2's `images/`); a provider without them refuses every form but a plain id
//! ([`check_plain`]).

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::spec::{FieldPath, Problem};

/// Where a cell's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An image id as it is (`ami-0abc`), or a qemu image's name or path.
    Id(String),
    /// An id that exists in one region only, as Packer writes it: `eu-west-1:ami-0aaa`.
    InRegion { region: String, id: String },
    /// `ssm:/images/web`: the id an SSM parameter holds, read in the cell's region.
    Ssm(String),
    /// The images a Packer manifest lists for its last run.
    Packer(PackerSource),
    /// The image a DescribeImages lookup finds.
    Lookup(ImageLookup),
}

/// `{ packer: FILE, build: NAME }`: a manifest written by Packer's `manifest` post-processor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackerSource {
    /// The manifest, relative to the spec file (`packer-manifest.json`), read when the spec is.
    pub packer: String,
    /// Only the build of this name (its `name`); every build of the last run without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// `{ lookup: {...} }`: the image DescribeImages finds in the cell's region, like Terraform's `aws_ami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupSource {
    pub lookup: ImageLookup,
}

/// What a lookup asks DescribeImages for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageLookup {
    /// Account ids, `self`, `amazon` or `aws-marketplace`; at least one (without an owner
    /// DescribeImages searches every public image, anyone's).
    #[serde(deserialize_with = "some_owners")]
    #[schemars(length(min = 1))]
    pub owners: Vec<String>,
    /// The image name, `*` and `?` as wildcards (`web-*`).
    pub name: String,
    /// Only images of this architecture (`x86_64`, `arm64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Take the newest of several matches (the default); `false` refuses more than one match.
    #[serde(default = "yes")]
    pub most_recent: bool,
    /// Deprecated images match too (default false).
    #[serde(default)]
    pub include_deprecated: bool,
}

fn yes() -> bool {
    true
}

fn some_owners<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let owners = Vec::<String>::deserialize(deserializer)?;
    if owners.is_empty() || owners.iter().any(|o| o.trim().is_empty()) {
        return Err(de::Error::custom(
            "a lookup needs its owners (`self`, an account id, `amazon`): without one it would find anyone's public image",
        ));
    }
    Ok(owners)
}

impl ImageSource {
    /// How a cell's id names the image: the id, the parameter, the lookup's name (so that a cell
    /// keeps its name from one bake to the next).
    pub fn label(&self) -> String {
        match self {
            ImageSource::Id(id) | ImageSource::InRegion { id, .. } => id.clone(),
            ImageSource::Ssm(name) => name.trim_start_matches('/').replace('/', "-"),
            ImageSource::Packer(p) => p.build.clone().unwrap_or_else(|| p.packer.clone()),
            // Its architecture too: an x86 and an arm lookup of one name are two images.
            ImageSource::Lookup(l) => {
                let name: String = l.name.chars().filter(|c| !matches!(c, '*' | '?')).collect();
                let name = name.trim_matches(|c| matches!(c, '-' | '.' | '_'));
                let name = if name.is_empty() { "lookup" } else { name };
                match &l.architecture {
                    Some(arch) => format!("{name}-{arch}"),
                    None => name.to_string(),
                }
            }
        }
    }

    /// Reads a string form: `ssm:NAME`, `REGION:ami-...`, else an id.
    pub fn from_text(text: &str) -> Result<ImageSource, String> {
        if let Some(name) = text.strip_prefix("ssm:") {
            if name.trim().is_empty() {
                return Err("`ssm:` names no parameter: write `ssm:/path/to/parameter`".into());
            }
            return Ok(ImageSource::Ssm(name.to_string()));
        }
        if let Some((region, id)) = text.split_once(':') {
            if is_region(region) && id.starts_with("ami-") {
                return Ok(ImageSource::InRegion { region: region.to_string(), id: id.to_string() });
            }
        }
        Ok(ImageSource::Id(text.to_string()))
    }
}

/// An AWS region's shape: `eu-west-1`, `us-gov-east-1` (lowercase words and a number).
fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts.last().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

const FORMS: &str = "an image id, `REGION:ami-...`, `ssm:/parameter`, `{ packer: FILE, build: NAME }` or `{ lookup: { owners, name } }`";

impl<'de> Deserialize<'de> for ImageSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImageSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(FORMS)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ImageSource, E> {
                ImageSource::from_text(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ImageSource, A::Error> {
                // Read whole, then by its keys: `build` may come before `packer`.
                let value = serde_yaml::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let is = |key: &str| value.as_mapping().is_some_and(|m| m.contains_key(key));
                if is("packer") {
                    PackerSource::deserialize(value).map(ImageSource::Packer).map_err(de::Error::custom)
                } else if is("lookup") {
                    LookupSource::deserialize(value).map(|l| ImageSource::Lookup(l.lookup)).map_err(de::Error::custom)
                } else {
                    Err(de::Error::custom(format!("an image mapping needs a `packer` or a `lookup` key; {FORMS}")))
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for ImageSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ImageSource".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let packer = generator.subschema_for::<PackerSource>();
        let lookup = generator.subschema_for::<LookupSource>();
        schemars::json_schema!({
            "description": "An image id; `REGION:ami-...` (an id that exists in that region only: the cell runs there); `ssm:/parameter` (the id an SSM parameter holds in the cell's region); `{ packer: FILE, build: NAME }` (the images of a Packer manifest's last run, each in its region); or `{ lookup: { owners, name, most_recent, include_deprecated, architecture } }` (the image DescribeImages finds in the cell's region).",
            "anyOf": [{ "type": "string", "minLength": 1 }, packer, lookup]
        })
    }
}

/// The check of a provider that takes plain ids only (qemu): the other forms are refused at their
/// place, saying whose they are.
pub fn check_plain(value: &serde_yaml::Value, at: &FieldPath) -> Vec<Problem> {
    let refused = |form: &str| {
        vec![Problem::at(at.clone(), format!("{form} is an ec2 image form; this provider takes an image name or path"))]
    };
    match value {
        serde_yaml::Value::String(text) => match ImageSource::from_text(text) {
            Ok(ImageSource::Ssm(_)) => refused("an `ssm:` parameter"),
            _ => Vec::new(),
        },
        serde_yaml::Value::Mapping(m) if m.contains_key("packer") => refused("a Packer manifest"),
        serde_yaml::Value::Mapping(m) if m.contains_key("lookup") => refused("an image lookup"),
        other => match serde_yaml::from_value::<String>(other.clone()) {
            Ok(_) => Vec::new(),
            Err(e) => vec![Problem::at(at.clone(), crate::spec::clean_yaml_message(&e.to_string()))],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<ImageSource, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    /// A lookup without an owner would search anyone's public images; one per architecture names
    /// a cell of its own.
    #[test]
    fn a_lookup_needs_an_owner_and_its_architecture_is_in_its_label() {
        let why = read("{lookup: {owners: [], name: web-*}}").unwrap_err();
        assert!(why.contains("a lookup needs its owners"), "{why}");
        let arm = read("{lookup: {owners: [self], name: web-*, architecture: arm64}}").unwrap();
        assert_eq!(arm.label(), "web-arm64");
        assert_eq!(read("{lookup: {owners: [self], name: '*'}}").unwrap().label(), "lookup");
    }

    #[test]
    fn each_form_is_read_by_its_shape() {
        assert_eq!(read("ami-0abc"), Ok(ImageSource::Id("ami-0abc".into())));
        assert_eq!(
            read("eu-west-1:ami-0aaa"),
            Ok(ImageSource::InRegion { region: "eu-west-1".into(), id: "ami-0aaa".into() })
        );
        assert_eq!(read("\"ssm:/images/web\""), Ok(ImageSource::Ssm("/images/web".into())));
        assert_eq!(read("./disk:1.qcow2"), Ok(ImageSource::Id("./disk:1.qcow2".into())));
        let packer = read("{ build: web-x86, packer: m.json }").unwrap();
        assert_eq!(
            packer,
            ImageSource::Packer(PackerSource { packer: "m.json".into(), build: Some("web-x86".into()) })
        );
        let ImageSource::Lookup(lookup) = read("{ lookup: { owners: [self], name: \"web-*\" } }").unwrap() else {
            panic!("a lookup");
        };
        assert!(lookup.most_recent && !lookup.include_deprecated);
        assert!(read("{ lookup: { owners: [self] } }").unwrap_err().contains("missing field `name`"));
        assert!(read("{ packer: m.json, bulid: x }").unwrap_err().contains("unknown field `bulid`"));
        assert!(read("{ manifest: m.json }").unwrap_err().contains("needs a `packer` or a `lookup` key"));
        assert!(read("\"ssm:\"").unwrap_err().contains("names no parameter"));
    }

    #[test]
    fn labels_name_the_source_not_tonights_id() {
        assert_eq!(ImageSource::Ssm("/images/web".into()).label(), "images-web");
        assert_eq!(read("{ lookup: { owners: [self], name: \"web-*\" } }").unwrap().label(), "web");
        assert_eq!(read("eu-west-1:ami-0aaa").unwrap().label(), "ami-0aaa");
    }
}
