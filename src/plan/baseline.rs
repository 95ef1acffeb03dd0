//! The spec's `baseline:` settings, checked: the axes its key names exist, the ratio is a ratio,
//! the floor is a duration and the ignored lines are regular expressions. The comparison itself is
//! `report::compare`'s; the command line's flags win over what is resolved here.

use std::time::Duration;

use crate::spec::{self, FieldPath, Problem};

/// How a run is compared with a baseline, as the spec says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaselinePlan {
    /// The axes cells are matched by across nights; `None`: every axis.
    pub key: Option<Vec<String>>,
    pub ratio: Option<f64>,
    pub floor: Option<Duration>,
    pub ignore_lines: Vec<String>,
    pub fail_on_regression: bool,
}

/// `baseline:` of `spec`, with a problem for each thing in it that can't be used.
pub fn resolve(spec: &spec::Spec, problems: &mut Vec<Problem>) -> BaselinePlan {
    let b = &spec.baseline;
    let at = FieldPath::root().key("baseline");
    let axes: Vec<String> = spec
        .matrix
        .axes
        .0
        .iter()
        .map(|(k, _)| k.clone())
        .chain(spec.matrix.include.iter().flat_map(|f| f.0.iter().map(|(k, _)| k.clone())))
        .collect();
    for (i, name) in b.key.iter().flatten().enumerate() {
        if !axes.contains(name) {
            let mut problem = Problem::at(at.key("key").index(i), format!("`{name}` is not an axis of the matrix"));
            if let Some(near) = spec::nearest(name, &axes) {
                problem = problem.help(format!("did you mean `{near}`?"));
            }
            problems.push(problem);
        }
    }
    if b.key.as_ref().is_some_and(Vec::is_empty) {
        problems.push(Problem::at(at.key("key"), "key names no axis").help("name at least one, or leave `key` out"));
    }
    if let Some(ratio) = b.ratio.filter(|r| !(r.is_finite() && *r >= 0.0)) {
        problems.push(Problem::at(at.key("ratio"), format!("ratio must be a number of 0 or more, not {ratio}")));
    }
    for (i, pattern) in b.ignore_lines.iter().enumerate() {
        if let Err(e) = regex::Regex::new(pattern) {
            let detail = crate::text::regex_problem(&e);
            problems.push(Problem::at(at.key("ignore_lines").index(i), format!("invalid regex: {detail}")));
        }
    }
    BaselinePlan {
        key: b.key.clone(),
        ratio: b.ratio,
        floor: b.floor,
        ignore_lines: b.ignore_lines.clone(),
        fail_on_regression: b.fail_on_regression,
    }
}
