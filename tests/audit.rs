//! `dpaudit audit` end to end: findings, JSON shape, exit codes, determinism.
use serde_json::Value;
use std::process::{Command, Output};

const FIXTURE: &str = "fixtures/exchange-scenarios.pcapng";

fn dpaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dpaudit"))
        .args(args)
        .output()
        .expect("run dpaudit")
}

fn audit_json(extra: &[&str]) -> Value {
    let mut args = vec!["audit", "--format", "json"];
    args.extend_from_slice(extra);
    args.push(FIXTURE);
    let out = dpaudit(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn json_report_has_paths_findings_and_no_secret() {
    let doc = audit_json(&[]);
    assert_eq!(doc["version"], 1);
    // the top-level members the README documents
    for key in [
        "version",
        "files",
        "flows",
        "findings",
        "suppressed_by_baseline",
        "roles",
    ] {
        assert!(doc.get(key).is_some(), "report lacks {key}");
    }
    assert!(doc["roles"]["hosts"].is_array() && doc["roles"]["contradictions"].is_array());
    let flows = doc["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 50);
    for f in flows {
        for key in [
            "stream",
            "transport",
            "client",
            "server",
            "protocol",
            "encryption",
            "auth",
            "first_frame",
        ] {
            assert!(f.get(key).is_some(), "flow lacks {key}: {f}");
        }
        assert!(f["data_paths"].is_array());
        assert!(f["classification"]["paths"].is_array());
    }
    let findings = doc["findings"].as_array().unwrap();
    let count = |rule: &str| findings.iter().filter(|f| f["rule"] == rule).count();
    assert_eq!(count("cleartext-credential"), 11);
    // the README's fixture shows every severity; its one low is the OWA session the
    // capture picked up after the TLS handshake (scenario https-owa-midstream)
    for sev in ["critical", "high", "medium", "low", "info"] {
        assert!(
            findings.iter().any(|f| f["severity"] == sev),
            "no {sev} finding in the fixture"
        );
    }
    let low: Vec<&Value> = findings.iter().filter(|f| f["severity"] == "low").collect();
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0]["rule"], "unknown-visibility");
    assert_eq!(low[0]["filter"], "tcp.stream eq 41");
    assert!(low[0]["observed"]
        .as_str()
        .unwrap()
        .contains("TLS handshake not captured"));
    assert!(count("unencrypted-path") > 0 && count("weak-tls") == 1);
    for f in findings {
        for key in [
            "rule",
            "severity",
            "data_path",
            "stream",
            "frames",
            "message",
            "fingerprint",
            "filter",
            "file",
            "transport",
            "client",
            "server",
            "ts_ns",
            "user",
            "expected",
            "observed",
        ] {
            assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
        }
    }
    // the EWS Basic login: critical, on a Client Access path, user kept, password not
    let ews = findings
        .iter()
        .find(|f| f["rule"] == "cleartext-credential" && f["filter"] == "tcp.stream eq 9")
        .expect("EWS basic finding");
    assert_eq!(ews["severity"], "critical");
    assert_eq!(ews["user"], "contoso\\jdoe");
    let text = serde_json::to_string(&doc).unwrap();
    assert!(
        !text.contains("Summer2026!"),
        "a secret leaked into the report"
    );
}

#[test]
fn fail_on_sets_the_exit_code() {
    let crit = dpaudit(&["audit", "--fail-on", "critical", FIXTURE]);
    assert_eq!(crit.status.code(), Some(1));
    let none = dpaudit(&["audit", FIXTURE]);
    assert_eq!(none.status.code(), Some(0));
    let text = String::from_utf8_lossy(&none.stdout);
    assert!(text.starts_with("DATA PATHS"), "{text}");
    assert!(text.contains("FINDINGS") && text.contains("ROLES") && text.contains("COVERAGE"));
    let bad = dpaudit(&["audit", "--fail-on", "urgent", FIXTURE]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn nothing_to_audit_is_not_a_pass() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // a valid pcap header and no packet
    let empty = dir.join("no-packets.pcap");
    let h = [
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ];
    std::fs::write(&empty, h).unwrap();
    let out = dpaudit(&["audit", "--fail-on", "info", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was audited"));
}

#[test]
fn stated_roles_win_and_threads_do_not_change_the_report() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-roles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let roles = dir.join("roles.toml");
    std::fs::write(
        &roles,
        "[roles]\nhub = [\"10.1.0.10\", \"10.1.0.11\"]\nedge = [\"192.0.2.25\"]\ncas = [\"10.1.0.20\"]\n\
         mailbox = [\"10.1.0.30\", \"10.1.0.31\"]\num = [\"10.1.0.40\"]\ndc = [\"10.1.0.5\"]\n\
         ip_gateway = [\"10.9.0.2\"]\nclient = [\"10.2.0.0/16\", \"2001:db8:2::/48\"]\n",
    )
    .unwrap();
    let r = roles.to_str().unwrap();
    let one = dpaudit(&[
        "audit", "--format", "json", "-j", "1", "--roles", r, FIXTURE,
    ]);
    let two = dpaudit(&[
        "audit", "--format", "json", "-j", "2", "--roles", r, FIXTURE,
    ]);
    assert!(one.status.success());
    assert!(one.stdout == two.stdout, "-j1 and -j2 reports differ");
    let doc: Value = serde_json::from_slice(&one.stdout).unwrap();
    let hosts = doc["roles"]["hosts"].as_array().unwrap();
    let edge = hosts
        .iter()
        .find(|h| h["host"] == "192.0.2.25")
        .expect("edge host");
    assert!(edge["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["role"] == "edge" && r["source"] == "stated"));
    let jsonl = dpaudit(&["audit", "--format", "jsonl", "--roles", r, FIXTURE]);
    let lines = String::from_utf8_lossy(&jsonl.stdout).lines().count();
    assert_eq!(lines, doc["findings"].as_array().unwrap().len());
}

#[test]
fn baseline_suppresses_known_findings_even_after_recapture() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-baseline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("baseline.json");
    let first = dpaudit(&["audit", "--format", "json", FIXTURE]);
    std::fs::write(&base, &first.stdout).unwrap();
    let n = serde_json::from_slice::<Value>(&first.stdout).unwrap()["findings"]
        .as_array()
        .unwrap()
        .len();
    assert!(n > 0);
    // the same traffic captured again: other seed, so other ports, sequence numbers
    // and frame timings; the findings must still be recognised
    let again = dir.join("recaptured.pcapng");
    let gen = dpaudit(&[
        "gen",
        "-o",
        again.to_str().unwrap(),
        "--seed",
        "99",
        "--pcapng",
    ]);
    assert!(gen.status.success());
    let b = base.to_str().unwrap();
    let out = dpaudit(&[
        "audit",
        "--format",
        "json",
        "--baseline",
        b,
        "--fail-on",
        "info",
        again.to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["findings"].as_array().unwrap().len(),
        0,
        "{}",
        doc["findings"]
    );
    assert_eq!(doc["suppressed_by_baseline"], n);
    assert_eq!(out.status.code(), Some(0), "nothing new: --fail-on passes");
    // a baseline that is not a report is an error
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let bad = dpaudit(&["audit", "--baseline", junk.to_str().unwrap(), FIXTURE]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("junk.json"));
}

/// SARIF 2.1.0 as GitHub code scanning reads it: the required members, a rule for every
/// result's ruleId, a location with a region, security-severity on rules and results.
#[test]
fn sarif_has_what_code_scanning_requires() {
    let out = dpaudit(&["audit", "--format", "sarif", FIXTURE]);
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], "2.1.0");
    assert!(doc["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &doc["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "dpaudit");
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in [
        "cleartext-credential",
        "unencrypted-path",
        "unsupported-auth",
        "weak-auth",
        "weak-tls",
        "starttls-not-used",
        "encryption-available-unused",
        "non-default-auth",
        "undocumented-port",
        "unknown-visibility",
    ] {
        assert!(ids.contains(&id), "rule {id} missing");
    }
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string());
        let sev: f64 = r["properties"]["security-severity"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..=10.0).contains(&sev));
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 47);
    for res in results {
        let rule = res["ruleId"].as_str().unwrap();
        let idx = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[idx], rule);
        assert!(["error", "warning", "note"].contains(&res["level"].as_str().unwrap()));
        assert!(!res["message"]["text"].as_str().unwrap().is_empty());
        let loc = &res["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], FIXTURE);
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
        assert!(res["partialFingerprints"]["dpaudit/v1"].is_string());
        assert!(res["properties"]["filter"]
            .as_str()
            .unwrap()
            .contains("stream eq"));
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Summer2026!"));
}

#[test]
fn annotate_writes_a_commented_copy_and_never_over_an_input() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-annotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join("annotated.pcapng");
    let out = dpaudit(&["audit", "--annotate", out_path.to_str().unwrap(), FIXTURE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the project's own reader sees the same frames, same bytes
    let frames = |p: &std::path::Path| {
        let mut v = Vec::new();
        let mut sum = dpaudit::capture::FileSummary::default();
        dpaudit::capture::read_capture(&dpaudit::capture::Source::Path(p.into()), &mut sum, |f| {
            v.push((f.number, f.ts_ns, f.linktype, f.data.to_vec()))
        })
        .unwrap();
        v
    };
    assert_eq!(frames(&out_path), frames(std::path::Path::new(FIXTURE)));
    // the comments are there: every evidence frame of the JSON report
    let raw = std::fs::read(&out_path).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("dpaudit: critical cleartext-credential on C2"),
        "no comment found"
    );
    // Wireshark agrees, when it is installed
    if let Ok(ts) = Command::new("tshark")
        .args([
            "-r",
            out_path.to_str().unwrap(),
            "-Y",
            "frame.comment contains \"dpaudit\"",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
    {
        if ts.status.success() {
            let n = String::from_utf8_lossy(&ts.stdout).lines().count();
            assert!(n >= 10, "tshark sees {n} commented frames");
        }
    }
    // never over an input, and nothing half-written left behind
    let copy = dir.join("input.pcapng");
    std::fs::copy(FIXTURE, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let refused = dpaudit(&[
        "audit",
        "--annotate",
        copy.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
}

/// A generated handshake-mix capture of about 24 MB (17 k flows): its flow records and
/// findings pass the smallest spill budget several times over. Written once per test
/// process under the target directory.
fn many_flows() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("dpaudit-many-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cap = dir.join("many.pcap").to_str().unwrap().to_string();
        let gen = dpaudit(&["gen", "-o", &cap, "--size", "24M", "--mix", "handshake"]);
        assert!(gen.status.success(), "{gen:?}");
        cap
    })
    .clone()
}

#[test]
fn spilling_to_disk_changes_no_report() {
    let cap = many_flows();
    for format in ["json", "jsonl", "sarif", "table"] {
        let run = |extra: &[&str]| {
            let mut args = vec!["audit", "--stats", "--format", format];
            args.extend_from_slice(extra);
            args.extend_from_slice(&[cap.as_str(), FIXTURE]);
            let out = dpaudit(&args);
            assert!(out.status.success(), "{format} {extra:?}: {:?}", out.status);
            (
                out.stdout,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (memory, _) = run(&["-j", "2", "--spill-budget", "100000000"]);
        // The smallest budget: several sorted runs of each kind in the temporary file.
        let (disk, stats) = run(&["-j", "1", "--spill-budget", "1048576"]);
        assert!(!stats.contains(" in 0 runs"), "{stats}");
        for stage in ["capture pass ", "role inference ", "judging "] {
            assert!(stats.contains(stage), "{stage} in {stats}");
        }
        assert!(memory == disk, "{format}: the report changed when spilled");
    }
    // Findings come out most severe first, then by capture and stream.
    let out = dpaudit(&[
        "audit",
        "--format",
        "json",
        "--spill-budget",
        "1048576",
        &cap,
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rank = |s: &str| {
        ["critical", "high", "medium", "low", "info"]
            .iter()
            .position(|x| *x == s)
    };
    let keys: Vec<_> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (rank(f["severity"].as_str().unwrap()), f["stream"].as_u64()))
        .collect();
    assert!(
        keys.len() > 10_000 && keys.windows(2).all(|w| w[0] <= w[1]),
        "{} findings out of order",
        keys.len()
    );
    // A budget below the floor is refused: the merge would hold a buffer per record.
    let out = dpaudit(&["audit", "--spill-budget", "2000", FIXTURE]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--spill-budget"));
}

#[test]
fn no_temporary_directory_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_dpaudit"))
        .args(["audit", "--spill-budget", "1048576", &many_flows()])
        .env("TMPDIR", "/nonexistent/dpaudit-test")
        .output()
        .expect("run dpaudit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot create a temporary file in /nonexistent/dpaudit-test"),
        "{err}"
    );
}

#[test]
fn a_report_that_cannot_be_written_stops_the_run_with_an_error() {
    // Enough flows for several judging windows, so the judging thread is still
    // producing when the first write fails.
    let cap = many_flows();
    let cap = cap.as_str();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dpaudit"))
        .args(["audit", "--format", "json", "-j", "2", cap])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed().as_secs() > 120 {
            child.kill().unwrap();
            panic!("the run did not stop after its output failed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
}
