//! The EC2 launch surface as typed values, and the one function that puts them on a RunInstances
//! request.
//!
//! A cell launches with an image, an instance type, a subnet and security groups, and with an
//! [`Ec2Launch`]: block devices, IMDS options, an instance profile, a public address or not, a zone and
//! a placement group, a boot mode. The spec's `launch:` section and the matrix axes of the same names
//! deserialize into these types. [`Ec2Launch::problems`] names what EC2 would refuse, before anything is
//! launched; [`apply`] writes the request, given the image's root device name that only preflight knows.
//!
//! The checks live in `launch/checks.rs`, the request in `launch/request.rs`.
//!
//! Like the spec's own types these reject nothing while deserializing (the loader collects unknown keys
//! with `serde_ignored`), and the JSON Schema says `additionalProperties: false` so that an editor flags
//! the same keys.

mod checks;
mod request;

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use request::{apply, ApplyError};

/// What a cell launches with beyond its image, instance type, subnet and security groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Ec2Launch {
    /// The root volume, on the image's root device; what is left out is as the image has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_volume: Option<RootVolume>,
    /// Extra EBS volumes, new and empty, attached at launch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// The firmware the machine must start with: checked against the image and the instance type
    /// before launching. RunInstances takes no boot mode: the image's own and the instance type's decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_mode: Option<BootMode>,
    /// Instance metadata service options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imds: Option<Imds>,
    /// An IAM instance profile: its name, or its ARN (starting with `arn:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_instance_profile: Option<String>,
    /// Give the instance a public IPv4 address (true) or none (false), whatever the subnet's default;
    /// left out, the subnet's default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<bool>,
    /// The availability zone, e.g. `eu-west-1a`; with a subnet it must be the subnet's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// The name of an existing placement group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group: Option<String>,
}

impl Ec2Launch {
    /// The EC2 fields of a cell's launch, as its matrix and `launch:` set them.
    pub fn of(cell: &crate::cell::Cell) -> Result<Ec2Launch, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(cell.launch.clone()))
    }
}

/// The root volume: what is left out is as the image's block device mapping has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RootVolume {
    /// Size in GiB; at least the image's root snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub size: Option<u32>,
    /// EBS volume type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<VolumeType>,
    /// Provisioned IOPS: io1, io2 (required there) and gp3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<u32>,
    /// Throughput in MiB/s: gp3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<u32>,
    /// Encrypt the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// The KMS key to encrypt with (key id, alias or ARN); needs `encrypted: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// Delete the volume when the instance is terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
}

/// An extra EBS volume, created empty at launch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Volume {
    /// Device name, e.g. `/dev/sdf`; `sdf` and `xvdf` stand for `/dev/sdf` and `/dev/xvdf`. Not the
    /// image's root device: set `root_volume` for that.
    pub device: String,
    /// Size in GiB.
    #[schemars(range(min = 1))]
    pub size: u32,
    /// EBS volume type; left out, EC2's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<VolumeType>,
    /// Provisioned IOPS: io1, io2 (required there) and gp3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<u32>,
    /// Throughput in MiB/s: gp3 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<u32>,
    /// Encrypt the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// The KMS key to encrypt with (key id, alias or ARN); needs `encrypted: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// Delete the volume when the instance is terminated (EC2's default for a volume added at launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
}

/// An EBS volume type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeType {
    /// General purpose SSD, IOPS by size.
    Gp2,
    /// General purpose SSD, IOPS and throughput set apart from size.
    Gp3,
    /// Provisioned IOPS SSD.
    Io1,
    /// Provisioned IOPS SSD, higher durability.
    Io2,
    /// Throughput optimized HDD.
    St1,
    /// Cold HDD.
    Sc1,
    /// Magnetic, previous generation.
    Standard,
}

impl VolumeType {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Gp2 => "gp2",
            VolumeType::Gp3 => "gp3",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::St1 => "st1",
            VolumeType::Sc1 => "sc1",
            VolumeType::Standard => "standard",
        }
    }

    /// The sizes in GiB EC2 takes for a volume of this type.
    pub fn sizes(self) -> RangeInclusive<u32> {
        match self {
            VolumeType::Gp2 => 1..=16_384,
            VolumeType::Gp3 => 1..=65_536,
            VolumeType::Io1 => 4..=16_384,
            VolumeType::Io2 => 4..=65_536,
            VolumeType::St1 | VolumeType::Sc1 => 125..=16_384,
            VolumeType::Standard => 1..=1_024,
        }
    }

    /// The IOPS EC2 takes for this type; None: it takes no IOPS.
    pub fn iops(self) -> Option<RangeInclusive<u32>> {
        match self {
            VolumeType::Gp3 => Some(3_000..=80_000),
            VolumeType::Io1 => Some(100..=64_000),
            VolumeType::Io2 => Some(100..=256_000),
            _ => None,
        }
    }

    /// Whether EC2 refuses a volume of this type without IOPS.
    pub fn needs_iops(self) -> bool {
        matches!(self, VolumeType::Io1 | VolumeType::Io2)
    }

    /// The throughputs in MiB/s EC2 takes for this type; None: it takes none.
    pub fn throughputs(self) -> Option<RangeInclusive<u32>> {
        match self {
            VolumeType::Gp3 => Some(125..=2_000),
            _ => None,
        }
    }
}

impl fmt::Display for VolumeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Instance metadata service (IMDS) options; what is left out is as the image and the account have it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Imds {
    /// `required`: IMDSv2 only (session tokens); `optional`: IMDSv1 too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_tokens: Option<HttpTokens>,
    /// How many network hops the metadata token may travel (1 to 64): containers need 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub hop_limit: Option<u8>,
    /// Whether the metadata endpoint answers at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<ImdsEndpoint>,
    /// Whether the instance's tags can be read from the metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_tags: Option<bool>,
}

/// Whether IMDSv2 session tokens are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HttpTokens {
    /// IMDSv2 only.
    Required,
    /// IMDSv1 and IMDSv2.
    Optional,
}

/// Whether the metadata endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImdsEndpoint {
    Enabled,
    Disabled,
}

/// A boot mode, in the words of the spec and of EC2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// Legacy BIOS.
    LegacyBios,
    /// UEFI.
    Uefi,
    /// UEFI where the instance type has it, legacy BIOS elsewhere.
    UefiPreferred,
}

impl BootMode {
    pub const ALL: [BootMode; 3] = [BootMode::LegacyBios, BootMode::Uefi, BootMode::UefiPreferred];

    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::LegacyBios => "legacy-bios",
            BootMode::Uefi => "uefi",
            BootMode::UefiPreferred => "uefi-preferred",
        }
    }
}

impl fmt::Display for BootMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no boot mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown boot mode `{0}` (expected legacy-bios, uefi or uefi-preferred)")]
pub struct UnknownBootMode(String);

impl FromStr for BootMode {
    type Err = UnknownBootMode;

    fn from_str(s: &str) -> Result<Self, UnknownBootMode> {
        BootMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownBootMode(s.to_string()))
    }
}

/// A device name as EC2 takes it: `sdf` and `xvdf` stand for `/dev/sdf` and `/dev/xvdf`.
pub fn device_name(device: &str) -> String {
    let device = device.trim();
    if device.starts_with('/') {
        device.to_string()
    } else {
        format!("/dev/{device}")
    }
}

/// The parts of an EBS volume both kinds share, for the checks and the request.
struct Ebs<'a> {
    size: Option<u32>,
    r#type: Option<VolumeType>,
    iops: Option<u32>,
    throughput: Option<u32>,
    encrypted: Option<bool>,
    kms_key: Option<&'a str>,
    delete_on_termination: Option<bool>,
}

impl RootVolume {
    fn ebs(&self) -> Ebs<'_> {
        Ebs {
            size: self.size,
            r#type: self.r#type,
            iops: self.iops,
            throughput: self.throughput,
            encrypted: self.encrypted,
            kms_key: self.kms_key.as_deref(),
            delete_on_termination: self.delete_on_termination,
        }
    }
}

impl Volume {
    fn ebs(&self) -> Ebs<'_> {
        Ebs {
            size: Some(self.size),
            r#type: self.r#type,
            iops: self.iops,
            throughput: self.throughput,
            encrypted: self.encrypted,
            kms_key: self.kms_key.as_deref(),
            delete_on_termination: self.delete_on_termination,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_words_deserialize_and_round_trip() {
        let yaml = "
root_volume: {size: 30, type: io2, iops: 3000, encrypted: true, kms_key: alias/k, delete_on_termination: false}
volumes:
  - {device: sdf, size: 100, type: gp3, throughput: 250}
  - {device: /dev/xvdg, size: 500, type: st1}
boot_mode: uefi-preferred
imds: {http_tokens: required, hop_limit: 2, endpoint: enabled, instance_tags: true}
iam_instance_profile: probe
public_ip: false
availability_zone: eu-west-1a
placement_group: pg
";
        let launch: Ec2Launch = serde_yaml::from_str(yaml).unwrap();
        let root = launch.root_volume.as_ref().unwrap();
        assert_eq!((root.size, root.r#type, root.iops), (Some(30), Some(VolumeType::Io2), Some(3000)));
        assert_eq!(launch.volumes[1].r#type, Some(VolumeType::St1));
        assert_eq!(launch.boot_mode, Some(BootMode::UefiPreferred));
        assert_eq!(launch.imds.as_ref().unwrap().http_tokens, Some(HttpTokens::Required));
        assert_eq!(launch.imds.as_ref().unwrap().endpoint, Some(ImdsEndpoint::Enabled));
        assert!(launch.problems().is_empty(), "{:?}", launch.problems());
        let json = serde_json::to_value(&launch).unwrap();
        assert_eq!(json["root_volume"]["type"], "io2");
        assert_eq!(
            json["volumes"][0],
            serde_json::json!({"device": "sdf", "size": 100, "type": "gp3", "throughput": 250})
        );
        assert_eq!(serde_json::from_value::<Ec2Launch>(json).unwrap(), launch);
        assert_eq!(serde_json::to_value(Ec2Launch::default()).unwrap(), serde_json::json!({}));
    }

    #[test]
    fn the_schema_names_the_fields_and_refuses_others() {
        let schema = serde_json::to_value(schemars::schema_for!(Ec2Launch)).unwrap();
        let defs = &schema["$defs"];
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(defs["RootVolume"]["additionalProperties"], false);
        assert!(defs["RootVolume"]["properties"]["type"].is_object(), "{}", defs["RootVolume"]);
        assert_eq!(defs["Volume"]["required"], serde_json::json!(["device", "size"]));
        assert_eq!(defs["Imds"]["properties"]["hop_limit"]["maximum"], 64);
        let described = |def: &serde_json::Value| {
            def["properties"].as_object().unwrap().iter().all(|(_, p)| p["description"].is_string())
        };
        for name in ["RootVolume", "Volume", "Imds"] {
            assert!(described(&defs[name]), "{name}: {}", defs[name]);
        }
        assert!(described(&schema), "{schema}");
        let modes = serde_json::to_string(&defs["BootMode"]).unwrap();
        for mode in BootMode::ALL {
            assert!(modes.contains(&format!("\"{mode}\"")), "{modes}");
        }
    }
}
