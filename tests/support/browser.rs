//! Headless Chromium, looking at a page as a person would: a probe page placed next to it loads it
//! in a frame and writes what it sees into `<pre id="out">`, which [`seen`] reads back from the DOM
//! Chromium dumps. Needs Debian's `chromium` (`scripts/install-deps browser`).

use std::path::Path;
use std::process::Command;

/// Chromium, headless, with a profile of its own and no traffic of its own (no updates, no sync).
pub fn chromium() -> Command {
    let profile = tempfile::tempdir().expect("a profile directory").keep();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Writes `probe_page` as `dir/probe.html`, opens it, and returns what it wrote into its
/// `<pre id="out">` (unescaped).
pub fn seen(dir: &Path, probe_page: &str) -> String {
    let page = dir.join("probe.html");
    std::fs::write(&page, probe_page).expect("write the probe page");
    let output = chromium()
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium (scripts/install-deps browser)");
    let dom = String::from_utf8_lossy(&output.stdout);
    let seen = dom.split("<pre id=\"out\">").nth(1).and_then(|s| s.split("</pre>").next()).unwrap_or_default();
    seen.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}
