//! The block reader against pcap-parser's own streaming reader, and frames handed on in
//! their read buffers against frames read in one buffer.

use super::blocks::{Blocks, FrameSink, Refilled};
use super::*;
use pcap_parser::PcapBlockOwned;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Cursor;

/// What a reader returned, block by block: each block's size and a digest of all it
/// holds, then how the read ended.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Block(usize, u64),
    End(String),
}

fn digest(block: &PcapBlockOwned) -> u64 {
    let mut h = DefaultHasher::new();
    match block {
        PcapBlockOwned::LegacyHeader(x) => format!("{x:?}").hash(&mut h),
        PcapBlockOwned::Legacy(x) => {
            (x.ts_sec, x.ts_usec, x.caplen, x.origlen, x.data).hash(&mut h)
        }
        // Packet bytes hashed as they are: formatting megabytes of them is slow.
        PcapBlockOwned::NG(Block::EnhancedPacket(e)) => {
            (e.if_id, e.ts_high, e.ts_low, e.caplen, e.origlen, e.data).hash(&mut h);
            format!("{:?}", e.options).hash(&mut h);
        }
        PcapBlockOwned::NG(x) => format!("{x:?}").hash(&mut h),
    }
    h.finish()
}

/// Error kinds only: the borrowed input a nom error carries differs between readers
/// that hold the same bytes at different places.
fn kind(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::NomError(_, k) | PcapError::OwnedNomError(_, k) => format!("nom {k:?}"),
        other => format!("{other:?}"),
    }
}

fn reader(bytes: &[u8]) -> Box<dyn Read + Send> {
    Box::new(FullRead(Cursor::new(bytes.to_vec())))
}

/// pcap-parser's reader, driven as `read_capture` drove it before the block reader.
fn reference(bytes: &[u8]) -> Vec<Step> {
    let mut rd = match pcap_parser::create_reader(READ_BUFFER, reader(bytes)) {
        Ok(r) => r,
        Err(e) => {
            let name = match e {
                PcapError::Eof => "open Eof",
                PcapError::ReadError => "open ReadError",
                PcapError::Incomplete(_) | PcapError::UnexpectedEof => "open Incomplete",
                _ => "open HeaderNotRecognized",
            };
            return vec![Step::End(name.into())];
        }
    };
    let mut steps = Vec::new();
    let mut size = READ_BUFFER;
    loop {
        match rd.next() {
            Ok((n, b)) => {
                steps.push(Step::Block(n, digest(&b)));
                rd.consume_noshift(n);
            }
            Err(PcapError::Incomplete(_)) => {
                if rd.refill().is_err() {
                    steps.push(Step::End("refill".into()));
                    return steps;
                }
            }
            Err(PcapError::BufferTooSmall) => {
                if size >= MAX_BUFFER {
                    steps.push(Step::End("too large".into()));
                    return steps;
                }
                size *= 2;
                rd.grow(size);
                if rd.refill().is_err() {
                    steps.push(Step::End("refill".into()));
                    return steps;
                }
            }
            Err(e) => {
                steps.push(Step::End(kind(&e)));
                return steps;
            }
        }
    }
}

/// Keeps every buffer handed on, and hands out buffers of odd sizes with stale bytes.
#[derive(Default)]
struct Keep {
    done: Vec<Vec<u8>>,
    fresh: usize,
}

impl FrameSink for Keep {
    fn frame(&mut self, _: &Frame, _: usize) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn fresh(&mut self) -> Vec<u8> {
        self.fresh += 1;
        vec![0xee; [0, 100, 3 * READ_BUFFER][self.fresh % 3]]
    }
    fn done(&mut self, buf: Vec<u8>) -> ControlFlow<()> {
        self.done.push(buf);
        ControlFlow::Continue(())
    }
}

/// The block reader, with or without handing its buffers on.
fn ours(bytes: &[u8], hand_on: bool) -> Vec<Step> {
    struct Kept(Keep);
    impl FrameSink for Kept {
        fn frame(&mut self, f: &Frame, s: usize) -> ControlFlow<()> {
            self.0.frame(f, s)
        }
        fn fresh(&mut self) -> Vec<u8> {
            self.0.fresh()
        }
        fn done(&mut self, buf: Vec<u8>) -> ControlFlow<()> {
            self.0.done(buf)
        }
    }
    struct Same;
    impl FrameSink for Same {
        fn frame(&mut self, _: &Frame, _: usize) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
        fn hands_off(&self) -> bool {
            false
        }
    }
    let mut kept = Kept(Keep::default());
    let mut same = Same;
    let sink: &mut dyn FrameSink = if hand_on { &mut kept } else { &mut same };
    let mut rd = match Blocks::open(reader(bytes)) {
        Ok(r) => r,
        Err(e) => {
            let name = match e {
                blocks::OpenError::Empty => "open Eof",
                blocks::OpenError::Read => "open ReadError",
                blocks::OpenError::Truncated => "open Incomplete",
                blocks::OpenError::NotRecognized => "open HeaderNotRecognized",
            };
            return vec![Step::End(name.into())];
        }
    };
    let mut steps = Vec::new();
    loop {
        let (next, _) = rd.next();
        match next {
            Ok((n, b)) => {
                steps.push(Step::Block(n, digest(&b)));
                rd.consume(n);
            }
            Err(PcapError::Incomplete(_)) => match rd.refill(sink) {
                Ok(Refilled::Read) => {}
                _ => {
                    steps.push(Step::End("refill".into()));
                    return steps;
                }
            },
            Err(PcapError::BufferTooSmall) => {
                if rd.capacity() >= MAX_BUFFER {
                    steps.push(Step::End("too large".into()));
                    return steps;
                }
                rd.grow(rd.capacity() * 2);
                match rd.refill(sink) {
                    Ok(Refilled::Read) => {}
                    _ => {
                        steps.push(Step::End("refill".into()));
                        return steps;
                    }
                }
            }
            Err(e) => {
                steps.push(Step::End(kind(&e)));
                return steps;
            }
        }
    }
}

/// An Enhanced Packet Block on interface 0 with `len` bytes of data.
fn epb(len: usize, fill: u8) -> Vec<u8> {
    let padded = len.div_ceil(4) * 4;
    let total = (32 + padded) as u32;
    let mut b = Vec::with_capacity(total as usize);
    for v in [6u32, total, 0, 0, 1000, len as u32, len as u32] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend(std::iter::repeat_n(fill, len));
    b.resize(28 + padded, 0);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

/// A pcapng file whose blocks need the buffer to grow, shrink back and grow again.
fn huge_blocks() -> Vec<u8> {
    let w = crate::gen::PcapngWriter::new(Vec::new(), 1).unwrap();
    let mut bytes = w.finish().unwrap();
    for (i, len) in [60usize, 2 << 20, 60, 70, 3 << 20, 100, 5 << 20]
        .into_iter()
        .enumerate()
    {
        bytes.extend(epb(len, i as u8));
        for _ in 0..2000 {
            bytes.extend(epb(90, 0x55));
        }
    }
    bytes
}

fn generated(format: crate::gen::Format, size: u64) -> Vec<u8> {
    let cfg = crate::gen::Config {
        seed: 7,
        target_bytes: size,
        format,
        mix: crate::gen::Mix::Handshake,
        concurrency: 500,
        vlan_percent: 10,
        ipv6_percent: 10,
    };
    let mut out = Vec::new();
    crate::gen::generate(&cfg, &mut out).unwrap();
    out
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                files.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "fixtures not found");
    files
}

/// Every capture the tests read: fixtures, generated ones across several buffers, huge
/// blocks; and copies of them cut short or with bytes changed, at buffer edges too.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut all = fixtures();
    all.push(("huge blocks".into(), huge_blocks()));
    all.push((
        "generated pcap".into(),
        generated(crate::gen::Format::Pcap, 3 << 20),
    ));
    all.push((
        "generated pcapng".into(),
        generated(crate::gen::Format::Pcapng, 3 << 20),
    ));
    let mut damaged = Vec::new();
    for (name, bytes) in &all {
        let len = bytes.len();
        let mut cuts: Vec<usize> = (0..8).map(|i| len * i / 8).collect();
        cuts.extend([1, 3, 23, 24, 25, 40, len.saturating_sub(1)]);
        for edge in [READ_BUFFER, 2 * READ_BUFFER] {
            cuts.extend((edge.saturating_sub(40)..edge + 40).step_by(7));
        }
        for cut in cuts.into_iter().filter(|&c| c < len) {
            damaged.push((format!("{name} cut at {cut}"), bytes[..cut].to_vec()));
        }
        for at in (0..12).map(|i| 24 + (len.saturating_sub(24)) * i / 12) {
            if at + 4 > len {
                continue;
            }
            let mut b = bytes.clone();
            for x in &mut b[at..at + 4] {
                *x ^= 0xa5;
            }
            damaged.push((format!("{name} changed at {at}"), b));
        }
    }
    all.extend(damaged);
    all.push(("records at the buffer limit".into(), limit_records()));
    all
}

/// pcap records of one byte less and one byte more than [`MAX_BUFFER`], between small
/// ones: the second is the one the reader refuses. (A record of exactly `MAX_BUFFER`
/// bytes is read by both readers only when it starts a buffer: not a limit to test.)
fn limit_records() -> Vec<u8> {
    let w = crate::gen::PcapWriter::new(Vec::new(), 1, false).unwrap();
    let mut bytes = w.finish().unwrap();
    for total in [100, MAX_BUFFER - 1, 100, MAX_BUFFER + 1, 100] {
        let caplen = (total - 16) as u32;
        for v in [1u32, 2, caplen, caplen] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.resize(bytes.len() + caplen as usize, 0x42);
    }
    bytes
}

#[test]
fn blocks_match_pcap_parsers_reader() {
    for (name, bytes) in inputs() {
        let want = reference(&bytes);
        assert!(!want.is_empty(), "{name}");
        assert_eq!(ours(&bytes, false), want, "{name}, one buffer");
        assert_eq!(ours(&bytes, true), want, "{name}, buffers handed on");
    }
}

/// A frame as the caller sees it, bytes included.
type Seen = (u64, i64, u32, u32, Vec<u8>);

/// Frames read through handed-on buffers, found at their offsets in the buffers.
fn handed_on(bytes: &[u8], summary: &mut FileSummary) -> (Vec<Seen>, Result<(), String>) {
    struct Sink {
        pending: Vec<(u64, i64, u32, u32, usize, usize)>,
        seen: Vec<Seen>,
        buffers: usize,
    }
    impl FrameSink for Sink {
        fn frame(&mut self, f: &Frame, start: usize) -> ControlFlow<()> {
            let m = (
                f.number,
                f.ts_ns,
                f.linktype,
                f.orig_len,
                start,
                f.data.len(),
            );
            self.pending.push(m);
            ControlFlow::Continue(())
        }
        fn fresh(&mut self) -> Vec<u8> {
            // Stale bytes in it: what the reader does not overwrite must not be read.
            vec![0xcc; 4096]
        }
        fn done(&mut self, buf: Vec<u8>) -> ControlFlow<()> {
            self.buffers += 1;
            for (n, ts, lt, orig, start, len) in self.pending.drain(..) {
                self.seen
                    .push((n, ts, lt, orig, buf[start..start + len].to_vec()));
            }
            ControlFlow::Continue(())
        }
    }
    let mut sink = Sink {
        pending: Vec::new(),
        seen: Vec::new(),
        buffers: 0,
    };
    let source = Source::Bytes(bytes.into());
    let r = read_capture_into(&source, MAX_CAPLEN, summary, &mut sink);
    assert!(
        sink.pending.is_empty(),
        "frames left in a buffer never handed on"
    );
    if bytes.len() > 2 * READ_BUFFER && r.is_ok() {
        assert!(sink.buffers >= 2, "one buffer for {} bytes", bytes.len());
    }
    (sink.seen, r.map_err(|e| e.to_string()))
}

#[test]
fn frames_handed_on_in_their_buffers_are_the_frames_read() {
    for (name, bytes) in inputs() {
        let source = Source::Bytes(bytes.as_slice().into());
        let mut want_summary = FileSummary::default();
        let mut want = Vec::new();
        let want_r = read_capture(&source, &mut want_summary, |f| {
            want.push((f.number, f.ts_ns, f.linktype, f.orig_len, f.data.to_vec()));
        })
        .map_err(|e| e.to_string());
        let mut summary = FileSummary::default();
        let (seen, r) = handed_on(&bytes, &mut summary);
        assert_eq!(r, want_r, "{name}");
        assert_eq!(seen.len(), want.len(), "{name}");
        assert!(seen == want, "{name}: frames differ");
        assert_eq!(
            format!("{summary:?}"),
            format!("{want_summary:?}"),
            "{name}"
        );
    }
}

/// A sink that refuses a buffer stops the read there, with what came before it.
#[test]
fn a_refused_buffer_stops_the_read() {
    struct Refuse(u64);
    impl FrameSink for Refuse {
        fn frame(&mut self, _: &Frame, _: usize) -> ControlFlow<()> {
            self.0 += 1;
            ControlFlow::Continue(())
        }
        fn done(&mut self, _: Vec<u8>) -> ControlFlow<()> {
            ControlFlow::Break(())
        }
    }
    let bytes = generated(crate::gen::Format::Pcap, 4 << 20);
    let mut summary = FileSummary::default();
    let mut sink = Refuse(0);
    let r = read_capture_into(
        &Source::Bytes(bytes.into()),
        MAX_CAPLEN,
        &mut summary,
        &mut sink,
    );
    assert!(r.is_ok());
    assert!(sink.0 > 0 && sink.0 == summary.frames);
    assert!(
        summary.bytes <= READ_BUFFER as u64,
        "read {} bytes",
        summary.bytes
    );
}

/// A compressed stream that fails partway delivers the frames before the failure, then
/// the read error. (pcap-parser's reader read twice at open and failed there, with no
/// frame, when the first buffer's stream already failed.)
#[test]
fn a_compressed_stream_cut_short_keeps_the_frames_before_it() {
    use std::io::Write;
    let (_, bytes) = fixtures()
        .into_iter()
        .find(|(n, _)| n.ends_with("exchange-scenarios.pcapng"))
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let gz = gz.finish().unwrap();
    let cut = &gz[..gz.len() / 2];
    let mut summary = FileSummary::default();
    let mut frames = 0u64;
    let r = read_capture(&Source::Bytes(cut.into()), &mut summary, |_| frames += 1);
    assert!(matches!(r, Err(CaptureError::Read { .. })), "{r:?}");
    assert!(frames > 0 && frames == summary.frames, "{frames} frames");
    assert_eq!(summary.compression, "gzip");
}
