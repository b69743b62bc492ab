//! Throughput of each stage on a generated handshake-heavy capture: framing alone,
//! framing + decoding, and the whole `flows` pipeline (one thread and all cores).
//! Each bench checks its own counts so a broken stage cannot look fast.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dpaudit::capture::{read_capture, FileSummary, Source};
use dpaudit::decode::{Decoder, DefragLimits, Outcome};
use dpaudit::flow::{pipeline::analyze_file, EngineConfig, Flow, FlowSink};
use std::path::PathBuf;

/// Size of the generated capture.
const BYTES: u64 = 64 << 20;

fn capture() -> (PathBuf, u64, u64) {
    let path = std::env::temp_dir().join(format!("dpaudit-bench-{BYTES}.pcap"));
    if !path.exists() {
        let cfg = dpaudit::gen::Config {
            seed: 42,
            target_bytes: BYTES,
            format: dpaudit::gen::Format::Pcap,
            mix: dpaudit::gen::Mix::Handshake,
            concurrency: 2000,
            vlan_percent: 5,
            ipv6_percent: 10,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).expect("create bench capture");
        dpaudit::gen::generate(&cfg, &mut f).expect("generate");
        std::fs::rename(&tmp, &path).expect("rename");
    }
    let size = std::fs::metadata(&path).expect("stat").len();
    let mut sum = FileSummary::default();
    read_capture(&Source::Path(path.clone()), &mut sum, |_| {}).expect("read");
    (path, size, sum.frames)
}

/// Counts what the pipeline hands out, as a report writer would see it.
#[derive(Default)]
struct Count {
    flows: u64,
    frames: u64,
    recognised: u64,
}

impl FlowSink for Count {
    fn flow(&mut self, f: Flow) {
        self.flows += 1;
        self.frames += f.total_frames();
        self.recognised += u64::from(f.posture.protocol.is_some());
    }
}

fn stages(c: &mut Criterion) {
    let (path, size, frames) = capture();
    let src = Source::Path(path);
    let mut g = c.benchmark_group("handshake-mix");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(size));

    g.bench_function("framing", |b| {
        b.iter(|| {
            let mut sum = FileSummary::default();
            let mut n = 0u64;
            read_capture(&src, &mut sum, |_| n += 1).expect("read");
            assert_eq!(n, frames);
        })
    });

    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut sum = FileSummary::default();
            let mut dec = Decoder::new(DefragLimits::default());
            let mut packets = 0u64;
            read_capture(&src, &mut sum, |f| {
                if let Outcome::Packet(_) = dec.decode(f.linktype, f.data, f.ts_ns, f.number) {
                    packets += 1;
                }
            })
            .expect("read");
            assert_eq!(packets, frames, "every generated frame decodes");
        })
    });

    for threads in [1usize, 2] {
        g.bench_function(format!("flows-{threads}-threads"), |b| {
            let cfg = EngineConfig::default();
            b.iter(|| {
                let mut count = Count::default();
                let r = analyze_file(&src, &cfg, threads, &mut count);
                assert!(r.error.is_none());
                assert_eq!(count.frames, frames, "every frame lands in a flow");
                assert_eq!(count.flows, r.flows);
                assert!(
                    count.recognised * 10 > count.flows * 9,
                    "protocols recognised"
                );
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
