//! The last screen against the baseline's: what a boot that only a screenshot explains looks like
//! tonight. Compared by the perceptual hashes results.json already holds (no image is decoded), and
//! shown side by side when they differ by more than [`MOVED`] bits: the baseline's frame is copied
//! next to the new results so that the report, attached to a build on its own, still shows it.

use std::path::Path;

use crate::results::since::ScreenChange;
use crate::results::CellResult;

/// Bits of the 256-bit hashes two last screens of the same build may differ by. Measured on the
/// busybox image's text console under TCG: the same screen 0 to 3 bits, the same screen with a few
/// kernel lines in another order 38, a screen of other text 88 to 109. A text console whose lines
/// scroll differently from boot to boot can still pass this: that is why a moved screen is shown,
/// never counted as a regression.
pub const MOVED: u32 = 48;

/// Where the baselines' frames are copied, in the new results.
pub const FRAMES_DIR: &str = "since-last-night";

/// What to do with the baseline's frame of a screen that moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frames {
    /// Copy it under [`FRAMES_DIR`] in the new results (`run --baseline`).
    Copy,
    /// Leave both results as they are (`report compare` only prints).
    Leave,
}

/// The change of the cells' last screen, if it moved.
pub fn last_screen(
    (base, base_dir): (&CellResult, &Path),
    (new, new_dir): (&CellResult, &Path),
    frames: Frames,
) -> Option<ScreenChange> {
    let (b, n) = (base.screenshots.last()?, new.screenshots.last()?);
    let distance = crate::capture::distance(&b.hash, &n.hash)?;
    if distance <= MOVED {
        return None;
    }
    let base_frame = match frames {
        Frames::Copy => copy(&base_dir.join(&b.path), new_dir, &b.path),
        Frames::Leave => None,
    };
    Some(ScreenChange { distance, base_frame, new_frame: n.path.clone() })
}

/// Copies the baseline's frame (at `rel` in its results) to the new results; the copy's relative
/// path, or `None` when it could not be made (the report then says the frame is missing). A path
/// that is not plainly inside the results (absolute, or with `..`: a results.json from elsewhere
/// says what it likes) is not followed.
fn copy(from: &Path, new_dir: &Path, rel: &str) -> Option<String> {
    let inside = Path::new(rel).components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside {
        return None;
    }
    let copied = Path::new(FRAMES_DIR).join(rel);
    let to = new_dir.join(&copied);
    std::fs::create_dir_all(to.parent()?).ok()?;
    std::fs::copy(from, &to).ok()?;
    Some(copied.to_string_lossy().replace('\\', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Screenshot;

    fn cell(frame: &Path) -> CellResult {
        let mut c: CellResult =
            serde_json::from_value(serde_json::json!({"id": "c", "params": {}, "status": "passed"})).expect("a cell");
        let bytes = std::fs::read(frame).expect("a fixture frame");
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let (width, height, hash) = crate::capture::store(&bytes, &tmp.path().join("f.png")).expect("a frame");
        let path = "c/shot-0001.png".to_string();
        c.screenshots = vec![Screenshot { path, offset_s: 1.0, width, height, hash, duplicate_of: None }];
        c
    }

    fn picture(dir: &Path, name: &str, draw: impl Fn(u32, u32) -> u8) -> std::path::PathBuf {
        let img = image::GrayImage::from_fn(320, 200, |x, y| image::Luma([draw(x, y)]));
        let path = dir.join(name);
        img.save(&path).expect("write a frame");
        path
    }

    #[test]
    fn a_different_screen_moves_and_its_frame_is_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let text = picture(tmp.path(), "text.png", |x, y| if (x / 8 + y / 16) % 3 == 0 { 200 } else { 0 });
        let cursor = picture(tmp.path(), "cursor.png", |x, y| {
            if x > 300 && y > 190 {
                255
            } else if (x / 8 + y / 16) % 3 == 0 {
                200
            } else {
                0
            }
        });
        let blue = picture(tmp.path(), "blue.png", |x, _| if x < 160 { 40 } else { 160 });
        let (base_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(base_dir.path().join("c")).unwrap();
        std::fs::copy(&text, base_dir.path().join("c/shot-0001.png")).unwrap();

        let base = cell(&text);
        let same = last_screen((&base, base_dir.path()), (&cell(&cursor), new_dir.path()), Frames::Copy);
        assert_eq!(same, None, "a cursor is not another screen");

        let moved = last_screen((&base, base_dir.path()), (&cell(&blue), new_dir.path()), Frames::Copy)
            .expect("another screen");
        assert!(moved.distance > MOVED, "{moved:?}");
        assert_eq!(moved.base_frame.as_deref(), Some("since-last-night/c/shot-0001.png"));
        assert!(new_dir.path().join("since-last-night/c/shot-0001.png").exists());
        let left = last_screen((&base, base_dir.path()), (&cell(&blue), new_dir.path()), Frames::Leave);
        assert_eq!(left.and_then(|s| s.base_frame), None);
        let mut outside = base.clone();
        outside.screenshots[0].path = "../../etc/shot.png".into();
        let refused = last_screen((&outside, base_dir.path()), (&cell(&blue), new_dir.path()), Frames::Copy);
        assert_eq!(refused.and_then(|s| s.base_frame), None, "a path out of the results is not followed");
    }
}
