//! Capture file writers: classic pcap (microsecond or nanosecond) and pcapng.
//!
//! Both write straight to the `Write` they own, a few `write_all` calls per packet, so
//! wrap files in a `BufWriter`. They write little-endian files that libpcap, Wireshark and
//! pcap-parser read: pcap 2.4 with magic `a1b2c3d4` (µs) or `a1b23c4d` (ns); pcapng with
//! one Section Header Block, one Interface Description Block with `if_tsresol` = 9 (ns),
//! and one Enhanced Packet Block per packet, with an optional `opt_comment`.

use std::io::{self, Write};

/// Link type Ethernet (LINKTYPE_ETHERNET).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Snapshot length written in the headers: the largest frame the generator writes.
const SNAPLEN: u32 = 262_144;

const NS_PER_S: i64 = 1_000_000_000;

fn split_ts(ts_ns: i64) -> (i64, i64) {
    (ts_ns.div_euclid(NS_PER_S), ts_ns.rem_euclid(NS_PER_S))
}

fn too_long(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("packet of {len} bytes is longer than the snapshot length {SNAPLEN}"),
    )
}

/// Classic libpcap writer.
pub struct PcapWriter<W: Write> {
    w: W,
    nanosecond: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut w: W, linktype: u32, nanosecond: bool) -> io::Result<Self> {
        let magic: u32 = if nanosecond { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&linktype.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w, nanosecond })
    }

    /// Writes one record. `orig_len` is the length on the wire (>= `data.len()`).
    pub fn write_packet(&mut self, ts_ns: i64, data: &[u8], orig_len: u32) -> io::Result<()> {
        if data.len() > SNAPLEN as usize {
            return Err(too_long(data.len()));
        }
        let (sec, ns) = split_ts(ts_ns);
        let frac = if self.nanosecond { ns } else { ns / 1000 };
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(sec as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(frac as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// pcapng writer (one section, one Ethernet-like interface, nanosecond timestamps).
pub struct PcapngWriter<W: Write> {
    w: W,
    interfaces: u32,
}

/// pcapng block types and option codes (draft-ietf-opsawg-pcapng).
const BT_SHB: u32 = 0x0A0D_0D0A;
const BT_IDB: u32 = 0x0000_0001;
const BT_EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const IF_TSRESOL: u16 = 9;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the Section Header Block and one Interface Description Block.
    pub fn new(mut w: W, linktype: u32) -> io::Result<Self> {
        // SHB: type, length 28, BOM, version 1.0, section length unknown (-1), length.
        let mut shb = Vec::with_capacity(28);
        shb.extend_from_slice(&BT_SHB.to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        shb.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        w.write_all(&shb)?;
        let mut me = PcapngWriter { w, interfaces: 0 };
        me.interface(linktype)?;
        Ok(me)
    }

    /// Writes one more Interface Description Block; returns its interface id.
    pub fn interface(&mut self, linktype: u32) -> io::Result<u32> {
        // IDB: type, length 32, linktype u16, reserved, snaplen, if_tsresol=9, end, length.
        let mut idb = Vec::with_capacity(32);
        idb.extend_from_slice(&BT_IDB.to_le_bytes());
        idb.extend_from_slice(&32u32.to_le_bytes());
        idb.extend_from_slice(&(linktype as u16).to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&SNAPLEN.to_le_bytes());
        idb.extend_from_slice(&IF_TSRESOL.to_le_bytes());
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&OPT_ENDOFOPT.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&32u32.to_le_bytes());
        self.w.write_all(&idb)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Writes one Enhanced Packet Block on interface 0, with `comment` as an
    /// `opt_comment` option.
    pub fn write_packet(
        &mut self,
        ts_ns: i64,
        data: &[u8],
        orig_len: u32,
        comment: Option<&str>,
    ) -> io::Result<()> {
        self.write_packet_on(0, ts_ns, data, orig_len, comment)
    }

    /// Writes one Enhanced Packet Block on the given interface.
    pub fn write_packet_on(
        &mut self,
        interface: u32,
        ts_ns: i64,
        data: &[u8],
        orig_len: u32,
        comment: Option<&str>,
    ) -> io::Result<()> {
        if data.len() > SNAPLEN as usize {
            return Err(too_long(data.len()));
        }
        let dpad = pad4(data.len());
        let opts_len = match comment {
            Some(c) if c.len() <= usize::from(u16::MAX) => 4 + c.len() + pad4(c.len()) + 4,
            Some(c) => return Err(too_long(c.len())),
            None => 0,
        };
        let total = 32 + data.len() + dpad + opts_len;
        let ts = ts_ns.max(0) as u64;
        let mut h = [0u8; 28];
        h[0..4].copy_from_slice(&BT_EPB.to_le_bytes());
        h[4..8].copy_from_slice(&(total as u32).to_le_bytes());
        h[8..12].copy_from_slice(&interface.to_le_bytes());
        h[12..16].copy_from_slice(&((ts >> 32) as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(ts as u32).to_le_bytes());
        h[20..24].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[24..28].copy_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)?;
        self.w.write_all(&[0u8; 3][..dpad])?;
        if let Some(c) = comment {
            self.w.write_all(&OPT_COMMENT.to_le_bytes())?;
            self.w.write_all(&(c.len() as u16).to_le_bytes())?;
            self.w.write_all(c.as_bytes())?;
            self.w.write_all(&[0u8; 3][..pad4(c.len())])?;
            self.w.write_all(&[0u8; 4])?; // opt_endofopt
        }
        self.w.write_all(&(total as u32).to_le_bytes())
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Either writer behind one call, for the generator.
pub(crate) enum AnyWriter<W: Write> {
    Pcap(PcapWriter<W>),
    Pcapng(PcapngWriter<W>),
}

impl<W: Write> AnyWriter<W> {
    /// Writes one packet; `comment` is kept in pcapng and dropped in pcap.
    pub(crate) fn write(
        &mut self,
        ts_ns: i64,
        data: &[u8],
        comment: Option<&str>,
    ) -> io::Result<()> {
        match self {
            AnyWriter::Pcap(p) => p.write_packet(ts_ns, data, data.len() as u32),
            AnyWriter::Pcapng(p) => p.write_packet(ts_ns, data, data.len() as u32, comment),
        }
    }

    /// Bytes of file overhead of one packet record of `len` bytes.
    pub(crate) fn record_overhead(&self, len: usize, comment: Option<&str>) -> u64 {
        match self {
            AnyWriter::Pcap(_) => 16,
            AnyWriter::Pcapng(_) => {
                let opts = comment.map_or(0, |c| 4 + c.len() + pad4(c.len()) + 4);
                (32 + pad4(len) + opts) as u64
            }
        }
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            AnyWriter::Pcap(p) => p.finish(),
            AnyWriter::Pcapng(p) => p.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32le(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn pcap_header_and_record() {
        let mut p = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, false).unwrap();
        p.write_packet(1_767_225_600_123_456_789, &[1, 2, 3], 60)
            .unwrap();
        let b = p.finish().unwrap();
        assert_eq!(b.len(), 24 + 16 + 3);
        assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]); // µs magic, little endian
        assert_eq!(u32le(&b, 20), 1); // linktype
        assert_eq!(u32le(&b, 24), 1_767_225_600); // ts_sec
        assert_eq!(u32le(&b, 28), 123_456); // ts_usec
        assert_eq!(u32le(&b, 32), 3); // incl_len
        assert_eq!(u32le(&b, 36), 60); // orig_len
        assert_eq!(&b[40..], &[1, 2, 3]);
    }

    #[test]
    fn pcap_nanosecond_magic() {
        let mut p = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, true).unwrap();
        p.write_packet(1_000_000_007, &[0], 1).unwrap();
        let b = p.finish().unwrap();
        assert_eq!(&b[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(u32le(&b, 28), 7);
    }

    #[test]
    fn pcapng_blocks_walk_and_comment() {
        let mut p = PcapngWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
        p.write_packet(5_000_000_001, &[0xaa; 5], 5, Some("cleartext"))
            .unwrap();
        p.write_packet(5_000_000_002, &[0xbb; 8], 8, None).unwrap();
        let b = p.finish().unwrap();
        // Walk blocks by their lengths: each block's trailing length equals its leading one.
        let mut at = 0;
        let mut types = Vec::new();
        while at < b.len() {
            let t = u32le(&b, at);
            let len = u32le(&b, at + 4) as usize;
            assert_eq!(len % 4, 0);
            assert_eq!(u32le(&b, at + len - 4) as usize, len);
            types.push(t);
            if t == BT_EPB {
                let ts = (u64::from(u32le(&b, at + 12)) << 32) | u64::from(u32le(&b, at + 16));
                assert!(ts == 5_000_000_001 || ts == 5_000_000_002);
            }
            at += len;
        }
        assert_eq!(at, b.len());
        assert_eq!(types, vec![BT_SHB, BT_IDB, BT_EPB, BT_EPB]);
        // First EPB: 28 fixed + 5 data + 3 pad + (4 + 9 + 3 + 4) options + 4 = 60.
        assert_eq!(u32le(&b, 60 + 4), 60);
        assert_eq!(&b[60 + 28 + 8 + 4..60 + 28 + 8 + 13], b"cleartext");
    }

    #[test]
    fn oversized_packet_is_refused() {
        let mut p = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, false).unwrap();
        let big = vec![0u8; SNAPLEN as usize + 1];
        let e = p.write_packet(0, &big, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
