//! Tags as EC2 takes them, against the moto launcher, which refuses what EC2 refuses (a key twice in
//! one tag set, a value over 256 characters, over 50 tags...): a spec with the team's own `Name`, a
//! name of some 300 characters and a cell whose id is some 230 characters launches, and every
//! RunInstances and ImportKeyPair it sends carries one `Name` per tag set, the spec's, with every
//! value within EC2's limits; without a `Name` of its own, amiprobe's is shortened to fit.

mod support;

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use support::ec2::*;
use support::moto::{out_dir, Moto, TestService, AMI};

/// A spec of one cell whose id is long (six volumes, each labelled in full: some 230 characters, near
/// the most a file name takes, which a cell's folder is), named `name`, with `tags` as `launch.tags`.
fn long_spec(dir: &std::path::Path, name: &str, tags: &str, port: u16) -> std::path::PathBuf {
    let volumes: Vec<String> = (b'f'..=b'k')
        .map(|d| {
            format!(
                "{{ device: /dev/sd{}, size: 8, type: gp3, iops: 3000, throughput: 125, encrypted: true }}",
                d as char
            )
        })
        .collect();
    let text = format!(
        "name: {name}\nprovider:\n  ec2: {{ region: eu-west-1, poll_interval: 500ms }}\nmatrix:\n  include:\n    - {{ image: {AMI}, instance_type: t3.micro, volumes: [{}] }}\nlaunch:\n  tags: {tags}\nprobes:\n{}timeouts: {{ run: 2m }}\n",
        volumes.join(", "),
        http_probe("health", port, "20s"),
    );
    let file = dir.join("spec.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Each tag set of a recorded call: `TagSpecification.N.Tag.M.Key`/`Value`, as (key, value) in order.
fn tag_sets(call: &Map<String, Value>) -> BTreeMap<u32, Vec<(String, String)>> {
    let mut sets: BTreeMap<u32, BTreeMap<u32, (String, String)>> = BTreeMap::new();
    for (name, value) in call {
        let parts: Vec<&str> = name.split('.').collect();
        if let ["TagSpecification", set, "Tag", tag, field] = parts[..] {
            let slot = sets.entry(set.parse().unwrap()).or_default().entry(tag.parse().unwrap()).or_default();
            let text = value.as_str().unwrap().to_string();
            if field == "Key" {
                slot.0 = text;
            } else {
                slot.1 = text;
            }
        }
    }
    sets.into_iter().map(|(n, tags)| (n, tags.into_values().collect())).collect()
}

/// Checks every tag set RunInstances and ImportKeyPair were sent: keys once each, at most 50 tags,
/// keys and values within EC2's lengths, and one `Name`; answers the `Name` values seen.
fn checked_names(moto: &Moto) -> Vec<String> {
    let mut names = Vec::new();
    for action in ["RunInstances", "ImportKeyPair"] {
        let calls = moto.requests(action);
        assert!(!calls.is_empty(), "no {action} call");
        for call in &calls {
            let sets = tag_sets(call);
            assert!(!sets.is_empty(), "{action} without tags: {call:?}");
            for tags in sets.values() {
                let mut keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
                keys.sort_unstable();
                let count = keys.len();
                keys.dedup();
                assert_eq!(keys.len(), count, "{action}: a key twice in {tags:?}");
                assert!(count <= 50, "{action}: {count} tags");
                for (key, value) in tags {
                    assert!((1..=128).contains(&key.chars().count()), "{action}: key {key}");
                    assert!(value.chars().count() <= 256, "{action}: {key} has {} characters", value.chars().count());
                }
                let named: Vec<&(String, String)> = tags.iter().filter(|(k, _)| k == "Name").collect();
                assert_eq!(named.len(), 1, "{action}: {tags:?}");
                names.push(named[0].1.clone());
            }
        }
    }
    let refused: Vec<_> = moto.calls().into_iter().filter(|(k, _)| k.starts_with("refused:")).collect();
    assert!(refused.is_empty(), "the launcher refused calls as EC2 would: {refused:?}");
    names
}

#[test]
fn a_specs_own_name_tag_wins_and_long_names_stay_within_ec2s_limits() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let name = "web-appliance-".repeat(22);
    let spec = long_spec(dir.path(), &name, "{ Name: web-appliance, team: web }", service.port);
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cell_id = r["cells"][0]["id"].as_str().unwrap();
    assert!(cell_id.chars().count() > 200, "a long cell id: {cell_id}");
    let names = checked_names(&moto);
    assert!(names.iter().all(|n| n == "web-appliance"), "{names:?}");
    let instance = moto.instances(r["run_id"].as_str().unwrap()).remove(0);
    let tag =
        |k: &str| instance.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).unwrap().to_string();
    assert_eq!(tag("amiprobe:cell"), cell_id);
    assert_eq!(tag("Name"), "web-appliance");
    assert_eq!(tag("team"), "web");
    assert_nothing_left(&moto, &r);
}

#[test]
fn without_a_name_of_its_own_amiprobes_name_is_shortened_to_fit() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let name = "web-appliance-".repeat(22);
    let spec = long_spec(dir.path(), &name, "{ team: web }", service.port);
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let names = checked_names(&moto);
    for value in &names {
        assert_eq!(value.chars().count(), 256, "{value}");
        assert!(value.starts_with(&format!("amiprobe {}", &name[..200])), "{value}");
    }
    // The cell's instance and the run's key pair are named apart: the hash is of each whole name.
    let first = &names[0];
    assert!(names.iter().any(|n| n != first), "one name for the instance and the key pair: {names:?}");
    assert_nothing_left(&moto, &r);
}
