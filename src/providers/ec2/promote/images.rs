//! Which images a run promotes: its cells grouped by the image their spec names and their region,
//! then by the AMI they launched, and the decision for each. The one place that reads a cell's
//! image and region for a promotion.

use std::collections::BTreeSet;

use crate::provider::promotion::CellVerdict;

/// One AMI of the run and its cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The AMI id.
    pub id: String,
    /// Its region as the cells ask for it: their `region`, else `provider.ec2.region`; `None`, the
    /// SDK's configured region.
    pub region: Option<String>,
    /// The region its instances were launched in, as their facts say (names the SDK's region).
    pub launched_in: Option<String>,
    /// Every cell that launches it, in the run's order.
    pub cells: Vec<String>,
    /// Those of its cells that did not pass.
    pub not_passed: Vec<String>,
    /// The AMI ids its cells launched: more than one (a parameter that moved between shards, a
    /// lookup that found a newer image) and no verdict is about one image.
    pub launched: BTreeSet<String>,
}

/// What to do with an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Promote,
    /// Some cell did not pass: why not, as a fragment.
    NotPassed(String),
    /// Every cell passed, but the run may not promote: why not.
    Withheld(String),
}

/// The run's images: its cells grouped by the image their spec names (an id, a parameter, a
/// lookup, a manifest's build) and their region (the cell's `region`, else `default_region`,
/// `provider.ec2.region`), in the order their first cells come; the id is the AMI the cells
/// launched (their machine's `image_id`), else the one the spec names. Groups that launched the same
/// AMI become one; a group whose cells launched several AMIs (shards merged from two nights) is not
/// promoted ([`decide`]). The same AMI id in two regions is
/// two images (each region has its own copy, with its own tags and parameter).
pub fn images_of(cells: &[CellVerdict], default_region: Option<&str>) -> Vec<Image> {
    let mut images: Vec<(String, Image)> = Vec::new();
    for cell in cells {
        let Some(named) = cell.values.get("image") else { continue };
        let source = named.as_str().map_or_else(|| named.to_string(), str::to_string);
        let region = cell.values.get("region").and_then(|v| v.as_str()).or(default_region).map(str::to_string);
        let at = match images.iter().position(|(s, i)| *s == source && i.region == region) {
            Some(at) => at,
            None => {
                let id = named_id(named).unwrap_or_else(|| source.clone());
                let image = Image {
                    id,
                    region,
                    launched_in: None,
                    cells: vec![],
                    not_passed: vec![],
                    launched: BTreeSet::new(),
                };
                images.push((source, image));
                images.len() - 1
            }
        };
        let image = &mut images[at].1;
        if let Some(launched) = cell.machine.get("image_id").and_then(|v| v.as_str()) {
            image.id = launched.to_string();
            image.launched.insert(launched.to_string());
        }
        let launched_in = cell.machine.get("region").and_then(|r| r.as_str());
        if image.launched_in.is_none() {
            image.launched_in = launched_in.map(str::to_string);
        }
        image.cells.push(cell.id.clone());
        if !cell.passed {
            image.not_passed.push(cell.id.clone());
        }
    }
    merge_same_ami(images.into_iter().map(|(_, image)| image).collect())
}

/// One AMI reached two ways (a parameter and a lookup, an id with and without its region) is one
/// image: its cells go together, so that a failure through one way holds back the other.
fn merge_same_ami(images: Vec<Image>) -> Vec<Image> {
    let mut merged: Vec<Image> = Vec::new();
    for image in images {
        match merged.iter_mut().find(|m| {
            m.id == image.id
                && m.launched_in.as_ref().or(m.region.as_ref()) == image.launched_in.as_ref().or(image.region.as_ref())
        }) {
            Some(same) => {
                same.cells.extend(image.cells);
                same.not_passed.extend(image.not_passed);
                same.launched.extend(image.launched);
            }
            None => merged.push(image),
        }
    }
    merged
}

/// The AMI id a cell's `image` value names by itself: an id (`REGION:` before it or not), or a
/// manifest's image; `None` for a parameter or a lookup, known once launched.
fn named_id(named: &serde_json::Value) -> Option<String> {
    let text = named.as_str().or_else(|| named.get("image").and_then(|v| v.as_str()))?;
    let id = text.rsplit(':').next().unwrap_or(text);
    id.starts_with("ami-").then(|| id.to_string())
}

/// Whether an image is promoted: only when every one of its cells passed and the run may promote.
pub fn decide(image: &Image, withheld: Option<&str>) -> Decision {
    if image.launched.len() > 1 {
        let ids: Vec<&str> = image.launched.iter().map(String::as_str).collect();
        return Decision::NotPassed(format!("its cells launched different AMIs: {}", ids.join(", ")));
    }
    match (image.not_passed.as_slice(), withheld) {
        ([], None) => Decision::Promote,
        ([], Some(why)) => Decision::Withheld(why.to_string()),
        (not_passed, _) => Decision::NotPassed(format!(
            "{} of its {} cells did not pass: {}",
            not_passed.len(),
            image.cells.len(),
            not_passed.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cell(id: &str, image: &str, region: Option<&str>, passed: bool) -> CellVerdict {
        let mut values = serde_json::Map::new();
        values.insert("image".into(), json!(image));
        values.insert("instance_type".into(), json!("t3.micro"));
        if let Some(region) = region {
            values.insert("region".into(), json!(region));
        }
        CellVerdict { id: id.into(), values, machine: serde_json::Value::Null, passed }
    }

    #[test]
    fn cells_group_by_image_and_region() {
        let cells = [
            cell("a1", "ami-a", None, true),
            cell("b1", "ami-b", None, true),
            cell("a2", "ami-a", None, false),
            cell("a3", "ami-a", Some("us-east-1"), true),
            cell("b2", "ami-b", Some("eu-west-1"), true),
        ];
        let images = images_of(&cells, Some("eu-west-1"));
        let summary: Vec<(&str, Option<&str>, Vec<&str>, usize)> = images
            .iter()
            .map(|i| {
                (i.id.as_str(), i.region.as_deref(), i.cells.iter().map(String::as_str).collect(), i.not_passed.len())
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("ami-a", Some("eu-west-1"), vec!["a1", "a2"], 1),
                ("ami-b", Some("eu-west-1"), vec!["b1", "b2"], 0),
                ("ami-a", Some("us-east-1"), vec!["a3"], 0),
            ]
        );
    }

    #[test]
    fn only_an_image_all_of_whose_cells_passed_is_promoted_and_only_when_the_run_may() {
        let images = images_of(&[cell("a1", "ami-a", None, true), cell("a2", "ami-a", None, false)], None);
        assert_eq!(decide(&images[0], None), Decision::NotPassed("1 of its 2 cells did not pass: a2".into()));
        // A failure is told as such even when the run could not promote anyway.
        assert!(matches!(decide(&images[0], Some("interrupted")), Decision::NotPassed(_)));
        let images = images_of(&[cell("b1", "ami-b", None, true)], None);
        assert_eq!(decide(&images[0], None), Decision::Promote);
        assert_eq!(decide(&images[0], Some("a shard")), Decision::Withheld("a shard".into()));
    }

    /// A parameter (or a lookup) is one image a region: its cells go together, the id being what
    /// they launched; a cell of it that never launched still counts against it.
    #[test]
    fn cells_of_a_parameter_group_by_it_and_take_the_id_they_launched() {
        let mut launched = cell("p1", "ssm:/images/web", None, true);
        launched.machine = json!({"image_id": "ami-0123", "region": "eu-west-1"});
        let never = cell("p2", "ssm:/images/web", None, false);
        let tied = cell("m1", "eu-west-1:ami-0aaa", Some("eu-west-1"), true);
        let images = images_of(&[launched.clone(), never, tied], Some("eu-west-1"));
        assert_eq!(images.len(), 2, "{images:#?}");
        assert_eq!((images[0].id.as_str(), images[0].cells.len(), images[0].not_passed.len()), ("ami-0123", 2, 1));
        assert_eq!(images[1].id, "ami-0aaa");
        let manifest = json!({"packer": "m.json", "build": "web", "region": "eu-west-1", "image": "ami-0bbb"});
        assert_eq!(named_id(&manifest).as_deref(), Some("ami-0bbb"));
        assert_eq!(named_id(&json!({"lookup": {"name": "web-*"}})), None);
        // Tonight's shard and last night's, merged: two AMIs under one parameter are no verdict.
        let mut other_night = launched.clone();
        (other_night.id, other_night.machine) = ("p3".into(), json!({"image_id": "ami-0999", "region": "eu-west-1"}));
        let images = images_of(&[launched.clone(), other_night], Some("eu-west-1"));
        assert!(matches!(decide(&images[0], None), Decision::NotPassed(why) if why.contains("ami-0123, ami-0999")));
        // One AMI reached by a parameter and by its id: one image, held back by either's failure.
        let mut by_id = cell("i1", "ami-0123", None, false);
        by_id.machine = json!({"image_id": "ami-0123", "region": "eu-west-1"});
        let images = images_of(&[launched, by_id], Some("eu-west-1"));
        assert_eq!(images.len(), 1, "{images:#?}");
        assert!(matches!(decide(&images[0], None), Decision::NotPassed(_)));
    }

    #[test]
    fn a_cell_without_an_image_is_no_image() {
        let mut bare = cell("x", "ami-x", None, true);
        bare.values.remove("image");
        assert!(images_of(&[bare], None).is_empty());
    }
}
