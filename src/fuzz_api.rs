//! Entry points for the fuzz targets under `fuzz/` and for the regression tests that
//! replay what they found (`tests/fuzz_regressions.rs`): each function takes the raw
//! fuzzer input, turns it into calls of the library's real entry points, and must never
//! panic. Not a stable API.
//!
//! Stream scripts (the protocol targets) are a sequence of chunks, each a two-byte
//! little-endian header then its bytes: bit 15 of the header is the direction (set: to
//! the client), bits 0 to 14 the length (cut short by the end of the input). A chunk of
//! length 0 is a gap of 100 bytes in that direction.

use crate::capture::{read_capture, FileSummary, Source};
use crate::catalog::Catalog;
use crate::decode::{linktype, Decoder, DefragLimits};
use crate::flow::reassembly::{Piece, Reassembler, ReassemblyLimits};
use crate::flow::EngineConfig;
use crate::model::{Direction, Posture};
use crate::proto::api::{Ctx, Next};
use crate::proto::auth::{finish_auth, inspect_token, ntlmssp};
use crate::proto::REGISTRY;
use crate::report::audit;
use crate::report::flows::Options;
use std::sync::{Arc, OnceLock};

/// Bytes a zero-length chunk declares missing.
pub const GAP_LEN: u64 = 100;

/// One chunk of a stream script: bytes, or a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(Direction, &'a [u8]),
    Gap(Direction),
}

/// Split fuzzer input into a stream script (see the module documentation).
pub fn script(mut data: &[u8]) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    while let [lo, hi, rest @ ..] = data {
        let header = u16::from_le_bytes([*lo, *hi]);
        let dir = if header & 0x8000 != 0 {
            Direction::ToClient
        } else {
            Direction::ToServer
        };
        let len = usize::from(header & 0x7fff).min(rest.len());
        let (bytes, tail) = rest.split_at(len);
        out.push(if bytes.is_empty() {
            Chunk::Gap(dir)
        } else {
            Chunk::Data(dir, bytes)
        });
        data = tail;
    }
    out
}

/// The inverse of [`script`], for writing seed files: chunks longer than 32767 bytes
/// are split.
pub fn encode_script(chunks: &[(Direction, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (dir, bytes) in chunks {
        for piece in bytes.chunks(0x7fff) {
            let mut header = piece.len() as u16;
            if *dir == Direction::ToClient {
                header |= 0x8000;
            }
            out.extend_from_slice(&header.to_le_bytes());
            out.extend_from_slice(piece);
        }
    }
    out
}

fn ctx(posture: &mut Posture, frame: u64, server_port: u16) -> Ctx<'_> {
    Ctx {
        limits: &crate::limits::ProtoLimits::DEFAULT,
        frame,
        ts_ns: frame as i64 * 1_000_000,
        client_port: 40000,
        server_port,
        posture,
    }
}

/// Feed a stream script to every analyzer registered as `name` the way the flow engine
/// does: the TCP analyzer gets each chunk as reassembled bytes (a zero-length chunk as a
/// gap), the UDP one each chunk as a datagram; `Next::Done` finishes the analyzer at
/// once, otherwise it is finished after the last chunk. Every probe of the transport
/// also sees each chunk. Returns the postures (TCP first).
pub fn analyzer(name: &str, data: &[u8]) -> Vec<Posture> {
    let chunks = script(data);
    let mut postures = Vec::new();
    for reg in REGISTRY.iter().filter(|r| r.name == name) {
        let port = reg.ports.first().copied().unwrap_or(1);
        let mut posture = Posture::default();
        let mut a = (reg.make)();
        let mut frame = 0;
        let mut done = false;
        for chunk in &chunks {
            frame += 1;
            let mut cx = ctx(&mut posture, frame, port);
            let next = match *chunk {
                Chunk::Data(dir, bytes) => {
                    for other in REGISTRY.iter().filter(|r| r.tcp == reg.tcp) {
                        let _ = (other.probe)(dir, bytes, 40000, port);
                    }
                    a.data(dir, bytes, &mut cx)
                }
                Chunk::Gap(dir) if reg.tcp => a.gap(dir, GAP_LEN, &mut cx),
                Chunk::Gap(_) => Next::Continue,
            };
            if next == Next::Done {
                a.finish(&mut cx);
                done = true;
                break;
            }
        }
        if !done {
            a.finish(&mut ctx(&mut posture, frame + 1, port));
        }
        postures.push(posture);
    }
    postures
}

/// A raw NTLMSSP message, as an HTTP `Authorization` header would carry it.
pub fn ntlmssp(data: &[u8]) -> Posture {
    let mut posture = Posture::default();
    let mut cx = ctx(&mut posture, 1, 80);
    let _ = ntlmssp::inspect(data, &mut cx, "fuzz");
    finish_auth(&mut cx);
    posture
}

/// Any security token (SPNEGO, GSS-API Kerberos, raw Kerberos, NTLMSSP).
pub fn token(data: &[u8]) -> Posture {
    let mut posture = Posture::default();
    let mut cx = ctx(&mut posture, 1, 445);
    let _ = inspect_token(data, &mut cx, "fuzz");
    finish_auth(&mut cx);
    posture
}

/// Read a capture held in memory (pcap, pcapng, gzip or zstd); returns the frames read.
pub fn capture(data: &[u8]) -> u64 {
    let mut summary = FileSummary::default();
    let mut bytes = 0u64;
    let _ = read_capture(&Source::Bytes(Arc::from(data)), &mut summary, |f| {
        bytes += f.data.len() as u64;
    });
    assert_eq!(bytes, summary.packet_bytes, "packet bytes counted");
    summary.frames
}

/// Link types the decoder target picks from.
pub const LINKTYPES: [u32; 12] = [
    linktype::ETHERNET,
    linktype::RAW,
    linktype::NULL,
    linktype::RAW_BSD12,
    linktype::RAW_BSD14,
    linktype::LOOP,
    linktype::LINUX_SLL,
    linktype::IPV4,
    linktype::IPV6,
    linktype::NFLOG,
    linktype::LINUX_SLL2,
    147,
];

/// Decode a sequence of frames with one decoder and small reassembly limits. The input
/// is a stream script: each chunk is a frame whose first byte picks the link type from
/// [`LINKTYPES`]; a set direction bit moves the clock past the fragment timeout.
pub fn decode(data: &[u8]) {
    let limits = DefragLimits {
        max_datagrams: 4,
        max_bytes: 16 * 1024,
        max_fragments_per_datagram: 8,
        timeout_ns: 1_000_000_000,
    };
    let mut d = Decoder::new(limits);
    let mut ts = 0i64;
    let mut frames = 0u64;
    for chunk in script(data) {
        let (dir, bytes) = match chunk {
            Chunk::Data(dir, bytes) => (dir, bytes),
            Chunk::Gap(dir) => (dir, &[][..]),
        };
        ts += if dir == Direction::ToClient {
            2_000_000_000
        } else {
            1_000
        };
        let (lt, frame) = match bytes.split_first() {
            Some((b, rest)) => (LINKTYPES[usize::from(*b) % LINKTYPES.len()], rest),
            None => (linktype::ETHERNET, bytes),
        };
        frames += 1;
        let _ = d.decode(lt, frame, ts, frames);
        assert!(d.defrag_in_progress() <= limits.max_datagrams);
        assert!(d.defrag_bytes() <= limits.max_bytes);
    }
    d.finish();
    assert_eq!(d.stats().frames, frames);
}

/// Drive one direction's reassembler with operations of 6 bytes each, after a 4-byte
/// initial sequence number: op, offset (u16 LE), length (u16 LE, 11 bits used), extra.
/// Segments carry the bytes of one reference stream at their offset (op 0, 1, 2, 6, 7),
/// so whatever the order, overlap and duplication, every delivered byte must be the
/// stream's byte at its position; op 3 acknowledges up to the offset, op 4 places a FIN
/// there, op 5 stops keeping delivered bytes. Limits are small so the caps are hit.
pub fn reassembly(data: &[u8]) {
    let Some((isn, ops)) = data.split_first_chunk::<4>() else {
        return;
    };
    let isn = u32::from_le_bytes(*isn);
    let byte_at = |pos: u64| (pos.wrapping_mul(31) % 251) as u8;
    let limits = ReassemblyLimits {
        max_segments: 8,
        max_bytes: 4096,
    };
    let mut r = Reassembler::new();
    r.syn(isn);
    let start = isn.wrapping_add(1);
    let mut pos = 0u64;
    let mut check = |piece: Piece<'_>| match piece {
        Piece::Data(d) => {
            for (i, b) in d.iter().enumerate() {
                assert_eq!(
                    *b,
                    byte_at(pos + i as u64),
                    "byte at stream offset {pos}+{i}"
                );
            }
            pos += d.len() as u64;
        }
        Piece::Gap(n) => pos += n,
    };
    let mut stream = Vec::new();
    for op in ops.chunks_exact(6) {
        let off = u32::from(u16::from_le_bytes([op[1], op[2]]));
        let len = usize::from(u16::from_le_bytes([op[3], op[4]]) & 0x7ff);
        let seq = start.wrapping_add(off);
        match op[0] % 8 {
            3 => r.acked(seq, &mut check),
            4 => r.fin(seq),
            5 => r.set_light(),
            _ => {
                stream.clear();
                stream.extend((0..len as u64).map(|i| byte_at(u64::from(off) + i)));
                r.segment(seq, &stream, &limits, &mut check);
            }
        }
        assert!(r.held_bytes() <= limits.max_bytes);
    }
    r.finish(&mut check);
    assert_eq!(r.held_bytes(), 0);
    assert_eq!(r.stats.conflicting_overlaps, 0);
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::builtin().expect("the built-in catalog loads"))
}

/// The whole audit: capture bytes to flows, roles, classification, findings, and every
/// report format (JSON, JSON lines, SARIF, table). Returns the bytes written.
pub fn pipeline(data: &[u8]) -> usize {
    let sources = [Source::Bytes(Arc::from(data))];
    let g = audit::gather(
        &sources,
        &EngineConfig::default(),
        None,
        audit::DEFAULT_MAX_AUDIT_FLOWS,
        // Small enough that a capture of a few hundred flows goes through sorted runs
        // in the temporary file and their merge, not only through memory.
        64 * 1024,
    )
    .expect("temporary file");
    let mut out = Vec::new();
    let mut a = audit::write_json(&mut out, g, catalog(), None, &Options::default())
        .expect("JSON to memory");
    audit::write_jsonl(&mut out, &mut a).expect("JSON lines to memory");
    audit::write_sarif(&mut out, &mut a).expect("SARIF to memory");
    audit::write_table(&mut out, &mut a, catalog(), false).expect("table to memory");
    out.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_round_trips() {
        let long = vec![7u8; 40_000];
        let s: Vec<(Direction, &[u8])> = vec![
            (Direction::ToServer, b"EHLO x\r\n"),
            (Direction::ToClient, b"250 ok\r\n"),
            (Direction::ToServer, &long),
        ];
        let enc = encode_script(&s);
        let got = script(&enc);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Chunk::Data(Direction::ToServer, b"EHLO x\r\n"));
        assert_eq!(got[1], Chunk::Data(Direction::ToClient, b"250 ok\r\n"));
        assert_eq!(got[2], Chunk::Data(Direction::ToServer, &long[..0x7fff]));
        // A truncated header is ignored; a zero length is a gap.
        assert_eq!(
            script(&[0x00, 0x80, 0x05]),
            vec![Chunk::Gap(Direction::ToClient)]
        );
    }

    #[test]
    fn entry_points_accept_empty_and_junk() {
        for input in [
            &b""[..],
            b"\x00",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            for reg in REGISTRY {
                let _ = analyzer(reg.name, input);
            }
            let _ = ntlmssp(input);
            let _ = token(input);
            assert_eq!(capture(input), 0);
            decode(input);
            reassembly(input);
            let _ = pipeline(input);
        }
    }

    #[test]
    fn pipeline_reports_the_fixture() {
        let data = std::fs::read("fixtures/exchange-scenarios.pcapng").expect("fixture");
        assert!(capture(&data) > 100);
        assert!(pipeline(&data) > 10_000);
    }

    /// Writes the seed corpora of the fuzz targets into `$DPAUDIT_FUZZ_SEEDS/<target>/`
    /// (run by `fuzz/seed.sh`): captures of single generator scenarios, their frames,
    /// the per-flow streams of every protocol, security tokens, reassembly scripts.
    #[test]
    #[ignore = "writes files; run by fuzz/seed.sh"]
    fn write_seeds() {
        use crate::decode::{Outcome, L4};
        use crate::gen::{self, payloads as p, Format, Rng};
        use std::collections::BTreeMap;
        use std::io::Write;
        use std::path::PathBuf;

        let root = PathBuf::from(std::env::var("DPAUDIT_FUZZ_SEEDS").expect("DPAUDIT_FUZZ_SEEDS"));
        let put = |target: &str, name: &str, bytes: &[u8]| {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).expect("seed dir");
            std::fs::write(dir.join(name), bytes).expect("seed file");
        };
        let scenario = |name: &str, format: Format| {
            let mut v = Vec::new();
            gen::write_scenarios(&[name], 1, format, &mut v).expect("scenario");
            v
        };

        // Whole captures: every scenario for the pipeline, a few small ones in every
        // container for the reader.
        for name in gen::scenario_names() {
            put(
                "pipeline",
                &format!("{name}.pcapng"),
                &scenario(name, Format::Pcapng),
            );
        }
        for name in ["smtp-hub-hub-cleartext", "dns", "cldap"] {
            let ng = scenario(name, Format::Pcapng);
            let pcap = scenario(name, Format::Pcap);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&pcap).expect("gzip");
            let zst = zstd::stream::encode_all(&ng[..], 1).expect("zstd");
            put("capture", &format!("{name}.pcapng"), &ng);
            put("capture", &format!("{name}.pcap"), &pcap);
            put(
                "capture",
                &format!("{name}.pcap.gz"),
                &gz.finish().expect("gzip"),
            );
            put("capture", &format!("{name}.pcapng.zst"), &zst);
        }

        // Frames and per-flow streams, scenario by scenario.
        let server_of = |port: u16, tcp: bool| {
            REGISTRY
                .iter()
                .find(|r| r.tcp == tcp && r.ports.contains(&port))
                .map(|r| r.name)
        };
        for name in gen::scenario_names() {
            let bytes: Arc<[u8]> = Arc::from(scenario(name, Format::Pcap));
            let mut frames = Vec::new();
            // Flow key -> (protocol, chunks in capture order).
            type Stream = (&'static str, Vec<(Direction, Vec<u8>)>);
            let mut flows: BTreeMap<String, Stream> = BTreeMap::new();
            let mut decoder = Decoder::default();
            let mut summary = FileSummary::default();
            read_capture(&Source::Bytes(bytes), &mut summary, |f| {
                let mut frame = vec![0u8]; // LINKTYPES[0], Ethernet
                frame.extend_from_slice(f.data);
                frames.push((Direction::ToServer, frame));
                let Outcome::Packet(pk) = decoder.decode(f.linktype, f.data, f.ts_ns, f.number)
                else {
                    return;
                };
                let (sport, dport, payload, tcp) = match pk.l4 {
                    L4::Tcp(t) => (t.src_port, t.dst_port, t.payload, true),
                    L4::Udp {
                        src_port,
                        dst_port,
                        payload,
                    } => (src_port, dst_port, payload, false),
                    _ => return,
                };
                let (proto, dir, key) = match (server_of(dport, tcp), server_of(sport, tcp)) {
                    (Some(p), _) => (p, Direction::ToServer, (pk.src, sport, pk.dst, dport)),
                    (None, Some(p)) => (p, Direction::ToClient, (pk.dst, dport, pk.src, sport)),
                    _ => return,
                };
                if payload.is_empty() {
                    return;
                }
                let key = format!("{key:?} {tcp}");
                let e = flows.entry(key).or_insert((proto, Vec::new()));
                match e.1.last_mut() {
                    Some((d, v)) if *d == dir && tcp => v.extend_from_slice(payload),
                    _ => e.1.push((dir, payload.to_vec())),
                }
            })
            .expect("scenario reads");
            let refs: Vec<(Direction, &[u8])> =
                frames.iter().map(|(d, f)| (*d, f.as_slice())).collect();
            put("decode", name, &encode_script(&refs));
            for (i, (proto, chunks)) in flows.values().enumerate().take(4) {
                let refs: Vec<(Direction, &[u8])> =
                    chunks.iter().map(|(d, v)| (*d, v.as_slice())).collect();
                put(proto, &format!("{name}-{i}"), &encode_script(&refs));
            }
        }

        // Security tokens.
        let mut rng = Rng::new(7);
        let ntlm = [
            p::ntlm_negotiate(),
            p::ntlm_challenge(&mut rng, "MBX01"),
            p::ntlm_authenticate(&mut rng, "alice", true),
            p::ntlm_authenticate(&mut rng, "bob", false),
        ];
        for (i, t) in ntlm.iter().enumerate() {
            put("ntlmssp", &format!("ntlm-{i}"), t);
        }
        let ap = p::ap_req(&mut rng, &["HTTP", "mail.contoso.com"]);
        let tokens = [
            p::spnego_krb(&mut rng, &["HTTP", "mail.contoso.com"]),
            p::spnego_krb_done(&mut rng),
            p::spnego_init(&[p::OID_NTLMSSP], &ntlm[0]),
            p::spnego_resp(Some(1), Some(p::OID_NTLMSSP), Some(&ntlm[1])),
            p::spnego_resp(None, None, Some(&ntlm[2])),
            p::gss_krb5([0x01, 0x00], &ap),
            ap,
            p::ap_rep(&mut rng),
        ];
        for (i, t) in tokens.iter().enumerate() {
            put("spnego", &format!("token-{i}"), t);
        }

        // Reassembly: the stream in order, backwards, overlapping, with acks and a FIN.
        let op = |kind: u8, off: u16, len: u16| {
            let mut v = vec![kind];
            v.extend_from_slice(&off.to_le_bytes());
            v.extend_from_slice(&len.to_le_bytes());
            v.push(0);
            v
        };
        let scripts: [Vec<Vec<u8>>; 3] = [
            (0..8).map(|i| op(0, i * 100, 100)).collect(),
            (0..8).rev().map(|i| op(0, i * 100, 150)).collect(),
            vec![
                op(0, 0, 50),
                op(0, 200, 50),
                op(3, 150, 0),
                op(0, 40, 300),
                op(4, 400, 0),
                op(3, 401, 0),
                op(5, 0, 0),
                op(0, 400, 10),
            ],
        ];
        for (i, s) in scripts.iter().enumerate() {
            let mut v = 0xffff_ff00u32.to_le_bytes().to_vec();
            v.extend(s.iter().flatten());
            put("reassembly", &format!("ops-{i}"), &v);
        }
    }
}
