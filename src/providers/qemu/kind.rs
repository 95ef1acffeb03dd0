//! The qemu provider as the registry knows it: its `provider.qemu` section, its launch fields, and
//! what it refuses before a run starts. It has nothing for `amiprobe sweep`: a QEMU machine is a
//! process of the run's, and none outlives it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::{Schema, SchemaGenerator};

use super::{hardware, QemuPlan, QemuProvider, QemuSpec, FIELDS};
use crate::provider::{section, Field, FlagsRefused, Provider, ProviderKind, ProviderSettings, RunFlags, RunSettings};
use crate::spec::{FieldPath, Problem};

/// The registry's entry.
pub static KIND: QemuKind = QemuKind;

pub struct QemuKind;

#[async_trait]
impl ProviderKind for QemuKind {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    fn section_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<QemuSpec>()
    }

    fn resolve(
        &self,
        raw: &serde_yaml::Value,
        base: &Path,
        at: &FieldPath,
        problems: &mut Vec<Problem>,
    ) -> Option<Arc<dyn ProviderSettings>> {
        let spec: QemuSpec = section::read(raw, at, problems)?;
        let plan = spec.resolve(base, at, problems)?;
        Some(Arc::new(plan))
    }
}

/// User data goes into the NoCloud seed; a named key pair is EC2's and has no meaning here, so it is
/// simply not in the seed: nothing of the generic launch settings is refused.
impl ProviderSettings for QemuPlan {
    fn agent(&self) -> Option<&'static str> {
        Some("the QEMU guest agent")
    }

    fn name(&self) -> &'static str {
        "qemu"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    /// `size` names one of the section's sizes, `instance_type` one it maps.
    fn check_value(&self, name: &str, value: &serde_json::Value, at: &FieldPath) -> Vec<Problem> {
        hardware::check_value(self, name, value, at)
    }

    /// A QEMU machine is a process of the run's: none outlives it.
    fn check_flags(&self, flags: &RunFlags) -> Result<(), FlagsRefused> {
        match flags.keep_failed {
            true => Err(FlagsRefused("--keep-failed is for ec2: no qemu machine outlives its run".into())),
            false => Ok(()),
        }
    }

    fn provider(&self, run: RunSettings) -> Arc<dyn Provider> {
        Arc::new(QemuProvider::new(self.clone(), run))
    }
}
