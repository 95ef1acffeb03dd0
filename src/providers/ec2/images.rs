//! Images from the pipeline: what an `image` value stands for on EC2.
//!
//! A Packer manifest is read with the spec (`manifest.rs`): each image of its last run becomes a
//! value of the `image` axis tied to its region (`expand.rs`), so `plan` shows the cells without the
//! network. An SSM parameter (`ssm_param.rs`) and a lookup (`lookup.rs`) are resolved by the
//! preflight in each region that needs them, one call per parameter or lookup and region, never per
//! cell (`resolve.rs`).

mod expand;
pub mod lookup;
pub mod manifest;
mod resolve;
pub mod ssm_param;

pub use expand::{expand, label, ManifestImage};
pub use resolve::{in_region, key, Resolved, Unresolved};
