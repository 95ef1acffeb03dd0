//! The EC2 launch surface as typed values, and the one function that puts them on a RunInstances
//! request.
//!
//! A cell launches with an image, an instance type, a subnet and security groups, and with an
//! [`Ec2Launch`]: block devices, IMDS options, an instance profile, a public address or not, a zone and
//! a placement group, a boot mode. The spec's `launch:` section and the matrix axes of the same names
//! deserialize into these types. [`Ec2Launch::problems`] names what EC2 would refuse, before anything is
//! launched; [`apply`] writes the request, given the image's root device name that only preflight knows.
//!
//! Like the spec's own types these reject nothing while deserializing (the loader collects unknown keys
//! with `serde_ignored`), and the JSON Schema says `additionalProperties: false` so that an editor flags
//! the same keys.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceMetadataTagsState,
    InstanceNetworkInterfaceSpecification, Placement,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

impl FromStr for BootMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        BootMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown boot mode `{s}` (expected legacy-bios, uefi or uefi-preferred)"))
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

/// What every volume type together takes: without a type, nothing outside these can be right.
const MAX_SIZE: u32 = 65_536;
const ANY_IOPS: RangeInclusive<u32> = 100..=256_000;
const ANY_THROUGHPUT: RangeInclusive<u32> = 125..=2_000;

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

impl Ebs<'_> {
    /// What EC2 refuses in one volume, as (field, message). Without a type the volume is the image's
    /// (root) or EC2's default type, unknown here: only what no type takes is refused then.
    fn problems(&self, at: &str, out: &mut Vec<(String, String)>) {
        let mut push = |field: &str, message: String| out.push((format!("{at}.{field}"), message));
        if self.size == Some(0) {
            push("size", "size must be at least 1 GiB".into());
        }
        match self.r#type {
            Some(t) => self.type_problems(t, &mut push),
            None => self.any_type_problems(&mut push),
        }
        // EC2 refuses a KMS key for a volume that is not to be encrypted.
        if self.kms_key.is_some() && self.encrypted != Some(true) {
            push("kms_key", "a kms key needs `encrypted: true`".into());
        }
    }

    /// EC2 refuses sizes, IOPS and throughputs outside what the volume's type takes.
    fn type_problems(&self, t: VolumeType, push: &mut impl FnMut(&str, String)) {
        let sizes = t.sizes();
        if let Some(size) = self.size.filter(|s| *s > 0 && !sizes.contains(s)) {
            push("size", format!("{t} volumes are {} to {} GiB, not {size}", sizes.start(), sizes.end()));
        }
        match (t.iops(), self.iops) {
            (None, Some(_)) => push("iops", format!("iops is only for io1, io2 and gp3 volumes, not {t}")),
            (Some(range), Some(iops)) if !range.contains(&iops) => {
                push("iops", format!("{t} volumes take {} to {} iops, not {iops}", range.start(), range.end()))
            }
            (Some(range), None) if t.needs_iops() => {
                push("iops", format!("{t} volumes need iops ({} to {})", range.start(), range.end()))
            }
            _ => {}
        }
        match (t.throughputs(), self.throughput) {
            (None, Some(_)) => push("throughput", format!("throughput is only for gp3 volumes, not {t}")),
            (Some(range), Some(mibs)) if !range.contains(&mibs) => push(
                "throughput",
                format!("{t} volumes take {} to {} MiB/s of throughput, not {mibs}", range.start(), range.end()),
            ),
            _ => {}
        }
    }

    /// EC2 refuses what no volume type takes.
    fn any_type_problems(&self, push: &mut impl FnMut(&str, String)) {
        if let Some(size) = self.size.filter(|s| *s > MAX_SIZE) {
            push("size", format!("no volume type is over {MAX_SIZE} GiB, not {size}"));
        }
        if let Some(iops) = self.iops.filter(|i| !ANY_IOPS.contains(i)) {
            let (lo, hi) = (ANY_IOPS.start(), ANY_IOPS.end());
            push("iops", format!("no volume type takes {iops} iops ({lo} to {hi} at most)"));
        }
        if let Some(mibs) = self.throughput.filter(|t| !ANY_THROUGHPUT.contains(t)) {
            let (lo, hi) = (ANY_THROUGHPUT.start(), ANY_THROUGHPUT.end());
            push("throughput", format!("no volume type takes {mibs} MiB/s of throughput ({lo} to {hi} at most)"));
        }
    }

    fn block_device(&self) -> EbsBlockDevice {
        EbsBlockDevice::builder()
            .set_volume_size(self.size.map(int))
            .set_volume_type(self.r#type.map(|t| aws_sdk_ec2::types::VolumeType::from(t.as_str())))
            .set_iops(self.iops.map(int))
            .set_throughput(self.throughput.map(int))
            .set_encrypted(self.encrypted)
            .set_kms_key_id(self.kms_key.map(str::to_string))
            .set_delete_on_termination(self.delete_on_termination)
            .build()
    }

    fn is_empty(&self) -> bool {
        self.size.is_none()
            && self.r#type.is_none()
            && self.iops.is_none()
            && self.throughput.is_none()
            && self.encrypted.is_none()
            && self.kms_key.is_none()
            && self.delete_on_termination.is_none()
    }
}

impl Ec2Launch {
    /// What EC2 would refuse, found before launching: (field path such as `root_volume.iops` or
    /// `volumes[1].device`, lowercase message). Whether a volume's device is the image's root device
    /// needs the image: [`apply`] refuses that.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(root) = &self.root_volume {
            root.ebs().problems("root_volume", &mut out);
        }
        let mut devices: BTreeMap<String, usize> = BTreeMap::new();
        for (i, volume) in self.volumes.iter().enumerate() {
            let at = format!("volumes[{i}]");
            if volume.device.trim().is_empty() {
                out.push((format!("{at}.device"), "a device name is needed, e.g. /dev/sdf".into()));
            } else {
                let device = device_name(&volume.device);
                match devices.get(&device) {
                    // EC2 refuses two mappings for one device.
                    Some(first) => out.push((format!("{at}.device"), format!("{device} is also volumes[{first}]"))),
                    None => {
                        devices.insert(device, i);
                    }
                }
            }
            volume.ebs().problems(&at, &mut out);
        }
        if let Some(hops) = self.imds.as_ref().and_then(|i| i.hop_limit) {
            if !(1..=64).contains(&hops) {
                out.push(("imds.hop_limit".into(), format!("the hop limit is 1 to 64, not {hops}")));
            }
        }
        let blank = |value: &Option<String>| value.as_deref().is_some_and(|v| v.trim().is_empty());
        for (field, value) in [
            ("iam_instance_profile", &self.iam_instance_profile),
            ("availability_zone", &self.availability_zone),
            ("placement_group", &self.placement_group),
        ] {
            if blank(value) {
                out.push((field.into(), "must not be empty".into()));
            }
        }
        out
    }
}

/// Puts `launch`, the subnet and the security groups on a RunInstances request.
///
/// It sets SubnetId, SecurityGroupIds, NetworkInterfaces, BlockDeviceMappings, MetadataOptions,
/// IamInstanceProfile and Placement, each of them, replacing what `req` had: the caller sets none of
/// them. With `public_ip` set, EC2 takes the address choice only on a network interface, and refuses a
/// request with both a network interface and a top-level subnet or groups: the subnet and the groups
/// then go on `NetworkInterfaces[0]` and nowhere else.
///
/// `root_device_name` is the image's (preflight's `ImageFacts::root_device_name`): the root volume is
/// mapped there, and an extra volume may not use it. A root volume without it is an error.
///
/// The boot mode changes nothing here: RunInstances takes none (the image's boot mode and the instance
/// type's decide), so it is a preflight check and a fact read back from the instance.
pub fn apply(
    req: RunInstancesFluentBuilder,
    launch: &Ec2Launch,
    subnet: Option<&str>,
    security_groups: &[String],
    root_device_name: Option<&str>,
) -> Result<RunInstancesFluentBuilder, String> {
    let mappings = block_device_mappings(launch, root_device_name)?;
    let groups = (!security_groups.is_empty()).then(|| security_groups.to_vec());
    let req = match launch.public_ip {
        None => {
            req.set_network_interfaces(None).set_subnet_id(subnet.map(str::to_string)).set_security_group_ids(groups)
        }
        Some(public_ip) => {
            let interface = InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .associate_public_ip_address(public_ip)
                .set_subnet_id(subnet.map(str::to_string))
                .set_groups(groups)
                .build();
            req.set_network_interfaces(Some(vec![interface])).set_subnet_id(None).set_security_group_ids(None)
        }
    };
    Ok(req
        .set_block_device_mappings((!mappings.is_empty()).then_some(mappings))
        .set_metadata_options(launch.imds.as_ref().and_then(metadata_options))
        .set_iam_instance_profile(launch.iam_instance_profile.as_deref().map(instance_profile))
        .set_placement(placement(launch)))
}

/// The root volume on the image's root device, then the extra volumes on theirs.
fn block_device_mappings(
    launch: &Ec2Launch,
    root_device_name: Option<&str>,
) -> Result<Vec<BlockDeviceMapping>, String> {
    let mut out = Vec::new();
    if let Some(root) = launch.root_volume.as_ref().map(RootVolume::ebs).filter(|e| !e.is_empty()) {
        let Some(root_device) = root_device_name else {
            return Err("a root volume needs the image's root device name, which is not known".into());
        };
        out.push(BlockDeviceMapping::builder().device_name(root_device).ebs(root.block_device()).build());
    }
    let root_device = root_device_name.map(device_name);
    for (i, volume) in launch.volumes.iter().enumerate() {
        let device = device_name(&volume.device);
        if root_device.as_deref() == Some(device.as_str()) {
            return Err(format!(
                "volumes[{i}] is on {device}, the image's root device: set root_volume for that volume"
            ));
        }
        out.push(BlockDeviceMapping::builder().device_name(device).ebs(volume.ebs().block_device()).build());
    }
    Ok(out)
}

/// A number as the SDK takes it; past `i32::MAX` (which EC2 refuses anyway) it stays there.
fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn metadata_options(imds: &Imds) -> Option<InstanceMetadataOptionsRequest> {
    if imds == &Imds::default() {
        return None;
    }
    Some(
        InstanceMetadataOptionsRequest::builder()
            .set_http_tokens(imds.http_tokens.map(|t| match t {
                HttpTokens::Required => HttpTokensState::Required,
                HttpTokens::Optional => HttpTokensState::Optional,
            }))
            .set_http_put_response_hop_limit(imds.hop_limit.map(i32::from))
            .set_http_endpoint(imds.endpoint.map(|e| match e {
                ImdsEndpoint::Enabled => InstanceMetadataEndpointState::Enabled,
                ImdsEndpoint::Disabled => InstanceMetadataEndpointState::Disabled,
            }))
            .set_instance_metadata_tags(imds.instance_tags.map(|on| {
                if on {
                    InstanceMetadataTagsState::Enabled
                } else {
                    InstanceMetadataTagsState::Disabled
                }
            }))
            .build(),
    )
}

/// An instance profile by ARN when it is one, else by name.
fn instance_profile(profile: &str) -> IamInstanceProfileSpecification {
    let builder = IamInstanceProfileSpecification::builder();
    if profile.starts_with("arn:") {
        builder.arn(profile).build()
    } else {
        builder.name(profile).build()
    }
}

fn placement(launch: &Ec2Launch) -> Option<Placement> {
    if launch.availability_zone.is_none() && launch.placement_group.is_none() {
        return None;
    }
    Some(
        Placement::builder()
            .set_availability_zone(launch.availability_zone.clone())
            .set_group_name(launch.placement_group.clone())
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(String, String)> {
        let launch: Ec2Launch = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        launch.problems()
    }

    fn fields(yaml: &str) -> Vec<String> {
        problems(yaml).into_iter().map(|(field, _)| field).collect()
    }

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

    #[test]
    fn iops_and_throughput_only_where_the_type_takes_them() {
        assert_eq!(
            problems("root_volume: {type: gp2, iops: 3000}"),
            [("root_volume.iops".to_string(), "iops is only for io1, io2 and gp3 volumes, not gp2".to_string())]
        );
        assert_eq!(fields("root_volume: {type: st1, size: 500, iops: 500}"), ["root_volume.iops"]);
        assert_eq!(
            problems("root_volume: {type: io1, size: 100}"),
            [("root_volume.iops".to_string(), "io1 volumes need iops (100 to 64000)".to_string())]
        );
        assert_eq!(fields("root_volume: {type: io2}"), ["root_volume.iops"]);
        assert_eq!(
            problems("root_volume: {type: gp3, iops: 2000}"),
            [("root_volume.iops".to_string(), "gp3 volumes take 3000 to 80000 iops, not 2000".to_string())]
        );
        assert_eq!(fields("root_volume: {type: io1, size: 100, iops: 64001}"), ["root_volume.iops"]);
        assert!(problems("root_volume: {type: io2, size: 100, iops: 256000}").is_empty());
        assert!(problems("root_volume: {type: gp3}").is_empty(), "gp3 has default iops");
        assert_eq!(
            problems("volumes: [{device: sdf, size: 10, type: io2, iops: 1000, throughput: 200}]"),
            [("volumes[0].throughput".to_string(), "throughput is only for gp3 volumes, not io2".to_string())]
        );
        assert_eq!(
            problems("root_volume: {type: gp3, throughput: 100}"),
            [(
                "root_volume.throughput".to_string(),
                "gp3 volumes take 125 to 2000 MiB/s of throughput, not 100".to_string()
            )]
        );
        assert_eq!(fields("root_volume: {type: gp3, throughput: 2001}"), ["root_volume.throughput"]);
        assert!(problems("root_volume: {type: gp3, iops: 3000, throughput: 125}").is_empty());
        // Without a type the image's (or EC2's default) type decides: nothing to hold them against.
        assert!(problems("root_volume: {iops: 5000, throughput: 500}").is_empty());
        assert_eq!(
            problems("root_volume: {iops: 50, throughput: 3000}"),
            [
                ("root_volume.iops".to_string(), "no volume type takes 50 iops (100 to 256000 at most)".to_string()),
                (
                    "root_volume.throughput".to_string(),
                    "no volume type takes 3000 MiB/s of throughput (125 to 2000 at most)".to_string()
                ),
            ]
        );
    }

    #[test]
    fn sizes_within_each_types_range() {
        for (yaml, ok) in [
            ("{type: gp2, size: 16384}", true),
            ("{type: gp2, size: 16385}", false),
            ("{type: gp3, size: 65536}", true),
            ("{type: gp3, size: 65537}", false),
            ("{type: io1, size: 3, iops: 100}", false),
            ("{type: io1, size: 4, iops: 100}", true),
            ("{type: io2, size: 65536, iops: 100}", true),
            ("{type: st1, size: 124}", false),
            ("{type: sc1, size: 125}", true),
            ("{type: standard, size: 1025}", false),
            ("{size: 0}", false),
            ("{size: 65536}", true),
            ("{size: 65537}", false),
        ] {
            let found = problems(&format!("root_volume: {yaml}"));
            assert_eq!(found.is_empty(), ok, "{yaml}: {found:?}");
            assert!(found.iter().all(|(f, _)| f == "root_volume.size"), "{yaml}: {found:?}");
        }
        assert_eq!(
            problems("volumes: [{device: sdf, size: 20, type: st1}]"),
            [("volumes[0].size".to_string(), "st1 volumes are 125 to 16384 GiB, not 20".to_string())]
        );
    }

    #[test]
    fn a_kms_key_needs_encryption() {
        assert_eq!(
            problems("root_volume: {kms_key: alias/k}"),
            [("root_volume.kms_key".to_string(), "a kms key needs `encrypted: true`".to_string())]
        );
        assert_eq!(fields("volumes: [{device: sdf, size: 1, kms_key: k, encrypted: false}]"), ["volumes[0].kms_key"]);
        assert!(problems("volumes: [{device: sdf, size: 1, kms_key: k, encrypted: true}]").is_empty());
        assert!(problems("root_volume: {encrypted: true}").is_empty(), "the account's default key");
    }

    #[test]
    fn devices_are_named_once() {
        assert_eq!(
            problems("volumes: [{device: sdf, size: 1}, {device: /dev/sdg, size: 1}, {device: /dev/sdf, size: 1}]"),
            [("volumes[2].device".to_string(), "/dev/sdf is also volumes[0]".to_string())]
        );
        assert!(problems("volumes: [{device: sdf, size: 1}, {device: xvdf, size: 1}]").is_empty());
        assert_eq!(fields("volumes: [{device: ' ', size: 1}]"), ["volumes[0].device"]);
        assert_eq!(device_name("sdf"), "/dev/sdf");
        assert_eq!(device_name("xvdf"), "/dev/xvdf");
        assert_eq!(device_name("/dev/nvme1n1"), "/dev/nvme1n1");
    }

    #[test]
    fn imds_hop_limit_and_empty_names() {
        assert_eq!(
            problems("imds: {hop_limit: 0}"),
            [("imds.hop_limit".to_string(), "the hop limit is 1 to 64, not 0".to_string())]
        );
        assert_eq!(fields("imds: {hop_limit: 65}"), ["imds.hop_limit"]);
        assert!(problems("imds: {hop_limit: 64, http_tokens: optional, endpoint: disabled}").is_empty());
        assert_eq!(
            fields("iam_instance_profile: ''\navailability_zone: ''\nplacement_group: ' '"),
            ["iam_instance_profile", "availability_zone", "placement_group"]
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let found = fields(
            "root_volume: {type: gp2, size: 0, iops: 100, throughput: 200, kms_key: k}\n\
             volumes: [{device: sdf, size: 1, type: io1}, {device: sdf, size: 1}]\n\
             imds: {hop_limit: 100}",
        );
        assert_eq!(
            found,
            [
                "root_volume.size",
                "root_volume.iops",
                "root_volume.throughput",
                "root_volume.kms_key",
                "volumes[0].size",
                "volumes[0].iops",
                "volumes[1].device",
                "imds.hop_limit",
            ]
        );
    }

    fn request() -> RunInstancesFluentBuilder {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("eu-west-1"))
            .build();
        aws_sdk_ec2::Client::from_conf(config).run_instances()
    }

    #[test]
    fn apply_refuses_what_needs_the_image() {
        let launch: Ec2Launch = serde_yaml::from_str("root_volume: {size: 30}").unwrap();
        let err = apply(request(), &launch, None, &[], None).unwrap_err();
        assert_eq!(err, "a root volume needs the image's root device name, which is not known");
        assert!(apply(request(), &launch, None, &[], Some("/dev/xvda")).is_ok());
        // An empty root volume changes nothing, so it needs no device.
        let empty: Ec2Launch = serde_yaml::from_str("root_volume: {}").unwrap();
        assert!(apply(request(), &empty, None, &[], None).unwrap().get_block_device_mappings().is_none());

        let launch: Ec2Launch = serde_yaml::from_str("volumes: [{device: sda1, size: 8}]").unwrap();
        let err = apply(request(), &launch, None, &[], Some("/dev/sda1")).unwrap_err();
        assert_eq!(err, "volumes[0] is on /dev/sda1, the image's root device: set root_volume for that volume");
        assert!(apply(request(), &launch, None, &[], Some("/dev/xvda")).is_ok());
        assert!(apply(request(), &launch, None, &[], None).is_ok(), "EC2 decides when the image is unknown");
    }

    #[test]
    fn apply_owns_the_subnet_and_groups() {
        let groups = vec!["sg-1".to_string()];
        // Whatever the caller set is replaced.
        let stale = || request().subnet_id("subnet-stale").security_group_ids("sg-stale");
        let req = apply(stale(), &Ec2Launch::default(), Some("subnet-1"), &groups, None).unwrap();
        assert_eq!(req.get_subnet_id().as_deref(), Some("subnet-1"));
        assert_eq!(req.get_security_group_ids().as_deref(), Some(groups.as_slice()));
        assert!(req.get_network_interfaces().is_none());

        let public = Ec2Launch { public_ip: Some(true), ..Ec2Launch::default() };
        let req = apply(stale(), &public, Some("subnet-1"), &groups, None).unwrap();
        assert!(req.get_subnet_id().is_none());
        assert!(req.get_security_group_ids().is_none());
        let interfaces = req.get_network_interfaces().as_deref().unwrap();
        assert_eq!(interfaces.len(), 1);
        assert_eq!(interfaces[0].device_index(), Some(0));
        assert_eq!(interfaces[0].subnet_id(), Some("subnet-1"));
        assert_eq!(interfaces[0].groups(), groups.as_slice());
        assert_eq!(interfaces[0].associate_public_ip_address(), Some(true));

        let req = apply(stale(), &Ec2Launch::default(), None, &[], None).unwrap();
        assert!(req.get_subnet_id().is_none() && req.get_security_group_ids().is_none());
    }

    #[test]
    fn boot_mode_leaves_the_request_unchanged() {
        let launch = Ec2Launch { boot_mode: Some(BootMode::Uefi), ..Ec2Launch::default() };
        let with = apply(request(), &launch, Some("subnet-1"), &[], None).unwrap();
        let without = apply(request(), &Ec2Launch::default(), Some("subnet-1"), &[], None).unwrap();
        assert_eq!(format!("{:?}", with.as_input()), format!("{:?}", without.as_input()));
    }
}
