//! The JSON Schema agrees with the loader: what an editor accepts, `validate` accepts, and an unknown
//! key `validate` rejects is flagged by the editor too.

mod support;

use std::path::{Path, PathBuf};

use support::{fixtures, repo_root, Test};

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("schemas/amiprobe.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the checked-in schema compiles")
}

/// A YAML spec as the JSON an editor's schema check sees, `${VAR:-default}` taken at its default (a
/// list given through a variable is a list once substituted).
fn as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let defaults = regex::Regex::new(r"\$\{[A-Z_]+:-((?:[^{}]|\{[^{}]*\})*)\}").unwrap();
    let text = defaults.replace_all(&text, "$1");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_schema_accepts_every_valid_spec() {
    let validator = validator();
    let mut files = yaml_files(&repo_root().join("specs"));
    files.extend(yaml_files(&fixtures().join("qemu")));
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let errors: Vec<String> = validator.iter_errors(&as_json(&file)).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{} is valid but the schema says: {errors:?}", file.display());
    }
}

/// Removes the field at a path printed by `validate` (`probes[0].expect.stauts`) from a document.
fn remove(doc: &mut serde_json::Value, path: &str) -> bool {
    let mut segments: Vec<String> = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        segments.extend(pieces.next().filter(|k| !k.is_empty()).map(str::to_string));
        segments.extend(pieces.map(|i| format!("[{}", i.trim_end_matches(']'))));
    }
    let Some((last, parents)) = segments.split_last() else { return false };
    let mut node = doc;
    for segment in parents {
        let next = match segment.strip_prefix('[') {
            Some(index) => index.parse::<usize>().ok().and_then(|i| node.get_mut(i)),
            None => node.get_mut(segment.as_str()),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.as_object_mut().and_then(|o| o.remove(last)).is_some()
}

#[test]
fn the_schema_rejects_every_unknown_key_validate_rejects() {
    let validator = validator();
    let (mut checked, mut proven) = (0, 0);
    for file in yaml_files(&fixtures().join("broken")) {
        let run = Test::new().arg("validate").arg(file.to_str().unwrap()).run().code(2);
        let stderr = run.stderr();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        // "error: matrix.include[0].zone: unknown key `zone` in matrix.include[0]"
        let unknown: Vec<&str> = errors
            .iter()
            .filter(|l| l.contains(": unknown key `"))
            .filter_map(|l| l.strip_prefix("error: ")?.split(": ").next())
            .collect();
        if unknown.is_empty() {
            continue;
        }
        let mut doc = as_json(&file);
        assert!(!validator.is_valid(&doc), "{}: the schema accepts {unknown:?}", file.display());
        // With the unknown keys gone, a fixture that had no other error is valid: so they were the reason.
        if unknown.len() == errors.len() {
            for path in &unknown {
                assert!(remove(&mut doc, path), "{}: no field {path}", file.display());
            }
            let left: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(left.is_empty(), "{}: without {unknown:?} the schema still says {left:?}", file.display());
            proven += 1;
        }
        checked += unknown.len();
    }
    assert!(checked >= 4 && proven >= 3, "only {checked} unknown keys in the corpus, {proven} fixtures proven");
}

#[test]
fn the_schema_flags_a_typo_at_every_level() {
    let validator = validator();
    for (spec, typo) in [
        ("{name: t, provider: {ec2: {}}, matrix: {image: a}, probs: []}", "probs"),
        ("{name: t, provider: {ec2: {regoin: x}}, matrix: {image: a}}", "provider.ec2.regoin"),
        ("{name: t, provider: {ec2: {}}, matrix: {image: a}, probes: [{name: p, tcp: {port: 1}, withn: 5s}]}", "probes[0].withn"),
        ("{name: t, provider: {qemu: {images: {a: {kernal: k}}}}, matrix: {image: a}}", "provider.qemu.images.a.kernal"),
        ("{name: t, provider: {ec2: {}}, matrix: {image: a, exclude: [{image: a, zone: b}]}}", "matrix.exclude[0].zone"),
        ("{name: t, provider: {ec2: {}}, matrix: {image: a}, capture: {screenshots: [{every: 1s, until: 2s, x: 1}]}}", "capture.screenshots[0].x"),
        ("{name: t, provider: {ec2: {rate_limits: {describe: {burst: 1, per_second: 1, x: 1}}}}, matrix: {image: a}}", "provider.ec2.rate_limits.describe.x"),
    ] {
        let mut doc: serde_json::Value = serde_yaml::from_str(spec).unwrap();
        assert!(!validator.is_valid(&doc), "the schema accepts {spec}");
        assert!(remove(&mut doc, typo), "{spec}: no {typo}");
        let left: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(left.is_empty(), "{spec} without {typo}: {left:?}");
    }
}
