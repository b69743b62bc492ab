//! Frame counts against the tshark truth files of ../shared/corpus (skipped when absent).
use std::path::Path;

#[test]
fn frame_counts_agree_with_tshark() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !root.join("truth").is_dir() {
        eprintln!("corpus not present: skipped");
        return;
    }
    let mut stack = vec![root.join("truth")];
    let (mut total, mut agree) = (0, 0);
    let mut disagreements = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let truth: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            let file = root.join(truth["file"].as_str().unwrap());
            let want = truth["frames"].as_u64().unwrap();
            let mut sum = dpaudit::capture::FileSummary::default();
            let src = dpaudit::capture::Source::Path(file.clone());
            let _ = dpaudit::capture::read_capture(&src, &mut sum, |_| {});
            total += 1;
            if sum.frames == want {
                agree += 1;
            } else {
                disagreements.push(format!(
                    "{}: dpaudit {} tshark {want}",
                    file.display(),
                    sum.frames
                ));
            }
        }
    }
    println!("corpus frame counts: {agree}/{total} agree");
    for d in &disagreements {
        println!("  {d}");
    }
    assert_eq!(agree, total, "{disagreements:#?}");
}
