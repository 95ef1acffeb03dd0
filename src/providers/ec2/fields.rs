//! What an ec2 cell can set, fixed in `launch:` or as a matrix axis ([`FIELDS`]), and the checks the
//! spec loader runs on each value before anything is launched.

use super::launch::{self, Ec2Launch};
use crate::provider::field::{check_as, schema_of, typed};
use crate::provider::Field;
use crate::spec::{FieldPath, ImageSource, Problem, Segment};

/// What an ec2 cell can set, fixed in `launch:` or as a matrix axis.
pub static FIELDS: &[Field] = &[
    // An id, `REGION:ami-...`, `ssm:/path`, a Packer manifest or a lookup (`images/`).
    Field::plain::<ImageSource>("image", true),
    Field::plain::<String>("instance_type", true),
    Field::plain::<String>("subnet", false),
    Field {
        name: "security_groups",
        list_valued: true,
        required: false,
        check: check_groups,
        schema: schema_of::<Vec<String>>,
    },
    Field {
        name: "root_volume",
        list_valued: false,
        required: false,
        check: |v, at| launch_problems(v, at, |x| Ec2Launch { root_volume: Some(x), ..Ec2Launch::default() }),
        schema: schema_of::<launch::RootVolume>,
    },
    Field {
        name: "volumes",
        list_valued: true,
        required: false,
        check: |v, at| launch_problems(v, at, |volumes| Ec2Launch { volumes, ..Ec2Launch::default() }),
        schema: schema_of::<Vec<launch::Volume>>,
    },
    Field::plain::<launch::BootMode>("boot_mode", false),
    Field {
        name: "imds",
        list_valued: false,
        required: false,
        check: |v, at| launch_problems(v, at, |x| Ec2Launch { imds: Some(x), ..Ec2Launch::default() }),
        schema: schema_of::<launch::Imds>,
    },
    Field::plain::<String>("iam_instance_profile", false),
    Field::plain::<bool>("public_ip", false),
    Field::plain::<String>("availability_zone", false),
    Field::plain::<String>("region", false),
    Field::plain::<String>("placement_group", false),
];

/// A launch field's value read as `T`, then checked for what EC2 would refuse, each problem placed
/// under the value (`launch.rs` names them from the field: `root_volume.iops`, `volumes[1].size`).
fn launch_problems<T: serde::de::DeserializeOwned>(
    value: &serde_yaml::Value,
    at: &FieldPath,
    wrap: impl Fn(T) -> Ec2Launch,
) -> Vec<Problem> {
    match typed::<T>(value, at) {
        Err(problems) => problems,
        Ok(x) => wrap(x).problems().into_iter().map(|(path, message)| Problem::at(below(at, &path), message)).collect(),
    }
}

/// `at` joined with a printed path less its first key: `root_volume.iops` -> `at.iops`.
fn below(at: &FieldPath, printed: &str) -> FieldPath {
    let segments = printed.split('.').flat_map(|part| {
        let mut pieces = part.split('[');
        let key = pieces.next().filter(|k| !k.is_empty()).map(|k| Segment::Key(k.to_string()));
        key.into_iter().chain(pieces.filter_map(|i| i.trim_end_matches(']').parse().ok()).map(Segment::Index))
    });
    segments.skip(1).fold(at.clone(), |path, segment| match segment {
        Segment::Key(k) => path.key(k),
        Segment::Index(i) => path.index(i),
    })
}

/// A set of security groups: a list of ids, not empty (one id alone is a set of one).
fn check_groups(value: &serde_yaml::Value, at: &FieldPath) -> Vec<Problem> {
    match value {
        serde_yaml::Value::String(_) => Vec::new(),
        serde_yaml::Value::Sequence(s) if s.is_empty() => vec![Problem::at(at.clone(), "empty security group list")],
        _ => check_as::<Vec<String>>(value, at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_placed_below_the_value() {
        let at = FieldPath::root().key("matrix").key("volumes").index(1);
        assert_eq!(below(&at, "volumes[2].device").to_string(), "matrix.volumes[1][2].device");
        let at = FieldPath::root().key("launch").key("root_volume");
        assert_eq!(below(&at, "root_volume.iops").to_string(), "launch.root_volume.iops");
        assert_eq!(below(&at, "root_volume").to_string(), "launch.root_volume");
    }
}
