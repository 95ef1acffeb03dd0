//! Images from the pipeline: a Packer manifest read with the spec (tonight's builds only, each image
//! in its region), `REGION:ami-...`, an SSM parameter and a lookup resolved by the preflight in the
//! cell's region; what doesn't resolve is refused at its place in the spec (exit 2). The plan tests
//! need no network; the others run against moto in a loopback-only namespace.

mod support;

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{out_dir, runtime, Moto};
use support::{fixtures, Test};

const MANIFEST: &str = "build/packer-manifest.json";

/// A spec with `matrix` as written (indented two spaces), for the ec2 provider in eu-west-1.
fn spec_text(matrix: &str) -> String {
    format!("name: images\nprovider:\n  ec2: {{ region: eu-west-1, poll_interval: 500ms }}\nmatrix:\n{matrix}\ntimeouts: {{ run: 2m }}\n")
}

/// `amiprobe plan --format json` of a spec next to the fixture manifest.
fn plan_with_manifest(matrix: &str, manifest: &str) -> support::Run {
    Test::new()
        .file("spec.yaml", &spec_text(matrix))
        .file(MANIFEST, manifest)
        .args(["plan", "spec.yaml", "--format", "json"])
        .run()
}

fn fixture_manifest() -> String {
    std::fs::read_to_string(fixtures().join("packer/packer-manifest.json")).unwrap()
}

/// Each cell's id with the image id it launches and its region.
fn cells(plan: &Value) -> Vec<(String, String, String)> {
    plan["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap().to_string();
            let image = c["image"]["image"].as_str().or(c["image"].as_str()).unwrap_or_default().to_string();
            (id, image, c["region"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn a_manifest_gives_tonights_images_each_in_its_region() {
    let run = plan_with_manifest(
        &format!("  image: [{{ packer: {MANIFEST} }}]\n  instance_type: [t3.micro, t3.small]"),
        &fixture_manifest(),
    )
    .code(0);
    let plan = run.json();
    let mut expected = Vec::new();
    for (build, images) in [
        ("web-x86", ["ami-0x86eu", "ami-0x86us", "ami-0x86or"]),
        ("web-arm", ["ami-0armeu", "ami-0armus", "ami-0armor"]),
    ] {
        for (region, image) in ["eu-west-1", "us-east-1", "us-west-2"].into_iter().zip(images) {
            for t in ["t3.micro", "t3.small"] {
                expected.push((format!("{build}_{region}_{t}"), image.to_string(), region.to_string()));
            }
        }
    }
    // Three regions give three cells per build and type, not nine; the stale run's images none.
    assert_eq!(cells(&plan), expected);
    assert!(!run.stdout().contains("stale"), "{}", run.stdout());
    assert_eq!(plan["cells"][0]["image"]["build"], "web-x86");
    assert_eq!(plan["cells"][0]["image"]["packer"], MANIFEST);

    // The text plan names each cell after its build and shows what it launches.
    let text = Test::new()
        .file(
            "spec.yaml",
            &spec_text(&format!("  image: {{ packer: {MANIFEST}, build: web-arm }}\n  instance_type: t3.micro")),
        )
        .file(MANIFEST, &fixture_manifest())
        .args(["plan", "spec.yaml"])
        .run()
        .code(0);
    assert!(text.stdout().contains("  web-arm_us-east-1_t3.micro (image ami-0armus)\n"), "{}", text.stdout());
    assert_eq!(text.stdout().lines().filter(|l| l.starts_with("  web-")).count(), 3, "{}", text.stdout());
}

#[test]
fn a_region_axis_keeps_the_images_of_its_regions_and_says_which_it_left_out() {
    let run = plan_with_manifest(
        &format!("  image: {{ packer: {MANIFEST}, build: web-x86 }}\n  region: [us-east-1, eu-west-1]\n  instance_type: t3.micro"),
        &fixture_manifest(),
    )
    .code(0);
    let ids: Vec<String> = cells(&run.json()).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids, ["web-x86_eu-west-1_t3.micro", "web-x86_us-east-1_t3.micro"]);
    let stderr = run.stderr();
    assert!(stderr.contains("warning: matrix.image: image `web-x86` (region us-west-2) is left out"), "{stderr}");
    assert_eq!(stderr.matches("is left out").count(), 1, "{stderr}");
}

#[test]
fn packers_region_string_pairs_with_its_region() {
    let run = Test::new()
        .file(
            "spec.yaml",
            &spec_text(
                "  image: [\"eu-west-1:ami-0aaa\", \"us-east-1:ami-0bbb\", ami-0ccc]\n  instance_type: t3.micro",
            ),
        )
        .args(["plan", "spec.yaml", "--format", "json"])
        .run()
        .code(0);
    let found = cells(&run.json());
    let ids: Vec<&str> = found.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["ami-0aaa_eu-west-1_t3.micro", "ami-0bbb_us-east-1_t3.micro", "ami-0ccc_t3.micro"]);
}

/// `plan` of a spec whose matrix is `matrix` and manifest `manifest` (None: no manifest file) fails
/// with exit 2, the error placed at `path` and `line:column`, saying `message`.
#[track_caller]
fn refused(matrix: &str, manifest: Option<&str>, path: &str, location: &str, message: &str) {
    let mut test = Test::new().file("spec.yaml", &spec_text(matrix));
    if let Some(text) = manifest {
        test = test.file(MANIFEST, text);
    }
    let run = test.args(["plan", "spec.yaml"]).run().code(2);
    let stderr = run.stderr();
    assert!(stderr.contains(&format!("error: {path}: {message}")), "{path}: {message} in:\n{stderr}");
    assert!(stderr.contains(&format!("--> spec.yaml:{location}\n")), "spec.yaml:{location} in:\n{stderr}");
}

#[test]
fn what_a_manifest_does_not_give_is_refused_at_its_place() {
    let matrix = format!("  instance_type: t3.micro\n  image: [ami-0abc, {{ packer: {MANIFEST}, build: web }}]");
    let manifest = fixture_manifest();
    refused(
        &matrix,
        None,
        "matrix.image[1].packer",
        "6:31",
        "failed to read Packer manifest `build/packer-manifest.json`",
    );
    refused(
        &matrix,
        Some("{ not json"),
        "matrix.image[1].packer",
        "6:31",
        "Packer manifest `build/packer-manifest.json` is not a Packer manifest",
    );
    refused(
        &matrix,
        Some(&manifest),
        "matrix.image[1].build",
        "6:66",
        "Packer manifest `build/packer-manifest.json` has no build named `web` in its last run (its builds: web-x86, web-arm)",
    );
    let stale =
        manifest.replace("\"last_run_uuid\": \"6a0b2a4e-0000-4000-8000-000000000002\"", "\"last_run_uuid\": \"later\"");
    refused(
        &matrix,
        Some(&stale),
        "matrix.image[1].packer",
        "6:31",
        "Packer manifest `build/packer-manifest.json` has no build of its last run (later)",
    );
    let no_last = manifest.replace("\"last_run_uuid\"", "\"first_run_uuid\"");
    refused(
        &matrix,
        Some(&no_last),
        "matrix.image[1].packer",
        "6:31",
        "Packer manifest `build/packer-manifest.json` has no `last_run_uuid`",
    );
    refused(
        "  instance_type: t3.micro\n  image: { lookup: { owners: [self] } }",
        None,
        "matrix.image",
        "6:10",
        "missing field `name`",
    );
}

#[test]
fn qemu_refuses_the_ec2_image_forms_at_their_place() {
    let spec = "name: q\nprovider:\n  qemu: {}\nmatrix:\n  image: [\"ssm:/images/web\", { packer: m.json }]\n";
    let run = Test::new().file("spec.yaml", spec).args(["validate", "spec.yaml"]).run().code(2);
    let stderr = run.stderr();
    assert!(stderr.contains("error: matrix.image[0]: an `ssm:` parameter is an ec2 image form"), "{stderr}");
    assert!(stderr.contains("--> spec.yaml:5:11\n"), "{stderr}");
    assert!(stderr.contains("error: matrix.image[1]: a Packer manifest is an ec2 image form"), "{stderr}");
    let spec = "name: q\nprovider:\n  qemu: {}\nmatrix:\n  image: [[disk]]\n";
    let run = Test::new().file("spec.yaml", spec).args(["validate", "spec.yaml"]).run().code(2);
    assert!(run.stderr().contains("error: matrix.image[0]: invalid type: list, expected a string"), "{}", run.stderr());
}

/// SSM on moto, as the tests' oracle (exempt from the launcher's chaos), in `region`.
fn ssm(moto: &Moto, region: &str) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .region(aws_sdk_ssm::config::Region::new(region.to_string()))
        .endpoint_url(format!("http://127.0.0.1:{}", moto.port))
        .credentials_provider(aws_sdk_ssm::config::Credentials::new("oracle", "testing", None, None, "tests"))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

fn put_parameter(moto: &Moto, region: &str, name: &str, value: &str) {
    let client = ssm(moto, region);
    runtime()
        .block_on(async { client.put_parameter().name(name).value(value).r#type("String".into()).send().await })
        .unwrap_or_else(|e| panic!("PutParameter {name}: {e:?}"));
}

/// A spec file for moto with `matrix`, an instance type fixed, in `dir`.
fn moto_spec(dir: &std::path::Path, matrix: &str) -> std::path::PathBuf {
    let text = format!(
        "name: images\nprovider:\n  ec2: {{ region: eu-west-1, poll_interval: 500ms }}\nmatrix:\n{matrix}\nlaunch:\n  instance_type: t3.micro\ncapture:\n  screenshots: [{{ every: 1s, until: 5s }}]\ntimeouts: {{ run: 2m }}\n"
    );
    let file = dir.join("spec.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn a_parameter_and_a_lookup_resolve_in_the_cells_region_and_the_run_records_the_ids() {
    let moto = Moto::start();
    let from_parameter = moto.image(json!({ "name": "pipeline-published", "ena_support": true }));
    put_parameter(&moto, "eu-west-1", "/images/web", &from_parameter);
    let looked_up = moto.image(json!({ "name": "web-2026-12-06", "ena_support": true }));
    moto.image(json!({ "name": "db-2026-12-06" }));
    let (dir, out) = out_dir();
    let spec = moto_spec(dir.path(), "  image: [\"ssm:/images/web\", { lookup: { owners: [self], name: \"web-*\" } }]");
    // `plan --check` says what each resolved to.
    let checked = amiprobe(&moto, &["plan", spec.to_str().unwrap(), "--check"]).output().unwrap();
    let said = stderr(&checked);
    assert_eq!(checked.status.code(), Some(0), "{said}");
    assert!(said.contains(&format!("check: eu-west-1: image ssm:/images/web is {from_parameter}\n")), "{said}");
    assert!(said.contains(&format!("\"name\":\"web-*\"}}}} is {looked_up}\n")), "{said}");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let launched: Vec<(&str, &str)> = r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["machine"]["image_id"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(launched, [("images-web", from_parameter.as_str()), ("web", looked_up.as_str())]);
    // Cells launch side by side: in any order.
    let mut sent: Vec<String> = moto
        .requests("RunInstances")
        .iter()
        .filter(|r| r.get("DryRun").is_none())
        .map(|r| r["ImageId"].as_str().unwrap_or_default().to_string())
        .collect();
    sent.sort();
    let mut wanted = [from_parameter.clone(), looked_up.clone()];
    wanted.sort();
    assert_eq!(sent, wanted);
    // The lookup asked DescribeImages by owner and name, once in `plan --check` and once in the run.
    let lookups: Vec<_> = moto.requests("DescribeImages").into_iter().filter(|r| r.get("Owner.1").is_some()).collect();
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    assert_eq!(lookups[0]["Owner.1"], "self");
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_parameter_or_lookup_that_does_not_resolve_is_refused_at_its_place() {
    let moto = Moto::start();
    put_parameter(&moto, "eu-west-1", "/images/blank", " ");
    let (dir, _out) = out_dir();
    let spec = moto_spec(
        dir.path(),
        "  image:\n    - \"ssm:/images/missing\"\n    - \"ssm:/images/blank\"\n    - { lookup: { owners: [self], name: \"nothing-*\" } }",
    );
    let output = amiprobe(&moto, &["plan", spec.to_str().unwrap(), "--check"]).output().unwrap();
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let file = spec.display();
    for (cell, why, place) in [
        ("images-missing", "SSM parameter /images/missing does not exist in eu-west-1", "6:7 (matrix.image[0])"),
        ("images-blank", "SSM parameter /images/blank is empty in eu-west-1", "7:7 (matrix.image[1])"),
        ("nothing", "no available image named `nothing-*` owned by self in eu-west-1", "8:7 (matrix.image[2])"),
    ] {
        let line = format!("error: cell {cell}: impossible: {why} (image at {file}:{place})");
        assert!(stderr.contains(&line), "{line} in:\n{stderr}");
    }
    assert!(moto.requests("RunInstances").iter().all(|r| r.get("DryRun").is_some()), "nothing launched");
}

#[test]
fn a_manifest_run_launches_each_image_in_its_region_and_leaves_nothing() {
    let moto = Moto::start();
    let regions = ["eu-west-1", "us-east-1", "us-west-2"];
    let mut pairs = Vec::new();
    for region in regions {
        pairs.push(format!(
            "{region}:{}",
            moto.image(json!({ "region": region, "name": "web-x86", "ena_support": true }))
        ));
    }
    let manifest = json!({
        "builds": [
            { "name": "web-x86", "builder_type": "amazon-ebs", "build_time": 1, "files": null,
              "artifact_id": "eu-west-1:ami-0stale", "packer_run_uuid": "old", "custom_data": null },
            { "name": "web-x86", "builder_type": "amazon-ebs", "build_time": 2, "files": null,
              "artifact_id": pairs.join(","), "packer_run_uuid": "tonight", "custom_data": null }
        ],
        "last_run_uuid": "tonight"
    });
    let (dir, out) = out_dir();
    std::fs::create_dir_all(dir.path().join("build")).unwrap();
    std::fs::write(dir.path().join(MANIFEST), manifest.to_string()).unwrap();
    let spec = moto_spec(dir.path(), &format!("  image: {{ packer: {MANIFEST} }}"));
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run_id = r["run_id"].as_str().unwrap();
    for (region, pair) in regions.iter().zip(&pairs) {
        let image = pair.split_once(':').unwrap().1;
        let id = format!("web-x86_{region}");
        let cell = r["cells"].as_array().unwrap().iter().find(|c| c["id"] == id.as_str()).expect(&id);
        assert_eq!(cell["status"], "passed", "{}", cell["reason"]);
        assert_eq!(cell["machine"]["region"], *region);
        assert_eq!(cell["machine"]["image_id"], image);
        assert_eq!(cell["params"]["image"]["image"], image, "results.json records the manifest's image");
        let launched: Vec<_> = moto
            .requests("RunInstances")
            .into_iter()
            .filter(|q| q["_region"] == *region && q.get("DryRun").is_none())
            .collect();
        assert_eq!(launched.len(), 1, "{region}: {launched:?}");
        assert_eq!(launched[0]["ImageId"], image);
        assert_eq!(moto.leftovers_in(run_id, region), (vec![], vec![]), "left in {region}");
    }
    assert_nothing_left(&moto, &r);
}

#[test]
fn the_preflight_calls_per_run_grow_with_the_kinds_not_the_cells() {
    let moto = Moto::start();
    let regions = ["eu-west-1", "us-east-1", "us-west-2"];
    let mut builds = Vec::new();
    for build in ["web-x86", "web-arm"] {
        let pairs: Vec<String> = regions
            .iter()
            .map(|region| {
                format!("{region}:{}", moto.image(json!({ "region": region, "name": build, "ena_support": true })))
            })
            .collect();
        builds.push(json!({ "name": build, "builder_type": "amazon-ebs", "build_time": 2, "files": null,
                            "artifact_id": pairs.join(","), "packer_run_uuid": "tonight", "custom_data": null }));
    }
    let (dir, _out) = out_dir();
    std::fs::create_dir_all(dir.path().join("build")).unwrap();
    std::fs::write(dir.path().join(MANIFEST), json!({ "builds": builds, "last_run_uuid": "tonight" }).to_string())
        .unwrap();
    let text = spec_text(&format!("  image: {{ packer: {MANIFEST} }}\n  instance_type: [t3.micro, t3.small]"));
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, text).unwrap();
    let before = moto.calls();
    let output = amiprobe(&moto, &["plan", spec.to_str().unwrap(), "--check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let after = moto.calls();
    let mut made: Vec<(String, u64)> = after
        .iter()
        .filter(|(k, _)| !k.contains(':') || k.starts_with("dryrun:"))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    made.sort();
    // The DryRun pass (`dryrun:RunInstances`...) is told apart; the figure is in the test's output.
    eprintln!("preflight calls for 12 cells (3 regions x 2 builds x 2 types): {made:?}");
    let count = |action: &str| made.iter().find(|(k, _)| k == action).map_or(0, |(_, n)| *n);
    // One per kind and region, whatever the cells: 3 regions' worth.
    assert_eq!(count("DescribeImages"), 3);
    assert_eq!(count("DescribeInstanceTypes"), 3);
    assert_eq!(count("DescribeInstanceTypeOfferings"), 3);
}

#[test]
fn the_policy_lets_the_preflight_read_each_parameter_in_its_regions() {
    let matrix =
        "  image: [\"ssm:/images/web\", ami-0abc]\n  region: [eu-west-1, us-east-1]\n  instance_type: t3.micro";
    let run = Test::new().file("spec.yaml", &spec_text(matrix)).args(["policy", "spec.yaml"]).run().code(0);
    let policy = run.json();
    let statements = policy["Statement"].as_array().unwrap();
    let read: Vec<&Value> = statements.iter().filter(|s| s["Action"] == json!(["ssm:GetParameter"])).collect();
    assert_eq!(read.len(), 1, "{policy:#}");
    assert_eq!(
        read[0]["Resource"],
        json!(["arn:aws:ssm:eu-west-1:*:parameter/images/web", "arn:aws:ssm:us-east-1:*:parameter/images/web"])
    );
    // Without a parameter, no SSM at all.
    let run = Test::new()
        .file("spec.yaml", &spec_text("  image: ami-0abc\n  instance_type: t3.micro"))
        .args(["policy", "spec.yaml"])
        .run()
        .code(0);
    assert!(!run.stdout().contains("ssm:"), "{}", run.stdout());
}

#[test]
fn an_include_entry_takes_a_manifests_images_with_their_regions() {
    let matrix = format!(
        "  image: ami-0abc\n  instance_type: t3.micro\n  include:\n    - {{ image: {{ packer: {MANIFEST}, build: web-arm }}, instance_type: m6g.medium }}"
    );
    let run = plan_with_manifest(&matrix, &fixture_manifest()).code(0);
    let found = cells(&run.json());
    let ids: Vec<&str> = found.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "ami-0abc_t3.micro",
            "web-arm_eu-west-1_m6g.medium",
            "web-arm_us-east-1_m6g.medium",
            "web-arm_us-west-2_m6g.medium"
        ]
    );
    assert_eq!(found[2].1, "ami-0armus");
}

/// A manifest's several images in an entry that would join the axes' cells: each would overwrite
/// the last in every cell it fits, so the entry is refused at its place.
#[test]
fn an_include_entry_with_several_images_that_would_join_the_axes_is_refused() {
    let matrix = format!(
        "  instance_type: [t3.micro, t3.small]\n  include:\n    - {{ image: {{ packer: {MANIFEST}, build: web-arm }} }}"
    );
    let run = plan_with_manifest(&matrix, &fixture_manifest()).code(2);
    let stderr = run.stderr();
    assert!(
        stderr.contains("matrix.include[0]: include entry stands for 3 images, which can't join the axes' cells"),
        "{stderr}"
    );
    assert!(stderr.contains("--> spec.yaml:"), "{stderr}");
}
