//! Decode stage: one captured frame becomes at most one [`Packet`]: the IP addresses,
//! the transport header fields and the transport payload the flow stage needs.
//!
//! ```text
//! link (Ethernet + VLAN/VN-Tag/MPLS/PPPoE, SLL, SLL2, raw, null, loop, NFLOG)
//!   -> IP (etherparse, lax)  -- fragment? --> defrag table --> Outcome::Fragment
//!        |                                        | completes
//!        v                                        v
//!      IPIP / 6in4 / GRE / ERSPAN (back to link or IP, at most 4 deep)
//!        -> TCP, UDP, ESP, ICMP errors (quoted TCP/UDP), other
//! ```
//!
//! What this stage guarantees:
//! - It never panics and never allocates per packet for unfragmented traffic: a
//!   [`Packet`] borrows the frame's bytes. Only a frame that completes an IP reassembly
//!   returns bytes from the decoder's own buffers.
//! - Every length is checked. Damaged input is lax where a dissector can still say
//!   something (a frame cut by the snaplen yields a packet marked `truncated` with the
//!   payload that is there) and otherwise a counted [`Skip`] with a fixed reason.
//! - The transport payload never includes link-layer padding: it is bounded by the IP
//!   total length / payload length and by the UDP length.
//! - IP reassembly holds at most [`DefragLimits`] worth of datagrams and bytes; reaching
//!   a cap drops the oldest datagram and counts it, a datagram older than the timeout
//!   (capture time) is dropped and counted.
//! - Every call is counted exactly once in [`DecodeStats`]:
//!   `frames = packets + fragments + not_ip + malformed + truncated + defrag_dropped
//!   + sum(unknown_linktypes)`.

pub mod checksum;
mod defrag;
mod ip;
mod link;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;

use defrag::Defrag;

/// TCP flag bits (RFC 9293 3.1, RFC 3168 for ECE/CWR).
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// Link-layer types (tcpdump.org LINKTYPE_ values).
pub mod linktype {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    /// Raw IP as some BSDs number it (DLT_RAW).
    pub const RAW_BSD12: u32 = 12;
    /// Raw IP as OpenBSD numbers it (DLT_RAW).
    pub const RAW_BSD14: u32 = 14;
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: like [`NULL`] but the family is in network byte order.
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const NFLOG: u32 = 239;
    pub const LINUX_SLL2: u32 = 276;
}

/// Most tunnel encapsulations followed (IPIP, 6in4, GRE, ERSPAN) before a packet is
/// called malformed. Real networks nest one or two; four leaves room for GRE over IPsec
/// over a provider tunnel while a crafted 1000-deep onion costs nothing.
pub const MAX_TUNNEL_DEPTH: u8 = 4;

/// What one frame turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Packet(Packet<'a>),
    /// An IP fragment held for reassembly (no transport yet), like Wireshark's
    /// "Fragmented IP protocol".
    Fragment,
    Skip(Skip),
}

/// Why a frame yields no packet. The `&'static str` names the layer and the problem
/// (e.g. `"tcp data offset"`), fit for a counter key or an anomaly message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A link type this decoder does not read.
    UnknownLinktype(u32),
    /// A frame that carries no IP: ARP, LLDP, 802.3 LLC, NFLOG without payload, ...
    NotIp,
    /// A field holds a value that cannot be right (a header length below its minimum,
    /// a version that does not match, too many tags or tunnels).
    Malformed(&'static str),
    /// The frame ends before a header this decoder needs.
    Truncated(&'static str),
    /// A fragment that could not be kept: its datagram was dropped for a cap, for
    /// overlapping fragments whose bytes differ, or for exceeding 65535 bytes.
    DefragDropped,
}

impl Skip {
    /// A short fixed description, e.g. for a per-reason counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::UnknownLinktype(_) => "unknown linktype",
            Skip::NotIp => "not ip",
            Skip::Malformed(r) | Skip::Truncated(r) => r,
            Skip::DefragDropped => "defrag dropped",
        }
    }
}

/// An ICMP or ICMPv6 error message that quoted the packet in [`Packet::l4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// The sender of the ICMP message (a router or the destination host).
    pub reporter: IpAddr,
    /// ICMPv6 (true) or ICMP for IPv4 (false).
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
}

/// A decoded IP packet with its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4<'a>,
    /// The frame was cut short (snaplen) before the end of the IP datagram / transport
    /// payload.
    pub truncated: bool,
    /// This transport header was quoted inside an ICMP/ICMPv6 error message (types v4
    /// 3,4,5,11,12; v6 1,2,3,4). src/dst/ports are the quoted packet's own (original
    /// sender -> original destination); payload empty.
    pub icmp_error: bool,
    /// Details of the ICMP error when `icmp_error` is set.
    pub icmp: Option<IcmpError>,
    /// IPsec AH protected the packet (authenticated, not encrypted); l4 is what AH
    /// carried. For an ICMP error: the quoted packet carried AH.
    pub ah: bool,
    /// The packet came out of IP reassembly completed by this frame.
    pub reassembled: bool,
    /// When `reassembled`: the frame number of the first fragment received.
    pub first_fragment_frame: Option<u64>,
    /// Overlapping fragments of this datagram carried different bytes (first copy kept).
    pub frag_conflict: bool,
    /// Came out of a tunnel (IPIP, 6in4, GRE, ERSPAN): depth of encapsulation, 0 = none.
    pub tunnel_depth: u8,
}

/// The transport layer of a [`Packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp(Tcp<'a>),
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: &'a [u8],
    },
    /// ESP (IP proto 50): security parameter index when the 4 bytes are there.
    Esp {
        spi: Option<u32>,
    },
    Other {
        proto: u8,
    },
}

/// TCP header fields and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// [`FIN`], [`SYN`], [`RST`], [`PSH`], [`ACK`], [`URG`], [`ECE`], [`CWR`].
    pub flags: u8,
    pub window: u16,
    pub payload: &'a [u8],
}

/// Counters for the coverage report. Every call of [`Decoder::decode`] lands in exactly
/// one of `packets`, `fragments`, `not_ip`, `malformed`, `truncated`, `defrag_dropped`,
/// `unknown_linktypes`; the other counters break those down.
#[derive(Default, Clone, Debug, serde::Serialize)]
pub struct DecodeStats {
    /// Calls of `decode`.
    pub frames: u64,
    /// Frames that yielded [`Outcome::Packet`].
    pub packets: u64,
    /// IPv4 / IPv6 headers read (every layer of a tunnel counts, ICMP quotes do not).
    pub ip4: u64,
    pub ip6: u64,
    /// Packets by transport; an ICMP error counts in `icmp_errors` only.
    pub tcp: u64,
    pub udp: u64,
    pub esp: u64,
    pub icmp_errors: u64,
    pub other_l4: u64,
    /// Packets that carried AH.
    pub ah: u64,
    /// Packets that came out of a tunnel.
    pub tunnels: u64,
    /// Packets marked `truncated` (cut by the snaplen but decoded).
    pub partial: u64,
    /// Frames that yielded [`Skip::NotIp`].
    pub not_ip: u64,
    /// Frames that yielded [`Skip::Malformed`].
    pub malformed: u64,
    /// Frames that yielded [`Skip::Truncated`].
    pub truncated: u64,
    /// Malformed and truncated frames by reason.
    pub skip_reasons: BTreeMap<&'static str, u64>,
    /// Frames that yielded [`Outcome::Fragment`] (held, reassembly not complete).
    pub fragments: u64,
    /// Packets that came out of a completed reassembly.
    pub reassembled: u64,
    /// Frames that yielded [`Skip::DefragDropped`].
    pub defrag_dropped: u64,
    /// Datagrams in progress (or lone fragments) dropped because a cap was reached
    /// (datagrams, bytes, or fragments per datagram).
    pub defrag_dropped_cap: u64,
    /// Datagrams in progress dropped because they were older than the timeout.
    pub defrag_timed_out: u64,
    /// Fragments that overlapped bytes already held.
    pub defrag_overlaps: u64,
    /// Datagrams dropped because overlapping fragments disagreed (bytes or end).
    pub defrag_conflicts: u64,
    /// Fragments reaching past 65535 bytes (their datagram in progress is dropped).
    pub defrag_oversize: u64,
    /// Datagrams still incomplete when [`Decoder::finish`] was called.
    pub defrag_incomplete: u64,
    /// Frames of link types this decoder does not read, by link type.
    pub unknown_linktypes: BTreeMap<u32, u64>,
    /// IPv4 headers whose checksum is wrong (decoded anyway, as Wireshark does).
    pub bad_ip4_checksum: u64,
    /// Whole TCP segments / UDP datagrams whose checksum is wrong (checksum offload on
    /// the capturing host, or damage); decoded anyway. Segments cut by the snapshot
    /// length cannot be checked and are not counted.
    pub bad_tcp_checksum: u64,
    pub bad_udp_checksum: u64,
}

/// Caps on IP reassembly state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragLimits {
    /// Datagrams in progress at once.
    pub max_datagrams: usize,
    /// Bytes held in total over all datagrams in progress.
    pub max_bytes: usize,
    /// Fragments accepted for one datagram (duplicates count).
    pub max_fragments_per_datagram: usize,
    /// A datagram whose first fragment is older than this (capture time) is dropped.
    pub timeout_ns: i64,
}

/// Default datagrams in progress: a busy link rarely has more than a few hundred.
pub const DEFAULT_MAX_DATAGRAMS: usize = 4096;
/// Default bytes held for reassembly (16 MiB: 256 full-size 64 KiB datagrams).
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;
/// Default fragments per datagram: 65535 / 256 is 256 bytes per fragment, far smaller
/// than any honest MTU allows.
pub const DEFAULT_MAX_FRAGMENTS: usize = 256;
/// Default timeout: 30 s, the Linux `ipfrag_time` default.
pub const DEFAULT_TIMEOUT_NS: i64 = 30_000_000_000;

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_datagrams: DEFAULT_MAX_DATAGRAMS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_fragments_per_datagram: DEFAULT_MAX_FRAGMENTS,
            timeout_ns: DEFAULT_TIMEOUT_NS,
        }
    }
}

/// One reassembly output buffer per IP layer that can complete a reassembly in a frame
/// (the outer packet and each tunnel level).
const REASSEMBLY_BUFFERS: usize = MAX_TUNNEL_DEPTH as usize + 1;

/// Frame decoder: link layer to transport, with IP reassembly state and counters.
pub struct Decoder {
    defrag: Defrag,
    stats: DecodeStats,
    /// Completed datagrams are moved here so the returned packet can borrow them.
    bufs: [Vec<u8>; REASSEMBLY_BUFFERS],
}

impl Decoder {
    pub fn new(limits: DefragLimits) -> Self {
        Decoder {
            defrag: Defrag::new(limits),
            stats: DecodeStats::default(),
            bufs: Default::default(),
        }
    }

    /// Decode one frame. The returned packet borrows either `data` or the decoder's
    /// reassembly buffer (when this frame completed an IP reassembly).
    pub fn decode<'a>(
        &'a mut self,
        linktype: u32,
        data: &'a [u8],
        ts_ns: i64,
        frame: u64,
    ) -> Outcome<'a> {
        let Decoder {
            defrag,
            stats,
            bufs,
        } = self;
        stats.frames += 1;
        defrag.purge(ts_ns, stats);
        let out = {
            let mut cx = ip::Cx {
                defrag: &mut *defrag,
                stats: &mut *stats,
                ts_ns,
                frame,
            };
            ip::frame(&mut cx, bufs, linktype, data)
        };
        stats.count(&out);
        out
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Datagrams currently held for reassembly.
    pub fn defrag_in_progress(&self) -> usize {
        self.defrag.len()
    }

    /// Bytes currently held for reassembly.
    pub fn defrag_bytes(&self) -> usize {
        self.defrag.bytes()
    }

    /// End of capture: drops the datagrams still in progress, counted in
    /// `defrag_incomplete`.
    pub fn finish(&mut self) {
        self.stats.defrag_incomplete += self.defrag.clear() as u64;
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DefragLimits::default())
    }
}

impl DecodeStats {
    fn count(&mut self, out: &Outcome<'_>) {
        match out {
            Outcome::Packet(p) => {
                self.packets += 1;
                match p.l4 {
                    _ if p.icmp_error => self.icmp_errors += 1,
                    L4::Tcp(_) => self.tcp += 1,
                    L4::Udp { .. } => self.udp += 1,
                    L4::Esp { .. } => self.esp += 1,
                    L4::Other { .. } => self.other_l4 += 1,
                }
                self.ah += u64::from(p.ah);
                self.reassembled += u64::from(p.reassembled);
                self.tunnels += u64::from(p.tunnel_depth > 0);
                self.partial += u64::from(p.truncated);
            }
            Outcome::Fragment => self.fragments += 1,
            Outcome::Skip(s) => {
                match s {
                    Skip::UnknownLinktype(lt) => {
                        *self.unknown_linktypes.entry(*lt).or_insert(0) += 1;
                    }
                    Skip::NotIp => self.not_ip += 1,
                    Skip::Malformed(_) => self.malformed += 1,
                    Skip::Truncated(_) => self.truncated += 1,
                    Skip::DefragDropped => self.defrag_dropped += 1,
                }
                if let Skip::Malformed(r) | Skip::Truncated(r) = s {
                    *self.skip_reasons.entry(r).or_insert(0) += 1;
                }
            }
        }
    }
}

/// Big-endian u16 at `at`, if the bytes are there.
fn be16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..)?.first_chunk::<2>()?;
    Some(u16::from_be_bytes(*b))
}

/// Big-endian u32 at `at`, if the bytes are there.
fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..)?.first_chunk::<4>()?;
    Some(u32::from_be_bytes(*b))
}
