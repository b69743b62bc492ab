//! Hostile and damaged input through the real binary: every cap reached by a capture
//! built for it, with peak memory under a stated bound and the coverage section naming
//! the cap and how often; every kind of damaged capture with its expected outcome (an
//! error naming file and offset, or a warning and a partial result). Captures come from
//! `dpaudit gen --hostile KIND`; the small damaged ones are also committed in
//! `fixtures/damaged/` (see its README) and must match what the generator writes.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dpaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dpaudit"))
        .args(args)
        .output()
        .expect("run dpaudit")
}

/// Generated captures, kept between runs under the target directory in a folder named
/// after the binary's build (the generator is deterministic, so a capture written by
/// this build is the one it would write again; a new build starts a new folder and
/// removes the others).
fn scratch() -> PathBuf {
    let bin = std::fs::metadata(env!("CARGO_BIN_EXE_dpaudit")).expect("the binary");
    let built = bin
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let name = format!("hostile-{built}-{}", bin.len());
    let d = root.join(&name);
    if !d.exists() {
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let other = e.file_name().to_string_lossy().into_owned();
            if other.starts_with("hostile-") && other != name {
                std::fs::remove_dir_all(e.path()).ok();
            }
        }
    }
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Writes the hostile capture `kind` (with `count`, or its default) and returns its path.
fn hostile(kind: &str, count: Option<u64>) -> PathBuf {
    let path = scratch().join(format!("{kind}-{}.pcap", count.unwrap_or(0)));
    if !path.exists() {
        // Written under a name of its own, then renamed: tests running at once may
        // want the same capture.
        let part = path.with_extension(format!(
            "{}-{:?}.part",
            std::process::id(),
            std::thread::current().id()
        ));
        let p = part.to_str().unwrap();
        let mut args = vec!["gen", "-o", p, "--hostile", kind];
        let n = count.map(|c| c.to_string());
        if let Some(n) = &n {
            args.extend(["--count", n]);
        }
        let out = dpaudit(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&part, &path).expect("rename the generated capture");
    }
    path
}

/// A `flows --format summary --stats` run: (exit code, summary document, stderr, peak
/// RSS in MiB).
fn summary(capture: &Path, extra: &[&str]) -> (i32, Value, String, u64) {
    let mut args = vec!["flows", "--format", "summary", "--stats", "-q"];
    args.extend_from_slice(extra);
    args.push(capture.to_str().unwrap());
    let out = dpaudit(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("summary JSON: {e}\n{stderr}"));
    (
        out.status.code().unwrap_or(-1),
        doc,
        stderr.clone(),
        peak_mib(&stderr),
    )
}

fn peak_mib(stderr: &str) -> u64 {
    let at = stderr.find("peak RSS ").expect("--stats line") + "peak RSS ".len();
    stderr[at..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("peak RSS in {stderr}"))
}

fn cap_hits(doc: &Value, cap: &str) -> u64 {
    doc["coverage"]["caps_hit"][cap].as_u64().unwrap_or(0)
}

#[test]
fn a_million_syn_flood_reaches_the_live_flow_cap_with_bounded_memory() {
    let cap = hostile("syn-flood", Some(1_000_000));
    // Default caps: 262 144 live flows and as many remembered identities.
    let (code, doc, err, peak) = summary(&cap, &["-j", "2"]);
    assert_eq!(code, 0, "{err}");
    let c = &doc["coverage"];
    assert_eq!(c["frames"], 1_000_000);
    assert_eq!(c["flows"], 1_000_000);
    assert_eq!(cap_hits(&doc, "live-flows"), 1_000_000 - 262_144);
    // A SYN alone shows nothing about a flow's security: every verdict is unknown.
    assert_eq!(c["unknown_verdict_count"], 1_000_000);
    assert_eq!(c["unknown_verdict"].as_array().unwrap().len(), 1000);
    assert!(peak < 700, "peak RSS {peak} MiB with the default caps");
    // Memory follows the caps, not the file: 16 Ki live flows stay far lower.
    let (code, doc, err, small) = summary(
        &cap,
        &[
            "-j",
            "2",
            "--max-flows",
            "16384",
            "--max-remembered",
            "16384",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(cap_hits(&doc, "live-flows"), 1_000_000 - 16_384);
    assert!(cap_hits(&doc, "remembered-flows") > 0);
    assert!(small < 120, "peak RSS {small} MiB with 16 Ki flows");
}

#[test]
fn endless_out_of_order_segments_become_a_gap_at_the_cap() {
    let cap = hostile("ooo-flood", Some(100_000));
    let (code, doc, err, peak) = summary(&cap, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cap_hits(&doc, "ooo-segments"), 1);
    let g = &doc["coverage"]["reassembly_gaps"];
    assert_eq!(g["flows"], 1);
    assert_eq!(g["bytes"], 100, "the 100 bytes that never came");
    assert!(peak < 64, "peak RSS {peak} MiB");
    // A smaller cap is reached the same way; a huge one holds everything until the end.
    let (_, doc, _, _) = summary(&cap, &["--max-ooo-segments", "8"]);
    assert_eq!(cap_hits(&doc, "ooo-segments"), 1);
    let (_, doc, _, _) = summary(
        &cap,
        &[
            "--max-ooo-segments",
            "1000000",
            "--max-ooo-bytes",
            "100000000",
        ],
    );
    assert_eq!(cap_hits(&doc, "ooo-segments"), 0);
}

#[test]
fn a_fragment_storm_is_dropped_at_the_reassembly_cap() {
    let cap = hostile("fragment-storm", Some(200_000));
    let (code, doc, err, peak) = summary(&cap, &[]);
    assert_eq!(code, 0, "{err}");
    // 4096 datagrams may wait at once: every older one is dropped when a new one comes.
    assert_eq!(cap_hits(&doc, "fragments"), 200_000 - 4096);
    assert_eq!(doc["coverage"]["fragments"], 200_000);
    assert_eq!(doc["coverage"]["flows"], 0);
    assert!(peak < 64, "peak RSS {peak} MiB");
    let (_, doc, _, _) = summary(&cap, &["--max-fragment-datagrams", "100"]);
    assert_eq!(cap_hits(&doc, "fragments"), 200_000 - 100);
}

#[test]
fn analyzer_caps_stop_their_parser_and_can_be_raised() {
    for (kind, cap, flag, raised) in [
        (
            "tls-record-flood",
            "tls-handshake-records",
            "--max-tls-records",
            "100000",
        ),
        (
            "http-header-flood",
            "http-header",
            "--max-http-header",
            "4000000",
        ),
        (
            "smtp-pipeline-flood",
            "transactions",
            "--max-transactions",
            "100000",
        ),
    ] {
        let path = hostile(kind, None);
        let (code, doc, err, peak) = summary(&path, &[]);
        assert_eq!(code, 0, "{kind}: {err}");
        assert_eq!(cap_hits(&doc, cap), 1, "{kind}: {}", doc["coverage"]);
        assert!(peak < 64, "{kind}: peak RSS {peak} MiB");
        let (_, doc, _, _) = summary(&path, &[flag, raised]);
        assert_eq!(cap_hits(&doc, cap), 0, "{kind} with {flag} {raised}");
    }
    // The TLS flood never finished a handshake: its verdict is unknown, not clean.
    let (_, doc, _, _) = summary(&hostile("tls-record-flood", None), &[]);
    assert_eq!(doc["coverage"]["unknown_verdict_count"], 1);
    assert_eq!(doc["coverage"]["flows_tls_handshake_not_seen"], 1);
}

#[test]
fn audit_holds_at_most_its_flow_cap_and_counts_the_rest() {
    let cap = hostile("syn-flood", Some(5000));
    let out = dpaudit(&[
        "audit",
        "--format",
        "json",
        "--max-audit-flows",
        "1000",
        cap.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["flows"].as_array().unwrap().len(), 1000);
    let c = &doc["coverage"];
    assert_eq!(c["flows"], 5000);
    assert_eq!(c["caps_hit"]["audit-flows"], 4000);
    assert_eq!(c["unknown_verdict_count"], 5000);
}

/// What one damaged fixture must give: exit code, the text stderr must hold, frames read,
/// and coverage members with their values.
struct Case {
    file: &'static str,
    kind: &'static str,
    exit: i32,
    stderr: &'static str,
    frames: u64,
    coverage: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        file: "truncated-record.pcap",
        kind: "truncated-record",
        exit: 2,
        stderr: "damaged record at byte offset 164: file ends in the middle of a record (results cover the 2 frames before it)",
        frames: 2,
        coverage: &[("files_damaged", "1"), ("flows", "1")],
    },
    Case {
        file: "bad-magic.pcap",
        kind: "bad-magic",
        exit: 2,
        stderr: "not a pcap or pcapng capture (first bytes 47 45 54 20) at offset 0",
        frames: 0,
        coverage: &[("files_unreadable", "1"), ("flows", "0")],
    },
    Case {
        file: "byte-swapped-lie.pcap",
        kind: "byte-swapped-lie",
        exit: 2,
        stderr: "damaged record at byte offset 24: record claims 905969664 captured bytes (limit 262144)",
        frames: 0,
        coverage: &[("files_damaged", "1"), ("caps_hit", r#"{"capture-record":1}"#)],
    },
    Case {
        file: "block-length-mismatch.pcapng",
        kind: "block-length-mismatch",
        exit: 2,
        stderr: "damaged record at byte offset 148: unparseable block",
        frames: 1,
        coverage: &[("files_damaged", "1")],
    },
    Case {
        file: "huge-caplen.pcap",
        kind: "huge-caplen",
        exit: 2,
        stderr: "damaged record at byte offset 94: record claims 4294967280 captured bytes (limit 262144)",
        frames: 1,
        coverage: &[("caps_hit", r#"{"capture-record":1}"#)],
    },
    Case {
        file: "huge-caplen-pcapng.pcapng",
        kind: "huge-caplen-pcapng",
        exit: 2,
        stderr: "damaged record at byte offset 148: record claims 4294967280 captured bytes (limit 262144)",
        frames: 1,
        coverage: &[("caps_hit", r#"{"capture-record":1}"#)],
    },
    Case {
        file: "short-block.pcapng",
        kind: "short-block",
        exit: 2,
        stderr: "damaged record at byte offset 148: block length 8 is shorter than a block's 12-byte frame",
        frames: 1,
        coverage: &[("files_damaged", "1")],
    },
    Case {
        file: "bad-interface.pcapng",
        kind: "bad-interface",
        exit: 0,
        stderr: "",
        frames: 11,
        coverage: &[
            ("frames_skipped", r#"{"unknown interface":1}"#),
            ("packets_decoded", "10"),
            ("reassembly_gaps", r#"{"bytes":28,"flows":1,"gaps":1}"#),
        ],
    },
    Case {
        file: "time-backwards.pcap",
        kind: "time-backwards",
        exit: 0,
        stderr: "",
        frames: 11,
        coverage: &[("timestamps_backwards", "1"), ("unknown_verdict_count", "0")],
    },
    Case {
        file: "bad-checksums.pcap",
        kind: "bad-checksums",
        exit: 0,
        stderr: "",
        frames: 11,
        coverage: &[
            ("bad_checksums", r#"{"ip4":1,"tcp":2,"udp":0}"#),
            ("packets_decoded", "11"),
        ],
    },
    Case {
        file: "snaplen-cut.pcap",
        kind: "snaplen-cut",
        exit: 0,
        stderr: "",
        frames: 11,
        coverage: &[("truncated_packets", "3"), ("unknown_verdict_count", "1")],
    },
];

#[test]
fn hostile_kinds_are_listed_and_a_capture_needs_an_output() {
    let out = dpaudit(&["gen", "--hostile", "list"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    for c in CASES {
        assert!(
            listed.lines().any(|l| l.starts_with(c.kind)),
            "{} listed",
            c.kind
        );
    }
    let out = dpaudit(&["gen", "--hostile", "syn-flood"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--output"));
}

#[test]
fn damaged_fixtures_are_what_the_generator_writes() {
    for c in CASES {
        let committed = std::fs::read(Path::new("fixtures/damaged").join(c.file)).unwrap();
        let fresh = std::fs::read(hostile(c.kind, None)).unwrap();
        assert!(
            committed == fresh,
            "{}: regenerate with `dpaudit gen --hostile {}`",
            c.file,
            c.kind
        );
    }
}

#[test]
fn each_damaged_capture_gives_its_documented_outcome() {
    for c in CASES {
        let path = format!("fixtures/damaged/{}", c.file);
        let out = dpaudit(&["audit", "--format", "json", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(c.exit), "{}: {stderr}", c.file);
        assert!(stderr.contains(c.stderr), "{}: {stderr}", c.file);
        if c.exit != 0 {
            assert!(
                stderr.contains(&path),
                "{}: the message names the file",
                c.file
            );
        }
        let doc: Value = serde_json::from_slice(&out.stdout).expect("a report even so");
        let cov = &doc["coverage"];
        assert_eq!(cov["frames"], c.frames, "{}", c.file);
        for (key, want) in c.coverage {
            let want: Value = serde_json::from_str(want).unwrap();
            assert_eq!(cov[*key], want, "{}: coverage.{key} in {cov}", c.file);
        }
    }
}

#[test]
fn a_capture_with_nothing_to_analyse_never_passes_fail_on() {
    for f in ["bad-magic.pcap", "byte-swapped-lie.pcap"] {
        let out = dpaudit(&[
            "audit",
            "--fail-on",
            "info",
            &format!("fixtures/damaged/{f}"),
        ]);
        assert_eq!(out.status.code(), Some(2), "{f}");
    }
}

#[test]
fn bad_checksums_do_not_stop_the_analysis() {
    // Offloaded checksums (zero) on the client's segments: Wireshark decodes them anyway,
    // and so must dpaudit: the SMTP session is read and its STARTTLS finding made.
    let out = dpaudit(&[
        "audit",
        "--format",
        "json",
        "fixtures/damaged/bad-checksums.pcap",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let flow = &doc["flows"][0];
    assert_eq!(flow["protocol"], "smtp");
    let rules: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert!(rules.contains(&"starttls-not-used"), "{rules:?}");
}

#[test]
fn reports_are_written_whole_or_not_at_all_and_never_over_an_input() {
    let d = scratch().join("reports");
    std::fs::create_dir_all(&d).unwrap();
    let report = d.join("report.json");
    std::fs::write(&report, "previous report").unwrap();
    // A refused destination (an input) leaves everything as it was.
    let input = d.join("input.pcap");
    std::fs::copy("fixtures/damaged/bad-checksums.pcap", &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    for cmd in ["audit", "flows"] {
        let out = dpaudit(&[cmd, "-o", input.to_str().unwrap(), input.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"));
        assert_eq!(
            std::fs::read(&input).unwrap(),
            before,
            "{cmd} left the input alone"
        );
    }
    // A good run replaces the old report in one step and leaves no temporary file.
    let out = dpaudit(&[
        "audit",
        "--format",
        "json",
        "-o",
        report.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "the report went to the file");
    let doc: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(doc["version"], 1);
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A destination in a directory that does not exist fails before the run, and says so.
    let out = dpaudit(&[
        "flows",
        "-o",
        "/nonexistent-dir/r.json",
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_audit_of_a_million_flows_spills_them_and_stays_bounded() {
    let cap = hostile("syn-flood", Some(1_000_000));
    let out = dpaudit(&[
        "audit",
        "--format",
        "sarif",
        "--stats",
        "-j",
        "2",
        cap.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    // Every flow judged (none past a cap), the records gone through the temporary file.
    assert!(err.contains("1000000 flows judged"), "{err}");
    let spilled = err
        .split("spilled ")
        .nth(1)
        .and_then(|s| s.split(" MiB").next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("spill figures in {err}"));
    assert!(spilled > 30.0, "{spilled} MiB of flow records spilled");
    // Holding the million records and their findings took gigabytes; the flow
    // table's caps now set the peak, as for `flows` above.
    let peak = peak_mib(&err);
    assert!(peak < 700, "peak RSS {peak} MiB");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = doc["runs"][0]["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        1_000_000,
        "one unknown-visibility result per flow"
    );
}
