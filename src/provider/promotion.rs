//! Promotion on a verdict: what a provider is told of a finished run's cells, and what it did with
//! the images all of whose cells passed (EC2's `on_pass`: tags on the AMI, its id in an SSM
//! parameter). The engine decides whether the run may promote at all (not interrupted, not a shard,
//! not a rerun of some cells); the provider groups the cells by image and acts.

use tokio_util::sync::CancellationToken;

/// One cell of the finished run, as the provider needs it to group cells by image.
#[derive(Debug, Clone)]
pub struct CellVerdict {
    pub id: String,
    /// The cell's matrix values (results.json's `params`).
    pub values: serde_json::Map<String, serde_json::Value>,
    /// The provider's facts about its machine (results.json's `machine`), `null` when none launched.
    pub machine: serde_json::Value,
    pub passed: bool,
}

/// What a provider is asked to promote.
#[derive(Debug, Clone)]
pub struct PromotionRequest {
    /// The run's id (for merged shards, the merged results' own), for tag values.
    pub run_id: String,
    /// The spec's name.
    pub spec_name: String,
    /// When the promotion happens (RFC 3339, seconds), for tag values.
    pub at: String,
    pub cells: Vec<CellVerdict>,
    /// Why the run may not promote, as a lowercase fragment: the provider then only says which
    /// images would have been promoted, and acts on none.
    pub withheld: Option<String>,
    /// Set when a signal comes during the promotion: actions already sent finish, no further one
    /// starts.
    pub cancel: CancellationToken,
}

/// What became of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromotionStatus {
    /// Every cell passed and every action was done.
    Promoted,
    /// Some cell of the image did not pass: nothing was done.
    NotPassed,
    /// Every cell passed, but the run may not promote (see [`PromotionRequest::withheld`]), or a
    /// signal stopped the promotion before this image's actions started.
    Withheld,
    /// The platform refused an action (an error of the run).
    Refused,
}

/// What a promotion does: tag the image, or write its id to a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Tags,
    Parameter,
}

/// One action of a promotion and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionAction {
    pub kind: ActionKind,
    /// What was written: `key=value` pairs for tags, the parameter's name for a parameter.
    pub target: String,
    /// Why it failed, as a lowercase fragment; `None` when it was done.
    pub error: Option<String>,
}

/// One image (its id and region) of the run, the cells that launched it, and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePromotion {
    pub image: String,
    pub region: String,
    pub cells: Vec<String>,
    pub status: PromotionStatus,
    /// Why it was not promoted, as a lowercase fragment.
    pub reason: Option<String>,
    pub actions: Vec<PromotionAction>,
}
