//! What EC2 would refuse in a cell's launch fields, found before anything is launched: sizes, IOPS
//! and throughputs outside what a volume's type takes, a KMS key without encryption, a device named
//! twice, an IMDS hop limit out of range, empty names.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use super::{device_name, Ebs, Ec2Launch, VolumeType};

/// What every volume type together takes: without a type, nothing outside these can be right.
const MAX_SIZE: u32 = 65_536;
const ANY_IOPS: RangeInclusive<u32> = 100..=256_000;
const ANY_THROUGHPUT: RangeInclusive<u32> = 125..=2_000;

impl Ebs<'_> {
    /// What EC2 refuses in one volume, as (field, message). Without a type the volume is the image's
    /// (root) or EC2's default type, unknown here: only what no type takes is refused then.
    fn problems(&self, at: &str, out: &mut Vec<(String, String)>) {
        let mut push = |field: &str, message: String| out.push((format!("{at}.{field}"), message));
        if self.size == Some(0) {
            push("size", "size must be at least 1 GiB".into());
        }
        match self.r#type {
            Some(t) => self.type_problems(t, &mut push),
            None => self.any_type_problems(&mut push),
        }
        // EC2 refuses a KMS key for a volume that is not to be encrypted.
        if self.kms_key.is_some() && self.encrypted != Some(true) {
            push("kms_key", "a kms key needs `encrypted: true`".into());
        }
    }

    /// EC2 refuses sizes, IOPS and throughputs outside what the volume's type takes.
    fn type_problems(&self, t: VolumeType, push: &mut impl FnMut(&str, String)) {
        let sizes = t.sizes();
        if let Some(size) = self.size.filter(|s| *s > 0 && !sizes.contains(s)) {
            push("size", format!("{t} volumes are {} to {} GiB, not {size}", sizes.start(), sizes.end()));
        }
        match (t.iops(), self.iops) {
            (None, Some(_)) => push("iops", format!("iops is only for io1, io2 and gp3 volumes, not {t}")),
            (Some(range), Some(iops)) if !range.contains(&iops) => {
                push("iops", format!("{t} volumes take {} to {} iops, not {iops}", range.start(), range.end()))
            }
            (Some(range), None) if t.needs_iops() => {
                push("iops", format!("{t} volumes need iops ({} to {})", range.start(), range.end()))
            }
            _ => {}
        }
        match (t.throughputs(), self.throughput) {
            (None, Some(_)) => push("throughput", format!("throughput is only for gp3 volumes, not {t}")),
            (Some(range), Some(mibs)) if !range.contains(&mibs) => push(
                "throughput",
                format!("{t} volumes take {} to {} MiB/s of throughput, not {mibs}", range.start(), range.end()),
            ),
            _ => {}
        }
    }

    /// EC2 refuses what no volume type takes.
    fn any_type_problems(&self, push: &mut impl FnMut(&str, String)) {
        if let Some(size) = self.size.filter(|s| *s > MAX_SIZE) {
            push("size", format!("no volume type is over {MAX_SIZE} GiB, not {size}"));
        }
        if let Some(iops) = self.iops.filter(|i| !ANY_IOPS.contains(i)) {
            let (lo, hi) = (ANY_IOPS.start(), ANY_IOPS.end());
            push("iops", format!("no volume type takes {iops} iops ({lo} to {hi} at most)"));
        }
        if let Some(mibs) = self.throughput.filter(|t| !ANY_THROUGHPUT.contains(t)) {
            let (lo, hi) = (ANY_THROUGHPUT.start(), ANY_THROUGHPUT.end());
            push("throughput", format!("no volume type takes {mibs} MiB/s of throughput ({lo} to {hi} at most)"));
        }
    }
}

impl Ec2Launch {
    /// What EC2 would refuse, found before launching: (field path such as `root_volume.iops` or
    /// `volumes[1].device`, lowercase message). Whether a volume's device is the image's root device
    /// needs the image: [`super::apply`] refuses that.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(root) = &self.root_volume {
            root.ebs().problems("root_volume", &mut out);
        }
        let mut devices: BTreeMap<String, usize> = BTreeMap::new();
        for (i, volume) in self.volumes.iter().enumerate() {
            let at = format!("volumes[{i}]");
            if volume.device.trim().is_empty() {
                out.push((format!("{at}.device"), "a device name is needed, e.g. /dev/sdf".into()));
            } else {
                let device = device_name(&volume.device);
                match devices.get(&device) {
                    // EC2 refuses two mappings for one device.
                    Some(first) => out.push((format!("{at}.device"), format!("{device} is also volumes[{first}]"))),
                    None => {
                        devices.insert(device, i);
                    }
                }
            }
            volume.ebs().problems(&at, &mut out);
        }
        if let Some(hops) = self.imds.as_ref().and_then(|i| i.hop_limit) {
            if !(1..=64).contains(&hops) {
                out.push(("imds.hop_limit".into(), format!("the hop limit is 1 to 64, not {hops}")));
            }
        }
        let blank = |value: &Option<String>| value.as_deref().is_some_and(|v| v.trim().is_empty());
        for (field, value) in [
            ("iam_instance_profile", &self.iam_instance_profile),
            ("availability_zone", &self.availability_zone),
            ("placement_group", &self.placement_group),
        ] {
            if blank(value) {
                out.push((field.into(), "must not be empty".into()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(String, String)> {
        let launch: Ec2Launch = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        launch.problems()
    }

    fn fields(yaml: &str) -> Vec<String> {
        problems(yaml).into_iter().map(|(field, _)| field).collect()
    }

    #[test]
    fn iops_and_throughput_only_where_the_type_takes_them() {
        assert_eq!(
            problems("root_volume: {type: gp2, iops: 3000}"),
            [("root_volume.iops".to_string(), "iops is only for io1, io2 and gp3 volumes, not gp2".to_string())]
        );
        assert_eq!(fields("root_volume: {type: st1, size: 500, iops: 500}"), ["root_volume.iops"]);
        assert_eq!(
            problems("root_volume: {type: io1, size: 100}"),
            [("root_volume.iops".to_string(), "io1 volumes need iops (100 to 64000)".to_string())]
        );
        assert_eq!(fields("root_volume: {type: io2}"), ["root_volume.iops"]);
        assert_eq!(
            problems("root_volume: {type: gp3, iops: 2000}"),
            [("root_volume.iops".to_string(), "gp3 volumes take 3000 to 80000 iops, not 2000".to_string())]
        );
        assert_eq!(fields("root_volume: {type: io1, size: 100, iops: 64001}"), ["root_volume.iops"]);
        assert!(problems("root_volume: {type: io2, size: 100, iops: 256000}").is_empty());
        assert!(problems("root_volume: {type: gp3}").is_empty(), "gp3 has default iops");
        assert_eq!(
            problems("volumes: [{device: sdf, size: 10, type: io2, iops: 1000, throughput: 200}]"),
            [("volumes[0].throughput".to_string(), "throughput is only for gp3 volumes, not io2".to_string())]
        );
        assert_eq!(
            problems("root_volume: {type: gp3, throughput: 100}"),
            [(
                "root_volume.throughput".to_string(),
                "gp3 volumes take 125 to 2000 MiB/s of throughput, not 100".to_string()
            )]
        );
        assert_eq!(fields("root_volume: {type: gp3, throughput: 2001}"), ["root_volume.throughput"]);
        assert!(problems("root_volume: {type: gp3, iops: 3000, throughput: 125}").is_empty());
        // Without a type the image's (or EC2's default) type decides: nothing to hold them against.
        assert!(problems("root_volume: {iops: 5000, throughput: 500}").is_empty());
        assert_eq!(
            problems("root_volume: {iops: 50, throughput: 3000}"),
            [
                ("root_volume.iops".to_string(), "no volume type takes 50 iops (100 to 256000 at most)".to_string()),
                (
                    "root_volume.throughput".to_string(),
                    "no volume type takes 3000 MiB/s of throughput (125 to 2000 at most)".to_string()
                ),
            ]
        );
    }

    #[test]
    fn sizes_within_each_types_range() {
        for (yaml, ok) in [
            ("{type: gp2, size: 16384}", true),
            ("{type: gp2, size: 16385}", false),
            ("{type: gp3, size: 65536}", true),
            ("{type: gp3, size: 65537}", false),
            ("{type: io1, size: 3, iops: 100}", false),
            ("{type: io1, size: 4, iops: 100}", true),
            ("{type: io2, size: 65536, iops: 100}", true),
            ("{type: st1, size: 124}", false),
            ("{type: sc1, size: 125}", true),
            ("{type: standard, size: 1025}", false),
            ("{size: 0}", false),
            ("{size: 65536}", true),
            ("{size: 65537}", false),
        ] {
            let found = problems(&format!("root_volume: {yaml}"));
            assert_eq!(found.is_empty(), ok, "{yaml}: {found:?}");
            assert!(found.iter().all(|(f, _)| f == "root_volume.size"), "{yaml}: {found:?}");
        }
        assert_eq!(
            problems("volumes: [{device: sdf, size: 20, type: st1}]"),
            [("volumes[0].size".to_string(), "st1 volumes are 125 to 16384 GiB, not 20".to_string())]
        );
    }

    #[test]
    fn a_kms_key_needs_encryption() {
        assert_eq!(
            problems("root_volume: {kms_key: alias/k}"),
            [("root_volume.kms_key".to_string(), "a kms key needs `encrypted: true`".to_string())]
        );
        assert_eq!(fields("volumes: [{device: sdf, size: 1, kms_key: k, encrypted: false}]"), ["volumes[0].kms_key"]);
        assert!(problems("volumes: [{device: sdf, size: 1, kms_key: k, encrypted: true}]").is_empty());
        assert!(problems("root_volume: {encrypted: true}").is_empty(), "the account's default key");
    }

    #[test]
    fn devices_are_named_once() {
        assert_eq!(
            problems("volumes: [{device: sdf, size: 1}, {device: /dev/sdg, size: 1}, {device: /dev/sdf, size: 1}]"),
            [("volumes[2].device".to_string(), "/dev/sdf is also volumes[0]".to_string())]
        );
        assert!(problems("volumes: [{device: sdf, size: 1}, {device: xvdf, size: 1}]").is_empty());
        assert_eq!(fields("volumes: [{device: ' ', size: 1}]"), ["volumes[0].device"]);
        assert_eq!(device_name("sdf"), "/dev/sdf");
        assert_eq!(device_name("xvdf"), "/dev/xvdf");
        assert_eq!(device_name("/dev/nvme1n1"), "/dev/nvme1n1");
    }

    #[test]
    fn imds_hop_limit_and_empty_names() {
        assert_eq!(
            problems("imds: {hop_limit: 0}"),
            [("imds.hop_limit".to_string(), "the hop limit is 1 to 64, not 0".to_string())]
        );
        assert_eq!(fields("imds: {hop_limit: 65}"), ["imds.hop_limit"]);
        assert!(problems("imds: {hop_limit: 64, http_tokens: optional, endpoint: disabled}").is_empty());
        assert_eq!(
            fields("iam_instance_profile: ''\navailability_zone: ''\nplacement_group: ' '"),
            ["iam_instance_profile", "availability_zone", "placement_group"]
        );
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let found = fields(
            "root_volume: {type: gp2, size: 0, iops: 100, throughput: 200, kms_key: k}\n\
             volumes: [{device: sdf, size: 1, type: io1}, {device: sdf, size: 1}]\n\
             imds: {hop_limit: 100}",
        );
        assert_eq!(
            found,
            [
                "root_volume.size",
                "root_volume.iops",
                "root_volume.throughput",
                "root_volume.kms_key",
                "volumes[0].size",
                "volumes[0].iops",
                "volumes[1].device",
                "imds.hop_limit",
            ]
        );
    }
}
