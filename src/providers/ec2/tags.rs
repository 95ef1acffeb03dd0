//! The tags on everything the run creates: the run's id (what the run's final sweep and `amiprobe
//! sweep` find it by), the cell, an expiry, a `Name`, and the spec's own `launch.tags`.

use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

use super::Ec2Provider;
use crate::cell::Cell;

pub const RUN_ID_TAG: &str = "amiprobe:run-id";
pub const CELL_TAG: &str = "amiprobe:cell";
pub const EXPIRES_TAG: &str = "amiprobe:expires";
/// On an instance kept for debugging (`--keep-failed`): the run's own end leaves it, `sweep` removes
/// it once its `amiprobe:expires` has passed.
pub const KEPT_TAG: &str = "amiprobe:kept";

/// The value of the tag `key` among `tags`.
pub fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

impl Ec2Provider {
    /// Tags for what one cell creates.
    pub(super) fn tags(&self, run_id: &str, cell: &Cell, resource: ResourceType) -> TagSpecification {
        let own = [(CELL_TAG.to_string(), cell.id.0.clone())];
        self.tags_named(run_id, &cell.id.0, &own, resource)
    }

    /// Tags for what the whole run shares (no cell tag), named after `what`.
    pub(super) fn run_tags(&self, run_id: &str, what: &str, resource: ResourceType) -> TagSpecification {
        self.tags_named(run_id, what, &[], resource)
    }

    fn tags_named(
        &self,
        run_id: &str,
        what: &str,
        own: &[(String, String)],
        resource: ResourceType,
    ) -> TagSpecification {
        let expires = SystemTime::now() + self.run_timeout + Duration::from_secs(3600);
        let mut tags = vec![(RUN_ID_TAG.to_string(), run_id.to_string())];
        tags.extend(own.iter().cloned());
        tags.extend([
            (EXPIRES_TAG.to_string(), humantime::format_rfc3339_seconds(expires).to_string()),
            ("Name".to_string(), format!("amiprobe {} {what}", self.spec_name)),
        ]);
        tags.extend(self.launch.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
            .build()
    }
}
