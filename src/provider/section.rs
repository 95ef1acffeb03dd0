//! Reading a provider's own `provider:` section: the spec keeps it raw, since the spec knows no
//! provider; each provider reads its part here into its own type, with the same errors the spec's
//! loader gives (every unknown key with a "did you mean", the first type error, each at its place).

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::field::read_as;
use crate::spec::{nearest, valid_keys_in, FieldPath, Problem, Segment};

/// The section at `at` read as a `T`, every problem found in it added to `problems`. Unknown keys
/// don't stop it (the rest of the spec is still checked against it, as the loader does); a type
/// error does.
pub fn read<T: DeserializeOwned + JsonSchema>(
    raw: &serde_yaml::Value,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let (value, found) = read_as::<T>(raw, at);
    problems.extend(found.into_iter().map(|p| with_suggestion::<T>(p, at)));
    value
}

/// An unknown key's problem with the nearest valid key as its help, like the loader's.
fn with_suggestion<T: JsonSchema>(problem: Problem, at: &FieldPath) -> Problem {
    if !problem.at_key || !problem.message.starts_with("unknown key") {
        return problem;
    }
    let Some(relative) = below(&problem.path, at) else { return problem };
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    let key = relative.last_key().unwrap_or_default().to_string();
    let valid = valid_keys_in(&schema, &relative.parent().unwrap_or_default());
    let help = match nearest(&key, &valid) {
        Some(near) => format!("did you mean `{near}`?"),
        None if !valid.is_empty() => format!("valid keys here: {}", valid.join(", ")),
        None => return problem,
    };
    problem.help(help)
}

/// `path` relative to `at`, when it lies below it.
fn below(path: &FieldPath, at: &FieldPath) -> Option<FieldPath> {
    let rest = path.segments().strip_prefix(at.segments())?;
    Some(rest.iter().fold(FieldPath::root(), |p, segment| match segment {
        Segment::Key(key) => p.key(key.clone()),
        Segment::Index(index) => p.index(*index),
    }))
}
