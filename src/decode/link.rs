//! Link layers: find where the IP packet starts in a frame. Stateless; every header
//! length is checked before it is read.

use super::{be16, linktype, Skip};

/// Which IP version the link layer announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IpVersion {
    /// Take the version from the first nibble.
    Any,
    V4,
    V6,
}

/// Where the link layer led.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum L3<'a> {
    Ip(&'a [u8], IpVersion),
    Stop(Skip),
}

/// Ethernet II header: two MAC addresses and the ethertype (IEEE 802.3 clause 3).
const ETH_HEADER_LEN: usize = 14;
/// Linux cooked capture v1 header; the protocol is its last two bytes.
const SLL_HEADER_LEN: usize = 16;
const SLL_PROTOCOL_AT: usize = 14;
/// Linux cooked capture v2 header; the protocol is its first two bytes.
const SLL2_HEADER_LEN: usize = 20;
const SLL2_PROTOCOL_AT: usize = 0;
/// BSD null / OpenBSD loop: a 4-byte address family.
const NULL_HEADER_LEN: usize = 4;
/// NFLOG: family, version, resource id (netfilter `nfulnl_msg_packet_hdr` preamble).
const NFLOG_HEADER_LEN: usize = 4;
/// NFLOG TLV header: length and type, both in host byte order (little-endian captures).
const NFLOG_TLV_HEADER_LEN: usize = 4;
/// NFULA_PAYLOAD: the packet itself.
const NFULA_PAYLOAD: u16 = 9;
/// The top bits of an NFLOG TLV type are netlink flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
const NFLOG_TYPE_MASK: u16 = 0x3fff;
/// 802.1Q/802.1ad tag: TCI then the next ethertype.
const VLAN_TAG_LEN: usize = 4;
/// Cisco VN-Tag: 4 tag bytes then the next ethertype.
const VNTAG_LEN: usize = 6;
/// Most VLAN / VN tags followed; QinQ uses 2, triple tagging 3.
const MAX_TAGS: usize = 8;
/// MPLS label stack entry (RFC 3032 2.1).
const MPLS_LABEL_LEN: usize = 4;
/// Most MPLS labels popped; real stacks carry 2 to 4.
const MAX_MPLS_LABELS: usize = 16;
/// PPPoE session header (RFC 2516 4) followed by the 2-byte PPP protocol.
const PPPOE_HEADER_LEN: usize = 6;

/// Ethertypes (IEEE registry).
const ET_IPV4: u16 = 0x0800;
const ET_IPV6: u16 = 0x86dd;
const ET_VLAN: u16 = 0x8100;
const ET_QINQ: u16 = 0x88a8;
const ET_QINQ_OLD1: u16 = 0x9100;
const ET_QINQ_OLD2: u16 = 0x9200;
const ET_VNTAG: u16 = 0x8926;
const ET_MPLS: u16 = 0x8847;
const ET_MPLS_MULTICAST: u16 = 0x8848;
const ET_PPPOE_SESSION: u16 = 0x8864;
/// PPP protocol numbers (RFC 1332, RFC 5072).
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// BSD address families: AF_INET everywhere; AF_INET6 is 24 (NetBSD, OpenBSD), 28
/// (FreeBSD), 30 (macOS).
const AF_INET: u32 = 2;
const AF_INET6_BSD: u32 = 24;
const AF_INET6_FREEBSD: u32 = 28;
const AF_INET6_DARWIN: u32 = 30;

/// Finds the IP packet of a frame of link type `lt`.
pub(super) fn link(lt: u32, data: &[u8]) -> L3<'_> {
    match lt {
        linktype::ETHERNET => ethernet(data),
        linktype::LINUX_SLL => cooked(data, SLL_HEADER_LEN, SLL_PROTOCOL_AT, "sll header"),
        linktype::LINUX_SLL2 => cooked(data, SLL2_HEADER_LEN, SLL2_PROTOCOL_AT, "sll2 header"),
        linktype::RAW | linktype::RAW_BSD12 | linktype::RAW_BSD14 => L3::Ip(data, IpVersion::Any),
        linktype::IPV4 => L3::Ip(data, IpVersion::V4),
        linktype::IPV6 => L3::Ip(data, IpVersion::V6),
        linktype::NULL => null(data, false),
        linktype::LOOP => null(data, true),
        linktype::NFLOG => nflog(data),
        other => L3::Stop(Skip::UnknownLinktype(other)),
    }
}

/// An Ethernet II frame (also what GRE 0x6558 and ERSPAN carry).
pub(super) fn ethernet(data: &[u8]) -> L3<'_> {
    match (be16(data, 12), data.get(ETH_HEADER_LEN..)) {
        (Some(et), Some(rest)) => ethertype(et, rest),
        _ => L3::Stop(Skip::Truncated("ethernet header")),
    }
}

/// Linux cooked captures: a fixed header with the ethertype at `proto_at`.
fn cooked<'a>(data: &'a [u8], len: usize, proto_at: usize, what: &'static str) -> L3<'a> {
    match (be16(data, proto_at), data.get(len..)) {
        (Some(et), Some(rest)) => ethertype(et, rest),
        _ => L3::Stop(Skip::Truncated(what)),
    }
}

/// Follows tags after an ethertype until IP or something else.
fn ethertype(mut et: u16, mut rest: &[u8]) -> L3<'_> {
    let mut tags = 0;
    loop {
        let skip = match et {
            ET_IPV4 => return L3::Ip(rest, IpVersion::V4),
            ET_IPV6 => return L3::Ip(rest, IpVersion::V6),
            ET_VLAN | ET_QINQ | ET_QINQ_OLD1 | ET_QINQ_OLD2 => VLAN_TAG_LEN,
            ET_VNTAG => VNTAG_LEN,
            ET_MPLS | ET_MPLS_MULTICAST => return mpls(rest),
            ET_PPPOE_SESSION => return pppoe(rest),
            // ARP, LLDP, 802.3 length fields (< 0x0600) and everything else.
            _ => return L3::Stop(Skip::NotIp),
        };
        tags += 1;
        if tags > MAX_TAGS {
            return L3::Stop(Skip::Malformed("vlan tags"));
        }
        match (be16(rest, skip - 2), rest.get(skip..)) {
            (Some(next), Some(r)) => {
                et = next;
                rest = r;
            }
            _ => return L3::Stop(Skip::Truncated("vlan tag")),
        }
    }
}

/// Pops MPLS labels to the bottom of the stack, then sniffs the IP version nibble
/// (anything else, e.g. an Ethernet pseudowire control word, is not IP here).
fn mpls(mut rest: &[u8]) -> L3<'_> {
    for _ in 0..MAX_MPLS_LABELS {
        let (Some(label), Some(r)) = (rest.get(..MPLS_LABEL_LEN), rest.get(MPLS_LABEL_LEN..))
        else {
            return L3::Stop(Skip::Truncated("mpls label"));
        };
        rest = r;
        let bottom = label.get(2).is_some_and(|b| b & 0x01 != 0);
        if bottom {
            return match rest.first().map(|b| b >> 4) {
                Some(4) => L3::Ip(rest, IpVersion::V4),
                Some(6) => L3::Ip(rest, IpVersion::V6),
                Some(_) => L3::Stop(Skip::NotIp),
                None => L3::Stop(Skip::Truncated("mpls payload")),
            };
        }
    }
    L3::Stop(Skip::Malformed("mpls labels"))
}

/// PPPoE session stage: 6-byte header, then the PPP protocol.
fn pppoe(rest: &[u8]) -> L3<'_> {
    let (Some(proto), Some(ip)) = (
        be16(rest, PPPOE_HEADER_LEN),
        rest.get(PPPOE_HEADER_LEN + 2..),
    ) else {
        return L3::Stop(Skip::Truncated("pppoe header"));
    };
    match proto {
        PPP_IPV4 => L3::Ip(ip, IpVersion::V4),
        PPP_IPV6 => L3::Ip(ip, IpVersion::V6),
        _ => L3::Stop(Skip::NotIp),
    }
}

/// BSD null (host byte order; big-endian when the first two bytes are zero, since
/// families are small numbers) and OpenBSD loop (always network byte order).
fn null(data: &[u8], network_order: bool) -> L3<'_> {
    let (Some(h), Some(rest)) = (
        data.first_chunk::<NULL_HEADER_LEN>(),
        data.get(NULL_HEADER_LEN..),
    ) else {
        return L3::Stop(Skip::Truncated("null header"));
    };
    let big_endian = network_order || (h[0] == 0 && h[1] == 0);
    let family = if big_endian {
        u32::from_be_bytes(*h)
    } else {
        u32::from_le_bytes(*h)
    };
    match family {
        AF_INET => L3::Ip(rest, IpVersion::V4),
        AF_INET6_BSD | AF_INET6_FREEBSD | AF_INET6_DARWIN => L3::Ip(rest, IpVersion::V6),
        _ => L3::Stop(Skip::NotIp),
    }
}

/// Linux NFLOG: a 4-byte header then TLVs (length includes the TLV header; each TLV is
/// padded to 4 bytes); the packet is the NFULA_PAYLOAD TLV. A payload TLV cut by the
/// snaplen is handed on as far as it goes (the IP layer then marks it truncated).
fn nflog(data: &[u8]) -> L3<'_> {
    let Some(mut rest) = data.get(NFLOG_HEADER_LEN..) else {
        return L3::Stop(Skip::Truncated("nflog header"));
    };
    // Every TLV consumes at least its 4-byte header, so this loop ends.
    while !rest.is_empty() {
        let Some(h) = rest.first_chunk::<NFLOG_TLV_HEADER_LEN>() else {
            return L3::Stop(Skip::Truncated("nflog tlv"));
        };
        let len = usize::from(u16::from_le_bytes([h[0], h[1]]));
        let typ = u16::from_le_bytes([h[2], h[3]]) & NFLOG_TYPE_MASK;
        if len < NFLOG_TLV_HEADER_LEN {
            return L3::Stop(Skip::Malformed("nflog tlv length"));
        }
        if typ == NFULA_PAYLOAD {
            let end = len.min(rest.len());
            return match rest.get(NFLOG_TLV_HEADER_LEN..end) {
                Some(ip) => L3::Ip(ip, IpVersion::Any),
                None => L3::Stop(Skip::Truncated("nflog tlv")),
            };
        }
        if len > rest.len() {
            return L3::Stop(Skip::Truncated("nflog tlv"));
        }
        let padded = len.next_multiple_of(4);
        rest = rest.get(padded..).unwrap_or_default();
    }
    L3::Stop(Skip::NotIp)
}
