//! Seeded mutations of real specs, run through the real binary: no input may panic, hang, or fail
//! without saying where in the file.
//!
//! The cases are generated from the example specs and the fixtures with a fixed seed (printed; set
//! AMIPROBE_FUZZ_SEED to try another): byte flips, deleted and repeated lines, nesting 100,000 deep,
//! alias bombs, huge lists and lines, bytes that are not UTF-8, and durations and numbers far out of
//! range. Each runs `validate` and `plan`, which must exit 0 or 2, never panic, finish within 30 s (a
//! hang detector, not a speed check), and on exit 2 name `spec.yaml:LINE`.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use support::{fixtures, repo_root, Test};

const DEFAULT_SEED: u64 = 0x05ee_d0fa_11a5;

/// Random cases made from each base spec; the fixed, structural cases come on top.
const RANDOM_PER_BASE: usize = 4;

struct Case {
    name: String,
    bytes: Vec<u8>,
}

fn bases() -> Vec<(String, Vec<u8>)> {
    let mut dirs = vec![repo_root().join("specs"), fixtures().join("qemu"), fixtures().join("broken")];
    let mut out = Vec::new();
    for dir in dirs.drain(..) {
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            if file.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap();
            // The 1 MiB fixture is covered by its own test; as a base it only slows every case down.
            if bytes.len() > 64 * 1024 {
                continue;
            }
            out.push((name_of(&file), bytes));
        }
    }
    out
}

fn name_of(file: &Path) -> String {
    let dir = file.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{dir}/{}", file.file_name().unwrap_or_default().to_string_lossy())
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// One random mutation of `base`; returns its description.
fn mutate(rng: &mut fastrand::Rng, base: &[u8]) -> (String, Vec<u8>) {
    let mut bytes = base.to_vec();
    let mut ls = lines(base);
    let at = |rng: &mut fastrand::Rng, len: usize| if len == 0 { 0 } else { rng.usize(..len) };
    match rng.u8(..12) {
        0 => {
            let n = rng.usize(1..8);
            for _ in 0..n {
                let i = at(rng, bytes.len());
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= rng.u8(1..=255);
                }
            }
            (format!("{n} byte flips"), bytes)
        }
        1 => {
            let i = at(rng, ls.len());
            if i < ls.len() {
                ls.remove(i);
            }
            (format!("line {} deleted", i + 1), ls.concat())
        }
        2 => {
            let i = at(rng, ls.len());
            let times = if rng.bool() { 1 } else { rng.usize(2..2000) };
            if let Some(line) = ls.get(i).cloned() {
                for _ in 0..times {
                    ls.insert(i, line.clone());
                }
            }
            (format!("line {} repeated {times} times", i + 1), ls.concat())
        }
        3 => {
            let i = at(rng, bytes.len());
            let bad: &[u8] = [&b"\xff"[..], b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\0"][rng.usize(..5)];
            bytes.splice(i..i, bad.iter().copied());
            (format!("bytes {bad:?} inserted at byte {i}"), bytes)
        }
        4 => {
            let i = at(rng, bytes.len());
            bytes.truncate(i);
            (format!("cut at byte {i}"), bytes)
        }
        5 => {
            let i = at(rng, bytes.len());
            let special = [
                "&a ",
                "*a",
                "!!binary ",
                "? ",
                "|\n",
                ">-\n",
                "\n---\n",
                "\t",
                "{",
                "]",
                "'",
                "\"",
                "${X",
                "- - -",
                ": :",
                "<<: *a\n",
                "%YAML 1.2\n",
            ];
            let s = special[rng.usize(..special.len())];
            bytes.splice(i..i, s.bytes());
            (format!("{s:?} inserted at byte {i}"), bytes)
        }
        6 => {
            // Replace every duration, and every number, with something far out of range.
            let huge =
                ["300000000000y", "99999999999999999999s", "18446744073709551615ms", "584942417355y", "25h", "1ns"];
            let numbers =
                ["18446744073709551616", "99999999999999999999999", "-1", "1e308", ".nan", "0x7fffffffffffffff"];
            let h = huge[rng.usize(..huge.len())];
            let n = numbers[rng.usize(..numbers.len())];
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let re = regex::Regex::new(r"\b\d+(ms|s|m|h)\b").unwrap();
            let text = re.replace_all(&text, h);
            let re = regex::Regex::new(r"(port|concurrency|cpus|burst|status|per_second): *\d+").unwrap();
            let text = re.replace_all(&text, format!("$1: {n}").as_str());
            (format!("durations -> {h}, numbers -> {n}"), text.into_owned().into_bytes())
        }
        7 => {
            let i = at(rng, ls.len());
            let line = ls.get(i).cloned().unwrap_or_default();
            let indent = line.iter().take_while(|&&b| b == b' ').count();
            ls.insert(i, format!("{}x: {}\n", " ".repeat(indent), "y".repeat(rng.usize(1000..900_000))).into_bytes());
            (format!("a very long line before line {}", i + 1), ls.concat())
        }
        8 => {
            // Swap two lines.
            let (i, j) = (at(rng, ls.len()), at(rng, ls.len()));
            if i < ls.len() && j < ls.len() {
                ls.swap(i, j);
            }
            (format!("lines {} and {} swapped", i + 1, j + 1), ls.concat())
        }
        9 => {
            let i = at(rng, ls.len());
            let extra = rng.usize(1..40);
            for line in ls.iter_mut().skip(i) {
                line.splice(0..0, b" ".repeat(extra));
            }
            (format!("lines from {} indented by {extra}", i + 1), ls.concat())
        }
        10 => {
            let n = rng.usize(1..100_000);
            bytes.extend_from_slice(
                format!(
                    "\nlaunch:\n  tags: {{{}}}\n",
                    (0..n).map(|i| format!("k{i}: v")).collect::<Vec<_>>().join(", ")
                )
                .as_bytes(),
            );
            (format!("{n} tags appended"), bytes)
        }
        _ => {
            let i = at(rng, ls.len());
            if let Some(line) = ls.get_mut(i) {
                line.retain(|&b| b != b':');
            }
            (format!("colons of line {} removed", i + 1), ls.concat())
        }
    }
}

/// Inputs made to hurt a parser, on top of a valid spec.
fn structural(base: &[u8]) -> Vec<(String, Vec<u8>)> {
    let with = |tail: String| {
        let mut b = base.to_vec();
        if !b.ends_with(b"\n") {
            b.push(b'\n');
        }
        b.extend_from_slice(tail.as_bytes());
        b
    };
    let mut lol = String::from("lol0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        lol.push_str(&format!("lol{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 10].join(", ")));
    }
    let wide = (0..250_000).map(|_| "x").collect::<Vec<_>>().join(",");
    let many_aliases = (0..150_000).map(|_| "*w").collect::<Vec<_>>().join(",");
    let staircase: String = (0..1500).map(|i| format!("{}k{i}:\n", " ".repeat(i + 2))).collect();
    vec![
        ("100,000 [ closed".into(), with(format!("x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)))),
        ("100,000 [ unclosed".into(), with(format!("x: {}\n", "[".repeat(100_000)))),
        ("100,000 { unclosed".into(), with(format!("x: {}\n", "{a: ".repeat(100_000)))),
        ("100,000 [ after a tag".into(), with(format!("x: !tag {}\n", "[".repeat(100_000)))),
        ("100,000 {a: after an anchor".into(), with(format!("x: &a {}\n", "{a: ".repeat(100_000)))),
        ("100,000 [ as a complex key".into(), with(format!("? {}\n", "[".repeat(100_000)))),
        ("100,000 nested block lists".into(), with(format!("x:\n{}y\n", "- ".repeat(100_000)))),
        ("1,500 levels of indentation".into(), with(format!("x:\n{staircase}"))),
        ("100,000 levels of indentation, cut at the size limit".into(), {
            let mut b = with("x:\n".into());
            let mut i = 0;
            while b.len() <= 2 * 1024 * 1024 {
                b.extend_from_slice(format!("{}k:\n", " ".repeat(i + 2)).as_bytes());
                i += 1;
            }
            b
        }),
        ("billion laughs under unknown keys".into(), with(lol.clone())),
        ("billion laughs in a typed field".into(), {
            let mut s = String::from_utf8_lossy(base).into_owned();
            s.push_str(&format!("\nconsole:\n  must_contain: &m [{}]\n", ["x"; 10].join(", ")));
            s.push_str(&format!("capture:\n  screenshots: [{}]\n", vec!["{every: 1s, until: *m}"; 1000].join(", ")));
            s.into_bytes()
        }),
        ("one anchor of 250,000 repeated 150,000 times".into(), {
            let s = format!("name: t\nprovider: {{ec2: {{}}}}\nmatrix:\n  image: &w [{wide}]\n  instance_type: t\n  security_groups: [{many_aliases}]\n");
            s.into_bytes()
        }),
        (
            "an axis of 200,000 values".into(),
            with(format!("matrix2: 1\n{}", {
                let values: Vec<String> = (0..200_000).map(|i| format!("a{i}")).collect();
                format!("zz: [{}]\n", values.join(","))
            })),
        ),
        ("1000 x 1000 matrix".into(), {
            let axis = |p: &str| (0..1000).map(|i| format!("{p}{i}")).collect::<Vec<_>>().join(", ");
            format!(
                "name: t\nprovider: {{ec2: {{}}}}\nmatrix:\n  image: [{}]\n  instance_type: [{}]\n",
                axis("ami-"),
                axis("t")
            )
            .into_bytes()
        }),
        (
            "10,000 probes".into(),
            with(format!(
                "probes:\n{}",
                (0..10_000)
                    .map(|i| format!("  - {{name: p{}, tcp: {{port: {}}}}}\n", i % 5000, i % 70_000))
                    .collect::<String>()
            )),
        ),
        ("1,000 excludes on 10,000 cells".into(), {
            let axis = |p: &str| (0..100).map(|i| format!("{p}{i}")).collect::<Vec<_>>().join(", ");
            let ex: String =
                (0..1000).map(|i| format!("    - {{image: ami-{}, instance_type: t{}}}\n", i % 100, i / 10)).collect();
            format!(
                "name: t\nprovider: {{ec2: {{}}}}\nmatrix:\n  image: [{}]\n  instance_type: [{}]\n  exclude:\n{ex}",
                axis("ami-"),
                axis("t")
            )
            .into_bytes()
        }),
        ("2 MiB of one line".into(), with(format!("description: {}\n", "z".repeat(2 * 1024 * 1024)))),
        ("a 900 KB key".into(), with(format!("{}: 1\n", "k".repeat(900_000)))),
        (
            "variables expanding past the size limit".into(),
            with(format!(
                "launch:\n  tags:\n{}",
                (0..100).map(|i| format!("    t{i}: ${{HUGE}}\n")).collect::<String>()
            )),
        ),
        ("50,000 unknown keys".into(), with((0..50_000).map(|i| format!("u{i}: 1\n")).collect())),
        ("every byte value".into(), with((0u8..=255).map(|b| b as char).collect::<String>())),
    ]
}

#[test]
fn no_mutated_spec_panics_hangs_or_fails_without_a_place() {
    let seed = std::env::var("AMIPROBE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    println!("spec fuzz seed: {seed} (AMIPROBE_FUZZ_SEED={seed} repeats this run)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut cases = Vec::new();
    let bases = bases();
    for (name, bytes) in &bases {
        for _ in 0..RANDOM_PER_BASE {
            let (what, mutated) = mutate(&mut rng, bytes);
            cases.push(Case { name: format!("{name}: {what}"), bytes: mutated });
        }
    }
    let valid = std::fs::read(repo_root().join("specs/web-appliance.yaml")).unwrap();
    for (what, bytes) in structural(&valid) {
        cases.push(Case { name: format!("structural: {what}"), bytes });
    }

    let located = regex::Regex::new(r"--> spec\.yaml:\d+(:\d+)?\n").unwrap();
    let failures = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let runs = AtomicUsize::new(0);
    let huge = "h".repeat(100_000);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                    for command in [&["validate", "spec.yaml"][..], &["plan", "spec.yaml", "--format", "json"]] {
                        let run = Test::new()
                            .file_bytes("spec.yaml", &case.bytes)
                            .env("HUGE", &huge)
                            .args(command)
                            .kill_after(Duration::from_secs(30))
                            .run();
                        runs.fetch_add(1, Ordering::Relaxed);
                        let stderr = run.stderr();
                        let code = run.output.status.code();
                        let problem = if run.timed_out {
                            Some("still running after 30 s".to_string())
                        } else if stderr.contains("panicked") || code == Some(101) {
                            Some(format!("panicked: {}", stderr.lines().find(|l| l.contains("panicked")).unwrap_or("")))
                        } else if !matches!(code, Some(0 | 2)) {
                            Some(format!("exit {code:?}"))
                        } else if code == Some(2) && !located.is_match(&stderr) {
                            Some(format!("no spec.yaml:LINE in: {}", stderr.chars().take(300).collect::<String>()))
                        } else {
                            None
                        };
                        if let Some(problem) = problem {
                            failures.lock().unwrap().push(format!("{} [{}]: {problem}", case.name, command[0]));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    println!("{} cases, {} runs of the binary", cases.len(), runs.load(Ordering::Relaxed));
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    assert!(failures.is_empty(), "seed {seed}: {} failures:\n{}", failures.len(), failures.join("\n"));
}
