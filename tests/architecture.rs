//! The crate's layers, kept true: a module may use only the modules below it. Read from the
//! `crate::` paths in `src/` (in `use` lines and written out in code), so a new upward import or an
//! import cycle fails here, with the file and the path that broke it. README's Layout draws the
//! same picture.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

/// The layers, lowest first. A module may use the modules of the layers before its own, never one
/// after it nor another module of its own layer.
const LAYERS: &[&[&str]] = &[
    &["spec", "text", "exit"],
    &["cell"],
    &["console"],
    &["provider"],
    &["capture", "probe"],
    &["providers"],
    &["plan"],
    &["results"],
    &["engine"],
    &["report"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a file under `src/` belongs to (`src/providers/ec2/api.rs` -> `providers`).
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// The code of a file without comments, so that a doc comment naming a module is no import.
fn code_only(source: &str) -> String {
    source.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// Every top-level module a file's code names through `crate::`, including `crate::{a, b::c}`.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let code = code_only(source);
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group));
        } else {
            found.extend(first_name(rest));
        }
    }
    found
}

/// The first names of the items of a `{a, b::{c, d}, e}` group (`group` starts after its `{`).
fn group_heads(group: &str) -> Vec<String> {
    let (mut depth, mut heads, mut item) = (0, Vec::new(), String::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => heads.extend(first_name(std::mem::take(&mut item).trim())),
            _ if depth == 0 => item.push(c),
            _ => {}
        }
    }
    heads.extend(first_name(item.trim()));
    heads
}

fn first_name(path: &str) -> Option<String> {
    let name: String = path.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// Each import that breaks the layering: "src/FILE: uses `crate::X` (LAYER) from LAYER".
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (relative, source) in files {
        let Some(module) = module_of(Path::new(relative)) else { continue };
        let Some(own) = layer_of(&module) else {
            found.push(format!("src/{relative}: module `{module}` is in no layer (add it to LAYERS and README)"));
            continue;
        };
        for used in crate_paths(source) {
            match layer_of(&used) {
                _ if used == module => {}
                Some(layer) if layer < own => {}
                Some(_) => {
                    found.push(format!("src/{relative}: `{module}` uses `crate::{used}`, which is not below it"))
                }
                None => found.push(format!("src/{relative}: uses `crate::{used}`, which is in no layer")),
            }
        }
    }
    found
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            // The binary and the crate root are above every layer.
            if relative != "main.rs" && relative != "lib.rs" {
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = support::repo_root().join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    let broken = violations(&files);
    assert!(broken.is_empty(), "the layering is broken:\n{}", broken.join("\n"));
}

#[test]
fn an_upward_import_a_sideways_one_and_a_cycle_are_caught() {
    let file = |path: &str, source: &str| (path.to_string(), source.to_string());
    let files = [
        file("spec/model.rs", "use crate::providers::ec2::Ec2Spec;\n/// see crate::engine\n"),
        file("text.rs", "fn f() { crate::exit::Outcome::Passed; }"),
        file("engine/cell.rs", "use crate::{cell::Cell, provider::{Machine, Ledger}, report};"),
        file("probe.rs", "use crate::console::clean; use crate::probe::x;"),
    ];
    let broken = violations(&files);
    assert_eq!(
        broken,
        [
            "src/spec/model.rs: `spec` uses `crate::providers`, which is not below it",
            "src/text.rs: `text` uses `crate::exit`, which is not below it",
            "src/engine/cell.rs: `engine` uses `crate::report`, which is not below it",
        ]
    );
}
