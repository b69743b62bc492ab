//! Throughput of each stage on a generated handshake-heavy capture: framing alone,
//! framing + decoding, TCP reassembly, the whole `flows` pipeline (one thread and all
//! cores) and the whole `audit`; then each analyzer on its own traffic (the generator's
//! scenarios of one protocol, repeated). Each bench checks its own counts so a broken
//! stage cannot look fast.
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
    fn flow(&mut self, f: &mut Flow) {
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
    g.bench_function("audit-1-thread", |b| {
        let cfg = EngineConfig::default();
        let catalog = dpaudit::catalog::Catalog::builtin().expect("catalog");
        b.iter(|| {
            let a = dpaudit::report::audit::run(
                std::slice::from_ref(&src),
                &cfg,
                &catalog,
                None,
                dpaudit::report::audit::DEFAULT_MAX_AUDIT_FLOWS,
            )
            .expect("temporary file");
            assert_eq!(a.coverage.frames, frames);
            assert_eq!(a.flows, a.coverage.flows);
            assert!(a.finding_count > 0);
        })
    });
    g.finish();
}

/// One 64 MiB TCP stream in 1448-byte segments, every eighth pair swapped (out of order),
/// through one direction's reassembler.
fn reassembly(c: &mut Criterion) {
    use dpaudit::flow::reassembly::{Piece, Reassembler};
    use dpaudit::flow::ReassemblyLimits;
    const MSS: usize = 1448;
    let data: Vec<u8> = (0..BYTES as usize).map(|i| (i * 7 % 251) as u8).collect();
    let mut order: Vec<usize> = (0..data.len().div_ceil(MSS)).collect();
    for pair in order.chunks_mut(16) {
        if pair.len() >= 2 {
            pair.swap(0, 1);
        }
    }
    let limits = ReassemblyLimits::default();
    let mut g = c.benchmark_group("reassembly");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("in-order-and-swapped", |b| {
        b.iter(|| {
            let mut r = Reassembler::new();
            r.syn(999);
            let mut delivered = 0usize;
            for &i in &order {
                let seg = &data[i * MSS..((i + 1) * MSS).min(data.len())];
                let seq = 1000u32.wrapping_add((i * MSS) as u32);
                r.segment(seq, seg, &limits, &mut |p| {
                    if let Piece::Data(d) = p {
                        delivered += d.len();
                    }
                });
            }
            assert_eq!(delivered, data.len(), "every byte delivered once, in order");
        })
    });
    g.finish();
}

/// Each analyzer on a capture of its own scenarios, repeated: bytes/s and flows/s.
fn analyzers(c: &mut Criterion) {
    const REPEAT: usize = 200;
    let groups: &[(&str, &[&str])] = &[
        (
            "smtp",
            &[
                "smtp-hub-hub-cleartext",
                "smtp-client-auth-login-clear",
                "smtp-starttls-refused",
            ],
        ),
        ("tls", &["https-owa", "https-owa-tls10", "ipv6-https"]),
        (
            "http",
            &[
                "http-owa-forms-clear",
                "http-ews-basic-clear",
                "http-autodiscover-ntlmv2",
                "http-ews-negotiate-kerberos",
            ],
        ),
        ("imap", &["imap-login-clear", "imap-starttls"]),
        ("pop3", &["pop3-user-pass-clear", "pop3-stls"]),
        (
            "dcerpc",
            &[
                "mapi-rpc-privacy",
                "mapi-rpc-connect",
                "drsuapi-kerberos-privacy",
            ],
        ),
        ("smb", &["smb2-ntlm", "smb2-kerberos", "smb3-encrypted"]),
        (
            "ldap",
            &[
                "ldap-simple-bind-clear",
                "ldap-sasl-sealed",
                "ldap-starttls",
                "cldap",
            ],
        ),
        ("kerberos", &["kerberos-as-tgs", "kerberos-rc4-des"]),
        ("dns", &["dns"]),
        ("sip", &["sip-clear", "sip-tls"]),
    ];
    let mut g = c.benchmark_group("analyzer");
    g.sample_size(10);
    for (name, scenarios) in groups {
        let names: Vec<&str> = scenarios
            .iter()
            .copied()
            .cycle()
            .take(scenarios.len() * REPEAT)
            .collect();
        let mut bytes = Vec::new();
        dpaudit::gen::write_scenarios(&names, 7, dpaudit::gen::Format::Pcap, &mut bytes)
            .expect("scenarios");
        let src = Source::Bytes(bytes.clone().into());
        let mut first = Count::default();
        analyze_file(&src, &EngineConfig::default(), 1, &mut first);
        assert!(
            first.flows as usize >= names.len(),
            "{name}: a flow per scenario"
        );
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(*name, |b| {
            let cfg = EngineConfig::default();
            b.iter(|| {
                let mut count = Count::default();
                analyze_file(&src, &cfg, 1, &mut count);
                assert_eq!(count.flows, first.flows);
                assert_eq!(count.recognised, first.recognised, "{name}: same verdicts");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stages, reassembly, analyzers);
criterion_main!(benches);
