//! The IAM permissions the ec2 provider needs, in one table ([`NEEDS`]): each API call amiprobe
//! makes, the IAM action it needs, when a spec needs it, what for, and on what. The preflight's
//! DryRun check (`dry_run.rs`) asks EC2 about the rows marked `dry_run`; `amiprobe policy` prints the
//! least-privilege policy made from the same rows ([`policy`]).
//!
//! The policy lets amiprobe create only what it tags with its run id (`aws:RequestTag`), act on and
//! remove only what carries that tag (`ec2:ResourceTag`), tag only as it creates (`ec2:CreateAction`)
//! or what is already its own, pass only the named instance profiles' roles, and only in the spec's
//! regions. Describe calls take no resource-level permissions on EC2: they are limited by region.
//! A promotion (`on_pass`) may tag any image, with its own tag keys only, and write its parameter.
//!
//! The preflight asks about removals and the like with DryRun before anything exists, on made-up ids
//! ([`MADE_UP`]), which carry no tag: a policy allowing those calls only on what carries amiprobe's
//! tag refuses them whether it lacks the action or not. So the policy also allows each such call on
//! its made-up id (which names nothing that exists): refused there, the action is really missing.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::launch::Ec2Launch;
use super::tags::RUN_ID_TAG;
use super::{Ec2Spec, SecurityGroupMode};
use crate::cell::Cell;
use crate::provider::PolicyNeeds;
use crate::spec::KeyPair;

/// What a spec uses that decides which rows apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uses {
    /// `launch.key_pair: ephemeral`: the run imports its own key and deletes it.
    pub ephemeral_key: bool,
    /// `provider.ec2.security_group: ephemeral`.
    pub ephemeral_group: bool,
    /// A `windows_password` probe.
    pub windows_password: bool,
    /// `reboot: true`.
    pub reboot: bool,
    /// `agent:` probes: the SSM document their commands run with.
    pub agent_document: Option<&'static str>,
    /// The cells' `iam_instance_profile`s, as written (a name or an ARN).
    pub instance_profiles: BTreeSet<String>,
    /// The regions the cells run in; empty when some cell's region is the environment's (unknown
    /// until it runs): the policy then allows every region.
    pub regions: BTreeSet<String>,
    /// `provider.ec2.on_pass.tags`: the keys a promotion puts on an image.
    pub promote_tags: BTreeSet<String>,
    /// `provider.ec2.on_pass.ssm_parameter`: the parameter a promotion writes, as written.
    pub promote_parameter: Option<String>,
}

/// When a row is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    EphemeralKey,
    EphemeralGroup,
    WindowsPassword,
    Reboot,
    InstanceProfile,
    /// `agent:` probes (SSM Run Command).
    Agent,
    /// `on_pass.tags`.
    PromoteTags,
    /// `on_pass.ssm_parameter`.
    PromoteParameter,
}

impl When {
    fn applies(self, uses: &Uses) -> bool {
        match self {
            When::Always => true,
            When::EphemeralKey => uses.ephemeral_key,
            When::EphemeralGroup => uses.ephemeral_group,
            When::WindowsPassword => uses.windows_password,
            When::Reboot => uses.reboot,
            When::InstanceProfile => !uses.instance_profiles.is_empty(),
            When::Agent => uses.agent_document.is_some(),
            When::PromoteTags => !uses.promote_tags.is_empty(),
            When::PromoteParameter => uses.promote_parameter.is_some(),
        }
    }
}

/// On what an action is allowed, and under which condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Any resource in the spec's regions (EC2's describe calls have no resource-level permissions).
    Describe,
    /// New resources of these types, only when the request tags them with the run id.
    Create(&'static [&'static str]),
    /// Tags on new resources of these types, only as part of the calls that create them.
    TagOnCreate(&'static [&'static str]),
    /// Existing resources of these types that carry the run id tag.
    Owned(&'static [&'static str]),
    /// Resources of these types the call only uses or that it makes untagged (images, subnets,
    /// the network interface RunInstances makes).
    Uses(&'static [&'static str]),
    /// The roles of the named instance profiles, passed to EC2 only.
    PassRole,
    /// The made-up resources of these types the preflight's DryRuns name ([`MADE_UP`]).
    Preflight(&'static [&'static str]),
    /// A global service (STS): any resource.
    Global,
    /// Images (any: the run's AMIs change every night), only with the promotion's tag keys.
    PromoteImage,
    /// The promotion's SSM parameter, its placeholders as wildcards.
    Parameter,
    /// The SSM document `agent:` probes' commands run with (AWS's own: its ARN has no account,
    /// which IAM's `*` matches).
    Document,
    /// Instances carrying the run id tag, as SSM names their tags (`ssm:resourceTag`).
    CommandTarget,
}

/// The made-up id (a key pair's name) the preflight's DryRuns name, per resource type: well-formed,
/// and nothing that exists (EC2 ids are random hex).
pub const MADE_UP: &[(&str, &str)] = &[
    ("instance", "i-00000000000000000"),
    ("key-pair", "amiprobe-preflight"),
    ("security-group", "sg-00000000000000000"),
];

/// The made-up id of a resource type, as [`MADE_UP`] has it.
pub fn made_up(kind: &str) -> &'static str {
    MADE_UP.iter().find(|(k, _)| *k == kind).map_or("", |(_, id)| id)
}

/// One row: an API call and the IAM action it needs.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// The API call, as EC2 names it.
    pub call: &'static str,
    /// The IAM action, `service:Action`.
    pub action: &'static str,
    pub when: When,
    pub scopes: &'static [Scope],
    /// What for, as a lowercase fragment after "needed to".
    pub why: &'static str,
    /// Whether the preflight asks EC2 about it with DryRun.
    pub dry_run: bool,
}

const INSTANCE: &[&str] = &["instance"];
const KEY_PAIR: &[&str] = &["key-pair"];
const GROUP: &[&str] = &["security-group"];

/// A describe call the preflight makes itself (its refusal stops the preflight).
const fn describe(call: &'static str, action: &'static str) -> Need {
    let why = "look up what the cells need";
    Need { call, action, when: When::Always, scopes: &[Scope::Describe], why, dry_run: false }
}

/// A describe call only the run makes: asked with DryRun first, since a run refused it would launch
/// and then never see its machines (or clean up).
const fn watch(call: &'static str, action: &'static str, when: When, why: &'static str) -> Need {
    Need { call, action, when, scopes: &[Scope::Describe], why, dry_run: true }
}

/// Every call amiprobe's ec2 provider makes, and the action it needs.
pub const NEEDS: &[Need] = &[
    describe("DescribeImages", "ec2:DescribeImages"),
    describe("DescribeInstanceTypes", "ec2:DescribeInstanceTypes"),
    describe("DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypeOfferings"),
    watch("DescribeSubnets", "ec2:DescribeSubnets", When::Always, "look up the cells' subnets"),
    watch("DescribeSecurityGroups", "ec2:DescribeSecurityGroups", When::Always, "look up and sweep security groups"),
    watch("DescribeInstances", "ec2:DescribeInstances", When::Always, "watch the cells' instances and sweep"),
    watch("DescribeInstanceStatus", "ec2:DescribeInstanceStatus", When::Always, "read the instances' status checks"),
    watch("DescribeKeyPairs", "ec2:DescribeKeyPairs", When::Always, "sweep the run's key pairs"),
    watch("DescribeVpcs", "ec2:DescribeVpcs", When::EphemeralGroup, "find the VPC of the run's security group"),
    Need {
        call: "RunInstances",
        action: "ec2:RunInstances",
        when: When::Always,
        scopes: &[
            Scope::Create(&["instance", "volume"]),
            Scope::Uses(&[
                "image",
                "snapshot",
                "subnet",
                "network-interface",
                "security-group",
                "key-pair",
                "placement-group",
            ]),
        ],
        why: "launch cells",
        dry_run: true,
    },
    Need {
        call: "CreateTags",
        action: "ec2:CreateTags",
        when: When::Always,
        scopes: &[
            Scope::TagOnCreate(&["instance", "volume", "key-pair", "security-group"]),
            Scope::Owned(INSTANCE),
            Scope::Preflight(INSTANCE),
        ],
        why: "tag what the run creates, and keep a failed cell's instance (--keep-failed)",
        dry_run: true,
    },
    Need {
        call: "TerminateInstances",
        action: "ec2:TerminateInstances",
        when: When::Always,
        scopes: &[Scope::Owned(INSTANCE), Scope::Preflight(INSTANCE)],
        why: "remove the cells' instances",
        dry_run: true,
    },
    Need {
        call: "GetConsoleOutput",
        action: "ec2:GetConsoleOutput",
        when: When::Always,
        scopes: &[Scope::Owned(INSTANCE)],
        why: "read the console log",
        dry_run: false,
    },
    Need {
        call: "GetConsoleScreenshot",
        action: "ec2:GetConsoleScreenshot",
        when: When::Always,
        scopes: &[Scope::Owned(INSTANCE)],
        why: "take screenshots",
        dry_run: false,
    },
    Need {
        call: "GetPasswordData",
        action: "ec2:GetPasswordData",
        when: When::WindowsPassword,
        scopes: &[Scope::Owned(INSTANCE)],
        why: "read the Windows password (windows_password probes)",
        dry_run: false,
    },
    Need {
        call: "RebootInstances",
        action: "ec2:RebootInstances",
        when: When::Reboot,
        scopes: &[Scope::Owned(INSTANCE)],
        why: "reboot the machines (reboot: true)",
        dry_run: false,
    },
    Need {
        call: "ImportKeyPair",
        action: "ec2:ImportKeyPair",
        when: When::EphemeralKey,
        scopes: &[Scope::Create(&["key-pair"])],
        why: "import the run's key (key_pair: ephemeral)",
        dry_run: true,
    },
    Need {
        call: "DeleteKeyPair",
        action: "ec2:DeleteKeyPair",
        when: When::EphemeralKey,
        scopes: &[Scope::Owned(KEY_PAIR), Scope::Preflight(KEY_PAIR)],
        why: "delete the run's key (key_pair: ephemeral)",
        dry_run: true,
    },
    Need {
        call: "CreateSecurityGroup",
        action: "ec2:CreateSecurityGroup",
        when: When::EphemeralGroup,
        scopes: &[Scope::Create(&["security-group"]), Scope::Uses(&["vpc"])],
        why: "make the run's security group (security_group: ephemeral)",
        dry_run: true,
    },
    Need {
        call: "AuthorizeSecurityGroupIngress",
        action: "ec2:AuthorizeSecurityGroupIngress",
        when: When::EphemeralGroup,
        scopes: &[Scope::Owned(GROUP), Scope::Preflight(GROUP)],
        why: "open the probed ports in the run's security group",
        dry_run: true,
    },
    Need {
        call: "DeleteSecurityGroup",
        action: "ec2:DeleteSecurityGroup",
        when: When::EphemeralGroup,
        scopes: &[Scope::Owned(GROUP), Scope::Preflight(GROUP)],
        why: "delete the run's security group",
        dry_run: true,
    },
    Need {
        call: "RunInstances",
        action: "iam:PassRole",
        when: When::InstanceProfile,
        scopes: &[Scope::PassRole],
        why: "launch with the instance profile (iam_instance_profile)",
        dry_run: false,
    },
    Need {
        call: "CreateTags",
        action: "ec2:CreateTags",
        when: When::PromoteTags,
        scopes: &[Scope::PromoteImage],
        why: "tag the images all of whose cells passed (on_pass.tags)",
        dry_run: true,
    },
    // SSM has no DryRun: a refusal of these is found when an agent probe runs (or the promotion writes).
    Need {
        call: "DescribeInstanceInformation",
        action: "ssm:DescribeInstanceInformation",
        when: When::Agent,
        scopes: &[Scope::Describe],
        why: "see when the instances' SSM agents are online (agent probes)",
        dry_run: false,
    },
    Need {
        call: "SendCommand",
        action: "ssm:SendCommand",
        when: When::Agent,
        scopes: &[Scope::Document, Scope::CommandTarget],
        why: "run agent probes' commands",
        dry_run: false,
    },
    Need {
        call: "ListCommandInvocations",
        action: "ssm:ListCommandInvocations",
        when: When::Agent,
        scopes: &[Scope::Describe],
        why: "follow agent probes' commands",
        dry_run: false,
    },
    Need {
        call: "GetCommandInvocation",
        action: "ssm:GetCommandInvocation",
        when: When::Agent,
        scopes: &[Scope::Describe],
        why: "read agent probes' output",
        dry_run: false,
    },
    Need {
        call: "PutParameter",
        action: "ssm:PutParameter",
        when: When::PromoteParameter,
        scopes: &[Scope::Parameter],
        why: "write the id of each image all of whose cells passed (on_pass.ssm_parameter)",
        dry_run: false,
    },
    Need {
        call: "DecodeAuthorizationMessage",
        action: "sts:DecodeAuthorizationMessage",
        when: When::Always,
        scopes: &[Scope::Global],
        why: "say which permission EC2 refused",
        dry_run: false,
    },
];

/// The rows a spec that uses `uses` needs, in the table's order.
pub fn needed(uses: &Uses) -> impl Iterator<Item = &'static Need> + '_ {
    NEEDS.iter().filter(|n| n.when.applies(uses))
}

impl Need {
    /// Whether the run removes what it made with this call: refused, the run would leave it behind.
    pub fn removes(&self) -> bool {
        matches!(self.call, "TerminateInstances" | "DeleteKeyPair" | "DeleteSecurityGroup")
    }
}

/// The row of an IAM action, if amiprobe needs it (the first one, for an action of several calls).
pub fn row_of(action: &str) -> Option<&'static Need> {
    NEEDS.iter().find(|n| n.action == action)
}

impl Uses {
    /// What `provider.ec2.on_pass` asks of the table.
    pub fn promote(&mut self, spec: &Ec2Spec) {
        if let Some(on_pass) = &spec.on_pass {
            self.promote_tags = on_pass.tags.keys().cloned().collect();
            self.promote_parameter.clone_from(&on_pass.ssm_parameter);
        }
    }

    /// What `cells` use of the table; `windows_password` and `reboot` are the caller's to set (they
    /// are the spec's probes, which a provider does not see).
    pub fn of(cells: &[Cell], ephemeral_key: bool, ephemeral_group: bool, default_region: Option<&str>) -> Uses {
        let mut uses = Uses { ephemeral_key, ephemeral_group, ..Uses::default() };
        let mut every_region_known = true;
        for cell in cells {
            match cell.text("region").or(default_region) {
                Some(region) => {
                    uses.regions.insert(region.to_string());
                }
                None => every_region_known = false,
            }
            uses.instance_profiles.extend(Ec2Launch::of(cell).ok().and_then(|f| f.iam_instance_profile));
        }
        if !every_region_known {
            uses.regions.clear();
        }
        uses
    }
}

/// The policy a run of `needs` with the section `spec` needs.
pub fn policy_for(spec: &Ec2Spec, needs: &PolicyNeeds<'_>) -> Value {
    let ephemeral_key = matches!(needs.launch.key_pair, KeyPair::Ephemeral);
    let ephemeral_group = spec.security_group == SecurityGroupMode::Ephemeral;
    let mut uses = Uses::of(needs.cells, ephemeral_key, ephemeral_group, spec.region.as_deref());
    uses.reboot = needs.reboot;
    uses.windows_password = needs.windows_password;
    uses.agent_document = needs.agent.then(|| super::run_command::document(needs.launch.os));
    uses.promote(spec);
    let mut document = policy(&uses);
    if let (Some(statement), Some(Value::Array(statements))) =
        (parameters_statement(spec, needs.cells), document.get_mut("Statement"))
    {
        statements.push(statement);
    }
    document
}

/// The statement letting the preflight read the SSM parameters the cells' images are named by
/// (`image: ssm:/path`): GetParameter on each, in each region a cell of it runs in (`*` for the
/// SDK's configured region), any account; none when no cell names one.
fn parameters_statement(spec: &Ec2Spec, cells: &[crate::cell::Cell]) -> Option<Value> {
    let mut arns = BTreeSet::new();
    for cell in cells {
        let value = cell.launch.get("image").cloned().unwrap_or(Value::Null);
        if let Ok(crate::spec::ImageSource::Ssm(name)) = serde_json::from_value(value) {
            let region = cell.text("region").or(spec.region.as_deref()).unwrap_or("*");
            arns.insert(format!("arn:aws:ssm:{region}:*:parameter/{}", name.trim_start_matches('/')));
        }
    }
    (!arns.is_empty()).then(
        || json!({ "Sid": "ReadImageParameters", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": arns }),
    )
}

/// The least-privilege IAM policy document for `uses`: one statement per scope, in the table's order.
pub fn policy(uses: &Uses) -> Value {
    let mut statements: Vec<(Scope, Vec<&'static str>)> = Vec::new();
    for need in needed(uses) {
        for scope in need.scopes {
            match statements.iter_mut().find(|(s, _)| s == scope) {
                Some((_, actions)) if actions.contains(&need.action) => {}
                Some((_, actions)) => actions.push(need.action),
                None => statements.push((*scope, vec![need.action])),
            }
        }
    }
    let creates: Vec<&str> = needed(uses)
        .filter(|n| n.scopes.iter().any(|s| matches!(s, Scope::Create(_))))
        .map(|n| n.call)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut sids = BTreeSet::new();
    let body: Vec<Value> = statements
        .iter()
        .map(|(scope, actions)| {
            let mut statement = statement(*scope, uses, &creates);
            let sid = unique_sid(&sid_of(*scope), &mut sids);
            statement.insert("Sid".into(), json!(sid));
            statement.insert("Effect".into(), json!("Allow"));
            statement.insert("Action".into(), json!(actions));
            order(statement)
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": body })
}

/// A statement's Sid: what it allows, and on what (`CreateTaggedKeyPair`, `OwnInstance`).
fn sid_of(scope: Scope) -> String {
    let (base, types): (&str, &[&str]) = match scope {
        Scope::Describe => ("Describe", &[]),
        Scope::Create(types) => ("CreateTagged", types),
        Scope::TagOnCreate(_) => ("TagOnlyOnCreate", &[]),
        Scope::Owned(types) => ("Own", types),
        Scope::Uses(_) => ("UseExisting", &[]),
        Scope::PassRole => ("PassInstanceProfileRole", &[]),
        Scope::Preflight(types) => ("DryRunOnMadeUp", types),
        Scope::Global => ("DecodeRefusals", &[]),
        Scope::PromoteImage => ("PromoteImage", &[]),
        Scope::Parameter => ("PromoteToParameter", &[]),
        Scope::Document => ("RunCommandDocument", &[]),
        Scope::CommandTarget => ("RunCommandOnOwnInstance", &[]),
    };
    let kind: String = types
        .first()
        .map(|t| {
            t.split('-')
                .map(|w| w.get(..1).unwrap_or_default().to_uppercase() + w.get(1..).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    format!("{base}{kind}")
}

/// `base`, or `base2`, `base3`... when taken: IAM wants a policy's Sids unique.
fn unique_sid(base: &str, taken: &mut BTreeSet<String>) -> String {
    let mut sid = base.to_string();
    let mut n = 1;
    while !taken.insert(sid.clone()) {
        n += 1;
        sid = format!("{base}{n}");
    }
    sid
}

/// Sid, Effect, Action, Resource, Condition: the order people read a statement in.
fn order(statement: serde_json::Map<String, Value>) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["Sid", "Effect", "Action", "Resource", "Condition"] {
        if let Some(value) = statement.get(key) {
            out.insert(key.to_string(), value.clone());
        }
    }
    Value::Object(out)
}

/// The regions of the ARNs: the spec's, or `*` when one is the environment's.
fn regions(uses: &Uses) -> Vec<String> {
    if uses.regions.is_empty() {
        vec!["*".to_string()]
    } else {
        uses.regions.iter().cloned().collect()
    }
}

/// `arn:aws:ec2:REGION:*:TYPE/*` for each region; images and snapshots have no account in theirs.
fn arns(types: &[&str], uses: &Uses) -> Vec<String> {
    let mut out = Vec::new();
    for region in regions(uses) {
        for t in types {
            let account = if matches!(*t, "image" | "snapshot") { "" } else { "*" };
            out.push(format!("arn:aws:ec2:{region}:{account}:{t}/*"));
        }
    }
    out
}

/// The promotion's parameter in each region, `arn:aws:ssm:REGION:*:parameter/NAME` (a name's
/// leading `/` is not in its ARN), each placeholder a wildcard.
fn parameter_arns(uses: &Uses) -> Vec<String> {
    let Some(name) = &uses.promote_parameter else { return Vec::new() };
    let wild: String = super::promote::template::wildcard(name);
    let path = wild.strip_prefix('/').unwrap_or(&wild);
    regions(uses).iter().map(|r| format!("arn:aws:ssm:{r}:*:parameter/{path}")).collect()
}

/// The role a profile passes: named like the profile, as the console and most tools make them (a
/// role named otherwise needs its own ARN here), in the profile's account when it is an ARN.
fn role_arn(profile: &str) -> String {
    match profile.strip_prefix("arn:aws:iam::").and_then(|rest| rest.split_once(":instance-profile/")) {
        Some((account, path)) => {
            let name = path.rsplit('/').next().unwrap_or(path);
            format!("arn:aws:iam::{account}:role/{name}")
        }
        None => format!("arn:aws:iam::*:role/{profile}"),
    }
}

/// A statement's Resource and Condition.
fn statement(scope: Scope, uses: &Uses, creates: &[&str]) -> serde_json::Map<String, Value> {
    let run_id_present = |key: &str| json!({ "Null": { format!("{key}/{RUN_ID_TAG}"): "false" } });
    let in_regions =
        || (!uses.regions.is_empty()).then(|| json!({ "StringEquals": { "aws:RequestedRegion": uses.regions } }));
    let (resource, condition) = match scope {
        Scope::Describe => (json!("*"), in_regions()),
        Scope::Create(types) => (json!(arns(types, uses)), Some(run_id_present("aws:RequestTag"))),
        Scope::TagOnCreate(types) => {
            (json!(arns(types, uses)), Some(json!({ "StringEquals": { "ec2:CreateAction": creates } })))
        }
        Scope::Owned(types) => (json!(arns(types, uses)), Some(run_id_present("ec2:ResourceTag"))),
        Scope::Uses(types) => (json!(arns(types, uses)), None),
        Scope::Preflight(types) => {
            let ids: Vec<String> = regions(uses)
                .iter()
                .flat_map(|r| types.iter().map(move |t| format!("arn:aws:ec2:{r}:*:{t}/{}", made_up(t))))
                .collect();
            (json!(ids), None)
        }
        Scope::PassRole => {
            let roles: BTreeSet<String> = uses.instance_profiles.iter().map(|p| role_arn(p)).collect();
            (json!(roles), Some(json!({ "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } })))
        }
        Scope::Global => (json!("*"), None),
        Scope::PromoteImage => {
            let keys: Vec<&String> = uses.promote_tags.iter().collect();
            (json!(arns(&["image"], uses)), Some(json!({ "ForAllValues:StringEquals": { "aws:TagKeys": keys } })))
        }
        Scope::Parameter => (json!(parameter_arns(uses)), None),
        Scope::Document => {
            let document = uses.agent_document.unwrap_or_default();
            (
                json!(regions(uses)
                    .iter()
                    .map(|r| format!("arn:aws:ssm:{r}:*:document/{document}"))
                    .collect::<Vec<_>>()),
                None,
            )
        }
        Scope::CommandTarget => (json!(arns(INSTANCE, uses)), Some(run_id_present("ssm:resourceTag"))),
    };
    let mut out = serde_json::Map::new();
    out.insert("Resource".into(), resource);
    if let Some(condition) = condition {
        out.insert("Condition".into(), condition);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(policy: &Value) -> BTreeSet<String> {
        let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
        statements
            .iter()
            .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn only_what_the_spec_uses_is_allowed() {
        let plain = Uses { regions: ["eu-west-1".to_string()].into(), ..Uses::default() };
        let all = actions(&policy(&plain));
        assert!(all.contains("ec2:RunInstances") && all.contains("ec2:TerminateInstances"));
        for absent in ["ec2:ImportKeyPair", "ec2:CreateSecurityGroup", "ec2:GetPasswordData", "iam:PassRole"] {
            assert!(!all.contains(absent), "{absent} in {all:?}");
        }
        let every = Uses {
            ephemeral_key: true,
            ephemeral_group: true,
            windows_password: true,
            reboot: true,
            instance_profiles: ["arn:aws:iam::123456789012:instance-profile/ci/probe".to_string()].into(),
            regions: plain.regions.clone(),
            promote_tags: ["tested-at".to_string()].into(),
            promote_parameter: Some("/images/{region}/web".into()),
            agent_document: Some("AWS-RunShellScript"),
        };
        let p = policy(&every);
        let table: BTreeSet<String> = NEEDS.iter().map(|n| n.action.to_string()).collect();
        assert_eq!(actions(&p), table, "a spec using everything needs every row");
        let pass = p["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "PassInstanceProfileRole").unwrap();
        assert_eq!(pass["Resource"], json!(["arn:aws:iam::123456789012:role/probe"]));
        let tag = p["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "PromoteImage").unwrap();
        assert_eq!(tag["Resource"], json!(["arn:aws:ec2:eu-west-1::image/*"]));
        assert_eq!(tag["Condition"], json!({ "ForAllValues:StringEquals": { "aws:TagKeys": ["tested-at"] } }));
        let put = p["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "PromoteToParameter").unwrap();
        assert_eq!(put["Resource"], json!(["arn:aws:ssm:eu-west-1:*:parameter/images/*/web"]));
        let send = p["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "RunCommandDocument").unwrap();
        assert_eq!(send["Resource"], json!(["arn:aws:ssm:eu-west-1:*:document/AWS-RunShellScript"]));
        let on = p["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "RunCommandOnOwnInstance").unwrap();
        assert_eq!(on["Condition"], json!({ "Null": { "ssm:resourceTag/amiprobe:run-id": "false" } }));
    }

    #[test]
    fn removals_need_the_run_tag_and_regions_limit_every_arn() {
        let uses = Uses { ephemeral_key: true, regions: ["eu-west-1".to_string()].into(), ..Uses::default() };
        let p = policy(&uses);
        let statements = p["Statement"].as_array().unwrap();
        let owned = statements.iter().find(|s| s["Sid"] == "OwnInstance").unwrap();
        assert!(owned["Action"].as_array().unwrap().contains(&json!("ec2:TerminateInstances")));
        assert_eq!(owned["Condition"], json!({ "Null": { "ec2:ResourceTag/amiprobe:run-id": "false" } }));
        for s in statements {
            for arn in s["Resource"].as_array().into_iter().flatten() {
                assert!(arn.as_str().unwrap().starts_with("arn:aws:ec2:eu-west-1:"), "{arn}");
            }
        }
        // The preflight's made-up ids, unconditionally: nothing that exists carries them.
        let made_up = statements.iter().find(|s| s["Sid"] == "DryRunOnMadeUpInstance").unwrap();
        assert_eq!(made_up["Resource"], json!(["arn:aws:ec2:eu-west-1:*:instance/i-00000000000000000"]));
        assert_eq!(made_up["Action"], json!(["ec2:CreateTags", "ec2:TerminateInstances"]));
        assert!(made_up.get("Condition").is_none());
        let tag = statements.iter().find(|s| s["Sid"] == "TagOnlyOnCreate").unwrap();
        assert_eq!(tag["Condition"]["StringEquals"]["ec2:CreateAction"], json!(["ImportKeyPair", "RunInstances"]));
    }
}
