//! The preflight's permission check: before anything is launched, each call the run will make that
//! changes something, or that only the run makes, is asked of EC2 with `DryRun=true` (the rows of `permissions.rs` marked `dry_run` that the
//! spec needs), once per region, with the parameters a real cell sends: RunInstances once per distinct
//! launch shape (a cell's launch fields, subnet and groups, its tags; the image and instance type of
//! the shape's first cell), ImportKeyPair and DeleteKeyPair, TerminateInstances, CreateTags, the
//! ephemeral security group's calls, and the describe calls only the run makes (DescribeInstances,
//! DescribeInstanceStatus, DescribeKeyPairs...: refused them, a run would launch and never see its
//! machines). EC2 answers `DryRunOperation` when the call would be allowed and `UnauthorizedOperation`
//! when not; the latter's encoded message is decoded with STS
//! DecodeAuthorizationMessage, when that is allowed, to name the action EC2 refused (tagging a new
//! instance needs `ec2:CreateTags` as well as `ec2:RunInstances`). With `on_pass.tags`, CreateTags is
//! also asked on one of the region's real images, with the promotion's tags (SSM's PutParameter has
//! no DryRun).
//!
//! Calls on things that exist only once the run made them (TerminateInstances, CreateTags,
//! DeleteKeyPair, the group's calls) name made-up, well-formed ids (`permissions::MADE_UP`), which
//! carry no tags: the policy `amiprobe policy` prints allows each of these calls on its made-up id, so
//! that a refusal there means the action is missing. A policy written otherwise, allowing them only on
//! what carries amiprobe's tag, is refused there too: for a removal (TerminateInstances, DeleteKeyPair,
//! DeleteSecurityGroup) that still stops the run, since a run that may be unable to remove what it
//! launches must not launch; for the others it is a warning ([`Refusal::doubtful`]). EC2 may answer
//! such a DryRun with `Invalid*.NotFound` or `*.Malformed` instead of checking the permission: any
//! answer but `UnauthorizedOperation` is taken as allowed, as it proves no refusal. Tags carry a
//! placeholder run id (the preflight runs before the run has one): a policy conditions on the tag's
//! presence, not its value.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use aws_sdk_ec2::types::{InstanceType, IpPermission, IpRange, ResourceType, Tag};

use super::api::{Api, ApiError};
use super::launch::{self, Ec2Launch};
use super::permissions::{self, Need, Scope, Uses, When};
use super::regions::Regional;
use super::{Ec2Provider, SecurityGroupMode};
use crate::cell::Cell;
use crate::provider::ProviderError;
use crate::spec::KeyPair;

/// The run id on the tags of DryRun requests.
const PLACEHOLDER_RUN_ID: &str = "preflight";
/// The VPC the DryRun of CreateSecurityGroup names (the other made-up ids are `permissions::MADE_UP`,
/// which the policy allows the preflight's calls on; a VPC is only used, allowed on any).
const FAKE_VPC: &str = "vpc-00000000000000000";
/// The name of the group CreateSecurityGroup's DryRun asks to create (a name, not an id: any will do).
const PREFLIGHT_GROUP_NAME: &str = "amiprobe-preflight";
/// A well-formed public key for ImportKeyPair's DryRun (the run's own is made on first launch).
const FAKE_PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBTPVtOQMwjfCGvGFRF3ohTidy0AXpDsqW4eGFgeRBan amiprobe-preflight";
const ENCODED_MARKER: &str = "Encoded authorization failure message: ";

type Answer<'a> = Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>>;

/// `req` sent as `call` through the region's `bucket`, its answer only allowed or refused.
macro_rules! asked {
    ($api:expr, $bucket:ident, $call:expr, $req:expr) => {{
        let (api, call, req) = ($api, $call, $req);
        Box::pin(async move { api.call(&api.buckets.$bucket, call, || req.clone().send()).await.map(drop) })
    }};
}

/// A permission the credentials lack: one per IAM action and region, whatever the calls that met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `ec2:CreateTags`: as EC2's decoded message names it, else the refused call's own.
    pub action: String,
    pub region: String,
    /// What the action is needed for.
    pub why: String,
    /// The DryRun calls refused for it.
    pub calls: Vec<&'static str>,
    /// The decoded message's resource, or why the message could not be decoded.
    pub detail: Option<String>,
    /// Only calls on resources that don't exist yet (made-up ids) were refused, none of them a
    /// removal: a policy allowing them only on what carries amiprobe's tags (not as `amiprobe policy`
    /// writes it) refuses an untagged made-up id too, so this is told as a warning, not a reason to stop.
    pub doubtful: bool,
    /// Only calls on made-up ids were refused (a removal among them, when not doubtful).
    pub made_up: bool,
    /// Asked with DryRun (the preflight's own lookups are real calls).
    pub dry_run: bool,
}

/// Whether a need's DryRun names a resource that does not exist (it acts only on existing ones).
fn on_made_up_ids(need: &Need) -> bool {
    need.scopes.iter().all(|s| matches!(s, Scope::Owned(_) | Scope::TagOnCreate(_) | Scope::Preflight(_)))
}

/// Whether a refusal of `need`'s DryRun is only a warning (see [`Refusal::doubtful`]): on made-up
/// ids, and no removal.
fn doubtful(need: &Need) -> bool {
    on_made_up_ids(need) && !need.removes()
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} refused in {} (needed to {}): UnauthorizedOperation on {}{}",
            self.action,
            self.region,
            self.why,
            self.calls.join(", "),
            if self.dry_run { " (DryRun)" } else { "" }
        )?;
        match &self.detail {
            Some(detail) => write!(f, ", {detail}"),
            None => Ok(()),
        }
    }
}

impl Ec2Provider {
    /// The permissions the run needs and lacks, in every region its cells run in, one line each.
    /// The refused actions, one line each: those that stop the run, and the doubtful ones (see
    /// [`Refusal::doubtful`]), told as warnings.
    pub(super) async fn refusals(&self, cells: &[Cell]) -> Result<(Vec<String>, Vec<String>), ProviderError> {
        let mut by_region: BTreeMap<Option<String>, Vec<&Cell>> = BTreeMap::new();
        for cell in cells {
            by_region.entry(self.region_of(cell)).or_default().push(cell);
        }
        let (mut lines, mut doubts) = (Vec::new(), Vec::new());
        for (region, cells) in by_region {
            let regional = self.regional(region.as_deref()).await?;
            for refusal in self.refusals_in(&regional, &cells).await {
                match refusal.doubtful {
                    false if refusal.made_up => lines.push(format!(
                        "{refusal}; asked about a resource that does not exist yet (`amiprobe policy` allows it \
                         there): without this permission the run could not remove what it launches"
                    )),
                    false => lines.push(refusal.to_string()),
                    true => doubts.push(format!(
                        "{refusal}; asked about a resource that does not exist yet, which a policy that allows it \
                         only on what carries amiprobe's tags refuses too: check the policy (`amiprobe policy` \
                         allows it on that made-up id)"
                    )),
                }
            }
        }
        Ok((lines, doubts))
    }

    /// The DryRun pass in one region.
    async fn refusals_in(&self, regional: &Regional, cells: &[&Cell]) -> Vec<Refusal> {
        let api = &*regional.api;
        let root_device = |cell: &Cell| regional.root_device(&regional.image_of(cell));
        let ephemeral_key = matches!(self.launch.key_pair, KeyPair::Ephemeral);
        let mut uses = Uses {
            ephemeral_key,
            ephemeral_group: self.spec.security_group == SecurityGroupMode::Ephemeral,
            ..Uses::default()
        };
        uses.promote(&self.spec);
        let mut asked: Vec<(&'static Need, Answer<'_>)> = Vec::new();
        for need in permissions::needed(&uses).filter(|n| n.dry_run) {
            if need.call == "RunInstances" {
                for cell in shapes(cells) {
                    asked.push((need, self.run_instances(api, cell, regional.image_of(cell), root_device(cell))));
                }
            } else if need.when == When::PromoteTags {
                // On a real image of the region's (as resolved: a parameter or a lookup names none by
                // itself): its tags would be the promotion's.
                asked.extend(cells.first().map(|cell| (need, self.tag_image(api, &regional.image_of(cell)))));
            } else {
                asked.push((need, self.other_call(api, need.call)));
            }
        }
        let (needs, answers): (Vec<&Need>, Vec<Answer<'_>>) = asked.into_iter().unzip();
        let answers = futures::future::join_all(answers).await;
        let mut refusals: Vec<Refusal> = Vec::new();
        for (need, answer) in needs.into_iter().zip(answers) {
            let Err(e) = answer else { continue };
            if !e.is("UnauthorizedOperation") {
                tracing::debug!("DryRun {} in {}: {e} (not a refusal)", need.call, api.region);
                continue;
            }
            let refusal = self.refusal(api, &regional.sts, need, &e).await;
            match refusals.iter_mut().find(|r| r.action == refusal.action) {
                Some(seen) if seen.calls.contains(&need.call) => {}
                Some(seen) => {
                    seen.calls.push(need.call);
                    seen.doubtful &= refusal.doubtful;
                    seen.made_up &= refusal.made_up;
                }
                None => refusals.push(refusal),
            }
        }
        refusals
    }

    /// A preflight lookup (DescribeImages, DescribeInstanceTypes...) EC2 refused for lack of
    /// permission, named like a DryRun refusal: without it nothing can be checked, so the run stops.
    pub(super) async fn lookup_refused(&self, regional: &Regional, e: &ApiError) -> String {
        let action = format!("ec2:{}", e.action);
        match permissions::row_of(&action) {
            Some(need) => {
                let refusal = self.refusal(&regional.api, &regional.sts, need, e).await;
                Refusal { dry_run: false, ..refusal }.to_string()
            }
            None => format!("{action} refused in {}: UnauthorizedOperation", regional.api.region),
        }
    }

    /// RunInstances as `cell` sends it, with DryRun.
    fn run_instances<'a>(&self, api: &'a Api, cell: &Cell, image: String, root_device: Option<String>) -> Answer<'a> {
        let key_name = match &self.launch.key_pair {
            // The run's key does not exist yet: a launch without a key asks for the same permission.
            KeyPair::Ephemeral => None,
            KeyPair::Existing(name) => Some(name.clone()),
        };
        let user_data = self.launch.user_data.as_ref().map(|d| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(d)
        });
        let base = api
            .client
            .run_instances()
            .dry_run(true)
            .image_id(image)
            .min_count(1)
            .max_count(1)
            .set_key_name(key_name)
            .set_user_data(user_data)
            .set_instance_type(cell.text("instance_type").map(InstanceType::from))
            .tag_specifications(self.tags(PLACEHOLDER_RUN_ID, cell, ResourceType::Instance))
            .tag_specifications(self.tags(PLACEHOLDER_RUN_ID, cell, ResourceType::Volume));
        let fields = Ec2Launch::of(cell).ok();
        // A shape the request can't be written for fails at its launch with its own error: the
        // permission is still worth asking about without its launch fields.
        let request = fields
            .and_then(|f| {
                let groups = cell.texts("security_groups");
                launch::apply(base.clone(), &f, cell.text("subnet"), &groups, root_device.as_deref()).ok()
            })
            .unwrap_or(base);
        Box::pin(async move {
            api.call(&api.buckets.run_instances, "RunInstances", || request.clone().send()).await.map(drop)
        })
    }

    /// CreateTags of `on_pass.tags` on `image`, with DryRun (a promotion's tags, their placeholders
    /// filled with the preflight's own words).
    fn tag_image<'a>(&self, api: &'a Api, image: &str) -> Answer<'a> {
        let tags = self.spec.on_pass.as_ref().map(|p| p.tags.clone()).unwrap_or_default();
        let values = super::promote::template::Values {
            run_id: PLACEHOLDER_RUN_ID,
            time: "1970-01-01T00:00:00Z",
            spec: &self.spec_name,
            image,
            region: &api.region,
        };
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| {
                let value = super::tags::bounded(&super::promote::template::render(v, &values));
                Tag::builder().key(k).value(value).build()
            })
            .collect();
        let req = api.client.create_tags().dry_run(true).resources(image).set_tags(Some(tags));
        asked!(api, mutating, "CreateTags", req)
    }

    /// Any other call of the table marked `dry_run`, with DryRun, on made-up ids where it needs one.
    fn other_call<'a>(&self, api: &'a Api, call: &'static str) -> Answer<'a> {
        if call.starts_with("Describe") {
            return describe_call(api, call);
        }
        let client = &api.client;
        let tags = |resource| self.run_tags(PLACEHOLDER_RUN_ID, "preflight", resource);
        match call {
            "CreateTags" => {
                let tag = Tag::builder().key(super::KEPT_TAG).value("preflight").build();
                let req = client.create_tags().dry_run(true).resources(permissions::made_up("instance")).tags(tag);
                asked!(api, mutating, call, req)
            }
            "TerminateInstances" => {
                let req = client.terminate_instances().dry_run(true).instance_ids(permissions::made_up("instance"));
                asked!(api, terminate, call, req)
            }
            "ImportKeyPair" => {
                let req = client
                    .import_key_pair()
                    .dry_run(true)
                    .key_name(permissions::made_up("key-pair"))
                    .public_key_material(aws_sdk_ec2::primitives::Blob::new(FAKE_PUBLIC_KEY))
                    .tag_specifications(tags(ResourceType::KeyPair));
                asked!(api, mutating, call, req)
            }
            "DeleteKeyPair" => {
                let req = client.delete_key_pair().dry_run(true).key_name(permissions::made_up("key-pair"));
                asked!(api, mutating, call, req)
            }
            "CreateSecurityGroup" => {
                let req = client
                    .create_security_group()
                    .dry_run(true)
                    .group_name(PREFLIGHT_GROUP_NAME)
                    .description("amiprobe preflight")
                    .vpc_id(FAKE_VPC)
                    .tag_specifications(tags(ResourceType::SecurityGroup));
                asked!(api, mutating, call, req)
            }
            "AuthorizeSecurityGroupIngress" => {
                let rule = IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(IpRange::builder().cidr_ip("192.0.2.1/32").build())
                    .build();
                let req = client
                    .authorize_security_group_ingress()
                    .dry_run(true)
                    .group_id(permissions::made_up("security-group"))
                    .ip_permissions(rule);
                asked!(api, mutating, call, req)
            }
            "DeleteSecurityGroup" => {
                let req = client.delete_security_group().dry_run(true).group_id(permissions::made_up("security-group"));
                asked!(api, mutating, call, req)
            }
            // A row marked `dry_run` without a request here is a bug of this file, not a refusal.
            _ => Box::pin(async { Ok(()) }),
        }
    }

    /// What EC2's refusal of `need`'s call says, its encoded message decoded when STS allows.
    async fn refusal(&self, api: &Api, sts: &aws_sdk_sts::Client, need: &'static Need, e: &ApiError) -> Refusal {
        let mut refusal = Refusal {
            action: need.action.to_string(),
            region: api.region.clone(),
            why: need.why.to_string(),
            calls: vec![need.call],
            detail: None,
            doubtful: doubtful(need),
            made_up: on_made_up_ids(need),
            dry_run: true,
        };
        let Some((_, encoded)) = e.message.split_once(ENCODED_MARKER) else { return refusal };
        match decode(sts, encoded.trim()).await {
            Ok(decoded) => {
                let context = &decoded["context"];
                if let Some(action) = context["action"].as_str() {
                    refusal.action = action.to_string();
                    // Another action than the call's own: its first row says what for.
                    if let Some(row) = permissions::row_of(action).filter(|_| action != need.action) {
                        refusal.why = row.why.to_string();
                    }
                }
                refusal.detail = context["resource"].as_str().map(|r| format!("resource {r}"));
            }
            Err(e) => refusal.detail = Some(format!("its message not decoded: {e}")),
        }
        refusal
    }
}

/// A describe call of the table that only the run makes, with DryRun, unfiltered (its permission
/// takes no resource).
fn describe_call<'a>(api: &'a Api, call: &'static str) -> Answer<'a> {
    let client = &api.client;
    match call {
        "DescribeInstances" => asked!(api, describe, call, client.describe_instances().dry_run(true)),
        "DescribeInstanceStatus" => asked!(api, describe, call, client.describe_instance_status().dry_run(true)),
        "DescribeKeyPairs" => asked!(api, describe, call, client.describe_key_pairs().dry_run(true)),
        "DescribeSubnets" => asked!(api, describe, call, client.describe_subnets().dry_run(true)),
        "DescribeSecurityGroups" => asked!(api, describe, call, client.describe_security_groups().dry_run(true)),
        "DescribeVpcs" => asked!(api, describe, call, client.describe_vpcs().dry_run(true)),
        // A row marked `dry_run` without a request here is a bug of this file, not a refusal.
        _ => Box::pin(async { Ok(()) }),
    }
}

/// An encoded authorization failure message, decoded by STS (which needs
/// `sts:DecodeAuthorizationMessage`), with the region's own client: the run's credentials.
async fn decode(sts: &aws_sdk_sts::Client, encoded: &str) -> Result<serde_json::Value, DecodeError> {
    let out = sts.decode_authorization_message().encoded_message(encoded).send().await.map_err(|e| {
        use aws_sdk_sts::error::ProvideErrorMetadata as _;
        DecodeError::Refused(e.code().unwrap_or("no answer").to_string())
    })?;
    serde_json::from_str(out.decoded_message().unwrap_or_default()).map_err(|_| DecodeError::NotJson)
}

/// Why an encoded authorization message could not be read, as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("sts:DecodeAuthorizationMessage failed: {0}")]
    Refused(String),
    #[error("sts:DecodeAuthorizationMessage answered something other than JSON")]
    NotJson,
}

/// The first cell of each distinct launch shape: what a RunInstances asks for but the image and the
/// instance type, which a policy of amiprobe's does not restrict (a hundred cells over three images
/// cost one DryRun, not a hundred, against RunInstances' low rate limit).
fn shapes<'a>(cells: &[&'a Cell]) -> Vec<&'a Cell> {
    let mut seen = BTreeMap::new();
    for cell in cells {
        let mut shape = cell.launch.clone();
        shape.remove("image");
        shape.remove("instance_type");
        seen.entry(serde_json::Value::Object(shape).to_string()).or_insert(*cell);
    }
    let mut firsts: Vec<&Cell> = seen.into_values().collect();
    firsts.sort_by_key(|c| c.index);
    firsts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_one_line_naming_action_region_purpose_and_calls() {
        let refusal = Refusal {
            action: "ec2:CreateTags".into(),
            region: "eu-west-1".into(),
            why: "tag what the run creates".into(),
            calls: vec!["RunInstances", "CreateTags"],
            detail: Some("resource arn:aws:ec2:eu-west-1:1:instance/*".into()),
            doubtful: false,
            made_up: false,
            dry_run: true,
        };
        assert_eq!(
            refusal.to_string(),
            "ec2:CreateTags refused in eu-west-1 (needed to tag what the run creates): UnauthorizedOperation on \
             RunInstances, CreateTags (DryRun), resource arn:aws:ec2:eu-west-1:1:instance/*"
        );
    }

    #[test]
    fn only_a_refusal_on_made_up_ids_that_removes_nothing_is_doubtful() {
        let doubtful = |action| doubtful(permissions::row_of(action).unwrap());
        for removal in ["ec2:TerminateInstances", "ec2:DeleteKeyPair", "ec2:DeleteSecurityGroup"] {
            assert!(on_made_up_ids(permissions::row_of(removal).unwrap()) && !doubtful(removal), "{removal}");
        }
        assert!(doubtful("ec2:AuthorizeSecurityGroupIngress") && doubtful("ec2:CreateTags"));
        for certain in ["ec2:RunInstances", "ec2:ImportKeyPair", "ec2:DescribeInstances"] {
            assert!(!on_made_up_ids(permissions::row_of(certain).unwrap()), "{certain}");
        }
    }

    #[test]
    fn shapes_ignore_image_and_type_only() {
        let cell = |index: usize, image: &str, t: &str, subnet: &str| {
            let launch = serde_json::json!({ "image": image, "instance_type": t, "subnet": subnet });
            Cell {
                id: crate::cell::CellId(format!("c{index}")),
                index,
                values: Default::default(),
                launch: launch.as_object().cloned().unwrap_or_default(),
            }
        };
        let cells = [cell(0, "a", "t3", "s1"), cell(1, "b", "m5", "s1"), cell(2, "a", "t3", "s2")];
        let refs: Vec<&Cell> = cells.iter().collect();
        let firsts: Vec<usize> = shapes(&refs).iter().map(|c| c.index).collect();
        assert_eq!(firsts, [0, 2]);
    }
}
