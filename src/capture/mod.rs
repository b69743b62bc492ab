//! Capture stage: pcap and pcapng files (plain, gzip or zstd, or standard input) become a
//! stream of [`Frame`]s numbered exactly as Wireshark numbers them (1-based, every packet
//! record counts, whatever its content).
//!
//! Guarantees: memory is bounded by the read buffer (it grows only up to
//! [`MAX_BUFFER`] for a single oversized record, and shrinks back after it), or by the
//! buffers a [`FrameSink`] holds when the reader hands them on; a damaged record stops
//! the file with an error naming its byte offset *after* every frame before it has been
//! delivered, so the caller can report a partial result.

mod blocks;

pub use blocks::FrameSink;

use crate::error::CaptureError;
use blocks::{offset_in, Blocks, OpenError, Refilled};
use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Initial read buffer. Large sequential reads amortise the per-read cost.
pub const READ_BUFFER: usize = 1 << 20;
/// Largest buffer we grow to for one block; Wireshark's own maximum snaplen is 262144 and
/// pcapng blocks carry options besides, so 16 MiB leaves room for any honest record.
pub const MAX_BUFFER: usize = 16 << 20;
/// Largest captured length accepted for one packet (the "huge caplen" guard).
pub const MAX_CAPLEN: u32 = 256 * 1024;

/// One packet record from a capture.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based frame number, as Wireshark shows it.
    pub number: u64,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Link-layer type (LINKTYPE_ value) of the interface the packet came from.
    pub linktype: u32,
    /// Captured bytes (may be shorter than `orig_len` when snaplen cut the packet).
    pub data: &'a [u8],
    pub orig_len: u32,
}

/// Facts about the file itself, for the coverage report.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FileSummary {
    pub path: String,
    /// `pcap`, `pcap-nsec`, `pcap-modified`, `pcapng`.
    pub format: String,
    /// `none`, `gzip`, `zstd`.
    pub compression: String,
    pub frames: u64,
    /// Bytes of the (decompressed) capture file consumed.
    pub bytes: u64,
    /// Sum of captured packet lengths.
    pub packet_bytes: u64,
    pub sections: u64,
    pub interfaces: u64,
    /// pcapng blocks skipped because they carry no packet (statistics, name resolution...).
    pub other_blocks: u64,
    /// pcapng blocks of a type we do not know.
    pub unknown_blocks: u64,
    /// Packets that named an interface the section does not have.
    /// Packet blocks skipped because their captured length was over the record cap.
    pub oversize_records: u64,
    pub bad_interface: u64,
    /// Packets whose timestamp went backwards relative to the previous packet.
    pub ts_backwards: u64,
    /// Warning for a damaged tail, when the file ended in an error after some frames.
    pub error: Option<String>,
}

/// Where a capture comes from: a path, `-` for standard input, or bytes already in
/// memory (shown as `(memory)`; used by the fuzz targets and tests).
#[derive(Debug, Clone)]
pub enum Source {
    Path(PathBuf),
    Stdin,
    Bytes(std::sync::Arc<[u8]>),
}

impl Source {
    pub fn from_arg(arg: &Path) -> Source {
        if arg.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::Path(arg.to_path_buf())
        }
    }
    pub fn display(&self) -> PathBuf {
        match self {
            Source::Path(p) => p.clone(),
            Source::Stdin => PathBuf::from("-"),
            Source::Bytes(_) => PathBuf::from("(memory)"),
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A reader whose `read` fills the caller's buffer unless the stream ends, so the
/// format sniffing of the first read always sees a whole header, whatever the source
/// (a chained prefix, a pipe, a decompressor) hands back per call.
struct FullRead<R>(R);

impl<R: Read> Read for FullRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.0.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Hand back what was read; the error recurs on the next call.
                Err(_) if got > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }
}

/// Open a source and undo its compression, detected by magic bytes (never by name).
fn open(source: &Source) -> Result<(Box<dyn Read + Send>, &'static str), CaptureError> {
    let path = source.display();
    let mut raw: Box<dyn Read + Send> = match source {
        Source::Stdin => Box::new(io::stdin()),
        Source::Bytes(b) => Box::new(io::Cursor::new(b.clone())),
        Source::Path(p) => Box::new(std::fs::File::open(p).map_err(|e| CaptureError::Open {
            path: path.clone(),
            source: e,
        })?),
    };
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match raw.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(CaptureError::Read {
                    path,
                    offset: got as u64,
                    detail: e.to_string(),
                })
            }
        }
    }
    if got == 0 {
        return Err(CaptureError::Empty { path });
    }
    let prefix = io::Cursor::new(head[..got].to_vec());
    let joined = prefix.chain(raw);
    if got >= 2 && head[..2] == GZIP_MAGIC {
        return Ok((
            Box::new(FullRead(flate2::read::MultiGzDecoder::new(joined))),
            "gzip",
        ));
    }
    if got == 4 && head == ZSTD_MAGIC {
        let dec = zstd::stream::read::Decoder::new(joined).map_err(|e| CaptureError::Read {
            path,
            offset: 0,
            detail: format!("zstd: {e}"),
        })?;
        return Ok((Box::new(FullRead(dec)), "zstd"));
    }
    Ok((Box::new(FullRead(joined)), "none"))
}

/// Per-interface facts of the current pcapng section.
#[derive(Clone, Copy)]
struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    offset_sec: i64,
}

fn ts_from_units(units: u64, iface: &Interface) -> i64 {
    let per = iface.units_per_sec.max(1);
    let secs = units / per;
    let frac = units % per;
    let nanos = (u128::from(frac) * 1_000_000_000u128 / u128::from(per)) as i64;
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000_000) + iface.offset_sec;
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// LINKTYPE value of a pcap-parser link type (negative values cannot occur on the wire;
/// they map to an impossible type that the decoder counts as unknown).
fn dlt(l: pcap_parser::Linktype) -> u32 {
    u32::try_from(l.0).unwrap_or(u32::MAX)
}

/// The length of the next pcapng block, read from `pending` (the unread bytes), when it
/// is under the 12 bytes (type, length, trailing length) every block has. Such a block
/// cannot be skipped, and handing it to the parser is unsafe: pcap-parser 0.16 subtracts
/// 12 from it unchecked for some block types (found by the `pipeline` fuzz target). A
/// Section Header Block carries its own byte order and is left to the parser.
fn short_block(pending: &[u8], section_be: bool) -> Option<u32> {
    const SHB: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    let head = pending.get(..8)?;
    if head[..4] == SHB {
        return None;
    }
    let raw = [head[4], head[5], head[6], head[7]];
    let len = if section_be {
        u32::from_be_bytes(raw)
    } else {
        u32::from_le_bytes(raw)
    };
    (len < 12).then_some(len)
}

/// The captured length the next record claims, read from its header in `pending` (the
/// unread bytes), when its header is there: pcap record headers, and pcapng Enhanced
/// Packet Blocks (whose block length bounds it too).
fn claimed_len(pending: &[u8], format: &str, legacy_be: bool, section_be: bool) -> Option<u32> {
    let u32_at = |at: usize, be: bool| {
        let b = *pending.get(at..)?.first_chunk::<4>()?;
        Some(if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    if format == "pcapng" {
        const EPB: u32 = 6;
        (u32_at(0, section_be)? == EPB).then_some(())?;
        u32_at(20, section_be)
    } else if format.starts_with("pcap") {
        u32_at(8, legacy_be)
    } else {
        None
    }
}

/// Read every frame of `source`, calling `on_frame` for each, in file order.
///
/// On a damaged record the frames before it have been delivered; the error names the
/// byte offset. `summary` is filled as far as the file was read, error or not.
pub fn read_capture(
    source: &Source,
    summary: &mut FileSummary,
    on_frame: impl FnMut(&Frame),
) -> Result<(), CaptureError> {
    read_capture_capped(source, MAX_CAPLEN, summary, on_frame)
}

/// [`read_capture`] with another cap on the captured length of one record: a pcap
/// record past it ends the read with an error (the format cannot find the next record
/// without trusting the length); a pcapng packet block past it is skipped and counted in
/// `summary.oversize_records` (its block length leads to the next one).
pub fn read_capture_capped(
    source: &Source,
    max_record: u32,
    summary: &mut FileSummary,
    mut on_frame: impl FnMut(&Frame),
) -> Result<(), CaptureError> {
    read_capture_until(source, max_record, summary, |f| {
        on_frame(f);
        ControlFlow::Continue(())
    })
}

/// [`read_capture_capped`] that stops, with `Ok`, when `on_frame` says `Break` (its
/// reader went away); `summary` then covers the frames up to that one.
pub fn read_capture_until(
    source: &Source,
    max_record: u32,
    summary: &mut FileSummary,
    mut on_frame: impl FnMut(&Frame) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    struct Calls<F>(F);
    impl<F: FnMut(&Frame) -> ControlFlow<()>> FrameSink for Calls<F> {
        fn frame(&mut self, frame: &Frame, _start: usize) -> ControlFlow<()> {
            (self.0)(frame)
        }
        fn hands_off(&self) -> bool {
            false
        }
    }
    read_capture_into(source, max_record, summary, &mut Calls(&mut on_frame))
}

/// [`read_capture_until`] with the frames going to `sink`. When it hands buffers on,
/// the reader reads into buffers from [`FrameSink::fresh`] and hands each one to
/// [`FrameSink::done`] when it needs the next (and the last when the read ends, error
/// or not), so that frames need not be copied out of it: each frame comes with the
/// offset of its bytes in the buffer being filled.
pub fn read_capture_into(
    source: &Source,
    max_record: u32,
    summary: &mut FileSummary,
    sink: &mut dyn FrameSink,
) -> Result<(), CaptureError> {
    let path = source.display();
    summary.path = path.display().to_string();
    let (reader, compression) = open(source)?;
    summary.compression = compression.to_string();
    let mut rd = match Blocks::open(reader) {
        Ok(r) => r,
        Err(OpenError::Empty) => return Err(CaptureError::Empty { path }),
        Err(OpenError::Truncated) => return Err(CaptureError::TruncatedHeader { path, len: 0 }),
        Err(OpenError::Read) => {
            return Err(CaptureError::Read {
                path,
                offset: 0,
                detail: "read failed (a compressed stream may be corrupt)".into(),
            })
        }
        Err(OpenError::NotRecognized) => {
            // Re-open to show the first bytes the user gave us.
            let magic = open(source)
                .ok()
                .and_then(|(mut r, _)| {
                    let mut b = [0u8; 4];
                    let n = r.read(&mut b).ok()?;
                    Some(
                        b[..n]
                            .iter()
                            .map(|x| format!("{x:02x}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                })
                .unwrap_or_default();
            return Err(CaptureError::BadMagic { path, magic });
        }
    };
    let res = read_blocks(source, &mut rd, max_record, summary, sink);
    rd.finish(sink);
    res
}

fn read_blocks(
    source: &Source,
    rd: &mut Blocks,
    max_record: u32,
    summary: &mut FileSummary,
    sink: &mut dyn FrameSink,
) -> Result<(), CaptureError> {
    let path = source.display();
    let mut number: u64 = 0;
    let mut offset: u64 = 0;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut legacy_linktype: u32 = 1;
    let mut legacy_nsec = false;
    let mut last_ts: i64 = i64::MIN;
    let mut section_be = false;
    let mut legacy_be = false;

    let damaged = |offset: u64, detail: String| CaptureError::Damaged {
        path: source.display(),
        offset,
        detail,
    };
    // A record whose header claims more than the cap: named at once rather than
    // buffered (a 4 GiB claim) or reported only as a file that ended early.
    let over_cap =
        |pending: &[u8], summary: &mut FileSummary, legacy_be: bool, section_be: bool| {
            let n = claimed_len(pending, &summary.format, legacy_be, section_be)
                .filter(|&n| n > max_record)?;
            summary.oversize_records += 1;
            Some(damaged(
                summary.bytes,
                format!("record claims {n} captured bytes (limit {max_record})"),
            ))
        };

    loop {
        if summary.format == "pcapng" {
            if let Some(len) = short_block(rd.data(), section_be) {
                return Err(damaged(
                    offset,
                    format!("block length {len} is shorter than a block's 12-byte frame"),
                ));
            }
        }
        let (next, buffer) = rd.next();
        match next {
            Ok((consumed, block)) => {
                let mut frame: Option<Frame> = None;
                let mut skip_frame = false;
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy_be = h.is_bigendian();
                        legacy_linktype = dlt(h.network);
                        legacy_nsec = h.is_nanosecond_precision();
                        summary.format = if h.is_modified_format() {
                            "pcap-modified"
                        } else if legacy_nsec {
                            "pcap-nsec"
                        } else {
                            "pcap"
                        }
                        .to_string();
                    }
                    PcapBlockOwned::Legacy(b) => {
                        if b.caplen > max_record {
                            summary.oversize_records += 1;
                            return Err(damaged(
                                offset,
                                format!(
                                    "record claims {} captured bytes (limit {max_record})",
                                    b.caplen
                                ),
                            ));
                        }
                        let sub = if legacy_nsec {
                            i64::from(b.ts_usec)
                        } else {
                            i64::from(b.ts_usec) * 1000
                        };
                        number += 1;
                        frame = Some(Frame {
                            number,
                            ts_ns: i64::from(b.ts_sec) * 1_000_000_000 + sub,
                            linktype: legacy_linktype,
                            data: b.data,
                            orig_len: b.origlen,
                        });
                    }
                    PcapBlockOwned::NG(block) => match block {
                        Block::SectionHeader(shb) => {
                            section_be = shb.big_endian();
                            summary.format = "pcapng".to_string();
                            summary.sections += 1;
                            interfaces.clear();
                        }
                        Block::InterfaceDescription(idb) => {
                            summary.interfaces += 1;
                            let units = pcap_parser::pcapng::build_ts_resolution(idb.if_tsresol)
                                .unwrap_or(1_000_000);
                            interfaces.push(Interface {
                                linktype: dlt(idb.linktype),
                                units_per_sec: units,
                                offset_sec: idb.if_tsoffset,
                            });
                        }
                        Block::EnhancedPacket(epb) => {
                            number += 1;
                            if epb.caplen > max_record {
                                // The frame keeps its number (Wireshark shows it) but
                                // its bytes are not handed on.
                                summary.oversize_records += 1;
                                skip_frame = true;
                            }
                            let iface = match interfaces.get(epb.if_id as usize) {
                                Some(i) => *i,
                                None => {
                                    summary.bad_interface += 1;
                                    Interface {
                                        linktype: u32::MAX,
                                        units_per_sec: 1_000_000,
                                        offset_sec: 0,
                                    }
                                }
                            };
                            let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            frame = Some(Frame {
                                number,
                                ts_ns: ts_from_units(units, &iface),
                                linktype: iface.linktype,
                                data: epb.data.get(..epb.caplen as usize).unwrap_or(epb.data),
                                orig_len: epb.origlen,
                            });
                        }
                        Block::SimplePacket(spb) => {
                            number += 1;
                            let iface = interfaces.first().copied();
                            if iface.is_none() {
                                summary.bad_interface += 1;
                            }
                            frame = Some(Frame {
                                number,
                                ts_ns: 0,
                                linktype: iface.map_or(u32::MAX, |i| i.linktype),
                                data: spb.data.get(..spb.origlen as usize).unwrap_or(spb.data),
                                orig_len: spb.origlen,
                            });
                        }
                        Block::Unknown(ub) if ub.block_type == OBSOLETE_PACKET_BLOCK => {
                            number += 1;
                            frame = Some(parse_obsolete_packet(
                                ub.data,
                                section_be,
                                number,
                                &interfaces,
                                summary,
                            ));
                        }
                        Block::Unknown(_) => summary.unknown_blocks += 1,
                        _ => summary.other_blocks += 1,
                    },
                }
                if skip_frame {
                    frame = None;
                }
                if let Some(f) = frame {
                    summary.frames += 1;
                    summary.packet_bytes += f.data.len() as u64;
                    if f.ts_ns < last_ts {
                        summary.ts_backwards += 1;
                    }
                    last_ts = f.ts_ns;
                    // Every frame's bytes are a slice of the block, itself in the buffer;
                    // an empty one may not be, and its offset does not matter.
                    let at = offset_in(buffer, f.data).unwrap_or(0);
                    debug_assert!(f.data.is_empty() || offset_in(buffer, f.data).is_some());
                    if sink.frame(&f, at).is_break() {
                        summary.bytes = offset + consumed as u64;
                        return Ok(());
                    }
                }
                offset += consumed as u64;
                summary.bytes = offset;
                // No shift per record: `refill` moves only the unread tail, once per buffer.
                rd.consume(consumed);
            }
            Err(PcapError::Eof) => break,
            Err(e @ (PcapError::Incomplete(_) | PcapError::BufferTooSmall)) => {
                let grow = matches!(e, PcapError::BufferTooSmall);
                if let Some(e) = over_cap(rd.data(), summary, legacy_be, section_be) {
                    return Err(e);
                }
                if grow {
                    if rd.capacity() >= MAX_BUFFER {
                        return Err(damaged(
                            offset,
                            format!("record larger than {} MiB", MAX_BUFFER >> 20),
                        ));
                    }
                    rd.grow(rd.capacity() * 2);
                }
                match rd.refill(sink) {
                    Ok(Refilled::Read) => {}
                    Ok(Refilled::Stopped) => return Ok(()),
                    Err(_) => {
                        return Err(CaptureError::Read {
                            path,
                            offset,
                            detail: "read failed (a compressed stream may be corrupt)".into(),
                        })
                    }
                }
            }
            Err(PcapError::UnexpectedEof) => {
                if let Some(e) = over_cap(rd.data(), summary, legacy_be, section_be) {
                    return Err(e);
                }
                return Err(damaged(
                    offset,
                    "file ends in the middle of a record".into(),
                ));
            }
            Err(PcapError::ReadError) => {
                return Err(CaptureError::Read {
                    path,
                    offset,
                    detail: "read failed (a compressed stream may be corrupt)".into(),
                })
            }
            Err(PcapError::HeaderNotRecognized) => {
                return Err(damaged(offset, "header not recognised".into()));
            }
            Err(PcapError::NomError(_, kind)) | Err(PcapError::OwnedNomError(_, kind)) => {
                return Err(damaged(
                    offset,
                    format!("unparseable block ({kind:?}): bad block length or type"),
                ));
            }
        }
    }
    summary.bytes = offset;
    Ok(())
}

/// pcapng "Packet Block" (obsolete, type 2): interface id u16, drops u16, ts high,
/// ts low, captured length, original length, data.
const OBSOLETE_PACKET_BLOCK: u32 = 0x0000_0002;

fn parse_obsolete_packet<'a>(
    body: &'a [u8],
    big_endian: bool,
    number: u64,
    interfaces: &[Interface],
    summary: &mut FileSummary,
) -> Frame<'a> {
    let u16_at = |o: usize| {
        body.get(o..o + 2).map(|b| {
            let a = [b[0], b[1]];
            if big_endian {
                u16::from_be_bytes(a)
            } else {
                u16::from_le_bytes(a)
            }
        })
    };
    let u32_at = |o: usize| {
        body.get(o..o + 4).map(|b| {
            let a = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        })
    };
    let if_id = u16_at(0).unwrap_or(u16::MAX) as usize;
    let iface = interfaces.get(if_id).copied();
    if iface.is_none() {
        summary.bad_interface += 1;
    }
    let iface = iface.unwrap_or(Interface {
        linktype: u32::MAX,
        units_per_sec: 1_000_000,
        offset_sec: 0,
    });
    let units = (u64::from(u32_at(4).unwrap_or(0)) << 32) | u64::from(u32_at(8).unwrap_or(0));
    let caplen = u32_at(12).unwrap_or(0) as usize;
    let orig = u32_at(16).unwrap_or(0);
    let data = body.get(20..).unwrap_or(&[]);
    let data = data.get(..caplen.min(data.len())).unwrap_or(&[]);
    Frame {
        number,
        ts_ns: ts_from_units(units, &iface),
        linktype: iface.linktype,
        data,
        orig_len: orig,
    }
}

#[cfg(test)]
mod tests;
