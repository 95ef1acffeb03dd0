//! The spec language: the YAML a user checks in, how it is read, and how its errors are reported.
//!
//! `spec` only knows what was written, and knows no provider: `provider:` stays raw for the registry
//! (`crate::providers`) to read. Turning a spec into something runnable (matrix expansion, compiled
//! probes, semantic checks) is `plan`'s job.

mod axes;
mod diagnostic;
pub(crate) mod duration;
mod limits;
mod load;
mod locate;
mod model;
mod path;
mod provider_section;
mod suggest;
mod values;
mod vars;

pub use axes::{Fields, MatrixSpec};
pub use diagnostic::{Diagnostic, Problem, SpecError};
pub use limits::{MAX_ALIAS_NODES, MAX_DEPTH, MAX_DURATION, MAX_SPEC_BYTES};
pub(crate) use load::clean_yaml_message;
pub use load::{load_file, load_str, LoadedSpec, VarOverrides};
pub use locate::Position;
pub use model::*;
pub use path::{FieldPath, Segment};
pub use provider_section::{ProviderSection, PROVIDER_SECTION_DEF};
pub use suggest::{nearest, unknown_key_help, valid_keys_in};
pub use values::{
    check_plain_image, ByteSize, ByteSizeError, DurationSchema, ImageLookup, ImageSource, KeyPair, PackerSource,
    StatusMatcher,
};
pub use vars::Vars;
