//! Replays every input the fuzz targets (`fuzz/`) once crashed or hung on: the files
//! under `tests/data/fuzz/<target>/`, each named after what it found. Each must now run
//! through the same entry point as its target without panicking, and quickly.

use dpaudit::fuzz_api;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs one input the way the fuzz target named `target` does.
fn replay(target: &str, data: &[u8]) {
    match target {
        "capture" => {
            let _ = fuzz_api::capture(data);
        }
        "decode" => fuzz_api::decode(data),
        "reassembly" => fuzz_api::reassembly(data),
        "ntlmssp" => {
            let _ = fuzz_api::ntlmssp(data);
        }
        "spnego" => {
            let _ = fuzz_api::token(data);
        }
        "pipeline" => {
            let _ = fuzz_api::pipeline(data);
        }
        analyzer => {
            assert!(
                dpaudit::proto::REGISTRY.iter().any(|r| r.name == analyzer),
                "tests/data/fuzz/{analyzer}: no fuzz target of that name"
            );
            let _ = fuzz_api::analyzer(analyzer, data);
        }
    }
}

#[test]
fn fuzz_findings_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    // No directory yet: no target has found anything to replay.
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    let mut targets: Vec<_> = entries
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    targets.sort();
    for dir in targets {
        let target = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("target dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("regression input");
            let started = Instant::now();
            replay(target, &data);
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(5),
                "{} took {took:?}",
                file.display()
            );
        }
    }
}
