//! How every report tells a promotion (`on_pass`): one line per image, its status and what was
//! written or why nothing was. The terminal, the summary and the HTML page share these lines.

use serde::Serialize;

use crate::results::{ImagePromotion, PromotionKind, PromotionStatus, Promotions, Withheld};

/// One image's promotion, as a report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub image: String,
    pub region: String,
    /// `promoted`, `not promoted`, `withheld`, `refused`.
    pub label: &'static str,
    /// The CSS class of its badge.
    pub class: &'static str,
    /// What was written, or why nothing was.
    pub detail: String,
}

/// A line per image, in the run's order.
pub fn lines(promotions: &Promotions) -> Vec<Line> {
    match (promotions.images.is_empty(), promotions.withheld) {
        // Merged shards without `--promote`: no image was looked at.
        (true, Some(why)) => vec![Line {
            image: "every image".into(),
            region: "every region".into(),
            label: "withheld",
            class: "skip",
            detail: Withheld::why(why).into(),
        }],
        _ => promotions.images.iter().map(line).collect(),
    }
}

fn line(image: &ImagePromotion) -> Line {
    let (label, class) = match image.status {
        PromotionStatus::Promoted => ("promoted", "pass"),
        PromotionStatus::NotPassed => ("not promoted", "fail"),
        PromotionStatus::Withheld => ("withheld", "skip"),
        PromotionStatus::Refused => ("refused", "error"),
    };
    let written: Vec<String> = image
        .actions
        .iter()
        .map(|a| {
            let what = match a.kind {
                PromotionKind::Tags => format!("tags {}", a.target),
                PromotionKind::SsmParameter => format!("SSM parameter {}", a.target),
            };
            match &a.error {
                None => what,
                Some(e) => format!("{what} failed: {e}"),
            }
        })
        .collect();
    // A refused write says why itself; a reason without writes (no connection) is the whole story.
    let detail = match &image.reason {
        Some(reason) if image.actions.is_empty() || image.status != PromotionStatus::Refused => reason.clone(),
        _ => written.join("; "),
    };
    Line { image: image.image.clone(), region: image.region.clone(), label, class, detail }
}

/// A line as plain text: `promoted ami-0aaa in eu-west-1: tags tested-by=amiprobe`.
pub fn text(line: &Line) -> String {
    format!("{} {} in {}: {}", line.label, line.image, line.region, line.detail)
}
