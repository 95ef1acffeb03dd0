//! The tags on everything the run creates: the run's id (what the run's final sweep and `amiprobe
//! sweep` find it by), the cell, an expiry, a `Name`, and the spec's own `launch.tags`.
//!
//! Every tag set sent stays within what EC2 takes, whatever the spec's name and the cell's id: each
//! key once (a spec's own `Name` replaces amiprobe's: it is how the team finds its machines), values
//! of at most 256 characters (a longer one keeps its start and ends in a hash of the whole value, so
//! two different values never end up the same), and at most 50 tags (`validate` refuses a spec whose
//! own tags would pass that, see `kind.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use sha2::{Digest, Sha256};

use super::Ec2Provider;
use crate::cell::Cell;

pub const RUN_ID_TAG: &str = "amiprobe:run-id";
pub const CELL_TAG: &str = "amiprobe:cell";
pub const EXPIRES_TAG: &str = "amiprobe:expires";
/// On an instance kept for debugging (`--keep-failed`): the run's own end leaves it, `sweep` removes
/// it once its `amiprobe:expires` has passed.
pub const KEPT_TAG: &str = "amiprobe:kept";
/// The tag the EC2 console shows as a resource's name; a spec may set its own.
pub const NAME_TAG: &str = "Name";

/// EC2's tag restrictions: tags on one resource, characters in a key, characters in a value.
pub const MAX_TAGS: usize = 50;
pub const MAX_KEY_CHARS: usize = 128;
pub const MAX_VALUE_CHARS: usize = 256;
/// The most tags amiprobe puts on one resource itself: run id, cell, expiry, `Name`, and
/// `amiprobe:kept` added later to a kept instance. A spec may add `MAX_TAGS - OWN_TAGS` besides `Name`.
pub const OWN_TAGS: usize = 5;
/// Hex digits of the hash that ends a shortened value: 64 bits of SHA-256.
const HASH_DIGITS: usize = 16;

/// The value of the tag `key` among `tags`.
pub fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// `value` as EC2 takes it: unchanged up to 256 characters; longer, its first 239 characters, `~` and
/// 16 hex digits of the SHA-256 of the whole value (two different long values keep different tags).
pub fn bounded(value: &str) -> String {
    if value.chars().count() <= MAX_VALUE_CHARS {
        return value.to_string();
    }
    let digest = Sha256::digest(value.as_bytes());
    let hash: String = digest.iter().take(HASH_DIGITS / 2).map(|b| format!("{b:02x}")).collect();
    let start: String = value.chars().take(MAX_VALUE_CHARS - HASH_DIGITS - 1).collect();
    format!("{start}~{hash}")
}

/// amiprobe's own tags, then the spec's: a key the spec sets too (`Name`) takes the spec's value and
/// stays in its place, so no key is sent twice; every value bounded.
pub fn tag_set(own: Vec<(String, String)>, spec: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut tags = own;
    for (key, value) in spec {
        match tags.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1.clone_from(value),
            None => tags.push((key.clone(), value.clone())),
        }
    }
    tags.into_iter().map(|(k, v)| (k, bounded(&v))).collect()
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
            (NAME_TAG.to_string(), format!("amiprobe {} {what}", self.spec_name)),
        ]);
        let tags = tag_set(tags, &self.launch.tags);
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Vec<(String, String)> {
        [(RUN_ID_TAG, "r1"), (CELL_TAG, "c1"), (NAME_TAG, "amiprobe web c1")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec()
    }

    #[test]
    fn the_specs_name_replaces_amiprobes_and_no_key_is_sent_twice() {
        let spec = BTreeMap::from([("Name".to_string(), "web-appliance".to_string()), ("team".into(), "web".into())]);
        let tags = tag_set(own(), &spec);
        let names: Vec<_> = tags.iter().filter(|(k, _)| k == NAME_TAG).map(|(_, v)| v.as_str()).collect();
        assert_eq!(names, ["web-appliance"]);
        let keys: Vec<_> = tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [RUN_ID_TAG, CELL_TAG, NAME_TAG, "team"]);
    }

    #[test]
    fn without_a_spec_name_amiprobes_stays() {
        let tags = tag_set(own(), &BTreeMap::new());
        assert_eq!(tags, own());
    }

    #[test]
    fn short_values_are_kept_as_they_are() {
        let exact = "x".repeat(MAX_VALUE_CHARS);
        assert_eq!(bounded(&exact), exact);
        assert_eq!(bounded("amiprobe web c1"), "amiprobe web c1");
    }

    #[test]
    fn long_values_are_cut_to_the_limit_and_end_in_a_hash_of_the_whole() {
        let long = format!("amiprobe {} cell", "é".repeat(400));
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), MAX_VALUE_CHARS, "counted in characters, as EC2 counts");
        let (start, hash) = cut.rsplit_once('~').unwrap();
        assert!(long.starts_with(start));
        assert_eq!(hash.len(), HASH_DIGITS);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(bounded(&long), cut, "the same value is shortened the same way every time");
    }

    #[test]
    fn two_long_values_alike_but_for_their_end_stay_different() {
        let a = format!("{}-a", "cell".repeat(100));
        let b = format!("{}-b", "cell".repeat(100));
        assert_ne!(bounded(&a), bounded(&b));
        assert_eq!(bounded(&a)[..200], bounded(&b)[..200], "the start is kept, only the hash differs");
    }

    #[test]
    fn every_value_of_a_set_is_bounded() {
        let spec = BTreeMap::from([("team".to_string(), "t".repeat(300))]);
        let mut long_own = own();
        long_own[1].1 = "c".repeat(1000);
        let tags = tag_set(long_own, &spec);
        assert!(tags.iter().all(|(_, v)| v.chars().count() <= MAX_VALUE_CHARS), "{tags:?}");
    }
}
