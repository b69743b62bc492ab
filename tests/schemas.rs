//! The machine-readable reports checked against JSON Schemas: the SARIF of a real audit
//! against the official OASIS SARIF 2.1.0 schema (vendored in tests/data, see its
//! README), and the audit JSON against dpaudit's own `schema/audit-v1.schema.json`.
//! Each check also feeds the validator a broken copy, so a validator that accepted
//! anything would fail here.
use serde_json::Value;
use std::process::{Command, Output};

const FIXTURE: &str = "fixtures/exchange-scenarios.pcapng";
const SARIF_SCHEMA: &str = "tests/data/sarif-schema-2.1.0.json";
const AUDIT_SCHEMA: &str = "schema/audit-v1.schema.json";

fn dpaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dpaudit"))
        .args(args)
        .output()
        .expect("run dpaudit")
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The validation errors of `doc`, one line each (instance path: message).
fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errs = errors(v, doc);
    assert!(
        errs.is_empty(),
        "{what} does not match its schema ({} errors):\n{}",
        errs.len(),
        errs.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

fn sarif_validator() -> jsonschema::Validator {
    let schema = load(SARIF_SCHEMA);
    // provenance: the OASIS document (errata 01), which declares JSON Schema draft-04
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    assert_eq!(
        schema["id"],
        "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    );
    assert_eq!(
        schema["title"],
        "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    );
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the SARIF schema compiles")
}

fn audit_validator() -> jsonschema::Validator {
    let schema = load(AUDIT_SCHEMA);
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the audit schema compiles (and is valid draft-07)")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn sarif_of_a_real_audit_is_valid_sarif_2_1_0() {
    let v = sarif_validator();
    let out = dpaudit(&["audit", "--format", "sarif", FIXTURE]);
    assert!(out.status.success());
    let doc = stdout_json(&out);
    assert_valid(&v, &doc, "dpaudit's SARIF");
    // the capture has findings of every severity, so every level mapping is exercised
    let results = doc["runs"][0]["results"].as_array().unwrap();
    for sev in ["critical", "high", "medium", "low", "info"] {
        assert!(
            results.iter().any(|r| r["properties"]["severity"] == sev),
            "no {sev} result: the check would not cover its SARIF level"
        );
    }
    for level in ["error", "warning", "note"] {
        assert!(results.iter().any(|r| r["level"] == level), "{level}");
    }

    // the same validator rejects broken copies
    let mut bogus = doc.clone();
    bogus["runs"][0]["results"][0]["level"] = "bogus".into();
    let errs = errors(&v, &bogus);
    assert!(
        !errs.is_empty(),
        "a result with level \"bogus\" was accepted"
    );
    assert!(
        errs.iter().any(|e| e.contains("/runs/0/results/0/level")),
        "{errs:?}"
    );
    let mut no_tool = doc.clone();
    no_tool["runs"][0]
        .as_object_mut()
        .unwrap()
        .remove("tool")
        .unwrap();
    assert!(!v.is_valid(&no_tool), "a run without a tool was accepted");
    let mut line0 = doc;
    line0["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
        0.into();
    assert!(!v.is_valid(&line0), "startLine 0 was accepted");
}

#[test]
fn sarif_of_an_audit_without_findings_is_valid_too() {
    let v = sarif_validator();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clean = dir.join("clean.pcapng");
    let gen = dpaudit(&[
        "gen",
        "--pcapng",
        "-o",
        clean.to_str().unwrap(),
        "--scenario",
        "https-owa",
    ]);
    assert!(gen.status.success());
    let out = dpaudit(&["audit", "--format", "sarif", clean.to_str().unwrap()]);
    assert!(out.status.success());
    let doc = stdout_json(&out);
    assert_eq!(doc["runs"][0]["results"].as_array().map(Vec::len), Some(0));
    assert_valid(&v, &doc, "the SARIF of a clean capture");
}

#[test]
fn audit_json_matches_its_schema() {
    let v = audit_validator();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-schemas-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // roles stated for part of the plan, so both sources appear
    let roles = dir.join("roles.toml");
    std::fs::write(
        &roles,
        "[roles]\nhub = [\"10.1.0.10\", \"10.1.0.11\"]\nedge = [\"192.0.2.25\"]\n",
    )
    .unwrap();
    // a capture cut in the middle: a file error, a warning, flows of the part read
    let data = std::fs::read(FIXTURE).unwrap();
    let cut = dir.join("cut.pcapng");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let (roles, cut) = (roles.to_str().unwrap(), cut.to_str().unwrap());

    let runs: [(&[&str], Option<i32>); 4] = [
        (&["audit", "--format", "json", FIXTURE], Some(0)),
        (
            &["audit", "--format", "json", "--roles", roles, FIXTURE],
            Some(0),
        ),
        (
            &["audit", "--format", "json", "--show-secrets", FIXTURE],
            Some(0),
        ),
        (&["audit", "--format", "json", FIXTURE, cut], Some(2)),
    ];
    let mut first = None;
    for (args, code) in runs {
        let out = dpaudit(args);
        assert_eq!(out.status.code(), code, "{args:?}");
        let doc = stdout_json(&out);
        assert_valid(&v, &doc, &format!("the audit JSON of {args:?}"));
        first.get_or_insert(doc);
    }
    let doc = first.unwrap();
    // the report has what makes the check worth something: flows with TLS and auth,
    // findings, inferred roles
    let flows = doc["flows"].as_array().unwrap();
    assert!(flows.iter().any(|f| f["tls"].is_object()));
    assert!(flows
        .iter()
        .any(|f| !f["auth"].as_array().unwrap().is_empty()));
    assert!(!doc["findings"].as_array().unwrap().is_empty());
    assert!(!doc["roles"]["hosts"].as_array().unwrap().is_empty());

    // drift is caught: an unknown member, an unknown enum value, a missing member
    let mut extra = doc.clone();
    extra["findings"][0]["cvss"] = 9.0.into();
    assert!(!v.is_valid(&extra), "an undocumented finding member passed");
    let mut enc = doc.clone();
    enc["flows"][0]["encryption"] = "rot13".into();
    assert!(!v.is_valid(&enc), "an undocumented encryption passed");
    let mut sev = doc.clone();
    sev["findings"][0]["severity"] = "urgent".into();
    assert!(!v.is_valid(&sev), "an undocumented severity passed");
    let mut mech = doc.clone();
    let with_auth = flows
        .iter()
        .position(|f| !f["auth"].as_array().unwrap().is_empty())
        .unwrap();
    mech["flows"][with_auth]["auth"][0]["mechanism"] = "telepathy".into();
    assert!(!v.is_valid(&mech), "an undocumented mechanism passed");
    let mut missing = doc;
    missing["findings"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint")
        .unwrap();
    assert!(
        !v.is_valid(&missing),
        "a finding without fingerprint passed"
    );
}
