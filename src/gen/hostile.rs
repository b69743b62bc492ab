//! Hostile and damaged captures, for the tests that prove dpaudit survives them and says
//! what it could not see: floods built to reach each cap, and files damaged in each way a
//! capture file can be (`dpaudit gen --hostile KIND`).
//!
//! Every capture is deterministic: the same kind and count give the same bytes.

use super::writer::{PcapWriter, PcapngWriter, LINKTYPE_ETHERNET};
use super::EPOCH_NS;
use crate::decode::checksum;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};

/// One hostile or damaged capture kind.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub name: &'static str,
    /// What it holds and what a run must make of it.
    pub about: &'static str,
    /// Default number of packets (or flows) for the floods; ignored by the others.
    pub default_count: u64,
    write: fn(u64, &mut dyn Write) -> io::Result<()>,
}

/// Every kind, floods first.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "syn-flood",
        about: "COUNT SYNs, each opening a new flow to 10.1.0.20:443: reaches the live-flow cap",
        default_count: 1_000_000,
        write: syn_flood,
    },
    Kind {
        name: "ooo-flood",
        about: "one SMTP connection whose first client byte never arrives, then COUNT segments after the hole: reaches the out-of-order caps",
        default_count: 100_000,
        write: ooo_flood,
    },
    Kind {
        name: "fragment-storm",
        about: "COUNT first IPv4 fragments of distinct datagrams, never completed: reaches the reassembly cap",
        default_count: 200_000,
        write: fragment_storm,
    },
    Kind {
        name: "tls-record-flood",
        about: "a TLS connection whose client sends COUNT one-byte handshake records: reaches the TLS records cap",
        default_count: 10_000,
        write: tls_record_flood,
    },
    Kind {
        name: "http-header-flood",
        about: "an HTTP request whose header block grows to COUNT bytes without ending: reaches the HTTP header cap",
        default_count: 1 << 20,
        write: http_header_flood,
    },
    Kind {
        name: "smtp-pipeline-flood",
        about: "an SMTP client sending COUNT commands the server never answers: reaches the transactions cap",
        default_count: 10_000,
        write: smtp_pipeline_flood,
    },
    Kind {
        name: "huge-caplen",
        about: "a pcap whose second record claims 4 GiB of captured bytes: the read stops there with an error naming the offset",
        default_count: 0,
        write: huge_caplen,
    },
    Kind {
        name: "huge-caplen-pcapng",
        about: "a pcapng Enhanced Packet Block claiming 4 GiB of captured bytes in a 48-byte block: the read stops there with an error naming the offset",
        default_count: 0,
        write: huge_caplen_pcapng,
    },
    Kind {
        name: "truncated-record",
        about: "a pcap cut in the middle of its third packet: two frames, then a warning naming the offset",
        default_count: 0,
        write: truncated_record,
    },
    Kind {
        name: "bad-magic",
        about: "a file that is neither pcap nor pcapng: an error showing the first bytes",
        default_count: 0,
        write: bad_magic,
    },
    Kind {
        name: "byte-swapped-lie",
        about: "a big-endian pcap header over records written little-endian: the first record's length is absurd, an error naming offset 24",
        default_count: 0,
        write: byte_swapped_lie,
    },
    Kind {
        name: "block-length-mismatch",
        about: "a pcapng whose second packet block's trailing length disagrees with its leading one: one frame, then an error naming the offset",
        default_count: 0,
        write: block_length_mismatch,
    },
    Kind {
        name: "short-block",
        about: "a pcapng whose second block is a Process Information Block claiming 8 bytes, under the 12 of any block's frame: one frame, then an error naming the offset",
        default_count: 0,
        write: short_block,
    },
    Kind {
        name: "bad-interface",
        about: "a pcapng packet block on interface 7 of a section that has one interface: numbered, counted, not decoded",
        default_count: 0,
        write: bad_interface,
    },
    Kind {
        name: "time-backwards",
        about: "a pcap whose timestamps go backwards in the middle of a connection: counted, analysed in file order",
        default_count: 0,
        write: time_backwards,
    },
    Kind {
        name: "bad-checksums",
        about: "an SMTP connection whose client segments carry wrong TCP checksums (checksum offload) and one wrong IPv4 header checksum: decoded anyway, counted",
        default_count: 0,
        write: bad_checksums,
    },
    Kind {
        name: "snaplen-cut",
        about: "an SMTP connection captured with a 64-byte snapshot length: every payload cut, the flow's verdict unknown",
        default_count: 0,
        write: snaplen_cut,
    },
];

/// Writes the capture of kind `name` with `count` packets (`None`: the kind's default).
pub fn write(name: &str, count: Option<u64>, out: &mut dyn Write) -> io::Result<()> {
    let k = KINDS.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unknown hostile capture {name:?}; one of: {}",
                names.join(", ")
            ),
        )
    })?;
    (k.write)(count.unwrap_or(k.default_count), out)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

const CLIENT: [u8; 4] = [10, 2, 0, 9];
const SERVER: [u8; 4] = [10, 1, 0, 20];
const US: i64 = 1000;

fn ether(payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload_len);
    f.extend_from_slice(&[0x00, 0x15, 0x5d, 0x01, 0x00, 0x14]); // server MAC
    f.extend_from_slice(&[0x00, 0x15, 0x5d, 0x02, 0x00, 0x09]); // client MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f
}

/// IPv4 header with a correct checksum; `frag` is the flags/offset word.
fn ipv4(f: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, frag: u16, len: usize) {
    let at = f.len();
    let total = (20 + len) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let c = checksum::fold(checksum::ones_sum(&f[at..]));
    f[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
}

/// A TCP segment from `src:sp` to `dst:dp` in an Ethernet frame, checksums correct.
#[allow(clippy::too_many_arguments)] // reason: one segment's header fields, by value
fn tcp4(
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut f = ether(20 + len);
    ipv4(&mut f, src, dst, 6, seq as u16, 0x4000, len);
    let at = f.len();
    f.extend_from_slice(&sp.to_be_bytes());
    f.extend_from_slice(&dp.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags]);
    f.extend_from_slice(&65535u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    let sum = checksum::pseudo_header_sum(
        IpAddr::V4(Ipv4Addr::from(src)),
        IpAddr::V4(Ipv4Addr::from(dst)),
        6,
        len,
    ) + checksum::ones_sum(&f[at..]);
    let c = checksum::fold(sum);
    f[at + 16..at + 18].copy_from_slice(&c.to_be_bytes());
    f
}

/// A client/server TCP conversation being written: sequence numbers and time advance.
struct Conn<'w> {
    w: PcapWriter<&'w mut dyn Write>,
    sport: u16,
    dport: u16,
    c_seq: u32,
    s_seq: u32,
    ts: i64,
}

impl<'w> Conn<'w> {
    /// Writes the pcap header and the three-way handshake.
    fn open(out: &'w mut dyn Write, dport: u16) -> io::Result<Conn<'w>> {
        let w = PcapWriter::new(out, LINKTYPE_ETHERNET, false)?;
        let mut c = Conn {
            w,
            sport: 49_200,
            dport,
            c_seq: 1_000,
            s_seq: 900_000,
            ts: EPOCH_NS,
        };
        c.raw(true, SYN, &[])?;
        c.c_seq += 1;
        c.raw(false, SYN | ACK, &[])?;
        c.s_seq += 1;
        c.raw(true, ACK, &[])?;
        Ok(c)
    }

    fn frame(&self, client: bool, flags: u8, payload: &[u8]) -> Vec<u8> {
        if client {
            tcp4(
                CLIENT, SERVER, self.sport, self.dport, self.c_seq, self.s_seq, flags, payload,
            )
        } else {
            tcp4(
                SERVER, CLIENT, self.dport, self.sport, self.s_seq, self.c_seq, flags, payload,
            )
        }
    }

    /// One segment at the current sequence numbers, without advancing them.
    fn raw(&mut self, client: bool, flags: u8, payload: &[u8]) -> io::Result<()> {
        let f = self.frame(client, flags, payload);
        self.ts += 100 * US;
        self.w.write_packet(self.ts, &f, f.len() as u32)
    }

    /// One data segment; the sender's sequence number advances.
    fn send(&mut self, client: bool, payload: &[u8]) -> io::Result<()> {
        self.raw(client, PSH | ACK, payload)?;
        let n = payload.len() as u32;
        if client {
            self.c_seq = self.c_seq.wrapping_add(n);
        } else {
            self.s_seq = self.s_seq.wrapping_add(n);
        }
        Ok(())
    }

    fn close(mut self) -> io::Result<()> {
        self.raw(true, FIN | ACK, &[])?;
        self.c_seq += 1;
        self.raw(false, FIN | ACK, &[])?;
        self.s_seq += 1;
        self.raw(true, ACK, &[])?;
        self.w.finish().map(|_| ())
    }
}

fn syn_flood(count: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut w = PcapWriter::new(out, LINKTYPE_ETHERNET, false)?;
    for i in 0..count {
        // 10.16.0.0/12 holds a million sources; ports vary too.
        let n = i as u32;
        let src = [10, 16 | ((n >> 16) & 0x0f) as u8, (n >> 8) as u8, n as u8];
        let sport = 1024 + (n % 60_000) as u16;
        let f = tcp4(
            src,
            SERVER,
            sport,
            443,
            n.wrapping_mul(2_654_435_761),
            0,
            SYN,
            &[],
        );
        w.write_packet(EPOCH_NS + i as i64 * US, &f, f.len() as u32)?;
    }
    w.finish().map(|_| ())
}

fn ooo_flood(count: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut c = Conn::open(out, 25)?;
    c.send(false, b"220 mail.contoso.com ESMTP\r\n")?;
    // The first 100 client bytes never appear; everything after them does, 100 at a time.
    let hole = 100u32;
    let base = c.c_seq;
    for i in 0..count {
        c.c_seq = base.wrapping_add(hole + (i as u32).wrapping_mul(100));
        c.raw(true, PSH | ACK, &[b'x'; 100])?;
    }
    c.c_seq = base.wrapping_add(hole + (count as u32).wrapping_mul(100));
    c.close()
}

fn fragment_storm(count: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut w = PcapWriter::new(out, LINKTYPE_ETHERNET, false)?;
    let body = [0u8; 64];
    for i in 0..count {
        let mut f = ether(20 + body.len());
        // More-fragments set, offset 0: the first of a datagram whose rest never comes.
        let src = [10, 32, (i >> 8) as u8, i as u8];
        ipv4(
            &mut f,
            src,
            SERVER,
            17,
            (i >> 16) as u16 ^ i as u16,
            0x2000,
            body.len(),
        );
        f.extend_from_slice(&body);
        w.write_packet(EPOCH_NS + i as i64 * US, &f, f.len() as u32)?;
    }
    w.finish().map(|_| ())
}

fn tls_record_flood(count: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut c = Conn::open(out, 443)?;
    // Handshake records of one byte each, 64 to a segment.
    let record = [0x16, 0x03, 0x03, 0x00, 0x01, 0x01];
    let mut left = count;
    while left > 0 {
        let n = left.min(64);
        let seg: Vec<u8> = record.repeat(n as usize);
        c.send(true, &seg)?;
        left -= n;
    }
    c.close()
}

fn http_header_flood(count: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut c = Conn::open(out, 80)?;
    c.send(true, b"GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\n")?;
    let line = format!("X-Pad: {}\r\n", "a".repeat(1400));
    let mut sent = 0u64;
    while sent < count {
        c.send(true, line.as_bytes())?;
        sent += line.len() as u64;
    }
    c.close()
}

fn smtp_pipeline_flood(count: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut c = Conn::open(out, 25)?;
    c.send(false, b"220 mail.contoso.com ESMTP\r\n")?;
    let cmd = b"NOOP\r\n";
    let mut left = count;
    while left > 0 {
        let n = left.min(200);
        c.send(true, &cmd.repeat(n as usize))?;
        left -= n;
    }
    c.close()
}

/// A short SMTP exchange (handshake, banner, EHLO, reply, QUIT, close) into `c`.
fn smtp_chat(c: &mut Conn) -> io::Result<()> {
    c.send(false, b"220 mail.contoso.com ESMTP\r\n")?;
    c.send(true, b"EHLO client.contoso.com\r\n")?;
    c.send(false, b"250-mail.contoso.com\r\n250 STARTTLS\r\n")?;
    c.send(true, b"QUIT\r\n")?;
    c.send(false, b"221 bye\r\n")
}

/// A pcap of one short SMTP conversation (11 records), for the damage kinds.
fn smtp_pcap() -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut c = Conn::open(&mut buf, 25)?;
    smtp_chat(&mut c)?;
    c.close()?;
    Ok(buf)
}

/// (offset of the record header, captured length) of every record of a little-endian
/// pcap written by [`PcapWriter`].
fn records(pcap: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = 24;
    while let Some(h) = pcap.get(at..at + 16) {
        let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        v.push((at, len));
        at += 16 + len;
    }
    v
}

fn huge_caplen(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut w = PcapWriter::new(&mut *out, LINKTYPE_ETHERNET, false)?;
    let f = tcp4(CLIENT, SERVER, 49_200, 25, 1, 0, SYN, &[]);
    w.write_packet(EPOCH_NS, &f, f.len() as u32)?;
    w.finish()?;
    // A record header claiming 4 GiB - 16 captured bytes, followed by a little data.
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((EPOCH_NS / 1_000_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    h[12..16].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    out.write_all(&h)?;
    out.write_all(&f)
}

fn huge_caplen_pcapng(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut w = PcapngWriter::new(&mut buf, LINKTYPE_ETHERNET)?;
    let f = tcp4(CLIENT, SERVER, 49_200, 25, 1, 0, SYN, &[]);
    w.write_packet(EPOCH_NS, &f, f.len() as u32, None)?;
    w.finish()?;
    // Enhanced Packet Block of 48 bytes whose captured length says 4 GiB.
    let mut b = Vec::new();
    b.extend_from_slice(&6u32.to_le_bytes());
    b.extend_from_slice(&48u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // interface 0
    b.extend_from_slice(&[0u8; 8]); // timestamp
    b.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    b.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    b.extend_from_slice(&[0u8; 16]);
    b.extend_from_slice(&48u32.to_le_bytes());
    buf.extend_from_slice(&b);
    out.write_all(&buf)
}

fn truncated_record(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let buf = smtp_pcap()?;
    // Header (24) + SYN record (16 + 54) + SYN-ACK record (16 + 54) + half of the ACK.
    let cut = 24 + 2 * (16 + 54) + 16 + 27;
    out.write_all(buf.get(..cut).unwrap_or(&buf))
}

fn bad_magic(_: u64, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(b"GET / HTTP/1.1\r\nHost: not-a-capture\r\n\r\n")
}

fn byte_swapped_lie(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = smtp_pcap()?;
    // The header now claims big-endian; the records stay little-endian.
    if let Some(h) = buf.get_mut(..24) {
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
        h[4..6].copy_from_slice(&2u16.to_be_bytes());
        h[6..8].copy_from_slice(&4u16.to_be_bytes());
        h[16..20].copy_from_slice(&262_144u32.to_be_bytes());
        h[20..24].copy_from_slice(&1u32.to_be_bytes());
    }
    out.write_all(&buf)
}

/// A small pcapng holding an SMTP conversation, for the pcapng damage kinds.
fn smtp_pcapng() -> io::Result<Vec<u8>> {
    let pcap = smtp_pcap()?;
    // Re-frame the pcap records as Enhanced Packet Blocks.
    let mut buf = Vec::new();
    let mut w = PcapngWriter::new(&mut buf, LINKTYPE_ETHERNET)?;
    for (at, len) in records(&pcap) {
        let h = &pcap[at..at + 16];
        let sec = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let usec = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let data = pcap.get(at + 16..at + 16 + len).unwrap_or_default();
        let ts = i64::from(sec) * 1_000_000_000 + i64::from(usec) * 1000;
        w.write_packet(ts, data, len as u32, None)?;
    }
    w.finish()?;
    Ok(buf)
}

/// Byte offsets of every Enhanced Packet Block of a pcapng written by [`smtp_pcapng`].
fn epb_offsets(buf: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut at = 0;
    while let Some(h) = buf.get(at..at + 8) {
        let typ = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if typ == 6 {
            v.push(at);
        }
        if len < 12 {
            break;
        }
        at += len;
    }
    v
}

fn block_length_mismatch(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = smtp_pcapng()?;
    if let Some(&at) = epb_offsets(&buf).get(1) {
        let len = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
        let tail = at + len as usize - 4;
        if let Some(t) = buf.get_mut(tail..tail + 4) {
            t.copy_from_slice(&(len + 8).to_le_bytes());
        }
    }
    out.write_all(&buf)
}

fn short_block(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let buf = smtp_pcapng()?;
    let at = epb_offsets(&buf).get(1).copied().unwrap_or(buf.len());
    out.write_all(buf.get(..at).unwrap_or_default())?;
    // Type 0x80000001 (Process Information), length 8, then what the file held there.
    out.write_all(&0x8000_0001u32.to_le_bytes())?;
    out.write_all(&8u32.to_le_bytes())?;
    out.write_all(buf.get(at..).unwrap_or_default())
}

fn bad_interface(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = smtp_pcapng()?;
    if let Some(&at) = epb_offsets(&buf).get(3) {
        if let Some(id) = buf.get_mut(at + 8..at + 12) {
            id.copy_from_slice(&7u32.to_le_bytes());
        }
    }
    out.write_all(&buf)
}

fn time_backwards(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut c = Conn::open(out, 25)?;
    c.send(false, b"220 mail.contoso.com ESMTP\r\n")?;
    c.ts -= 3_600 * 1_000_000_000; // the clock steps back an hour
    c.send(true, b"EHLO client.contoso.com\r\n")?;
    c.send(false, b"250-mail.contoso.com\r\n250 STARTTLS\r\n")?;
    c.send(true, b"QUIT\r\n")?;
    c.send(false, b"221 bye\r\n")?;
    c.close()
}

fn bad_checksums(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = smtp_pcap()?;
    // Records: 0 SYN, 1 SYN-ACK, 2 ACK, 3 banner, 4 EHLO, 5 reply, 6 QUIT, 7 bye, 8-10 close.
    // Zero the TCP checksum of the client's data segments (what offload leaves in a
    // capture taken on the sender) and spoil the IPv4 header checksum of the banner.
    let recs = records(&buf);
    for (i, (at, _)) in recs.into_iter().enumerate() {
        let frame = at + 16;
        if i == 4 || i == 6 {
            if let Some(c) = buf.get_mut(frame + 14 + 20 + 16..frame + 14 + 20 + 18) {
                c.copy_from_slice(&[0, 0]);
            }
        }
        if i == 3 {
            if let Some(c) = buf.get_mut(frame + 14 + 10..frame + 14 + 12) {
                c[0] ^= 0x5a;
            }
        }
    }
    out.write_all(&buf)
}

fn snaplen_cut(_: u64, out: &mut dyn Write) -> io::Result<()> {
    let full = smtp_pcap()?;
    // Rewrite every record cut to 64 bytes (the original length stays in the header).
    const SNAP: usize = 64;
    let mut buf = full.get(..24).unwrap_or_default().to_vec();
    if let Some(s) = buf.get_mut(16..20) {
        s.copy_from_slice(&(SNAP as u32).to_le_bytes());
    }
    for (at, len) in records(&full) {
        let keep = len.min(SNAP);
        let mut hdr = full[at..at + 16].to_vec();
        hdr[8..12].copy_from_slice(&(keep as u32).to_le_bytes());
        buf.extend_from_slice(&hdr);
        buf.extend_from_slice(full.get(at + 16..at + 16 + keep).unwrap_or_default());
    }
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_writes_the_same_bytes_twice() {
        for k in KINDS {
            let n = Some(k.default_count.min(500));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write(k.name, n, &mut a).unwrap();
            write(k.name, n, &mut b).unwrap();
            assert_eq!(a, b, "{}", k.name);
            assert!(!a.is_empty(), "{}", k.name);
        }
        assert!(write("no-such-kind", None, &mut Vec::new()).is_err());
    }
}
