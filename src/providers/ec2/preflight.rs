//! Preflight: what the cells need from EC2, looked up before anything is launched, and every cell
//! that cannot launch as asked, with its reasons.
//!
//! One lookup per kind for the whole plan, never one per cell: DescribeImages, DescribeInstanceTypes,
//! DescribeInstanceTypeOfferings, DescribeSubnets and DescribeSecurityGroups, each over the distinct
//! values of all cells (in chunks of what EC2 takes per call, every page read), side by side, through
//! the describe bucket. A hundred cells over three images cost the same five calls as one cell.
//!
//! Every lookup filters by id rather than listing ids: EC2 fails a whole DescribeImages (Subnets,
//! SecurityGroups, InstanceTypes) for one id it does not know, which would hide the other ids' facts;
//! a filter leaves the unknown id out and the others answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::{
    describe_images::DescribeImagesOutput, describe_instance_type_offerings::DescribeInstanceTypeOfferingsOutput,
    describe_instance_types::DescribeInstanceTypesOutput, describe_security_groups::DescribeSecurityGroupsOutput,
    describe_subnets::DescribeSubnetsOutput,
};
use aws_sdk_ec2::types::{Filter, LocationType};

pub use super::api::ApiError;
use super::api::{Api, Retry};
pub use super::launch::BootMode;
use crate::spec::Os;

/// Values in one filter of one call: 200 ids, as the instance watcher sends; instance types 100, the
/// most DescribeInstanceTypes takes by name.
const IDS_PER_CALL: usize = 200;
const TYPES_PER_CALL: usize = 100;

const LEGACY_BIOS: &str = "legacy-bios";
const UEFI: &str = "uefi";

/// What one cell will ask RunInstances for, as far as preflight checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// The cell's id, for the messages.
    pub cell: String,
    pub image: String,
    /// None: EC2's default type, which preflight does not check.
    pub instance_type: Option<String>,
    /// None: the default VPC's subnet in a zone EC2 picks.
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    /// None: whatever the image's own boot mode allows.
    pub boot_mode: Option<BootMode>,
    /// The spec's `os`: a Windows image needs `os: windows` (an RSA key, its rules and deadlines).
    pub os: Os,
}

/// What preflight found: the cells that cannot launch, and the facts it learnt on the way (the root
/// device name resolves device names, the report can show the rest).
#[derive(Debug, Clone, Default)]
pub struct Preflight {
    /// In the order of the requests, each cell at most once.
    pub impossible: Vec<Impossible>,
    /// The images that exist, by id.
    pub images: BTreeMap<String, ImageFacts>,
    /// The instance types that exist, by name.
    pub types: BTreeMap<String, TypeFacts>,
    /// The subnets that exist, by id, and their VPC (where the run's ephemeral security group goes).
    pub subnet_vpcs: BTreeMap<String, Option<String>>,
    /// API calls made, every page and retry counted: it grows with the distinct values, not the cells.
    pub calls: usize,
}

/// A cell that cannot launch, and why: each reason a lowercase fragment naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impossible {
    pub cell: String,
    pub reasons: Vec<String>,
}

impl fmt::Display for Impossible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cell {}: {}", self.cell, self.reasons.join("; "))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// `available`, `pending`, `failed`, `disabled`...
    pub state: String,
    pub architecture: Option<String>,
    /// None: the image sets none and boots the way the instance type does by default.
    pub boot_mode: Option<String>,
    pub ena_support: bool,
    pub root_device_name: Option<String>,
    /// `windows`, or None for Linux and the rest.
    pub platform: Option<String>,
    /// The account that owns it.
    pub owner: Option<String>,
    /// The devices whose snapshot is encrypted (`Encrypted: true` in its block device mappings).
    pub encrypted_devices: Vec<String>,
}

impl ImageFacts {
    /// The warning for an image of another account than `account` whose snapshots are encrypted: a
    /// launch from it ends `terminated` (Client.InternalError) unless the owner shared the key.
    pub fn foreign_key_warning(&self, image: &str, account: &str) -> Option<String> {
        let owner = self.owner.as_deref().filter(|owner| *owner != account)?;
        if self.encrypted_devices.is_empty() {
            return None;
        }
        Some(format!(
            "image {image} belongs to account {owner} and its snapshots are encrypted ({}): account {account} \
             must be allowed to use that account's KMS key (shared in the key's policy), or every launch \
             ends `terminated` with Client.InternalError",
            self.encrypted_devices.join(", ")
        ))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFacts {
    pub architectures: Vec<String>,
    /// Empty when EC2 does not say.
    pub boot_modes: Vec<String>,
    /// `required`, `supported` or `unsupported`.
    pub ena_support: Option<String>,
    /// The region's zones that offer the type.
    pub zones: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
struct SubnetFacts {
    vpc: Option<String>,
    zone: Option<String>,
}

/// Everything looked up, by id.
#[derive(Debug, Default)]
struct Facts {
    images: BTreeMap<String, ImageFacts>,
    types: BTreeMap<String, TypeFacts>,
    subnets: BTreeMap<String, SubnetFacts>,
    /// Security group id -> its VPC.
    groups: BTreeMap<String, Option<String>>,
}

/// Looks up what `requests` need, one call per kind (more only past EC2's per-call limits or a
/// page), and names every request that cannot launch. An API error fails the whole check: a cell is
/// refused for what EC2 said, never for a lookup that did not answer.
pub async fn check(api: &Api, requests: &[LaunchRequest]) -> Result<Preflight, ApiError> {
    let images = distinct(requests.iter().map(|r| Some(r.image.as_str())));
    let types = distinct(requests.iter().map(|r| r.instance_type.as_deref()));
    let subnets = distinct(requests.iter().map(|r| r.subnet.as_deref()));
    let groups = distinct(requests.iter().flat_map(|r| r.security_groups.iter().map(|g| Some(g.as_str()))));
    let (images, types, zones, subnets, groups) = tokio::try_join!(
        describe_images(api, &images),
        describe_types(api, &types),
        describe_offerings(api, &types),
        describe_subnets(api, &subnets),
        describe_groups(api, &groups),
    )?;
    let calls = images.1 + types.1 + zones.1 + subnets.1 + groups.1;
    let mut facts = Facts { images: images.0, types: types.0, subnets: subnets.0, groups: groups.0 };
    for (name, zones) in zones.0 {
        if let Some(t) = facts.types.get_mut(&name) {
            t.zones = zones;
        }
    }
    let mut impossible: Vec<Impossible> = Vec::new();
    for request in requests {
        let reasons = reasons(request, &facts, &api.region);
        if reasons.is_empty() {
            continue;
        }
        match impossible.iter_mut().find(|i| i.cell == request.cell) {
            Some(seen) => {
                for reason in reasons {
                    if !seen.reasons.contains(&reason) {
                        seen.reasons.push(reason);
                    }
                }
            }
            None => impossible.push(Impossible { cell: request.cell.clone(), reasons }),
        }
    }
    let subnet_vpcs = facts.subnets.iter().map(|(id, s)| (id.clone(), s.vpc.clone())).collect();
    Ok(Preflight { impossible, images: facts.images, types: facts.types, subnet_vpcs, calls })
}

/// Why one request cannot launch; empty when it can.
fn reasons(r: &LaunchRequest, facts: &Facts, region: &str) -> Vec<String> {
    let mut out = Vec::new();
    let image = facts.images.get(&r.image);
    match image {
        None => out.push(format!("image {} does not exist", r.image)),
        Some(i) if i.state != "available" => out.push(format!("image {} is {}, not available", r.image, i.state)),
        Some(_) => {}
    }
    let instance_type = r.instance_type.as_deref().map(|name| (name, facts.types.get(name)));
    if let Some((name, None)) = instance_type {
        out.push(format!("instance type {name} does not exist"));
    }
    let known_type = instance_type.and_then(|(name, t)| t.map(|t| (name, t)));
    if let Some(image) = image {
        if let (Some((name, t)), Some(arch)) = (known_type, &image.architecture) {
            if !t.architectures.is_empty() && !t.architectures.contains(arch) {
                out.push(format!("image {} is {arch} and {name} runs only {}", r.image, t.architectures.join(" and ")));
            }
        }
        out.extend(boot_mode_reason(&r.image, image, r.boot_mode, known_type));
        match (image.platform.as_deref() == Some("windows"), r.os) {
            (true, Os::Linux) => out.push(format!(
                "image {} is a Windows image and the spec does not say `os: windows` (its key, console rules and deadlines differ)",
                r.image
            )),
            (false, Os::Windows) => {
                out.push(format!("image {} is not a Windows image and the spec says `os: windows`", r.image))
            }
            _ => {}
        }
        if let Some((name, t)) = known_type {
            if t.ena_support.as_deref() == Some("required") && !image.ena_support {
                out.push(format!("{name} requires ENA and image {} does not enable it", r.image));
            }
        }
    }
    let subnet = r.subnet.as_deref().map(|id| (id, facts.subnets.get(id)));
    if let Some((id, None)) = subnet {
        out.push(format!("subnet {id} does not exist"));
    }
    if let Some((name, t)) = known_type {
        match subnet {
            Some((id, Some(SubnetFacts { zone: Some(zone), .. }))) if !t.zones.contains(zone) => {
                out.push(format!("{name} is not offered in {zone} (subnet {id})"));
            }
            None if t.zones.is_empty() => out.push(format!("{name} is not offered in any zone of {region}")),
            _ => {}
        }
    }
    let mut vpcs: Vec<(String, &str)> = Vec::new();
    if let Some((id, Some(SubnetFacts { vpc: Some(vpc), .. }))) = subnet {
        vpcs.push((format!("subnet {id}"), vpc));
    }
    for group in &r.security_groups {
        match facts.groups.get(group) {
            None => out.push(format!("security group {group} does not exist")),
            Some(Some(vpc)) => vpcs.push((format!("security group {group}"), vpc)),
            Some(None) => {}
        }
    }
    if vpcs.iter().any(|(_, vpc)| *vpc != vpcs[0].1) {
        let each: Vec<String> = vpcs.iter().map(|(what, vpc)| format!("{what} in {vpc}")).collect();
        out.push(format!("different VPCs: {}", each.join(", ")));
    }
    out
}

/// The firmwares a boot mode lets a machine start with: `uefi-preferred`, or none set, allows both.
fn firmwares(mode: Option<&str>) -> Vec<&'static str> {
    match mode {
        Some(LEGACY_BIOS) => vec![LEGACY_BIOS],
        Some(UEFI) => vec![UEFI],
        _ => vec![LEGACY_BIOS, UEFI],
    }
}

/// Why the image, the requested boot mode and the instance type leave no firmware to boot with.
fn boot_mode_reason(
    image_id: &str,
    image: &ImageFacts,
    requested: Option<BootMode>,
    instance_type: Option<(&str, &TypeFacts)>,
) -> Option<String> {
    let by_image = firmwares(image.boot_mode.as_deref());
    let by_request = firmwares(requested.map(BootMode::as_str));
    let usable: Vec<&str> = by_image.iter().copied().filter(|f| by_request.contains(f)).collect();
    if let (true, Some(requested)) = (usable.is_empty(), requested) {
        return Some(format!(
            "boot mode {requested} requested and image {image_id} boots only {}",
            by_image.join(" and ")
        ));
    }
    let (name, t) = instance_type?;
    if t.boot_modes.is_empty() || usable.iter().any(|f| t.boot_modes.iter().any(|m| m == f)) {
        return None;
    }
    let needs = match (by_image.as_slice(), requested) {
        ([only], _) => format!("image {image_id} boots only {only}"),
        (_, Some(requested)) => format!("boot mode {requested} requested"),
        _ => return None,
    };
    Some(format!("{needs} and {name} supports only {}", t.boot_modes.join(" and ")))
}

/// The distinct, non-empty values, sorted.
fn distinct<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<String> {
    values.flatten().filter(|v| !v.is_empty()).map(str::to_string).collect::<BTreeSet<_>>().into_iter().collect()
}

/// A Describe answer that may go on on another page.
trait Page {
    fn next(&self) -> Option<&str>;
}

macro_rules! paged {
    ($($output:ty),*) => {
        $(impl Page for $output {
            fn next(&self) -> Option<&str> {
                self.next_token()
            }
        })*
    };
}

paged!(
    DescribeImagesOutput,
    DescribeInstanceTypesOutput,
    DescribeInstanceTypeOfferingsOutput,
    DescribeSubnetsOutput,
    DescribeSecurityGroupsOutput
);

/// Every page of one Describe over `values`, put in a filter named `filter` at most `per_call` at a
/// time; also the calls made. Nothing to look up costs nothing.
async fn pages<P, E, F, Fut>(
    api: &Api,
    action: &'static str,
    filter: &str,
    values: &[String],
    per_call: usize,
    mut op: F,
) -> Result<(Vec<P>, usize), ApiError>
where
    P: Page,
    F: FnMut(Filter, Option<String>) -> Fut,
    Fut: Future<Output = Result<P, SdkError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (mut out, mut calls) = (Vec::new(), 0);
    for chunk in values.chunks(per_call) {
        let filter = Filter::builder().name(filter).set_values(Some(chunk.to_vec())).build();
        let mut token: Option<String> = None;
        loop {
            let (page, attempts) = api
                .call_retrying(&api.buckets.describe, action, Retry::default(), || op(filter.clone(), token.clone()))
                .await?;
            calls += attempts as usize;
            token = page.next().filter(|t| !t.is_empty()).map(str::to_string);
            out.push(page);
            if token.is_none() {
                break;
            }
        }
    }
    Ok((out, calls))
}

async fn describe_images(api: &Api, ids: &[String]) -> Result<(BTreeMap<String, ImageFacts>, usize), ApiError> {
    // Deprecated and disabled images answer too: "disabled" says more than "does not exist".
    let (pages, calls) = pages(api, "DescribeImages", "image-id", ids, IDS_PER_CALL, |filter, token| {
        api.client
            .describe_images()
            .filters(filter)
            .include_deprecated(true)
            .include_disabled(true)
            .set_next_token(token)
            .send()
    })
    .await?;
    let images = pages
        .iter()
        .flat_map(|p| p.images())
        .filter_map(|i| {
            let facts = ImageFacts {
                state: i.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                architecture: i.architecture().map(|a| a.as_str().to_string()),
                boot_mode: i.boot_mode().map(|m| m.as_str().to_string()),
                ena_support: i.ena_support().unwrap_or(false),
                root_device_name: i.root_device_name().map(str::to_string),
                platform: i.platform().map(|p| p.as_str().to_string()),
                owner: i.owner_id().map(str::to_string),
                encrypted_devices: i
                    .block_device_mappings()
                    .iter()
                    .filter(|m| m.ebs().and_then(|ebs| ebs.encrypted()) == Some(true))
                    .map(|m| m.device_name().unwrap_or("a device").to_string())
                    .collect(),
            };
            Some((i.image_id()?.to_string(), facts))
        })
        .collect();
    Ok((images, calls))
}

async fn describe_types(api: &Api, names: &[String]) -> Result<(BTreeMap<String, TypeFacts>, usize), ApiError> {
    let (pages, calls) =
        pages(api, "DescribeInstanceTypes", "instance-type", names, TYPES_PER_CALL, |filter, token| {
            api.client.describe_instance_types().filters(filter).set_next_token(token).send()
        })
        .await?;
    let types = pages
        .iter()
        .flat_map(|p| p.instance_types())
        .filter_map(|t| {
            let facts = TypeFacts {
                architectures: t
                    .processor_info()
                    .map(|p| p.supported_architectures().iter().map(|a| a.as_str().to_string()).collect())
                    .unwrap_or_default(),
                boot_modes: t.supported_boot_modes().iter().map(|m| m.as_str().to_string()).collect(),
                ena_support: t.network_info().and_then(|n| n.ena_support()).map(|e| e.as_str().to_string()),
                zones: BTreeSet::new(),
            };
            Some((t.instance_type()?.as_str().to_string(), facts))
        })
        .collect();
    Ok((types, calls))
}

/// The zones offering each type, all zones of the region at once: a cell without a subnet can land in
/// any of them.
async fn describe_offerings(
    api: &Api,
    names: &[String],
) -> Result<(BTreeMap<String, BTreeSet<String>>, usize), ApiError> {
    let (pages, calls) =
        pages(api, "DescribeInstanceTypeOfferings", "instance-type", names, TYPES_PER_CALL, |filter, token| {
            api.client
                .describe_instance_type_offerings()
                .location_type(LocationType::AvailabilityZone)
                .filters(filter)
                .set_next_token(token)
                .send()
        })
        .await?;
    let mut zones: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for offering in pages.iter().flat_map(|p| p.instance_type_offerings()) {
        if let (Some(t), Some(zone)) = (offering.instance_type(), offering.location()) {
            zones.entry(t.as_str().to_string()).or_default().insert(zone.to_string());
        }
    }
    Ok((zones, calls))
}

async fn describe_subnets(api: &Api, ids: &[String]) -> Result<(BTreeMap<String, SubnetFacts>, usize), ApiError> {
    let (pages, calls) = pages(api, "DescribeSubnets", "subnet-id", ids, IDS_PER_CALL, |filter, token| {
        api.client.describe_subnets().filters(filter).set_next_token(token).send()
    })
    .await?;
    let subnets = pages
        .iter()
        .flat_map(|p| p.subnets())
        .filter_map(|s| {
            let facts =
                SubnetFacts { vpc: s.vpc_id().map(str::to_string), zone: s.availability_zone().map(str::to_string) };
            Some((s.subnet_id()?.to_string(), facts))
        })
        .collect();
    Ok((subnets, calls))
}

async fn describe_groups(api: &Api, ids: &[String]) -> Result<(BTreeMap<String, Option<String>>, usize), ApiError> {
    let (pages, calls) = pages(api, "DescribeSecurityGroups", "group-id", ids, IDS_PER_CALL, |filter, token| {
        api.client.describe_security_groups().filters(filter).set_next_token(token).send()
    })
    .await?;
    let groups = pages
        .iter()
        .flat_map(|p| p.security_groups())
        .filter_map(|g| Some((g.group_id()?.to_string(), g.vpc_id().map(str::to_string))))
        .collect();
    Ok((groups, calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let image = |arch: &str, boot: Option<&str>, ena| ImageFacts {
            state: "available".into(),
            architecture: Some(arch.into()),
            boot_mode: boot.map(str::to_string),
            ena_support: ena,
            root_device_name: Some("/dev/xvda".into()),
            platform: None,
            owner: None,
            encrypted_devices: Vec::new(),
        };
        let kind = |archs: &[&str], boots: &[&str], ena: &str, zones: &[&str]| TypeFacts {
            architectures: archs.iter().map(|s| s.to_string()).collect(),
            boot_modes: boots.iter().map(|s| s.to_string()).collect(),
            ena_support: Some(ena.into()),
            zones: zones.iter().map(|s| s.to_string()).collect(),
        };
        Facts {
            images: [
                ("ami-uefi".to_string(), image("x86_64", Some("uefi"), true)),
                ("ami-bios".to_string(), image("x86_64", Some("legacy-bios"), true)),
                ("ami-pref".to_string(), image("x86_64", Some("uefi-preferred"), true)),
                ("ami-unset".to_string(), image("x86_64", None, false)),
            ]
            .into(),
            types: [
                ("t2.micro".to_string(), kind(&["i386", "x86_64"], &["legacy-bios"], "unsupported", &["z-a"])),
                ("t3.micro".to_string(), kind(&["x86_64"], &["legacy-bios", "uefi"], "required", &["z-a"])),
                ("x.uefi".to_string(), kind(&["x86_64"], &["uefi"], "supported", &["z-a"])),
            ]
            .into(),
            subnets: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    fn why(image: &str, t: &str, boot: Option<BootMode>) -> Vec<String> {
        let request = LaunchRequest {
            os: Os::Linux,
            cell: "c".into(),
            image: image.into(),
            instance_type: Some(t.into()),
            subnet: None,
            security_groups: vec![],
            boot_mode: boot,
        };
        reasons(&request, &facts(), "r")
    }

    #[test]
    fn only_another_accounts_encrypted_image_is_warned_of() {
        let image = |owner: &str, encrypted: &[&str]| ImageFacts {
            owner: Some(owner.into()),
            encrypted_devices: encrypted.iter().map(|d| d.to_string()).collect(),
            ..ImageFacts::default()
        };
        let warning = image("111122223333", &["/dev/xvda", "/dev/sdf"]).foreign_key_warning("ami-1", "123456789012");
        let warning = warning.expect("another account's encrypted image");
        assert!(warning.starts_with("image ami-1 belongs to account 111122223333 and its snapshots are encrypted (/dev/xvda, /dev/sdf): account 123456789012 must be allowed"), "{warning}");
        assert_eq!(image("123456789012", &["/dev/xvda"]).foreign_key_warning("ami-1", "123456789012"), None);
        assert_eq!(image("111122223333", &[]).foreign_key_warning("ami-1", "123456789012"), None);
    }

    #[test]
    fn boot_modes_meet_between_image_request_and_type() {
        use BootMode::*;
        assert_eq!(
            why("ami-uefi", "t2.micro", None),
            ["image ami-uefi boots only uefi and t2.micro supports only legacy-bios"]
        );
        assert_eq!(
            why("ami-bios", "x.uefi", None),
            ["image ami-bios boots only legacy-bios and x.uefi supports only uefi"]
        );
        assert_eq!(
            why("ami-uefi", "t3.micro", Some(LegacyBios)),
            ["boot mode legacy-bios requested and image ami-uefi boots only uefi"]
        );
        assert_eq!(
            why("ami-pref", "t2.micro", Some(Uefi)),
            ["boot mode uefi requested and t2.micro supports only legacy-bios"]
        );
        for ok in [
            ("ami-pref", "t2.micro", None),
            ("ami-pref", "x.uefi", Some(UefiPreferred)),
            ("ami-pref", "t3.micro", Some(LegacyBios)),
            ("ami-uefi", "t3.micro", Some(UefiPreferred)),
            ("ami-bios", "t2.micro", Some(LegacyBios)),
        ] {
            assert_eq!(why(ok.0, ok.1, ok.2), Vec::<String>::new(), "{ok:?}");
        }
    }

    #[test]
    fn ena_is_needed_only_where_the_type_requires_it() {
        assert_eq!(
            why("ami-unset", "t3.micro", None),
            ["t3.micro requires ENA and image ami-unset does not enable it"]
        );
        assert!(why("ami-unset", "t2.micro", None).is_empty());
        assert!(why("ami-unset", "x.uefi", None).is_empty(), "supported is not required");
    }

    #[test]
    fn boot_mode_words_round_trip() {
        for mode in BootMode::ALL {
            assert_eq!(mode.as_str().parse::<BootMode>(), Ok(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
        assert!("bios".parse::<BootMode>().unwrap_err().to_string().contains("legacy-bios, uefi or uefi-preferred"));
    }
}
