//! `amiprobe report history`: three nights made from the report fixture's results.json (its four
//! cells given an `ami-` image that changes nightly and a `variant` axis, statuses and times to ready
//! changed per night, one cell missing one night), two of them with a report.html. The page's rows,
//! their order, each night's status and links are read back from the HTML, and a real browser shows
//! it from `file://` with its charts at their size and nothing fetched from the network.

mod support;

use std::path::{Path, PathBuf};

use support::{fixtures, Test};

/// A night: `(directory, started_at, cells as (variant, status, ready_s))`; the fixture's cells are
/// `ok`, `fail`, `nohttp` and `slow`, and a variant left out is not in that night's run.
type NightSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str, Option<f64>)]);

const NIGHTS: [NightSpec<'static>; 3] = [
    (
        "c-first",
        "2026-12-01T01:00:00Z",
        &[
            ("ok", "passed", Some(18.7)),
            ("fail", "failed", None),
            ("nohttp", "failed", None),
            ("slow", "passed", Some(33.8)),
        ],
    ),
    // No `slow` this night, and no report.html: its links go to its results.json.
    (
        "a-second",
        "2026-12-02T01:00:00Z",
        &[("ok", "passed", Some(20.0)), ("fail", "passed", Some(25.0)), ("nohttp", "failed", None)],
    ),
    (
        "b-third",
        "2026-12-03T01:00:00.250Z",
        &[
            ("ok", "passed", Some(19.0)),
            ("fail", "failed", None),
            ("nohttp", "passed", Some(22.0)),
            ("slow", "timed_out", None),
        ],
    ),
];

/// Writes a night's results.json into `root/nights/NAME` (and a report.html unless it is `a-second`).
fn write_night(root: &Path, (name, started_at, cells): NightSpec<'_>, n: usize) -> PathBuf {
    let dir = root.join("nights").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(fixtures().join("report/run/results.json")).unwrap();
    let mut results: serde_json::Value = serde_json::from_str(&text).unwrap();
    let template = results["cells"].as_array().unwrap().clone();
    let ami = format!("ami-0{n}{n}{n}{n}");
    let mut out = Vec::new();
    for (variant, status, ready) in cells {
        let mut cell = template.iter().find(|c| c["id"] == *variant).unwrap().clone();
        cell["id"] = format!("{ami}_{variant}").into();
        cell["params"] = serde_json::json!({"image": ami, "variant": variant});
        cell["status"] = (*status).into();
        match ready {
            Some(t) => cell["timings"]["ready_s"] = (*t).into(),
            None => _ = cell["timings"].as_object_mut().unwrap().remove("ready_s"),
        }
        out.push(cell);
    }
    let count = |s: &[&str]| cells.iter().filter(|(_, status, _)| s.contains(status)).count();
    results["counts"] = serde_json::json!({
        "total": cells.len(), "passed": count(&["passed"]), "failed": count(&["failed", "timed_out"]),
        "errored": count(&["error"]), "not_run": 0,
    });
    results["cells"] = out.into();
    results["run_id"] = format!("run-{name}").into();
    results["started_at"] = (*started_at).into();
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
    if name != "a-second" {
        std::fs::write(dir.join("report.html"), "<!doctype html><title>a night</title>").unwrap();
    }
    dir
}

/// The three nights under `root`, in the order given on the command line (not their dates').
fn nights(root: &Path) -> Vec<String> {
    let dirs: Vec<PathBuf> = NIGHTS.iter().enumerate().map(|(n, night)| write_night(root, *night, n + 1)).collect();
    // Given newest, oldest, middle: the page orders them by started_at.
    [&dirs[2], &dirs[0], &dirs[1]].iter().map(|d| d.display().to_string()).collect()
}

fn unescape(s: &str) -> String {
    s.replace("&#x3D;", "=").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// A row of the page: its key, each night's mark and link.
#[derive(Debug)]
struct Row {
    key: String,
    marks: String,
    links: Vec<Option<String>>,
    svg: String,
}

fn rows(html: &str) -> Vec<Row> {
    let key = regex::Regex::new(r#"<th scope="row" class="key">([^<]*)</th>"#).unwrap();
    let square = regex::Regex::new(r#"<(a|span) class="sq [^"]*"(?: href="([^"]*)")? title="[^"]*">(.)</"#).unwrap();
    html.split("<tr class=\"row")
        .skip(1)
        .map(|row| {
            let row = row.split("</tr>").next().unwrap();
            let squares: Vec<_> = square.captures_iter(row).collect();
            Row {
                key: unescape(&key.captures(row).unwrap()[1]),
                marks: squares.iter().map(|c| c[3].to_string()).collect(),
                links: squares.iter().map(|c| c.get(2).map(|m| unescape(m.as_str()))).collect(),
                svg: row
                    .split("<svg")
                    .nth(1)
                    .map(|s| s.split("</svg>").next().unwrap().to_string())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

#[test]
fn the_page_has_a_row_per_key_broken_ones_first_with_each_nights_status_and_links() {
    let test = Test::new();
    let root = test.dir().to_path_buf();
    let dirs = nights(&root);
    let run = test.args(["report", "history"]).args(&dirs).args(["--out", "pages/history.html"]).run().code(0);
    assert_eq!(run.stdout().lines().last(), Some("pages/history.html"), "{}", run.stdout());
    assert_eq!(run.stderr(), "", "no warnings");
    let html = std::fs::read_to_string(root.join("pages/history.html")).unwrap();

    // Nights oldest first, each head linking to its report (or its results.json), relative to the page.
    let heads: Vec<&str> = html
        .match_indices("<th scope=\"col\" class=\"night\"><a href=\"")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(
        heads,
        ["../nights/c-first/report.html", "../nights/a-second/results.json", "../nights/b-third/report.html"]
    );
    assert!(html.contains("2026-12-01 01:00</a> <span class=\"counts\">2 passed · 2 failed</span>"), "{html}");
    assert!(html.contains("<span id=\"night-count\">3</span> nights · <span id=\"cell-count\">4</span> cells"));
    assert!(html.contains("<span id=\"broken-count\">2</span>"));
    assert!(html.contains("<h1>demo-appliance: history</h1>"));

    // Rows: broken in the newest night first (fail, slow), then the others in order of appearance.
    let rows = rows(&html);
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "image=image, variant=fail",
            "image=image, variant=slow",
            "image=image, variant=ok",
            "image=image, variant=nohttp"
        ]
    );
    let marks: Vec<&str> = rows.iter().map(|r| r.marks.as_str()).collect();
    assert_eq!(marks, ["FPF", "P-T", "PPP", "FFP"]);
    assert_eq!(
        rows[1].links,
        [
            Some("../nights/c-first/report.html#cell-ami-01111_slow".to_string()),
            None,
            Some("../nights/b-third/report.html#cell-ami-03333_slow".to_string())
        ]
    );
    assert_eq!(rows[2].links[1].as_deref(), Some("../nights/a-second/results.json"));
    assert!(
        html.contains("title=\"2026-12-02 01:00: passed, ready 25.0s\nami-02222_fail\""),
        "tooltips say night, status and time"
    );
    assert!(html
        .contains("<tr class=\"row broken-now\"><th scope=\"row\" class=\"key\">image&#x3D;image, variant&#x3D;fail"));

    // Sparklines: sized, labelled, a circle per timed night, broken where a night has no time.
    for row in &rows {
        assert!(row.svg.contains(" width=\"200\" height=\"32\" viewBox=\"0 0 200 32\""), "{}", row.svg);
        assert!(row.svg.contains("aria-label=\"time to ready over 3 nights"), "{}", row.svg);
    }
    let ok = &rows[2].svg;
    assert_eq!(ok.matches("<circle").count(), 3);
    assert_eq!(ok.matches("<polyline").count(), 1);
    assert!(ok.contains("<title>2026-12-02 01:00: ready 20.0s</title>"), "{ok}");
    assert!(ok.contains(">20.0s</text>") && ok.contains(">18.7s</text>"), "min and max labelled: {ok}");
    // `fail` has a time only in the middle night: one point, no line.
    assert_eq!((rows[0].svg.matches("<circle").count(), rows[0].svg.matches("<polyline").count()), (1, 0));
    assert!(rows[3].svg.contains("aria-label=\"time to ready over 3 nights (1 timed): from 22.0s to 22.0s\""));

    // Nothing to fetch: no script, no stylesheet, no image.
    for tag in ["<script", "<link", "<img", "http://", "https://"] {
        assert!(!html.contains(tag), "the page has {tag}");
    }
}

#[test]
fn the_page_goes_to_history_html_by_default_and_unreadable_directories_are_skipped() {
    let test = Test::new();
    let root = test.dir().to_path_buf();
    let mut dirs = nights(&root);
    let broken = root.join("nights/broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("results.json"), "{ not json").unwrap();
    dirs.insert(1, broken.display().to_string());
    dirs.push(root.join("nights/missing").display().to_string());
    let run = test.args(["report", "history"]).args(&dirs).run().code(0);
    assert_eq!(run.stdout().lines().last(), Some("history.html"));
    let stderr = run.stderr();
    assert!(stderr.contains(&format!("warning: skipped {}: failed to parse", broken.display())), "{stderr}");
    assert!(stderr.contains("warning: skipped ") && stderr.contains("nights/missing: failed to read"), "{stderr}");
    let html = std::fs::read_to_string(root.join("history.html")).unwrap();
    assert!(html.contains("<h2 id=\"skipped-title\">Skipped</h2>"));
    assert!(html.contains(&format!("<code>{}</code>: failed to parse", broken.display())), "{html}");
    assert_eq!(rows(&html).len(), 4);
    // The page is next to the nights' folder now.
    assert!(html.contains("href=\"nights/c-first/report.html\""));
}

#[test]
fn no_readable_directory_exits_2() {
    let test = Test::new();
    let missing = test.dir().join("missing").display().to_string();
    let run = test.args(["report", "history", &missing]).run().code(2);
    assert!(run.stderr().contains("warning: skipped"), "{}", run.stderr());
    assert!(run.stderr().lines().last().unwrap().starts_with("error: no results directory could be read"));
    assert_eq!(run.stdout(), "");
    Test::new().args(["report", "history"]).run().code(2).stderr_has("error:");
}

/// A page next to the history that loads it in a frame and writes down what is shown and fetched.
const PROBE_PAGE: &str = r##"<!doctype html><body><pre id="out">waiting</pre>
<iframe id="h" src="history.html" width="1280" height="900"></iframe>
<script>
document.getElementById("h").onload = function () {
  var doc = this.contentDocument, win = this.contentWindow, out = [];
  out.push("rows=" + doc.querySelectorAll("table.history tbody tr").length);
  out.push("squares=" + doc.querySelectorAll("table.history tbody .sq").length);
  var svgs = doc.querySelectorAll("svg"), sized = 0;
  svgs.forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    if (box.width == Number(svg.getAttribute("width")) && box.height == Number(svg.getAttribute("height")) && box.width > 0) sized++;
  });
  out.push("svgs=" + svgs.length);
  out.push("sized=" + sized);
  out.push("circles=" + doc.querySelectorAll("svg circle").length);
  var square = doc.querySelector("tbody .sq").getBoundingClientRect();
  out.push("square=" + square.width + "x" + square.height);
  var fetched = win.performance.getEntriesByType("resource").map(function (e) { return e.name; });
  out.push("network=" + fetched.filter(function (u) { return /^https?:/.test(u); }).join(","));
  out.push("resources=" + fetched.length);
  var remote = Array.from(doc.querySelectorAll("script, link, img, iframe, object, embed")).filter(function (e) {
    return /^https?:/.test(e.getAttribute("src") || e.getAttribute("href") || "");
  });
  out.push("remote_elements=" + remote.length);
  out.push("scripts=" + doc.querySelectorAll("script").length);
  document.getElementById("out").textContent = out.join("\n");
};
</script></body>"##;

#[test]
fn a_browser_shows_the_history_from_file_urls() {
    let test = Test::new();
    let root = test.dir().to_path_buf();
    let dirs = nights(&root);
    let _run = test.args(["report", "history"]).args(&dirs).run().code(0);
    let seen = support::browser::seen(&root, PROBE_PAGE);
    assert!(seen.contains("rows=4"), "{seen}");
    assert!(seen.contains("squares=12"), "{seen}");
    assert!(seen.contains("svgs=4"), "{seen}");
    assert!(seen.contains("sized=4"), "every chart is as large as its width and height say: {seen}");
    assert!(seen.contains("circles=6"), "{seen}");
    assert!(seen.contains("square=14x14"), "{seen}");
    assert!(seen.contains("network=\n"), "nothing fetched over the network: {seen}");
    assert!(seen.contains("resources=0"), "the page needs no other file: {seen}");
    assert!(seen.contains("remote_elements=0"), "{seen}");
    assert!(seen.contains("scripts=0"), "{seen}");
}
