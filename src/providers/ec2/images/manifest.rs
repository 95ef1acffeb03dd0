//! Packer's manifest (`packer-manifest.json`, written by its `manifest` post-processor): the images of
//! its last run, each with its region.
//!
//! `{"builds": [{"name", "builder_type", "build_time", "files", "artifact_id", "packer_run_uuid",
//! "custom_data"}], "last_run_uuid"}`. Without `-force` the file keeps older runs' builds: only those
//! whose `packer_run_uuid` is `last_run_uuid` are the last bake's. An amazon-ebs build's
//! `artifact_id` lists one `region:ami-...` pair per region it copied the image to.

use serde::Deserialize;

/// One image of the last run: its build, region and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub build: String,
    pub region: String,
    pub image: String,
}

/// Why a manifest gives no image, as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("is not a Packer manifest: {0}")]
    Malformed(String),
    #[error("has no `last_run_uuid`: it can't say which builds are the last run's")]
    NoLastRun,
    #[error("has no build of its last run ({0})")]
    NoBuildTonight(String),
    #[error("has no build named `{wanted}` in its last run (its builds: {found})")]
    NoSuchBuild { wanted: String, found: String },
    #[error("build `{build}` has an artifact id that is no `region:ami-...` list: `{artifact}`")]
    NotAnImage { build: String, artifact: String },
}

#[derive(Deserialize)]
struct Manifest {
    builds: Vec<Build>,
    #[serde(default)]
    last_run_uuid: Option<String>,
}

#[derive(Deserialize)]
struct Build {
    name: String,
    artifact_id: String,
    #[serde(default)]
    packer_run_uuid: Option<String>,
}

/// The images of the manifest's last run (of the build named `build`, if given), in the order of
/// the builds and of each build's regions.
pub fn images(text: &str, build: Option<&str>) -> Result<Vec<Built>, ManifestError> {
    let manifest: Manifest = serde_json::from_str(text).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    let last = manifest.last_run_uuid.filter(|u| !u.is_empty()).ok_or(ManifestError::NoLastRun)?;
    let tonight: Vec<&Build> = manifest.builds.iter().filter(|b| b.packer_run_uuid.as_deref() == Some(&last)).collect();
    if tonight.is_empty() {
        return Err(ManifestError::NoBuildTonight(last));
    }
    let chosen: Vec<&Build> = match build {
        Some(wanted) => tonight.iter().copied().filter(|b| b.name == wanted).collect(),
        None => tonight.clone(),
    };
    if let (true, Some(wanted)) = (chosen.is_empty(), build) {
        let found: Vec<&str> = tonight.iter().map(|b| b.name.as_str()).collect();
        return Err(ManifestError::NoSuchBuild { wanted: wanted.to_string(), found: found.join(", ") });
    }
    let mut out = Vec::new();
    for b in chosen {
        let not_an_image = || ManifestError::NotAnImage { build: b.name.clone(), artifact: b.artifact_id.clone() };
        for pair in b.artifact_id.split(',') {
            let (region, image) = pair.trim().split_once(':').ok_or_else(not_an_image)?;
            if region.is_empty() || !image.starts_with("ami-") {
                return Err(not_an_image());
            }
            out.push(Built { build: b.name.clone(), region: region.to_string(), image: image.to_string() });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_RUNS: &str = r#"{
      "builds": [
        {"name": "web-x86", "builder_type": "amazon-ebs", "build_time": 1, "files": null,
         "artifact_id": "eu-west-1:ami-0old", "packer_run_uuid": "run-1", "custom_data": null},
        {"name": "web-x86", "builder_type": "amazon-ebs", "build_time": 2, "files": null,
         "artifact_id": "eu-west-1:ami-0aaa,us-east-1:ami-0bbb", "packer_run_uuid": "run-2", "custom_data": {}},
        {"name": "web-arm", "builder_type": "amazon-ebs", "build_time": 2, "files": null,
         "artifact_id": "eu-west-1:ami-0ccc", "packer_run_uuid": "run-2", "custom_data": {}}
      ],
      "last_run_uuid": "run-2"
    }"#;

    fn pairs(found: &[Built]) -> Vec<(&str, &str, &str)> {
        found.iter().map(|b| (b.build.as_str(), b.region.as_str(), b.image.as_str())).collect()
    }

    #[test]
    fn only_the_last_runs_builds_each_region_its_image() {
        let found = images(TWO_RUNS, None).unwrap();
        assert_eq!(
            pairs(&found),
            [
                ("web-x86", "eu-west-1", "ami-0aaa"),
                ("web-x86", "us-east-1", "ami-0bbb"),
                ("web-arm", "eu-west-1", "ami-0ccc")
            ]
        );
        assert_eq!(pairs(&images(TWO_RUNS, Some("web-arm")).unwrap()), [("web-arm", "eu-west-1", "ami-0ccc")]);
    }

    #[test]
    fn what_gives_no_image_says_why() {
        assert_eq!(
            images(TWO_RUNS, Some("web")),
            Err(ManifestError::NoSuchBuild { wanted: "web".into(), found: "web-x86, web-arm".into() })
        );
        let stale = TWO_RUNS.replace(r#""last_run_uuid": "run-2""#, r#""last_run_uuid": "run-3""#);
        assert_eq!(images(&stale, None), Err(ManifestError::NoBuildTonight("run-3".into())));
        let no_last = TWO_RUNS.replace(r#""last_run_uuid": "run-2""#, r#""other": 1"#);
        assert_eq!(images(&no_last, None), Err(ManifestError::NoLastRun));
        assert!(matches!(images("{\"builds\": 3}", None), Err(ManifestError::Malformed(_))));
        let docker = TWO_RUNS.replace("eu-west-1:ami-0ccc", "sha256:abc");
        assert!(matches!(images(&docker, Some("web-arm")), Err(ManifestError::NotAnImage { .. })));
    }
}
