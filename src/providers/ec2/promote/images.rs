//! Which images a run promotes: its cells grouped by the AMI they launch (its id and region), and
//! the decision for each. The one place that reads a cell's image and region for a promotion.

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

/// The run's images: its cells grouped by the AMI they launch, an image id being the cell's `image`
/// and its region the cell's `region` (else `default_region`, `provider.ec2.region`), in the order
/// their first cells come. The same AMI id in two regions is two images (each region has its own
/// copy, with its own tags and parameter).
pub fn images_of(cells: &[CellVerdict], default_region: Option<&str>) -> Vec<Image> {
    let mut images: Vec<Image> = Vec::new();
    for cell in cells {
        let Some(id) = cell.values.get("image").and_then(|v| v.as_str()) else { continue };
        let region = cell.values.get("region").and_then(|v| v.as_str()).or(default_region).map(str::to_string);
        let at = match images.iter().position(|i| i.id == id && i.region == region) {
            Some(at) => at,
            None => {
                let image = Image { id: id.to_string(), region, launched_in: None, cells: vec![], not_passed: vec![] };
                images.push(image);
                images.len() - 1
            }
        };
        let launched_in = cell.machine.get("region").and_then(|r| r.as_str());
        if images[at].launched_in.is_none() {
            images[at].launched_in = launched_in.map(str::to_string);
        }
        images[at].cells.push(cell.id.clone());
        if !cell.passed {
            images[at].not_passed.push(cell.id.clone());
        }
    }
    images
}

/// Whether an image is promoted: only when every one of its cells passed and the run may promote.
pub fn decide(image: &Image, withheld: Option<&str>) -> Decision {
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

    #[test]
    fn a_cell_without_an_image_is_no_image() {
        let mut bare = cell("x", "ami-x", None, true);
        bare.values.remove("image");
        assert!(images_of(&[bare], None).is_empty());
    }
}
