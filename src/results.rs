//! The results of a run: what `results.json` holds and every report is rendered from.
//!
//! Versioned (`schema_version`): reports and `amiprobe report` read it back, possibly from an older
//! amiprobe, so fields are only ever added. The format is the types in [`model`], which belong to
//! it alone: what the engine records at run time (a screenshot taken, an attempt made, a cleanup step)
//! enters the results through the conversions in [`convert`], so a change to a runtime type does not
//! change the published format by accident.

pub mod convert;
pub mod model;
pub mod since;

pub use model::*;
