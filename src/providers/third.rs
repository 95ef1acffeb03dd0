//! A third provider, test-only: the proof that a provider is a folder and a line in the registry.
//! Its section and launch fields reach the resolver and the JSON Schema through [`ProviderKind`]
//! alone, with no other file naming it. It launches nothing.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;

use super::{ec2, qemu, resolve_among, schema::schema_among};
use crate::cell::Cell;
use crate::provider::{
    section, Checked, CleanupStep, Field, FlagsRefused, LaunchContext, Ledger, Machine, Provider, ProviderError,
    ProviderKind, ProviderSettings, Resource, RunFlags, RunSettings,
};
use crate::spec::{FieldPath, Problem, ProviderSection};

/// `provider.local`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct LocalSpec {
    /// Where the machines are.
    path: String,
}

static FIELDS: &[Field] = &[Field::plain::<String>("image", true), Field::plain::<u32>("cores", false)];

struct LocalKind;

#[async_trait]
impl ProviderKind for LocalKind {
    fn name(&self) -> &'static str {
        "local"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    fn section_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<LocalSpec>()
    }

    fn resolve(
        &self,
        raw: &serde_yaml::Value,
        _base: &Path,
        at: &FieldPath,
        problems: &mut Vec<Problem>,
    ) -> Option<Arc<dyn ProviderSettings>> {
        let spec: LocalSpec = section::read(raw, at, problems)?;
        Some(Arc::new(spec))
    }
}

impl ProviderSettings for LocalSpec {
    fn name(&self) -> &'static str {
        "local"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    fn check_flags(&self, _flags: &RunFlags) -> Result<(), FlagsRefused> {
        Ok(())
    }

    fn provider(&self, _run: RunSettings) -> Arc<dyn Provider> {
        Arc::new(LocalProvider { path: self.path.clone() })
    }
}

struct LocalProvider {
    path: String,
}

#[async_trait]
impl Provider for LocalProvider {
    async fn preflight(&self, _cells: &[Cell]) -> Result<Checked, ProviderError> {
        Ok(Checked::default())
    }

    async fn launch(&self, _cell: &Cell, _ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError> {
        Err(ProviderError::unsupported(format!("the test provider launches nothing from {}", self.path)))
    }

    async fn remove_leftovers(&self, _leftovers: Vec<Resource>, _ledger: &Ledger) -> Vec<CleanupStep> {
        Vec::new()
    }

    async fn sweep_run(&self, _run_id: &str, _ledger: &Ledger) -> Vec<CleanupStep> {
        Vec::new()
    }
}

static KINDS: &[&dyn ProviderKind] = &[&ec2::KIND, &qemu::KIND, &LocalKind];

fn section(yaml: &str) -> ProviderSection {
    serde_yaml::from_str(yaml).expect("a mapping")
}

#[test]
fn a_third_provider_is_resolved_from_its_own_section() {
    let mut problems = Vec::new();
    let settings = resolve_among(KINDS, &section("local: { path: /srv }"), Path::new("."), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(settings.map(|s| s.name()), Some("local"));

    let mut problems = Vec::new();
    resolve_among(KINDS, &section("local: { paht: /srv }"), Path::new("."), &mut problems);
    let messages: Vec<String> = problems.iter().map(|p| format!("{}: {:?}", p.message, p.help)).collect();
    assert!(messages.iter().any(|m| m.contains("unknown key `paht` in provider.local")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("did you mean `path`?")), "{messages:?}");

    let mut problems = Vec::new();
    let settings =
        resolve_among(KINDS, &section("{ regoin: x, local: { path: /srv } }"), Path::new("."), &mut problems);
    assert_eq!(settings.map(|s| s.name()), Some("local"), "a typo beside the provider does not hide it");
    assert_eq!(problems[0].message, "unknown provider `regoin`");

    let mut problems = Vec::new();
    resolve_among(KINDS, &section("{}"), Path::new("."), &mut problems);
    assert_eq!(problems[0].help.as_deref(), Some("add `ec2: {...}` or `qemu: {...}` or `local: {...}`"));
}

#[test]
fn a_third_provider_is_in_the_schema_with_its_launch_fields() {
    let schema = schema_among(KINDS);
    assert_eq!(
        schema.pointer("/properties/provider/description").and_then(|d| d.as_str()),
        Some("Where the cells run: exactly one of `ec2`, `qemu` or `local`.")
    );
    assert!(schema.pointer("/$defs/ProviderSpec/properties/local").is_some());
    assert!(schema.pointer("/$defs/LocalSpec/properties/path").is_some());
    assert!(schema.pointer("/$defs/MatrixSpec/properties/cores").is_some());
    assert!(schema.pointer("/$defs/LaunchSpec/properties/cores").is_some());
}
