//! The broken-spec corpus: every file in `tests/fixtures/broken/` must fail `validate` with exit 2,
//! naming the exact field path and file:line:column of its mistake.

mod support;

use support::{fixtures, Test};

/// `broken!(test_name, file stem, field path or "-", "line:column" or "", message fragment)`
macro_rules! broken {
    ($test:ident, $file:literal, $path:literal, $loc:literal, $message:literal) => {
        #[test]
        fn $test() {
            let file = fixtures().join(concat!("broken/", $file, ".yaml"));
            let run = Test::new().arg("validate").arg(file.to_str().unwrap()).run().code(2);
            let stderr = run.stderr();
            let first = stderr.lines().next().unwrap_or_default();
            if $path == "-" {
                assert!(first.starts_with(concat!("error: ", $message)), "first line: {first}");
            } else {
                assert!(first.starts_with(concat!("error: ", $path, ": ", $message)), "first line: {first}");
            }
            let location = if $loc.is_empty() {
                format!("--> {}\n", file.display())
            } else {
                format!("--> {}:{}\n", file.display(), $loc)
            };
            assert!(stderr.contains(&location), "expected {location:?} in:\n{stderr}");
        }
    };
}

broken!(alias_bomb, "alias-bomb", "-", "12:63", "aliases expand to more than 100000 values");
broken!(
    bad_address_kind,
    "bad-address-kind",
    "provider.ec2.address",
    "3:19",
    "unknown variant `elastic_ip`, expected one of `public_ip`, `"
);
broken!(
    bad_duration_schedule,
    "bad-duration-schedule",
    "capture.screenshots[0].every",
    "9:16",
    "invalid value: string \"1x\", expected a duration like 500ms, "
);
broken!(
    bad_duration,
    "bad-duration",
    "probes[0].within",
    "10:13",
    "invalid value: string \"5 mnutes\", expected a duration like 5"
);
broken!(
    bad_enum_value,
    "bad-enum-value",
    "probes[0].http.method",
    "9:31",
    "unknown variant `FETCH`, expected one of `GET`, `HEAD`, `POS"
);
broken!(
    bad_json_path,
    "bad-json-path",
    "probes[0].expect.json.status",
    "11:15",
    "invalid JSON path `status`: at position 0, parser error"
);
broken!(bad_regex, "bad-regex", "probes[0].expect.body_regex", "11:19", "invalid regex: unclosed group");
broken!(
    bad_status_range,
    "bad-status-range",
    "probes[0].expect.status",
    "11:15",
    "invalid status range `299-200`: 299 is above 200"
);
broken!(bad_status, "bad-status", "probes[0].expect.status", "11:15", "invalid status 700: HTTP codes are 100 to 599");
broken!(
    bad_variable_name,
    "bad-variable-name",
    "-",
    "4:11",
    "invalid variable name `1AMI`: use letters, digits and `_`"
);
broken!(
    concurrency_too_high,
    "concurrency-too-high",
    "concurrency",
    "7:14",
    "18446744073709551615 is above the limit of 10000"
);
broken!(
    baseline_key_unknown_axis,
    "baseline-key-unknown-axis",
    "baseline.key[1]",
    "8:16",
    "`instance_typ` is not an axis of the matrix"
);
broken!(
    baseline_bad_ignore_line,
    "baseline-bad-ignore-line",
    "baseline.ignore_lines[1]",
    "9:24",
    "invalid regex: unclosed group"
);
broken!(duplicate_include, "duplicate-include", "matrix.include[1]", "9:7", "cell `ami-2_t3.micro` is listed twice");
broken!(duplicate_probe_names, "duplicate-probe-names", "probes[1].name", "10:11", "duplicate probe name `web`");
broken!(
    duration_without_unit,
    "duration-without-unit",
    "probes[0].within",
    "10:13",
    "invalid value: string \"10\", expected a duration like 500ms, "
);
broken!(
    ec2_cell_without_instance_type,
    "ec2-cell-without-instance-type",
    "matrix",
    "4:3",
    "cell `ami-1` has no `instance_type`"
);
broken!(
    empty_console_pattern,
    "empty-console-pattern",
    "console.must_not_contain[0]",
    "8:22",
    "empty pattern matches every line"
);
broken!(empty_file, "empty-file", "-", "1:1", "spec is empty");
broken!(empty_matrix, "empty-matrix", "matrix", "3:1", "matrix is empty");
broken!(
    exclude_matches_nothing,
    "exclude-matches-nothing",
    "matrix.exclude[0]",
    "8:7",
    "exclude entry matches no cell"
);
broken!(
    exclude_removes_everything,
    "exclude-removes-everything",
    "matrix.exclude",
    "7:3",
    "exclude removes every cell of the matrix"
);
broken!(http_path_no_slash, "http-path-no-slash", "probes[0].http.path", "9:29", "path `health` must start with `/`");
broken!(
    huge_duration,
    "huge-duration",
    "probes[0].within",
    "10:13",
    "duration `300000000000y` is too long: at most 24h"
);
broken!(huge_run_timeout, "huge-run-timeout", "timeouts.run", "8:8", "duration `2days` is too long: at most 24h");
broken!(
    include_unknown_axis,
    "include-unknown-axis",
    "matrix.include[0].zone",
    "8:48",
    "unknown key `zone` in matrix.include[0]"
);
broken!(missing_matrix, "missing-matrix", "-", "1:1", "missing field `matrix`");
broken!(missing_name, "missing-name", "-", "1:1", "missing field `name`");
broken!(
    missing_user_data_file,
    "missing-user-data-file",
    "launch.user_data",
    "8:14",
    "failed to read user data file `./no-such-file.sh`: No such"
);
broken!(non_utf8, "non-utf8", "-", "7:17", "spec is not valid UTF-8: byte 0xe9 can't be decoded");
broken!(no_provider, "no-provider", "provider", "2:1", "no provider given");
broken!(
    port_out_of_range,
    "port-out-of-range",
    "probes[0].tcp.port",
    "9:18",
    "invalid value: integer `70000`, expected a port number (0-65"
);
broken!(probe_no_kind, "probe-no-kind", "probes[0]", "8:5", "probe has no kind");
broken!(probe_two_kinds, "probe-two-kinds", "probes[0].http", "10:5", "probe has both `tcp` and `http`");
broken!(
    qemu_bad_memory,
    "qemu-bad-memory",
    "provider.qemu.memory",
    "4:13",
    "invalid size unit `Q`: expected K, M or G"
);
broken!(
    qemu_image_no_kernel,
    "qemu-image-no-kernel",
    "provider.qemu.images.ok",
    "5:7",
    "image has neither `kernel` nor `disk`"
);
broken!(
    qemu_disk_bus_unknown,
    "qemu-disk-bus-unknown",
    "matrix.disk_bus[1]",
    "8:26",
    "unknown variant `sata`, expected one of `virtio-blk`, `nvme`, `scsi`, `ide`"
);
broken!(
    qemu_instance_type_unmapped,
    "qemu-instance-type-unmapped",
    "matrix.instance_type[1]",
    "12:29",
    "instance type `m5.large` is not mapped to a size"
);
broken!(qemu_size_unknown, "qemu-size-unknown", "launch.size", "12:9", "no size `smal` in provider.qemu.sizes");
broken!(qemu_bad_disks, "qemu-bad-disks", "matrix.disks[1][1]", "10:22", "missing field `size`");
broken!(
    qemu_instance_types_unknown_size,
    "qemu-instance-types-unknown-size",
    "provider.qemu.instance_types.t3.micro",
    "9:17",
    "no size `smol` in sizes"
);
broken!(qemu_with_subnet, "qemu-with-subnet", "matrix.subnet", "8:3", "the qemu provider has no `subnet` field");
broken!(
    root_volume_iops_on_gp2,
    "root-volume-iops-on-gp2",
    "matrix.root_volume[1].iops",
    "7:70",
    "iops is only for io1, io2 and gp3 volumes, not gp2"
);
broken!(boot_mode_unknown, "boot-mode-unknown", "matrix.boot_mode[1]", "7:28", "unknown variant `efi`");
broken!(
    launch_field_typo,
    "launch-field-typo",
    "launch.imds.hop_limt",
    "8:34",
    "unknown key `hop_limt` in launch.imds"
);
broken!(
    axis_fixed_twice,
    "axis-fixed-twice",
    "matrix.instance_type",
    "6:3",
    "`instance_type` is both a matrix axis and fixed in `launch`"
);
broken!(
    reserved_tag,
    "reserved-tag",
    "launch.tags.amiprobe:run-id",
    "8:11",
    "tag `amiprobe:run-id` uses a reserved prefix"
);
broken!(
    reserved_tag_any_case,
    "reserved-tag-any-case",
    "launch.tags.AWS:cloudformation:stack-name",
    "8:22",
    "tag `AWS:cloudformation:stack-name` uses a reserved prefix"
);
broken!(
    tag_value_too_long,
    "tag-value-too-long",
    "launch.tags.note",
    "10:11",
    "tag `note` has a value of 257 characters; EC2 takes at most 256"
);
broken!(
    tag_key_too_long,
    "tag-key-too-long",
    "launch.tags.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
    "9:5",
    "tag key has 129 characters; EC2 takes 1 to 128"
);
broken!(too_many_tags, "too-many-tags", "launch.tags", "8:3", "46 tags besides `Name`; at most 45 fit");
broken!(
    schedule_out_of_order,
    "schedule-out-of-order",
    "capture.screenshots[1].until",
    "10:27",
    "`until` must be later than the previous phase's (15s)"
);
broken!(
    security_groups_mixed,
    "security-groups-mixed",
    "matrix.security_groups",
    "7:20",
    "mixes single values and lists: write every value as a list"
);
broken!(string_for_list, "string-for-list", "probes", "7:9", "invalid type: string \"web\", expected a list");
broken!(
    tcp_with_expect,
    "tcp-with-expect",
    "probes[0].expect",
    "10:5",
    "`expect` applies to http, ssh and agent probes"
);
broken!(too_big, "too-big", "-", "11403:47", "spec is larger than 1 MiB (the limit is reached here)");
broken!(too_deep, "too-deep", "-", "8:79", "spec is nested more than 64 levels deep");
broken!(too_deep_indent, "too-deep-indent", "-", "71:129", "spec is nested more than 64 levels deep");
broken!(too_many_cells, "too-many-cells", "matrix", "4:1", "expands to 20000 cells; at most 10000 are allowed");
broken!(top_level_list, "top-level-list", "-", "1:1", "invalid type: list, expected a mapping of spec keys");
broken!(two_providers, "two-providers", "provider.qemu", "4:3", "more than one provider given");
broken!(
    undefined_variable,
    "undefined-variable",
    "-",
    "4:11",
    "undefined variable `AMIPROBE_TEST_UNDEFINED`: set it in the "
);
broken!(
    unknown_expect_key,
    "unknown-expect-key",
    "probes[0].expect.stauts",
    "10:15",
    "unknown key `stauts` in probes[0].expect"
);
broken!(unknown_nested_key, "unknown-nested-key", "probes[0].withn", "10:5", "unknown key `withn` in probes[0]");
broken!(unknown_top_key, "unknown-top-key", "probess", "7:1", "unknown key `probess` at the top level");
broken!(
    unterminated_variable,
    "unterminated-variable",
    "-",
    "4:11",
    "unterminated `${`: expected `${NAME}` or `${NAME:-default}`"
);
broken!(
    wrong_type_port,
    "wrong-type-port",
    "probes[0].tcp.port",
    "9:18",
    "invalid type: string \"https\", expected a port number (0-6553"
);
broken!(yaml_bad_indent, "yaml-bad-indent", "-", "4:2", "did not find expected key, while parsing a block mapping");
broken!(yaml_syntax, "yaml-syntax", "provider", "3:1", "did not find expected ',' or '}', while parsing a flow mappi");
broken!(
    zero_concurrency,
    "zero-concurrency",
    "concurrency",
    "7:14",
    "invalid value: integer `0`, expected a whole number above 0"
);
broken!(zero_interval, "zero-interval", "capture.screenshots[0].every", "9:16", "interval must be above 0s");

#[test]
fn the_corpus_is_complete() {
    // Every fixture has a case above: a new broken spec without expectations fails here.
    let source = include_str!("spec_errors.rs");
    let mut files: Vec<String> = std::fs::read_dir(fixtures().join("broken"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.len() >= 30, "only {} broken specs", files.len());
    for stem in files {
        assert!(source.contains(&format!("\"{stem}\"")), "tests/fixtures/broken/{stem}.yaml has no case");
    }
}

#[test]
fn several_errors_are_reported_together() {
    let spec = "name: t\nprovider:\n  ec2: { regoin: x }\nmatrix:\n  image: ami-1\n  instance_type: t3.micro\n  flavour: 1\nprobes:\n  - name: a\n    tcp: { port: 22 }\n  - name: a\n    tcp: { port: 23 }\n";
    let run = Test::new().file("spec.yaml", spec).args(["validate", "spec.yaml"]).run().code(2);
    let stderr = run.stderr();
    // Unknown keys come from deserializing; the duplicate name from resolving: both are shown.
    for expected in ["spec.yaml:3:10", "did you mean `region`?", "spec.yaml:7:3", "3 errors in spec"] {
        assert!(stderr.contains(expected), "lacks {expected:?}:\n{stderr}");
    }
}

#[test]
fn a_full_error_reads_like_a_compiler_message() {
    let spec = "name: t\nprovider: {ec2: {}}\nmatrix: {image: ami-1, instance_type: t3.micro}\nprobes:\n  - name: health\n    http: { port: 80 }\n    expct: { status: 200 }\n";
    let run = Test::new().file("spec.yaml", spec).args(["validate", "spec.yaml"]).run().code(2);
    insta::assert_snapshot!(run.stderr());
}

#[test]
fn variables_substitute_from_var_and_environment() {
    let spec = "name: t\nprovider: {ec2: {}}\nmatrix:\n  image: [${AMI}]\n  instance_type: ${TYPE:-t3.nano}\n";
    let run = Test::new()
        .file("spec.yaml", spec)
        .env("AMI", "ami-from-env")
        .args(["plan", "spec.yaml", "--format", "json", "--var", "TYPE=m5.large"])
        .run()
        .code(0);
    let ids: Vec<String> =
        run.json()["cells"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["ami-from-env_m5.large"]);
}

#[test]
fn an_error_after_a_substitution_points_at_the_source_column() {
    // `${PORT}` expands to a longer text; the error must still point at the `${` in the file.
    let spec = "name: t\nprovider: {ec2: {}}\nmatrix: {image: ami-1, instance_type: t3.micro}\nprobes:\n  - { name: a, tcp: { port: ${PORT} } }\n";
    Test::new()
        .file("spec.yaml", spec)
        .args(["validate", "spec.yaml", "--var", "PORT=not-a-port"])
        .run()
        .code(2)
        .stderr_has("error: probes[0].tcp.port: invalid type: string \"not-a-port\"")
        .stderr_has("spec.yaml:5:29");
}

#[test]
fn no_input_panics() {
    // Arbitrary shapes of YAML must give exit 2, never a panic (exit 101).
    for text in [
        "~",
        "[]",
        "42",
        "name: [1, 2]",
        "provider: 7",
        "matrix: {image: {a: 1}}",
        "- - -",
        ":",
        "{{",
        "\t",
        "a: *x",
        "name: t\nprovider: {qemu: {images: [1]}}\nmatrix: {}",
    ] {
        let run = Test::new().file("spec.yaml", text).args(["validate", "spec.yaml"]).run();
        assert_eq!(run.output.status.code(), Some(2), "input {text:?}: {}", run.stderr());
        assert!(run.stderr().starts_with("error: "), "input {text:?}: {}", run.stderr());
    }
}

#[test]
fn a_large_matrix_plans_and_a_huge_one_is_refused_before_expanding() {
    let axis = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>().join(", ");
    let spec = |images: usize, types: usize| {
        format!(
            "name: t\nprovider: {{ec2: {{}}}}\nmatrix:\n  image: [{}]\n  instance_type: [{}]\n",
            axis("ami-", images),
            axis("t", types)
        )
    };
    let run = Test::new().file("spec.yaml", &spec(100, 50)).args(["plan", "spec.yaml", "--format", "json"]).run();
    let doc = run.code(0).json();
    assert_eq!(doc["total_cells"], 5000);
    // The product is refused as a number: a million cells are never built.
    Test::new()
        .file("spec.yaml", &spec(1000, 1000))
        .args(["plan", "spec.yaml"])
        .run()
        .code(2)
        .stderr_has("error: matrix: expands to 1000000 cells; at most 10000 are allowed")
        .stderr_has("spec.yaml:3:1")
        .stderr_has("1000 image x 1000 instance_type");
}

#[test]
fn a_spec_that_never_ends_is_read_only_up_to_the_limit() {
    Test::new()
        .args(["validate", "/dev/zero"])
        .run()
        .code(2)
        .stderr_has("spec is larger than 1 MiB")
        .stderr_has("--> /dev/zero:1:1048577");
}

#[test]
fn aliases_within_the_limit_still_work() {
    let spec = "name: t\nprovider: {ec2: {}}\nmatrix:\n  image: &amis [ami-1, ami-2]\n  instance_type: t3.micro\n  include:\n    - { image: ami-3, instance_type: t3.micro }\nconsole:\n  must_contain: *amis\n";
    Test::new().file("spec.yaml", spec).args(["validate", "spec.yaml"]).run().code(0).stdout_has("ok (3 cells)");
}

#[test]
fn a_flood_of_errors_is_cut_short_and_long_lines_are_excerpted() {
    // 2,000 unknown keys on one 40 KB line: 50 are shown, each with a short excerpt of the line.
    let keys: Vec<String> = (0..2000).map(|i| format!("unknown{i:04}: 1")).collect();
    let spec = format!(
        "name: t\nprovider: {{ec2: {{}}}}\nmatrix: {{image: a, instance_type: t}}\nlaunch: {{{}}}\n",
        keys.join(", ")
    );
    let run = Test::new().file("spec.yaml", &spec).args(["validate", "spec.yaml"]).run().code(2);
    let stderr = run.stderr();
    assert_eq!(stderr.matches("error: launch.unknown").count(), 50, "{}", &stderr[..2000.min(stderr.len())]);
    assert!(stderr.contains("... and 1950 more"), "{stderr}");
    assert!(stderr.contains("2000 errors in spec"), "{stderr}");
    assert!(stderr.lines().all(|l| l.len() < 200), "a line longer than 200 characters was printed");
}
broken!(
    ssh_command_and_script,
    "ssh-command-and-script",
    "probes[0].ssh.script",
    "9:29",
    "ssh probe has both `command` and `script`"
);
broken!(
    ssh_expect_http_status,
    "ssh-expect-http-status",
    "probes[0].expect.status",
    "10:15",
    "`status` applies to http probes"
);
broken!(
    windows_password_on_linux,
    "windows-password-on-linux",
    "probes[0].windows_password",
    "9:5",
    "`windows_password` needs `os: windows`"
);
broken!(
    reboot_without_probes,
    "reboot-without-probes",
    "reboot",
    "7:9",
    "`reboot` needs probes: they say when the first boot is done"
);
