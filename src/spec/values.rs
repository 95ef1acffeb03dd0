//! Spec values that accept more than one shape ("a code, a list or a range", "256M or a byte count").
//!
//! Each has a hand-written visitor instead of `serde(untagged)`, so that a wrong value is reported with
//! what was expected rather than "data did not match any variant", and a hand-written JSON Schema.
//! One file per value type.

mod image;
mod key_pair;
mod size;
mod status;

// The schema of a duration lives with the duration reader; the model takes every value type from here.
pub use super::duration::DurationSchema;
pub use image::{check_plain as check_plain_image, ImageLookup, ImageSource, PackerSource};
pub use key_pair::KeyPair;
pub use size::{ByteSize, ByteSizeError};
pub use status::StatusMatcher;
