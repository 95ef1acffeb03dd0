//! The providers, one folder each, and the registry that lists them: the only place that names
//! them all. A new provider is a folder here, one line in [`ALL`] and its dependencies.
//!
//! The registry reads the spec's raw `provider:` section (one key: the provider's name) and builds
//! the spec's JSON Schema with every provider's section and launch fields.

pub mod ec2;
pub mod qemu;
mod schema;

use std::path::Path;
use std::sync::Arc;

use crate::provider::{Field, ProviderKind, ProviderSettings};
use crate::spec::{nearest, FieldPath, Problem, ProviderSection};

pub use schema::spec_schema;

#[cfg(test)]
mod third;

/// Every provider, in the order the schema and `amiprobe sweep` take them.
pub static ALL: &[&dyn ProviderKind] = &[&ec2::KIND, &qemu::KIND];

/// Every provider's launch fields (a name two providers share has one meaning).
pub fn all_fields() -> impl Iterator<Item = &'static Field> {
    ALL.iter().flat_map(|kind| kind.fields().iter())
}

/// Resolves the spec's `provider:` section: exactly one known provider, its settings checked.
pub fn resolve(
    section: &ProviderSection,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<Arc<dyn ProviderSettings>> {
    resolve_among(ALL, section, base, problems)
}

/// [`resolve`] among `kinds`: every unknown name is reported, then exactly one known one is read.
fn resolve_among(
    kinds: &[&'static dyn ProviderKind],
    section: &ProviderSection,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<Arc<dyn ProviderSettings>> {
    let path = FieldPath::root().key("provider");
    let mut known = Vec::new();
    for (name, raw) in section.entries() {
        match kinds.iter().find(|kind| kind.name() == name) {
            Some(kind) => known.push((name, *kind, raw)),
            None => problems.push(unknown_provider(kinds, &path, name)),
        }
    }
    match known.as_slice() {
        [(name, kind, raw)] => kind.resolve(raw, base, &path.key(*name), problems),
        [_, (second, ..), ..] => {
            problems.push(
                Problem::at_key(path.key(*second), "more than one provider given")
                    .help(format!("a spec runs on one provider: keep either {}", either(kinds))),
            );
            None
        }
        [] => {
            if section.entries().next().is_none() {
                let names: Vec<String> = kinds.iter().map(|kind| format!("`{}: {{...}}`", kind.name())).collect();
                problems.push(Problem::at_key(path, "no provider given").help(format!("add {}", names.join(" or "))));
            }
            None
        }
    }
}

/// A key under `provider:` that names no provider.
fn unknown_provider(kinds: &[&dyn ProviderKind], path: &FieldPath, name: &str) -> Problem {
    let known: Vec<String> = kinds.iter().map(|kind| kind.name().to_string()).collect();
    let problem = Problem::at_key(path.key(name), format!("unknown provider `{name}`"));
    match nearest(name, &known) {
        Some(near) => problem.help(format!("did you mean `{near}`?")),
        None => problem.help(format!("the providers are {}", either(kinds))),
    }
}

/// "`ec2` or `qemu`", "`a`, `b` or `c`".
fn either(kinds: &[&dyn ProviderKind]) -> String {
    let names: Vec<String> = kinds.iter().map(|kind| format!("`{}`", kind.name())).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}
