//! The spec language: the YAML a user checks in, how it is read, and how its errors are reported.
//!
//! `spec` only knows what was written. Turning it into something runnable (matrix expansion, compiled
//! probes, semantic checks) is `plan`'s job.

mod diagnostic;
mod duration;
mod limits;
mod load;
mod locate;
mod model;
mod path;
mod suggest;
mod values;
mod vars;

pub use diagnostic::{Diagnostic, Problem, SpecError};
pub use limits::{MAX_ALIAS_NODES, MAX_DEPTH, MAX_DURATION, MAX_SPEC_BYTES};
pub use load::{load_file, load_str, LoadedSpec, VarOverrides};
pub use locate::Position;
pub use model::*;
pub use path::FieldPath;
pub use values::{ByteSize, KeyPair, OneOrMany, SecurityGroups, StatusMatcher};
pub use vars::Vars;

/// The JSON Schema of the spec, as checked into `schemas/`.
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Spec)).unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "amiprobe spec".into());
    }
    schema
}
