//! Reports: HTML (snapshot and a real browser), JUnit, re-rendering, templates, the results schema.
//!
//! The fixture in `tests/fixtures/report/run` is the results directory of a real qemu demo run,
//! trimmed to a few screenshots, with one console line that tries to inject a script, and machine
//! facts as qemu records them now (size, disks; a forwarded SSH port and a disk on one cell).

mod support;

use std::path::{Path, PathBuf};

use support::{browser, fixtures, repo_root, Test};

/// A copy of the fixture run in a temporary directory, rendered by `amiprobe report`.
fn rendered() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_dir(&fixtures().join("report/run"), &dir);
    let run = Test::new().args(["report", dir.to_str().unwrap()]).run();
    // The fixture run failed two cells: `report` exits as the run did.
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stderr());
    (tmp, dir)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let target = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn html_report_snapshot() {
    let (_tmp, dir) = rendered();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    insta::assert_snapshot!(html);
}

#[test]
fn machine_text_is_escaped() {
    let (_tmp, dir) = rendered();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; from the guest"));
    assert!(!html.contains("<script>alert(1)"));
    // The only script is the report's own.
    assert_eq!(html.matches("<script").count(), 1);
}

#[test]
fn machine_details_are_in_words() {
    let (_tmp, dir) = rendered();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let fail = &html[html.find("id=\"cell-fail\"").unwrap()..];
    let fail = &fail[..fail.find("</dl>").unwrap()];
    for row in [
        "<dt>forwards</dt><dd>22 → 127.0.0.1:43755, 80 → 127.0.0.1:38963</dd>",
        "<dt>size</dt><dd>256 MiB, 1 vCPU</dd>",
        "<dt>disk bus</dt><dd>virtio-blk</dd>",
        "<dt>disks</dt><dd>1 GiB on nvme</dd>",
    ] {
        assert!(fail.contains(row), "no {row} in {fail}");
    }
    // A cell without extra disks says nothing of them; no fact is JSON (HTTP bodies may be).
    let ok = &html[html.find("id=\"cell-ok\"").unwrap()..];
    assert!(!ok[..ok.find("</dl>").unwrap()].contains("<dt>disks</dt>"));
    assert!(!html.contains("<dd>{") && !html.contains("<dd>["), "a fact as JSON");
}

#[test]
fn failures_come_first_and_link_to_console_lines() {
    let (_tmp, dir) = rendered();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let pos = |id: &str| html.find(&format!("id=\"cell-{id}\"")).unwrap_or_else(|| panic!("no section for {id}"));
    assert!(pos("fail") < pos("ok") && pos("nohttp") < pos("ok") && pos("nohttp") < pos("slow"));
    // Each I/O error hit links to its console line, which exists and is marked.
    for line in 338..=341 {
        assert!(html.contains(&format!("href=\"#cell-fail-L{line}\">line {line}</a>")));
        assert!(html.contains(&format!("<tr id=\"cell-fail-L{line}\" class=\"bad\">")));
    }
    // Duplicate frames are collapsed with a count.
    assert!(html.contains("1.0s–3.0s <b class=\"dups\">×3</b>"), "no collapsed frames");
}

#[test]
fn junit_has_a_case_per_cell_with_failures_linked_to_the_report() {
    let (_tmp, dir) = rendered();
    let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        xml.contains("<testsuite name=\"demo-appliance\" tests=\"4\" disabled=\"0\" errors=\"0\" failures=\"2\""),
        "{xml}"
    );
    for id in ["ok", "fail", "nohttp", "slow"] {
        assert!(xml.contains(&format!("<testcase name=\"{id}\" classname=\"demo-appliance.qemu\"")), "{id}");
    }
    assert!(xml.contains("console `I/O error` at line 338: [    3.293811] blk_update_request: I/O error"), "{xml}");
    assert!(xml.contains("report: report.html#cell-fail"));
}

#[test]
fn a_markdown_summary_is_appended_for_the_ci_job_page() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_dir(&fixtures().join("report/run"), &dir);
    let summary = tmp.path().join("step-summary.md");
    std::fs::write(&summary, "## build 123\n").unwrap();
    let url = "https://ci.invalid/job/7/artifacts/report.html";
    let run = Test::new()
        .args(["report", dir.to_str().unwrap(), "--summary", summary.to_str().unwrap(), "--report-url", url])
        .run()
        .code(1);
    assert!(run.stdout().contains(summary.to_str().unwrap()), "{}", run.stdout());
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("## build 123\n### amiprobe: "), "{text}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    for cell in results["cells"].as_array().unwrap() {
        let id = cell["id"].as_str().unwrap();
        let row = text.lines().find(|l| l.starts_with(&format!("| [{id}]("))).map(str::to_string);
        match cell["status"].as_str().unwrap() {
            "passed" => assert_eq!(row, None, "a passed cell is listed:\n{text}"),
            _ => {
                let row = row.unwrap_or_else(|| panic!("{id} is missing:\n{text}"));
                assert!(row.contains(&format!("]({url}#")), "{row}");
            }
        }
    }
}

/// A run of 60 cells (the fixture's four, copied): past 50 cells a passed cell gets a page of its
/// own and a line in report.html, whose links reach its files from where the page is.
#[test]
fn a_large_run_gives_passed_cells_pages_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_dir(&fixtures().join("report/run"), &dir);
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let originals = results["cells"].as_array().unwrap().clone();
    let mut cells = Vec::new();
    for n in 0..15 {
        for cell in &originals {
            let (old, new) =
                (cell["id"].as_str().unwrap().to_string(), format!("{}-{n}", cell["id"].as_str().unwrap()));
            copy_dir(&dir.join("cells").join(&old), &dir.join("cells").join(&new));
            let text = cell.to_string().replace(&format!("cells/{old}/"), &format!("cells/{new}/"));
            let mut copy: serde_json::Value = serde_json::from_str(&text).unwrap();
            copy["id"] = new.into();
            cells.push(copy);
        }
    }
    results["cells"] = cells.into();
    std::fs::write(dir.join("results.json"), results.to_string()).unwrap();
    Test::new().args(["report", dir.to_str().unwrap()]).run().code(1);

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<article class=\"cell pass compact\"").count(), 30, "each passed cell a line");
    assert_eq!(html.matches("<article class=\"cell fail\"").count(), 30, "each failed cell in full");
    assert!(html.contains("href=\"cells/ok-3/index.html\""), "a passed cell links its page");
    let page = std::fs::read_to_string(dir.join("cells/ok-3/index.html")).unwrap();
    assert!(page.contains("href=\"../../report.html#cell-ok-3\""), "the page links back");
    let src: Vec<&str> = page.split("<img src=\"").skip(1).map(|s| s.split('"').next().unwrap()).collect();
    assert!(!src.is_empty());
    for path in src {
        assert!(path.starts_with("../../cells/ok-3/"), "{path}");
        assert!(dir.join("cells/ok-3").join(path).exists(), "{path} does not resolve from the page");
    }
}

#[test]
fn templates_can_be_overridden() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_dir(&fixtures().join("report/run"), &dir);
    let templates = tmp.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("report.hbs"),
        "<p>{{counts.total}} cells, {{counts.failed}} failed: {{#each cells}}{{id}} {{/each}}</p>",
    )
    .unwrap();
    Test::new().args(["report", dir.to_str().unwrap(), "--templates", templates.to_str().unwrap()]).run().code(1);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html, "<p>4 cells, 2 failed: fail nohttp ok slow </p>");
}

#[test]
fn checked_in_results_schema_is_current() {
    let run = Test::new().args(["schema", "results"]).run().code(0);
    let checked_in = std::fs::read_to_string(repo_root().join("schemas/results.schema.json")).unwrap();
    assert_eq!(
        run.stdout().trim_end(),
        checked_in.trim_end(),
        "schemas/results.schema.json is stale: run `cargo run -- schema results > schemas/results.schema.json`"
    );
}

/// A page next to the report that loads it in a frame and writes down what a person would see.
const PROBE_PAGE: &str = r##"<!doctype html><body><pre id="out">waiting</pre>
<iframe id="r" src="report.html" width="1280" height="900"></iframe>
<script>
document.getElementById("r").onload = function () {
  var doc = this.contentDocument, out = [];
  out.push("cells=" + doc.getElementById("cell-count").textContent);
  out.push("sections=" + doc.querySelectorAll("article.cell").length);
  var imgs = doc.querySelectorAll(".filmstrip img"), left = imgs.length, loaded = 0;
  out.push("images=" + imgs.length);
  out.push("reason=" + doc.querySelector("#cell-fail .reason").textContent);
  var line = doc.getElementById("cell-fail-L345");
  out.push("line345=" + (line ? line.innerText.replace(/\s+/g, " ") : "missing"));
  out.push("injected=" + doc.querySelectorAll("script").length);
  // What a person sees: the failures before the grid, each linking to its cell.
  var failures = doc.querySelector("section.failures"), grid = doc.getElementById("matrix-title");
  out.push("failures_first=" + (failures && failures.getBoundingClientRect().top < grid.getBoundingClientRect().top));
  out.push("failure_links=" + Array.from(doc.querySelectorAll("section.failures a")).map(function (a) { return a.getAttribute("href"); }).join(","));
  // Opened at a failed cell, its last screenshot is on screen, large.
  var cell = doc.getElementById("cell-fail");
  cell.scrollIntoView();
  var shot = cell.querySelector(".last-frame img").getBoundingClientRect();
  out.push("last_shot_visible=" + (shot.top >= 0 && shot.bottom <= this.height && shot.width >= 400));
  // Its console opens at the first broken line.
  var box = cell.querySelector("details.console"), hit = doc.getElementById(box.getAttribute("data-first-hit"));
  var shown = hit.getBoundingClientRect(), frame = box.getBoundingClientRect();
  out.push("console_at_hit=" + (shown.top >= frame.top && shown.bottom <= frame.bottom));
  out.push("passed_console_inlined=" + (doc.querySelector("#cell-ok table.log") !== null));
  // The grid: rows with failures first; a header click sorts, a second the other way.
  var firstColumn = function () { return Array.from(doc.querySelectorAll("table.grid tbody th")).map(function (h) { return h.textContent; }).join(","); };
  out.push("grid=" + firstColumn());
  var header = doc.querySelector("table.grid thead th");
  header.click(); header.click();
  out.push("grid_sorted_down=" + firstColumn());
  imgs.forEach(function (img) {
    var probe = new Image();
    probe.onload = function () { if (probe.naturalWidth > 0) loaded++; if (--left === 0) done(); };
    probe.onerror = function () { if (--left === 0) done(); };
    probe.src = img.src;
  });
  function done() { out.push("loaded=" + loaded); document.getElementById("out").textContent = out.join("\n"); }
};
</script></body>"##;

#[test]
fn a_browser_shows_the_report_from_file_urls() {
    let (_tmp, dir) = rendered();
    let seen = browser::seen(&dir, PROBE_PAGE);
    assert!(seen.contains("cells=4"), "{seen}");
    assert!(seen.contains("sections=4"), "{seen}");
    assert!(seen.contains("images=11"), "{seen}");
    assert!(seen.contains("loaded=11"), "every filmstrip image loads: {seen}");
    assert!(seen.contains("reason=console matched `I/O error` at line 338"), "{seen}");
    assert!(seen.contains("failures_first=true"), "{seen}");
    assert!(seen.contains("failure_links=#cell-fail,#cell-nohttp"), "{seen}");
    assert!(seen.contains("last_shot_visible=true"), "{seen}");
    assert!(seen.contains("console_at_hit=true"), "{seen}");
    assert!(seen.contains("passed_console_inlined=false"), "{seen}");
    assert!(seen.contains("grid=fail,nohttp,ok,slow"), "{seen}");
    assert!(seen.contains("grid_sorted_down=slow,ok,nohttp,fail"), "{seen}");
    assert!(seen.contains("line345=345 <script>alert(1)</script> & \"quotes\" from the guest"), "{seen}");
    assert!(seen.contains("injected=1"), "{seen}");

    // And as a picture: a page with content, not a blank one.
    let shot = dir.join("shot.png");
    let status = browser::chromium()
        .arg("--window-size=1280,1600")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", dir.join("report.html").display()))
        .output()
        .unwrap();
    assert!(status.status.success());
    let img = image::open(&shot).unwrap().to_luma8();
    let dark = img.pixels().filter(|p| p.0[0] < 100).count() as f64 / (img.width() * img.height()) as f64;
    assert!(dark > 0.02, "the report screenshot looks empty ({dark:.3} dark)");
}
