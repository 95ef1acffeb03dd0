//! `launch:`, the settings every cell's machine is launched with (besides the matrix's fields): user
//! data (inline or a file next to the spec), the key pair and tags, as the provider will use them.

use std::path::Path;

use std::sync::Arc;

use crate::provider::{LaunchPlan, ProviderSettings};
use crate::spec::{FieldPath, KeyPair, Problem, Spec};

/// `launch:` checked and resolved: user data read, key pair and tags checked, then the provider's
/// own checks of the whole.
pub(super) fn resolve(
    spec: &Spec,
    base: &Path,
    provider: Option<&Arc<dyn ProviderSettings>>,
    problems: &mut Vec<Problem>,
) -> LaunchPlan {
    let path = FieldPath::root().key("launch");
    let launch = &spec.launch;
    let user_data = launch.user_data.as_ref().and_then(|text| {
        let is_path = !text.contains('\n') && (text.starts_with("./") || text.starts_with("../") || text.starts_with('/'));
        if !is_path {
            return Some(text.clone().into_bytes());
        }
        let file = base.join(text);
        match std::fs::read(&file) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                problems.push(
                    Problem::at(path.key("user_data"), format!("failed to read user data file `{text}`: {e}"))
                        .help("a value starting with ./, ../ or / is a path relative to the spec; anything else is inline text"),
                );
                None
            }
        }
    });
    if let KeyPair::Existing(name) = &launch.key_pair {
        if name.trim().is_empty() {
            problems.push(Problem::at(path.key("key_pair"), "key pair name is empty"));
        }
    }
    for key in launch.tags.keys() {
        if key.starts_with("amiprobe:") {
            problems.push(Problem::at_key(
                path.key("tags").key(key.clone()),
                format!("tag `{key}` uses a reserved prefix"),
            ));
        }
    }
    let plan = LaunchPlan {
        os: spec.os.unwrap_or_default(),
        key_pair: launch.key_pair.clone(),
        keep_private_key: launch.keep_private_key,
        user_data,
        tags: launch.tags.clone(),
    };
    if let Some(provider) = provider {
        provider.check_launch(&plan, &path, problems);
    }
    plan
}
