//! A cell's machine facts (`CellResult.machine`, as its provider recorded them) in words: the shapes
//! the providers write are read as types and said as people say them (`22 → 127.0.0.1:43755`,
//! `256 MiB, 2 vCPUs`, `1 GiB on nvme`); anything else, from another provider or an older
//! results.json, is said as `key: value` lists. No JSON reaches the page.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::spec::ByteSize;

/// Guest port -> the host address it is forwarded to (qemu's `forwards`).
#[derive(Deserialize)]
struct Forwards(BTreeMap<String, String>);

/// The machine's size (qemu's `size`): memory as `256M`, and what the size was called in the spec.
#[derive(Deserialize)]
struct Size {
    memory: String,
    cpus: Count,
    name: Option<String>,
    instance_type: Option<String>,
}

/// A number, which some results.json files hold as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Count {
    Number(u64),
    Text(String),
}

/// An extra disk (qemu's `disks`): its size as `1024M`, and its bus.
#[derive(Deserialize)]
struct Disk {
    size: String,
    bus: Option<String>,
}

/// Each fact with something to say, in the provider's order: `(key, words)`, the key's `_` as
/// spaces. Nulls and empty lists or maps are left out.
pub(super) fn facts(machine: &Value) -> Vec<(String, String)> {
    let Value::Object(map) = machine else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, value)| !is_empty(value))
        .map(|(key, value)| (key.replace('_', " "), fact(key, value)))
        .collect()
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// One fact in words: by its known shape when it has it, else as a list.
fn fact(key: &str, value: &Value) -> String {
    let typed = match key {
        "forwards" => Forwards::deserialize(value).ok().map(|f| f.words()),
        "size" => Size::deserialize(value).ok().map(|s| s.words()),
        "disks" => Vec::<Disk>::deserialize(value).ok().map(|disks| join(disks.iter().map(Disk::words))),
        _ => None,
    };
    typed.unwrap_or_else(|| words(value))
}

impl Forwards {
    /// `22 → 127.0.0.1:43755, 80 → 127.0.0.1:40001`, by guest port as a number.
    fn words(&self) -> String {
        let mut forwards: Vec<(&String, &String)> = self.0.iter().collect();
        forwards.sort_by_key(|(guest, _)| (guest.parse::<u16>().ok(), guest.as_str()));
        join(forwards.iter().map(|(guest, host)| format!("{guest} → {host}")))
    }
}

impl Size {
    /// `256 MiB, 1 vCPU`, then the size's name and instance type when it had them: `(tiny)`.
    fn words(&self) -> String {
        let cpus = match &self.cpus {
            Count::Number(1) => "1 vCPU".to_string(),
            Count::Number(n) => format!("{n} vCPUs"),
            Count::Text(n) if n.trim() == "1" => "1 vCPU".to_string(),
            Count::Text(n) => format!("{} vCPUs", n.trim()),
        };
        let text = format!("{}, {cpus}", bytes(&self.memory));
        let names: Vec<&str> = [&self.name, &self.instance_type].into_iter().flatten().map(String::as_str).collect();
        if names.is_empty() {
            text
        } else {
            format!("{text} ({})", names.join(", "))
        }
    }
}

impl Disk {
    /// `1 GiB on nvme`.
    fn words(&self) -> String {
        match &self.bus {
            Some(bus) => format!("{} on {bus}", bytes(&self.size)),
            None => bytes(&self.size),
        }
    }
}

/// A size as `1 GiB` or `256 MiB`: the largest unit it is a whole number of; as written when it
/// does not read as a size.
fn bytes(size: &str) -> String {
    let Ok(ByteSize(n)) = size.parse::<ByteSize>() else {
        return size.to_string();
    };
    let units = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match units.into_iter().find(|(unit, _)| n >= *unit && n % unit == 0) {
        Some((unit, name)) => format!("{} {name}", n / unit),
        None => format!("{n} bytes"),
    }
}

/// Any value as text: scalars as they are, lists joined by commas, maps as `key: value` pairs; a
/// list or map inside another in parentheses.
fn words(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(items) => join(items.iter().map(nested)),
        Value::Object(map) => pairs(map),
    }
}

fn pairs(map: &Map<String, Value>) -> String {
    join(map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{}: {}", k.replace('_', " "), nested(v))))
}

fn nested(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => format!("({})", words(value)),
        _ => words(value),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn said(machine: Value) -> Vec<(String, String)> {
        facts(&machine)
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn qemu_s_facts_are_said_in_words() {
        let machine = json!({
            "pid": 2061,
            "accel": "tcg",
            "forwards": {"80": "127.0.0.1:40001", "22": "127.0.0.1:43755", "443": "127.0.0.1:40002"},
            "size": {"memory": "256M", "cpus": 1},
            "disk_bus": "virtio-blk",
            "disks": [{"size": "1024M", "bus": "nvme"}, {"size": "512M"}],
        });
        assert_eq!(
            said(machine),
            [
                pair("pid", "2061"),
                pair("accel", "tcg"),
                pair("forwards", "22 → 127.0.0.1:43755, 80 → 127.0.0.1:40001, 443 → 127.0.0.1:40002"),
                pair("size", "256 MiB, 1 vCPU"),
                pair("disk bus", "virtio-blk"),
                pair("disks", "1 GiB on nvme, 512 MiB"),
            ]
        );
    }

    #[test]
    fn sizes_say_their_vcpus_and_their_names() {
        let size = |s: Value| said(json!({ "size": s }))[0].1.clone();
        assert_eq!(size(json!({"memory": "2048M", "cpus": 2})), "2 GiB, 2 vCPUs");
        assert_eq!(size(json!({"memory": "256M", "cpus": "1"})), "256 MiB, 1 vCPU");
        assert_eq!(size(json!({"memory": "128M", "cpus": 1, "name": "tiny"})), "128 MiB, 1 vCPU (tiny)");
        assert_eq!(
            size(json!({"memory": "1536M", "cpus": 2, "name": "small", "instance_type": "t3.small"})),
            "1536 MiB, 2 vCPUs (small, t3.small)"
        );
    }

    #[test]
    fn empty_facts_are_left_out() {
        assert_eq!(said(json!({"disks": [], "public_ip": null, "tags": {}, "nic": "e1000"})), [pair("nic", "e1000")]);
        assert_eq!(said(json!("not a map")), []);
    }

    #[test]
    fn other_shapes_are_lists_not_json() {
        let machine = json!({
            "instance_id": "i-0abc",
            "size": {"memory": "lots"},
            "block_devices": [{"name": "/dev/xvda", "size_gib": 8, "tags": ["root", "gp3"]}],
            "ok": true,
        });
        let said = said(machine);
        assert_eq!(
            said,
            [
                pair("instance id", "i-0abc"),
                pair("size", "memory: lots"),
                pair("block devices", "(name: /dev/xvda, size gib: 8, tags: (root, gp3))"),
                pair("ok", "true"),
            ]
        );
        assert!(said.iter().all(|(_, v)| !v.contains(['{', '"', '['])), "{said:?}");
    }
}
