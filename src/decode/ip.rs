//! IP (etherparse, lax), reassembly hand-off, tunnels and transport headers.

use std::net::IpAddr;

use etherparse::err::ip::{HeaderError, LaxHeaderSliceError};
use etherparse::err::ipv6_exts::HeaderSliceError as ExtError;
use etherparse::{IpAuthHeaderSlice, LaxIpSlice};

use super::checksum;
use super::defrag::{Defrag, FragKey, Insert, Piece};
use super::link::{self, IpVersion, L3};
use super::{be16, be32, DecodeStats, IcmpError, Outcome, Packet, Skip, Tcp, L4};
use super::{MAX_TUNNEL_DEPTH, REASSEMBLY_BUFFERS};

/// IP protocol numbers (IANA).
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_GRE: u8 = 47;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;

/// Fixed IPv6 header (RFC 8200 3).
const IPV6_HEADER_LEN: usize = 40;
/// IPv6 Fragment extension header (RFC 8200 4.5).
const IPV6_FRAG_HEADER_LEN: usize = 8;
/// Fragment offsets count 8-byte units (RFC 791 3.1, RFC 8200 4.5).
const FRAG_UNIT: usize = 8;

/// TCP header without options (RFC 9293 3.1).
const TCP_MIN_HEADER_LEN: usize = 20;
/// UDP header (RFC 768).
const UDP_HEADER_LEN: usize = 8;
/// ICMP / ICMPv6 header before the quoted packet (RFC 792, RFC 4443 2.1).
const ICMP_HEADER_LEN: usize = 8;

/// GRE (RFC 2784, RFC 2890, RFC 1701 for the routing bit).
const GRE_BASE_LEN: usize = 4;
const GRE_OPTION_LEN: usize = 4;
const GRE_FLAG_C: u16 = 0x8000;
const GRE_FLAG_R: u16 = 0x4000;
const GRE_FLAG_K: u16 = 0x2000;
const GRE_FLAG_S: u16 = 0x1000;
const GRE_VERSION_MASK: u16 = 0x0007;
/// GRE protocol types (ethertypes).
const GRE_IPV4: u16 = 0x0800;
const GRE_IPV6: u16 = 0x86dd;
const GRE_TEB: u16 = 0x6558;
const GRE_ERSPAN_1_2: u16 = 0x88be;
const GRE_ERSPAN_3: u16 = 0x22eb;
/// ERSPAN type II header (draft-foschiano-erspan 4.1).
const ERSPAN2_HEADER_LEN: usize = 8;
/// ERSPAN type III header and its optional platform-specific subheader (O flag).
const ERSPAN3_HEADER_LEN: usize = 12;
const ERSPAN3_SUBHEADER_LEN: usize = 8;
const ERSPAN3_O_FLAG_AT: usize = 11;

/// Per-frame state handed down the layers.
pub(super) struct Cx<'c> {
    pub defrag: &'c mut Defrag,
    pub stats: &'c mut DecodeStats,
    pub ts_ns: i64,
    pub frame: u64,
}

/// Facts collected on the way down that end up in the [`Packet`].
#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    truncated: bool,
    ah: bool,
    reassembled: bool,
    first_frame: Option<u64>,
    frag_conflict: bool,
    depth: u8,
}

impl Layer {
    fn tunnel(self) -> Result<Layer, Skip> {
        if self.depth >= MAX_TUNNEL_DEPTH {
            return Err(Skip::Malformed("tunnel depth"));
        }
        Ok(Layer {
            depth: self.depth + 1,
            ..self
        })
    }
}

fn packet(src: IpAddr, dst: IpAddr, l4: L4<'_>, ly: Layer) -> Outcome<'_> {
    Outcome::Packet(Packet {
        src,
        dst,
        l4,
        truncated: ly.truncated,
        icmp_error: false,
        icmp: None,
        ah: ly.ah,
        reassembled: ly.reassembled,
        first_fragment_frame: ly.first_frame,
        frag_conflict: ly.frag_conflict,
        tunnel_depth: ly.depth,
    })
}

/// Decodes one frame of link type `lt`.
pub(super) fn frame<'a>(
    cx: &mut Cx<'_>,
    bufs: &'a mut [Vec<u8>; REASSEMBLY_BUFFERS],
    lt: u32,
    data: &'a [u8],
) -> Outcome<'a> {
    match link::link(lt, data) {
        L3::Ip(ip, ver) => ip_packet(cx, bufs, ip, ver, Layer::default()),
        L3::Stop(s) => Outcome::Skip(s),
    }
}

fn ip_error(e: LaxHeaderSliceError) -> Skip {
    match e {
        LaxHeaderSliceError::Len(_) => Skip::Truncated("ip header"),
        LaxHeaderSliceError::Content(HeaderError::UnsupportedIpVersion { .. }) => {
            Skip::Malformed("ip version")
        }
        LaxHeaderSliceError::Content(HeaderError::Ipv4HeaderLengthSmallerThanHeader { .. }) => {
            Skip::Malformed("ipv4 header length")
        }
    }
}

/// An extension header (IPv6 options, AH) etherparse could not read: cut by the snaplen,
/// longer than the datagram says, or invalid.
fn ext_error(e: &ExtError, incomplete: bool) -> Skip {
    match e {
        ExtError::Len(_) if incomplete => Skip::Truncated("ip extension header"),
        ExtError::Len(_) => Skip::Malformed("ip extension header length"),
        ExtError::Content(_) => Skip::Malformed("ip extension header"),
    }
}

/// An IP packet (outer or tunnelled).
fn ip_packet<'a>(
    cx: &mut Cx<'_>,
    bufs: &'a mut [Vec<u8>],
    data: &'a [u8],
    want: IpVersion,
    mut ly: Layer,
) -> Outcome<'a> {
    let (slice, ext_err) = match LaxIpSlice::from_slice(data) {
        Ok(x) => x,
        Err(e) => return Outcome::Skip(ip_error(e)),
    };
    match slice {
        LaxIpSlice::Ipv4(v4) => {
            if want == IpVersion::V6 {
                return Outcome::Skip(Skip::Malformed("ip version"));
            }
            cx.stats.ip4 += 1;
            let h = v4.header();
            let hl = h.slice().len();
            if !checksum::ipv4_header_ok(h.slice()) {
                cx.stats.bad_ip4_checksum += 1;
            }
            let total = usize::from(h.total_len());
            // Zero is what TCP segmentation offload leaves in captures taken on the
            // sender: etherparse then takes the captured length, as Wireshark does.
            if total != 0 && total < hl {
                return Outcome::Skip(Skip::Malformed("ipv4 total length"));
            }
            let pl = v4.payload();
            ly.truncated |= pl.incomplete;
            let src = IpAddr::V4(h.source_addr());
            let dst = IpAddr::V4(h.destination_addr());
            if h.is_fragmenting_payload() {
                if pl.incomplete {
                    return Outcome::Skip(Skip::Truncated("ip fragment"));
                }
                // The fragment's bytes start right after the IPv4 header, whatever
                // etherparse made of them (an AH header is only in the first fragment).
                let end = if total == 0 { data.len() } else { total };
                let piece = Piece {
                    key: FragKey::V4 {
                        src: h.source(),
                        dst: h.destination(),
                        proto: h.protocol().0,
                        id: h.identification(),
                    },
                    offset: usize::from(h.fragments_offset().value()) * FRAG_UNIT,
                    more: h.more_fragments(),
                    data: data.get(hl..end).unwrap_or_default(),
                    next_header: h.protocol().0,
                };
                return reassemble(cx, bufs, piece, src, dst, false, ly);
            }
            if let Some((e, _)) = &ext_err {
                return Outcome::Skip(ext_error(e, pl.incomplete));
            }
            ly.ah |= v4.extensions().auth.is_some();
            transport(cx, bufs, src, dst, false, pl.ip_number.0, pl.payload, ly)
        }
        LaxIpSlice::Ipv6(v6) => {
            if want == IpVersion::V4 {
                return Outcome::Skip(Skip::Malformed("ip version"));
            }
            cx.stats.ip6 += 1;
            let h = v6.header();
            let pl = v6.payload();
            ly.truncated |= pl.incomplete;
            let src = IpAddr::V6(h.source_addr());
            let dst = IpAddr::V6(h.destination_addr());
            if v6.is_payload_fragmented() {
                if pl.incomplete {
                    return Outcome::Skip(Skip::Truncated("ip fragment"));
                }
                let plen = usize::from(h.payload_length());
                let region = if plen == 0 {
                    data.get(IPV6_HEADER_LEN..)
                } else {
                    data.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + plen)
                }
                .unwrap_or_default();
                let w = walk_v6(h.next_header().0, region, true);
                let Some(f) = w.frag else {
                    return Outcome::Skip(Skip::Malformed("ipv6 fragment header"));
                };
                ly.ah |= w.ah;
                let piece = Piece {
                    key: FragKey::V6 {
                        src: h.source(),
                        dst: h.destination(),
                        id: f.id,
                    },
                    offset: f.offset,
                    more: f.more,
                    data: region.get(w.at..).unwrap_or_default(),
                    next_header: f.next,
                };
                return reassemble(cx, bufs, piece, src, dst, true, ly);
            }
            if let Some((e, _)) = &ext_err {
                return Outcome::Skip(ext_error(e, pl.incomplete));
            }
            ly.ah |= walk_v6(h.next_header().0, v6.extensions().slice(), false).ah;
            transport(cx, bufs, src, dst, true, pl.ip_number.0, pl.payload, ly)
        }
    }
}

/// An IPv6 Fragment header.
#[derive(Debug, Clone, Copy)]
struct V6Frag {
    offset: usize,
    more: bool,
    id: u32,
    next: u8,
}

impl V6Frag {
    fn fragmenting(&self) -> bool {
        self.offset != 0 || self.more
    }
}

/// Result of walking an IPv6 extension header chain.
struct V6Walk {
    /// Protocol after the last header walked.
    next: u8,
    /// Offset of the first byte after the last header walked.
    at: usize,
    ah: bool,
    /// The first Fragment header met.
    frag: Option<V6Frag>,
    /// The chain ran past the data or a header length was impossible.
    broken: bool,
}

/// Walks IPv6 extension headers (RFC 8200 4; AH per RFC 4302 2.2 counts 4-byte words)
/// from `first` over `d`, stopping at the first non-extension protocol, at the end of a
/// broken chain, or (when `stop_at_frag`) right after the first Fragment header. Each
/// header is at least 8 bytes, so the walk is bounded by `d.len() / 8` steps.
fn walk_v6(first: u8, d: &[u8], stop_at_frag: bool) -> V6Walk {
    let mut w = V6Walk {
        next: first,
        at: 0,
        ah: false,
        frag: None,
        broken: false,
    };
    loop {
        let len = match w.next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                d.get(w.at + 1).map(|&l| (usize::from(l) + 1) * 8)
            }
            IPPROTO_FRAGMENT => Some(IPV6_FRAG_HEADER_LEN),
            IPPROTO_AH => d.get(w.at + 1).map(|&l| (usize::from(l) + 2) * 4),
            _ => return w,
        };
        let hdr = len.and_then(|len| d.get(w.at..w.at + len));
        let Some(hdr) = hdr.filter(|h| h.len() >= IPV6_FRAG_HEADER_LEN) else {
            w.broken = true;
            return w;
        };
        let this = w.next;
        w.next = hdr.first().copied().unwrap_or(0);
        w.at += hdr.len();
        match this {
            IPPROTO_AH => w.ah = true,
            IPPROTO_FRAGMENT if w.frag.is_none() => {
                let off_flags = be16(hdr, 2).unwrap_or(0);
                w.frag = Some(V6Frag {
                    offset: usize::from(off_flags >> 3) * FRAG_UNIT,
                    more: off_flags & 1 != 0,
                    id: be32(hdr, 4).unwrap_or(0),
                    next: w.next,
                });
                if stop_at_frag {
                    return w;
                }
            }
            _ => {}
        }
    }
}

/// Hands a fragment to the reassembly table; when it completes the datagram, decodes
/// the reassembled payload (moved into the first free output buffer).
fn reassemble<'a>(
    cx: &mut Cx<'_>,
    bufs: &'a mut [Vec<u8>],
    piece: Piece<'_>,
    src: IpAddr,
    dst: IpAddr,
    v6: bool,
    mut ly: Layer,
) -> Outcome<'a> {
    let done = match cx.defrag.insert(piece, cx.ts_ns, cx.frame, cx.stats) {
        Insert::Held => return Outcome::Fragment,
        Insert::Dropped => return Outcome::Skip(Skip::DefragDropped),
        Insert::Complete(d) => d,
    };
    // One buffer per IP layer; a frame has at most MAX_TUNNEL_DEPTH + 1 of them.
    let Some((buf, rest)) = bufs.split_first_mut() else {
        return Outcome::Skip(Skip::Malformed("tunnel depth"));
    };
    *buf = done.data;
    let buf: &'a Vec<u8> = buf;
    ly.reassembled = true;
    ly.first_frame = Some(done.first_frame);
    ly.frag_conflict |= done.conflict;
    let (proto, payload) = if v6 {
        // The fragmentable part may start with more extension headers (destination
        // options, routing, AH) before the transport.
        let w = walk_v6(done.next_header, buf, false);
        if w.broken {
            return Outcome::Skip(Skip::Malformed("ip extension header length"));
        }
        if w.frag.is_some_and(|f| f.fragmenting()) {
            return Outcome::Skip(Skip::Malformed("nested ipv6 fragment"));
        }
        ly.ah |= w.ah;
        (w.next, buf.get(w.at..).unwrap_or_default())
    } else if done.next_header == IPPROTO_AH {
        match IpAuthHeaderSlice::from_slice(buf) {
            Ok(a) => {
                ly.ah = true;
                (
                    a.next_header().0,
                    buf.get(a.slice().len()..).unwrap_or_default(),
                )
            }
            Err(_) => return Outcome::Skip(Skip::Malformed("ip extension header length")),
        }
    } else {
        (done.next_header, buf.as_slice())
    };
    transport(cx, rest, src, dst, v6, proto, payload, ly)
}

/// The transport layer (or a tunnel) of an IP packet whose payload is `p`.
#[allow(clippy::too_many_arguments)] // reason: the layer's facts, passed by value
fn transport<'a>(
    cx: &mut Cx<'_>,
    bufs: &'a mut [Vec<u8>],
    src: IpAddr,
    dst: IpAddr,
    v6: bool,
    proto: u8,
    p: &'a [u8],
    mut ly: Layer,
) -> Outcome<'a> {
    let l4 = match proto {
        IPPROTO_TCP => match tcp(p, ly.truncated) {
            Ok(t) => {
                if !ly.truncated && !checksum::segment_ok(src, dst, proto, p) {
                    cx.stats.bad_tcp_checksum += 1;
                }
                L4::Tcp(t)
            }
            Err(s) => return Outcome::Skip(s),
        },
        IPPROTO_UDP => match udp(p) {
            Ok((l4, short)) => {
                ly.truncated |= short;
                if !ly.truncated && !udp_checksum_ok(src, dst, p) {
                    cx.stats.bad_udp_checksum += 1;
                }
                l4
            }
            Err(s) => return Outcome::Skip(s),
        },
        IPPROTO_ESP => L4::Esp { spi: be32(p, 0) },
        IPPROTO_IPIP | IPPROTO_IPV6 => {
            let ly = match ly.tunnel() {
                Ok(l) => l,
                Err(s) => return Outcome::Skip(s),
            };
            let want = if proto == IPPROTO_IPIP {
                IpVersion::V4
            } else {
                IpVersion::V6
            };
            return ip_packet(cx, bufs, p, want, ly);
        }
        IPPROTO_GRE => return gre(cx, bufs, src, dst, p, ly),
        IPPROTO_ICMP if !v6 => return icmp(src, dst, p, false, ly),
        IPPROTO_ICMPV6 if v6 => return icmp(src, dst, p, true, ly),
        other => L4::Other { proto: other },
    };
    packet(src, dst, l4, ly)
}

/// TCP header (RFC 9293 3.1). `p` is bounded by the IP length, so link padding is never
/// payload; when the frame was cut, the payload is what is there.
fn tcp(p: &[u8], truncated: bool) -> Result<Tcp<'_>, Skip> {
    let Some(h) = p.first_chunk::<TCP_MIN_HEADER_LEN>() else {
        return Err(Skip::Truncated("tcp header"));
    };
    let off = usize::from(h[12] >> 4) * 4;
    if off < TCP_MIN_HEADER_LEN {
        return Err(Skip::Malformed("tcp data offset"));
    }
    let payload = match p.get(off..) {
        Some(pl) => pl,
        // The snapshot length cut the options: the fixed header is still good, and
        // Wireshark still places the frame in its stream, so keep it with no payload.
        None if truncated => &[],
        None => return Err(Skip::Malformed("tcp data offset")),
    };
    Ok(Tcp {
        src_port: u16::from_be_bytes([h[0], h[1]]),
        dst_port: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags: h[13],
        window: u16::from_be_bytes([h[14], h[15]]),
        payload,
    })
}

/// UDP header (RFC 768): the length field bounds the payload; a length past the data
/// keeps what is there and reports it short.
fn udp(p: &[u8]) -> Result<(L4<'_>, bool), Skip> {
    let Some(h) = p.first_chunk::<UDP_HEADER_LEN>() else {
        return Err(Skip::Truncated("udp header"));
    };
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if len < UDP_HEADER_LEN {
        return Err(Skip::Malformed("udp length"));
    }
    let (payload, short) = match p.get(UDP_HEADER_LEN..len) {
        Some(pl) => (pl, false),
        None => (p.get(UDP_HEADER_LEN..).unwrap_or_default(), true),
    };
    Ok((
        L4::Udp {
            src_port: u16::from_be_bytes([h[0], h[1]]),
            dst_port: u16::from_be_bytes([h[2], h[3]]),
            payload,
        },
        short,
    ))
}

/// Whether a whole UDP datagram `p` (bounded by the IP length) has a correct checksum.
/// Zero over IPv4 means "not computed" (RFC 768); over IPv6 it is not allowed (RFC 8200
/// 8.1) and counts as wrong. The sum covers the UDP length, not IP padding after it.
fn udp_checksum_ok(src: IpAddr, dst: IpAddr, p: &[u8]) -> bool {
    if be16(p, 6) == Some(0) {
        return src.is_ipv4();
    }
    let len = be16(p, 4).map_or(p.len(), usize::from);
    let dgram = p.get(..len).unwrap_or(p);
    checksum::segment_ok(src, dst, IPPROTO_UDP, dgram)
}

/// GRE (RFC 2784 / 2890): IPv4, IPv6, transparent Ethernet bridging and ERSPAN I/II/III.
/// Other payloads, enhanced GRE (version 1, PPTP) and source-routed GRE are kept as an
/// opaque GRE packet between the outer addresses.
fn gre<'a>(
    cx: &mut Cx<'_>,
    bufs: &'a mut [Vec<u8>],
    src: IpAddr,
    dst: IpAddr,
    p: &'a [u8],
    ly: Layer,
) -> Outcome<'a> {
    let opaque = packet(src, dst, L4::Other { proto: IPPROTO_GRE }, ly);
    let (Some(flags), Some(proto)) = (be16(p, 0), be16(p, 2)) else {
        return Outcome::Skip(Skip::Truncated("gre header"));
    };
    if flags & (GRE_VERSION_MASK | GRE_FLAG_R) != 0 {
        return opaque;
    }
    let options = [GRE_FLAG_C, GRE_FLAG_K, GRE_FLAG_S]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
    let Some(inner) = p.get(GRE_BASE_LEN + options * GRE_OPTION_LEN..) else {
        return Outcome::Skip(Skip::Truncated("gre header"));
    };
    let (want, frame) = match proto {
        GRE_IPV4 => (Some(IpVersion::V4), inner),
        GRE_IPV6 => (Some(IpVersion::V6), inner),
        GRE_TEB => (None, inner),
        GRE_ERSPAN_1_2 if flags & GRE_FLAG_S != 0 => match inner.get(ERSPAN2_HEADER_LEN..) {
            Some(f) => (None, f),
            None => return Outcome::Skip(Skip::Truncated("erspan header")),
        },
        // ERSPAN type I: no sequence number, no header, the mirrored frame directly.
        GRE_ERSPAN_1_2 => (None, inner),
        GRE_ERSPAN_3 => {
            let sub = match inner.get(ERSPAN3_O_FLAG_AT) {
                Some(b) if b & 0x01 != 0 => ERSPAN3_SUBHEADER_LEN,
                Some(_) => 0,
                None => return Outcome::Skip(Skip::Truncated("erspan header")),
            };
            match inner.get(ERSPAN3_HEADER_LEN + sub..) {
                Some(f) => (None, f),
                None => return Outcome::Skip(Skip::Truncated("erspan header")),
            }
        }
        _ => return opaque,
    };
    let ly = match ly.tunnel() {
        Ok(l) => l,
        Err(s) => return Outcome::Skip(s),
    };
    match want {
        Some(v) => ip_packet(cx, bufs, frame, v, ly),
        None => match link::ethernet(frame) {
            L3::Ip(ip, v) => ip_packet(cx, bufs, ip, v, ly),
            L3::Stop(s) => Outcome::Skip(s),
        },
    }
}

/// True for ICMP types that quote the offending packet: destination unreachable,
/// source quench, redirect, time exceeded, parameter problem (RFC 792).
fn icmp4_is_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// True for ICMPv6 error types that quote the offending packet: destination
/// unreachable, packet too big, time exceeded, parameter problem (RFC 4443 2.1).
fn icmp6_is_error(t: u8) -> bool {
    matches!(t, 1..=4)
}

/// ICMP / ICMPv6. An error message yields the quoted packet's addresses and ports;
/// anything else is an opaque ICMP packet. The quote is read once: an ICMP error or a
/// tunnel inside it is not followed.
fn icmp(src: IpAddr, dst: IpAddr, p: &[u8], v6: bool, ly: Layer) -> Outcome<'_> {
    let proto = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    let opaque = packet(src, dst, L4::Other { proto }, ly);
    let Some(&icmp_type) = p.first() else {
        return opaque;
    };
    let is_error = if v6 {
        icmp6_is_error(icmp_type)
    } else {
        icmp4_is_error(icmp_type)
    };
    if !is_error {
        return opaque;
    }
    let code = p.get(1).copied().unwrap_or(0);
    let Some(quote) = p.get(ICMP_HEADER_LEN..) else {
        return Outcome::Skip(Skip::Truncated("icmp header"));
    };
    let q = match LaxIpSlice::from_slice(quote) {
        Ok((q, _)) => q,
        Err(LaxHeaderSliceError::Len(_)) => {
            return Outcome::Skip(Skip::Truncated("icmp quoted ip"));
        }
        Err(LaxHeaderSliceError::Content(_)) => {
            return Outcome::Skip(Skip::Malformed("icmp quoted ip"));
        }
    };
    // The quote is cut by design, so its missing tail is not "truncated".
    let (qsrc, qdst, qproto, qp, qah, transport_here) = match &q {
        LaxIpSlice::Ipv4(h4) if !v6 => {
            let h = h4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h4.payload().ip_number.0,
                h4.payload().payload,
                h4.extensions().auth.is_some(),
                h.fragments_offset().value() == 0,
            )
        }
        LaxIpSlice::Ipv6(h6) if v6 => {
            let h = h6.header();
            let mut proto = h6.payload().ip_number.0;
            let mut first = true;
            if h6.is_payload_fragmented() {
                let w = walk_v6(
                    h.next_header().0,
                    quote.get(IPV6_HEADER_LEN..).unwrap_or_default(),
                    true,
                );
                if let Some(f) = w.frag.filter(|f| f.offset != 0) {
                    proto = f.next;
                    first = false;
                }
            }
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                proto,
                h6.payload().payload,
                walk_v6(h.next_header().0, h6.extensions().slice(), false).ah,
                first,
            )
        }
        _ => return Outcome::Skip(Skip::Malformed("icmp quoted ip version")),
    };
    let l4 = match qproto {
        IPPROTO_TCP | IPPROTO_UDP if transport_here => {
            let (Some(src_port), Some(dst_port)) = (be16(qp, 0), be16(qp, 2)) else {
                return Outcome::Skip(Skip::Truncated("icmp quoted transport"));
            };
            if qproto == IPPROTO_TCP {
                L4::Tcp(Tcp {
                    src_port,
                    dst_port,
                    seq: be32(qp, 4).unwrap_or(0),
                    ack: be32(qp, 8).unwrap_or(0),
                    flags: qp.get(13).copied().unwrap_or(0),
                    window: be16(qp, 14).unwrap_or(0),
                    payload: &[],
                })
            } else {
                L4::Udp {
                    src_port,
                    dst_port,
                    payload: &[],
                }
            }
        }
        IPPROTO_ESP if transport_here => L4::Esp { spi: be32(qp, 0) },
        other => L4::Other { proto: other },
    };
    Outcome::Packet(Packet {
        src: qsrc,
        dst: qdst,
        l4,
        truncated: ly.truncated,
        icmp_error: true,
        icmp: Some(IcmpError {
            reporter: src,
            v6,
            icmp_type,
            code,
        }),
        ah: qah,
        reassembled: ly.reassembled,
        first_fragment_frame: ly.first_frame,
        frag_conflict: ly.frag_conflict,
        tunnel_depth: ly.depth,
    })
}
