//! The real binary on shipped fixtures and on bad input.
use std::process::Command;

fn dpaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dpaudit"))
}

#[test]
fn frames_counts_the_shipped_fixture() {
    let out = dpaudit()
        .args(["frames", "fixtures/exchange-scenarios.pcapng"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pcapng"), "{text}");
    assert!(text.contains("818 frames"), "{text}");
}

#[test]
fn empty_and_garbage_inputs_exit_2_with_a_message() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all").unwrap();
    for p in [&empty, &junk] {
        let out = dpaudit().arg("frames").arg(p).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&*p.display().to_string()), "{err}");
    }
}

#[test]
fn truncated_capture_reports_offset_and_partial_count() {
    let data = std::fs::read("fixtures/exchange-scenarios.pcapng").unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut.pcapng");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let out = dpaudit().arg("frames").arg(&cut).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("offset"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("frames") && !text.contains("818 frames"),
        "{text}"
    );
}

#[test]
fn catalog_lists_every_row() {
    let out = dpaudit()
        .args(["catalog", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = v["paths"].as_array().map_or(0, |a| a.len());
    assert_eq!(n, 53);
}
