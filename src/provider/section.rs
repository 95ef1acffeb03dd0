//! Reading a provider's own `provider:` section: the spec keeps it raw, since the spec knows no
//! provider; each provider reads its part here into its own type, with the same errors the spec's
//! loader gives (every unknown key with a "did you mean", the first type error, each at its place).

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::field::{unknown_key, Read};
use crate::spec::{unknown_key_help, valid_keys_in, FieldPath, Problem};

/// The section at `at` read as a `T`, every problem found in it added to `problems`. Unknown keys
/// don't stop it (the rest of the spec is still checked against it, as the loader does); a type
/// error does.
pub fn read<T: DeserializeOwned + JsonSchema>(
    raw: &serde_yaml::Value,
    at: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let read = Read::<T>::of(raw, at);
    if !read.unknown.is_empty() {
        let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
        for path in &read.unknown {
            let key = path.last_key().unwrap_or_default();
            let valid = valid_keys_in(&schema, &path.parent().unwrap_or_default());
            problems.push(unknown_key(path, at, unknown_key_help(key, &valid)));
        }
    }
    problems.extend(read.type_error);
    read.value
}
