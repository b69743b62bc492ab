//! Decoder tests: one byte vector per case, built layer by layer with the generator's
//! address plan (client 10.2.0.1 / 2001:db8:2::0:1, CAS 10.1.0.20 / 2001:db8:1::20).

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const CLIENT4: [u8; 4] = [10, 2, 0, 1];
const CAS4: [u8; 4] = [10, 1, 0, 20];
const ROUTER4: [u8; 4] = [10, 1, 0, 1];
const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const CAS6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20,
];
const ROUTER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

const IP_TCP: u8 = 6;
const IP_UDP: u8 = 17;

fn client4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(CLIENT4))
}
fn cas4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(CAS4))
}
fn client6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(CLIENT6))
}
fn cas6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(CAS6))
}

// ---------------------------------------------------------------- builders

/// IPv4 header (RFC 791) + payload: version/IHL 0x45, TOS, total length, id,
/// flags+fragment offset word, TTL 128, protocol, checksum (not checked: 0), addresses.
fn ip4_full(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, flags_off: u16, p: &[u8]) -> Vec<u8> {
    let mut v = vec![0x45, 0x00];
    v.extend(((20 + p.len()) as u16).to_be_bytes());
    v.extend(id.to_be_bytes());
    v.extend(flags_off.to_be_bytes());
    v.extend([128, proto, 0, 0]);
    v.extend(src);
    v.extend(dst);
    v.extend(p);
    v
}

/// Client -> CAS, DF set.
fn ip4(proto: u8, p: &[u8]) -> Vec<u8> {
    ip4_full(CLIENT4, CAS4, proto, 0x1234, 0x4000, p)
}

/// IPv4 fragment client -> CAS: `off` in bytes, MF flag 0x2000.
fn ip4_frag(proto: u8, id: u16, off: usize, more: bool, p: &[u8]) -> Vec<u8> {
    let word = (off / 8) as u16 | if more { 0x2000 } else { 0 };
    ip4_full(CLIENT4, CAS4, proto, id, word, p)
}

/// IPv6 header (RFC 8200): version 6, traffic class, flow label 0, payload length,
/// next header, hop limit 64, addresses.
fn ip6_full(src: [u8; 16], dst: [u8; 16], next: u8, p: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend((p.len() as u16).to_be_bytes());
    v.extend([next, 64]);
    v.extend(src);
    v.extend(dst);
    v.extend(p);
    v
}

fn ip6(next: u8, p: &[u8]) -> Vec<u8> {
    ip6_full(CLIENT6, CAS6, next, p)
}

/// IPv6 Fragment header (44) + fragment client -> CAS.
fn ip6_frag(next: u8, id: u32, off: usize, more: bool, p: &[u8]) -> Vec<u8> {
    let word = ((off / 8) as u16) << 3 | u16::from(more);
    let mut f = vec![next, 0];
    f.extend(word.to_be_bytes());
    f.extend(id.to_be_bytes());
    f.extend(p);
    ip6(44, &f)
}

/// TCP header (RFC 9293), data offset 5, window 1026, checksum 0.
fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, p: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(sport.to_be_bytes());
    v.extend(dport.to_be_bytes());
    v.extend(seq.to_be_bytes());
    v.extend(ack.to_be_bytes());
    v.extend([0x50, flags]);
    v.extend(1026u16.to_be_bytes());
    v.extend([0, 0, 0, 0]);
    v.extend(p);
    v
}

/// UDP header (RFC 768) with a correct length, checksum 0.
fn udp(sport: u16, dport: u16, p: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(sport.to_be_bytes());
    v.extend(dport.to_be_bytes());
    v.extend(((8 + p.len()) as u16).to_be_bytes());
    v.extend([0, 0]);
    v.extend(p);
    v
}

/// Ethernet II: destination MAC, source MAC (the generator's 02:15:5d style), ethertype.
fn eth(et: u16, p: &[u8]) -> Vec<u8> {
    let mut v = vec![0x02, 0x15, 0x5d, 0x01, 0x00, 0x14];
    v.extend([0x02, 0x15, 0x5d, 0x02, 0x00, 0x01]);
    v.extend(et.to_be_bytes());
    v.extend(p);
    v
}

/// A tag (802.1Q style: TCI or VN-Tag bytes) followed by the next ethertype.
fn tag(tci: &[u8], next: u16, p: &[u8]) -> Vec<u8> {
    let mut v = tci.to_vec();
    v.extend(next.to_be_bytes());
    v.extend(p);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// HTTPS request segment client:50000 -> CAS:443 over IPv4.
fn https4() -> Vec<u8> {
    ip4(
        IP_TCP,
        &tcp(50000, 443, 1000, 2000, PSH | ACK, b"GET / HTTP/1.1\r\n"),
    )
}

/// DNS query client:53001 -> CAS:53 over IPv6.
fn dns6() -> Vec<u8> {
    ip6(IP_UDP, &udp(53001, 53, b"\x12\x34query"))
}

// ---------------------------------------------------------------- helpers

/// Decodes one frame with a fresh decoder, returning the outcome and the counters.
fn decode_one(lt: u32, data: &[u8]) -> (Outcome<'_>, DecodeStats) {
    let mut probe = Decoder::default();
    probe.decode(lt, data, 0, 1);
    let stats = probe.stats().clone();
    // Leaked (a few hundred bytes per test) so the outcome can outlive this call.
    let d: &'static mut Decoder = Box::leak(Box::default());
    (d.decode(lt, data, 0, 1), stats)
}

fn pkt(o: Outcome<'_>) -> Packet<'_> {
    match o {
        Outcome::Packet(p) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn tcp_of<'a>(p: &Packet<'a>) -> Tcp<'a> {
    match p.l4 {
        L4::Tcp(t) => t,
        other => panic!("expected tcp, got {other:?}"),
    }
}

fn udp_of<'a>(p: &Packet<'a>) -> (u16, u16, &'a [u8]) {
    match p.l4 {
        L4::Udp {
            src_port,
            dst_port,
            payload,
        } => (src_port, dst_port, payload),
        other => panic!("expected udp, got {other:?}"),
    }
}

fn skip(lt: u32, data: &[u8]) -> Skip {
    match decode_one(lt, data).0 {
        Outcome::Skip(s) => s,
        other => panic!("expected a skip, got {other:?}"),
    }
}

/// Checks the HTTPS segment of [`https4`] came through intact.
fn assert_https4(p: &Packet<'_>) {
    assert_eq!(p.src, client4());
    assert_eq!(p.dst, cas4());
    let t = tcp_of(p);
    assert_eq!((t.src_port, t.dst_port), (50000, 443));
    assert_eq!(
        (t.seq, t.ack, t.flags, t.window),
        (1000, 2000, PSH | ACK, 1026)
    );
    assert_eq!(t.payload, b"GET / HTTP/1.1\r\n");
    assert!(!p.truncated && !p.icmp_error && !p.ah && !p.reassembled);
}

fn assert_dns6(p: &Packet<'_>) {
    assert_eq!((p.src, p.dst), (client6(), cas6()));
    assert_eq!(udp_of(p), (53001, 53, &b"\x12\x34query"[..]));
    assert!(!p.truncated);
}

// ---------------------------------------------------------------- link layers

#[test]
fn ethernet_ipv4_tcp() {
    let f = eth(0x0800, &https4());
    let (o, s) = decode_one(linktype::ETHERNET, &f);
    let p = pkt(o);
    assert_https4(&p);
    assert_eq!(p.tunnel_depth, 0);
    assert_eq!((s.frames, s.packets, s.ip4, s.tcp), (1, 1, 1, 1));
}

#[test]
fn unfragmented_packet_is_zero_copy() {
    let f = eth(0x0800, &https4());
    let mut d = Decoder::default();
    let p = pkt(d.decode(linktype::ETHERNET, &f, 0, 1));
    let range = f.as_ptr_range();
    assert!(range.contains(&tcp_of(&p).payload.as_ptr()));
}

#[test]
fn ethernet_ipv6_udp() {
    let f = eth(0x86dd, &dns6());
    assert_dns6(&pkt(decode_one(linktype::ETHERNET, &f).0));
}

#[test]
fn ethernet_8021q() {
    // Ethernet | 802.1Q VID 100 | IPv4 | TCP
    let f = eth(0x8100, &tag(&[0x00, 0x64], 0x0800, &https4()));
    assert_https4(&pkt(decode_one(linktype::ETHERNET, &f).0));
}

#[test]
fn ethernet_qinq() {
    // Ethernet | 802.1ad S-tag 10 | 802.1Q C-tag 100 | IPv6 | UDP
    let inner = tag(&[0x00, 0x64], 0x86dd, &dns6());
    let f = eth(0x88a8, &tag(&[0x00, 0x0a], 0x8100, &inner));
    assert_dns6(&pkt(decode_one(linktype::ETHERNET, &f).0));
}

#[test]
fn ethernet_triple_tag() {
    // Ethernet | 0x9100 tag | 0x9200 tag | 802.1Q | IPv4 | TCP
    let t3 = tag(&[0x00, 0x03], 0x0800, &https4());
    let t2 = tag(&[0x00, 0x02], 0x8100, &t3);
    let f = eth(0x9100, &tag(&[0x00, 0x01], 0x9200, &t2));
    assert_https4(&pkt(decode_one(linktype::ETHERNET, &f).0));
}

#[test]
fn ethernet_too_many_tags() {
    // Ethernet | nine 802.1Q tags | IPv4
    let mut body = tag(&[0, 9], 0x0800, &https4());
    for _ in 0..8 {
        body = tag(&[0, 1], 0x8100, &body);
    }
    let f = eth(0x8100, &body);
    assert_eq!(skip(linktype::ETHERNET, &f), Skip::Malformed("vlan tags"));
}

#[test]
fn ethernet_vlan_tag_cut() {
    // Ethernet | 802.1Q with only 2 of its 4 bytes
    let f = eth(0x8100, &[0x00, 0x64]);
    assert_eq!(skip(linktype::ETHERNET, &f), Skip::Truncated("vlan tag"));
}

#[test]
fn ethernet_header_cut() {
    assert_eq!(
        skip(
            linktype::ETHERNET,
            &[0x02, 0x15, 0x5d, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0x08]
        ),
        Skip::Truncated("ethernet header")
    );
}

#[test]
fn ethernet_vntag() {
    // Ethernet | VN-Tag (0x8926: d/p/dvif, l/r/ver/svif) | IPv4 | TCP
    let f = eth(0x8926, &tag(&[0x80, 0x05, 0x00, 0x07], 0x0800, &https4()));
    assert_https4(&pkt(decode_one(linktype::ETHERNET, &f).0));
}

#[test]
fn ethernet_arp_is_not_ip() {
    // Ethernet | ARP request (hw 1, proto 0x0800, sizes 6/4, op 1, ...)
    let arp = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0x15, 0x5d, 2, 0, 1, 10, 2, 0, 1, 0, 0, 0, 0, 0, 0, 10, 1, 0, 20,
    ];
    let f = eth(0x0806, &arp);
    let (o, s) = decode_one(linktype::ETHERNET, &f);
    assert_eq!(o, Outcome::Skip(Skip::NotIp));
    assert_eq!(s.not_ip, 1);
}

#[test]
fn ethernet_8023_llc_is_not_ip() {
    // 802.3 | length 38 | LLC DSAP 0x42 SSAP 0x42 (spanning tree)
    let f = eth(38, &[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
    assert_eq!(skip(linktype::ETHERNET, &f), Skip::NotIp);
}

#[test]
fn ethernet_mpls() {
    // Ethernet | MPLS label 16 (S=0) | label 32 (S=1) | IPv4 | TCP
    let mut body = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
    body.extend(https4());
    let f = eth(0x8847, &body);
    assert_https4(&pkt(decode_one(linktype::ETHERNET, &f).0));
}

#[test]
fn ethernet_mpls_pseudowire_is_not_ip() {
    // Ethernet | MPLS label (S=1) | control word 0x0000 | Ethernet...
    let f = eth(0x8847, &[0x00, 0x01, 0x01, 0x40, 0, 0, 0, 0, 0x02, 0x15]);
    assert_eq!(skip(linktype::ETHERNET, &f), Skip::NotIp);
}

#[test]
fn ethernet_pppoe_ipv6() {
    // Ethernet | PPPoE session (ver/type 0x11, code 0, session 1, length) | PPP 0x0057 | IPv6
    let ip = dns6();
    let mut body = vec![0x11, 0x00, 0x00, 0x01];
    body.extend(((ip.len() + 2) as u16).to_be_bytes());
    body.extend([0x00, 0x57]);
    body.extend(&ip);
    let f = eth(0x8864, &body);
    assert_dns6(&pkt(decode_one(linktype::ETHERNET, &f).0));
}

#[test]
fn ethernet_pppoe_lcp_is_not_ip() {
    // Ethernet | PPPoE session | PPP 0xc021 (LCP)
    let f = eth(0x8864, &[0x11, 0, 0, 1, 0, 6, 0xc0, 0x21, 1, 1, 0, 4]);
    assert_eq!(skip(linktype::ETHERNET, &f), Skip::NotIp);
}

/// Linux cooked v1 header: packet type, ARPHRD_ETHER, address length 6, address + 2
/// pad bytes, protocol.
fn sll(proto: u16, p: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 0, 6, 2, 0x15, 0x5d, 2, 0, 1, 0, 0];
    v.extend(proto.to_be_bytes());
    v.extend(p);
    v
}

#[test]
fn sll_ipv4() {
    let f = sll(0x0800, &https4());
    assert_https4(&pkt(decode_one(linktype::LINUX_SLL, &f).0));
}

#[test]
fn sll_vlan() {
    // SLL protocol 0x8100 | 802.1Q | IPv6
    let f = sll(0x8100, &tag(&[0, 100], 0x86dd, &dns6()));
    assert_dns6(&pkt(decode_one(linktype::LINUX_SLL, &f).0));
}

#[test]
fn sll_header_cut() {
    assert_eq!(
        skip(linktype::LINUX_SLL, &[0, 0, 0, 1, 0, 6]),
        Skip::Truncated("sll header")
    );
}

#[test]
fn sll_8022_is_not_ip() {
    // LINUX_SLL_P_802_2 (0x0004)
    assert_eq!(
        skip(linktype::LINUX_SLL, &sll(0x0004, &[0x42, 0x42, 3])),
        Skip::NotIp
    );
}

#[test]
fn sll2_ipv6() {
    // SLL2: protocol, reserved, interface index 2, ARPHRD_ETHER, packet type, addr len 6,
    // 8 address bytes | IPv6 | UDP
    let mut f = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6];
    f.extend([2, 0x15, 0x5d, 2, 0, 1, 0, 0]);
    f.extend(dns6());
    assert_dns6(&pkt(decode_one(linktype::LINUX_SLL2, &f).0));
}

#[test]
fn raw_linktypes() {
    for lt in [linktype::RAW, linktype::RAW_BSD12, linktype::RAW_BSD14] {
        assert_https4(&pkt(decode_one(lt, &https4()).0));
        assert_dns6(&pkt(decode_one(lt, &dns6()).0));
    }
    assert_https4(&pkt(decode_one(linktype::IPV4, &https4()).0));
    assert_dns6(&pkt(decode_one(linktype::IPV6, &dns6()).0));
}

#[test]
fn raw_ipv4_linktype_rejects_ipv6() {
    assert_eq!(skip(linktype::IPV4, &dns6()), Skip::Malformed("ip version"));
    assert_eq!(
        skip(linktype::IPV6, &https4()),
        Skip::Malformed("ip version")
    );
}

#[test]
fn null_little_endian() {
    // BSD null, AF_INET = 2 in little-endian host order | IPv4
    let f = cat(&[&[2, 0, 0, 0], &https4()]);
    assert_https4(&pkt(decode_one(linktype::NULL, &f).0));
    // AF_INET6 = 30 (macOS), little-endian | IPv6
    let f = cat(&[&[30, 0, 0, 0], &dns6()]);
    assert_dns6(&pkt(decode_one(linktype::NULL, &f).0));
}

#[test]
fn null_big_endian() {
    // BSD null, AF_INET = 2 big-endian | IPv4 ; AF_INET6 = 28 (FreeBSD) | IPv6
    let f = cat(&[&[0, 0, 0, 2], &https4()]);
    assert_https4(&pkt(decode_one(linktype::NULL, &f).0));
    let f = cat(&[&[0, 0, 0, 28], &dns6()]);
    assert_dns6(&pkt(decode_one(linktype::NULL, &f).0));
}

#[test]
fn null_other_family_is_not_ip() {
    // AF 7 (OSI)
    assert_eq!(skip(linktype::NULL, &[7, 0, 0, 0, 0x81]), Skip::NotIp);
    assert_eq!(
        skip(linktype::NULL, &[2, 0]),
        Skip::Truncated("null header")
    );
}

#[test]
fn openbsd_loop() {
    // OpenBSD loop: AF_INET6 = 24, network byte order | IPv6
    let f = cat(&[&[0, 0, 0, 24], &dns6()]);
    assert_dns6(&pkt(decode_one(linktype::LOOP, &f).0));
    // The same family in little-endian order is not a family here.
    let f = cat(&[&[24, 0, 0, 0], &dns6()]);
    assert_eq!(skip(linktype::LOOP, &f), Skip::NotIp);
}

/// NFLOG: header (AF_INET, version 0, resource id 0), a NFULA_PACKET_HDR TLV (type 1,
/// 8 bytes), a NFULA_PREFIX TLV (type 10, 5 bytes + 3 padding), then NFULA_PAYLOAD
/// (type 9) padded to 4 bytes. TLV length and type are little-endian.
fn nflog(ip: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0];
    v.extend([8, 0, 1, 0, 0x08, 0x00, 3, 0]);
    v.extend([5, 0, 10, 0, b'x', 0, 0, 0]);
    v.extend(((4 + ip.len()) as u16).to_le_bytes());
    v.extend([9, 0]);
    v.extend(ip);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

#[test]
fn nflog_payload() {
    assert_https4(&pkt(decode_one(linktype::NFLOG, &nflog(&https4())).0));
    let p = dns6();
    assert_dns6(&pkt(decode_one(linktype::NFLOG, &nflog(&p)).0));
}

#[test]
fn nflog_without_payload_is_not_ip() {
    // header | NFULA_PACKET_HDR only
    assert_eq!(
        skip(
            linktype::NFLOG,
            &[10, 0, 0, 0, 8, 0, 1, 0, 0x86, 0xdd, 3, 0]
        ),
        Skip::NotIp
    );
}

#[test]
fn nflog_bad_tlv_lengths() {
    // TLV length 2 (< its own header)
    assert_eq!(
        skip(linktype::NFLOG, &[2, 0, 0, 0, 2, 0, 1, 0]),
        Skip::Malformed("nflog tlv length")
    );
    // TLV length 200 past the end of a non-payload TLV
    assert_eq!(
        skip(linktype::NFLOG, &[2, 0, 0, 0, 200, 0, 1, 0, 0, 0]),
        Skip::Truncated("nflog tlv")
    );
    // 2 stray bytes where a TLV header should be
    assert_eq!(
        skip(linktype::NFLOG, &[2, 0, 0, 0, 1, 0]),
        Skip::Truncated("nflog tlv")
    );
    assert_eq!(
        skip(linktype::NFLOG, &[2, 0]),
        Skip::Truncated("nflog header")
    );
}

#[test]
fn nflog_payload_cut_by_snaplen() {
    // The payload TLV says 4 + full packet but the frame ends 6 bytes early.
    let mut f = nflog(&https4());
    // header 4 + two TLVs of 8 + payload TLV header 4 + the packet (56, no padding)
    assert_eq!(f.len(), 4 + 8 + 8 + 4 + 56);
    f.truncate(f.len() - 6);
    let p = pkt(decode_one(linktype::NFLOG, &f).0);
    assert!(p.truncated);
    assert_eq!(tcp_of(&p).payload, b"GET / HTTP");
}

#[test]
fn unknown_linktype_counted() {
    let mut d = Decoder::default();
    assert_eq!(
        d.decode(147, &[1, 2, 3], 0, 1),
        Outcome::Skip(Skip::UnknownLinktype(147))
    );
    d.decode(147, &[], 0, 2);
    d.decode(105, &[], 0, 3);
    let s = d.stats();
    assert_eq!(s.unknown_linktypes.get(&147), Some(&2));
    assert_eq!(s.unknown_linktypes.get(&105), Some(&1));
    assert_eq!(s.frames, 3);
}

// ---------------------------------------------------------------- IP layer

#[test]
fn ipv6_extension_headers() {
    // IPv6 (next 0) | hop-by-hop (next 60, len 0, PadN 4) | destination options (next 17,
    // len 0, PadN 4) | UDP
    let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
    ext.extend([17, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend(udp(53001, 53, b"\x12\x34query"));
    let f = ip6(0, &ext);
    assert_dns6(&pkt(decode_one(linktype::RAW, &f).0));
}

#[test]
fn ipv6_routing_and_atomic_fragment() {
    // IPv6 | routing (type 0... next 44, len 0, segments left 0) | atomic fragment
    // (offset 0, M=0, next 17) | UDP: RFC 6946 says process it as unfragmented.
    let mut ext = vec![44, 0, 0, 0, 0, 0, 0, 0];
    ext.extend([17, 0, 0, 0, 0, 0, 0, 9]);
    ext.extend(udp(53001, 53, b"\x12\x34query"));
    let f = ip6(43, &ext);
    let (o, s) = decode_one(linktype::RAW, &f);
    assert_dns6(&pkt(o));
    assert_eq!(s.reassembled, 0);
}

#[test]
fn ipv6_extension_header_cut() {
    // IPv6 payload length covers a destination options header of 16 bytes, frame
    // stops after 8 of them.
    let mut f = ip6(60, &[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.truncate(48);
    assert_eq!(
        skip(linktype::RAW, &f),
        Skip::Truncated("ip extension header")
    );
    // A header longer than the payload length says.
    let f = ip6(60, &[17, 1, 1, 12, 0, 0, 0, 0]);
    assert_eq!(
        skip(linktype::RAW, &f),
        Skip::Malformed("ip extension header length")
    );
}

/// AH header (RFC 4302): next header, payload length 4 (= 24 bytes), reserved, SPI,
/// sequence number, 12-byte ICV.
fn ah(next: u8) -> Vec<u8> {
    let mut v = vec![next, 4, 0, 0];
    v.extend(0x0000_1001u32.to_be_bytes());
    v.extend(7u32.to_be_bytes());
    v.extend([0xaa; 12]);
    v
}

#[test]
fn ipv4_ah_tcp() {
    // IPv4 (proto 51) | AH (next 6) | TCP
    let body = cat(&[
        &ah(6),
        &tcp(50000, 443, 1000, 2000, PSH | ACK, b"GET / HTTP/1.1\r\n"),
    ]);
    let f = ip4(51, &body);
    let (o, s) = decode_one(linktype::RAW, &f);
    let p = pkt(o);
    assert!(p.ah);
    assert_eq!(tcp_of(&p).payload, b"GET / HTTP/1.1\r\n");
    assert_eq!((s.ah, s.tcp), (1, 1));
}

#[test]
fn ipv6_ah_udp() {
    // IPv6 (next 51) | AH (next 17) | UDP
    let body = cat(&[&ah(17), &udp(53001, 53, b"\x12\x34query")]);
    let f = ip6(51, &body);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert!(p.ah);
    assert_eq!(udp_of(&p).1, 53);
}

#[test]
fn ah_zero_length_is_malformed() {
    // AH payload length 0 cannot hold the SPI and sequence number (RFC 4302 2.2).
    let mut bad = ah(6);
    bad[1] = 0;
    assert_eq!(
        skip(linktype::RAW, &ip4(51, &bad)),
        Skip::Malformed("ip extension header")
    );
}

#[test]
fn esp_spi() {
    // IPv4 (proto 50) | ESP SPI 0x00001234, sequence 1, encrypted bytes
    let body = [0, 0, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad];
    let f = ip4(50, &body);
    let (o, s) = decode_one(linktype::RAW, &f);
    assert_eq!(pkt(o).l4, L4::Esp { spi: Some(0x1234) });
    assert_eq!(s.esp, 1);
    // Only 2 bytes of ESP: no SPI.
    let f = ip4(50, &[0, 0]);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.l4, L4::Esp { spi: None });
}

#[test]
fn other_protocol() {
    // IPv4 proto 89 (OSPF)
    let f = ip4(89, &[2, 1, 0, 44]);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.l4, L4::Other { proto: 89 });
}

#[test]
fn ipip() {
    // IPv4 router -> router (proto 4) | IPv4 client -> CAS | TCP
    let f = ip4_full(ROUTER4, [192, 0, 2, 1], 4, 9, 0, &https4());
    let (o, s) = decode_one(linktype::RAW, &f);
    let p = pkt(o);
    assert_https4(&Packet {
        tunnel_depth: 0,
        ..p
    });
    assert_eq!(p.tunnel_depth, 1);
    assert_eq!((s.ip4, s.tunnels), (2, 1));
}

#[test]
fn six_in_four() {
    // IPv4 (proto 41) | IPv6 | UDP
    let f = ip4_full(ROUTER4, [192, 0, 2, 1], 41, 9, 0, &dns6());
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_dns6(&p);
    assert_eq!(p.tunnel_depth, 1);
}

#[test]
fn ipip_version_mismatch() {
    // IPv4 proto 4 carrying an IPv6 packet
    let f = ip4_full(ROUTER4, [192, 0, 2, 1], 4, 9, 0, &dns6());
    assert_eq!(skip(linktype::RAW, &f), Skip::Malformed("ip version"));
}

#[test]
fn tunnel_depth_limit() {
    let mut f = https4();
    for _ in 0..MAX_TUNNEL_DEPTH {
        f = ip4_full(ROUTER4, [192, 0, 2, 1], 4, 9, 0, &f);
    }
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.tunnel_depth, MAX_TUNNEL_DEPTH);
    let f = ip4_full(ROUTER4, [192, 0, 2, 1], 4, 9, 0, &f);
    assert_eq!(skip(linktype::RAW, &f), Skip::Malformed("tunnel depth"));
}

/// GRE header (RFC 2784/2890): flags+version, protocol, then the optional words.
fn gre(flags: u16, proto: u16, opts: &[u8], p: &[u8]) -> Vec<u8> {
    let mut v = flags.to_be_bytes().to_vec();
    v.extend(proto.to_be_bytes());
    v.extend(opts);
    v.extend(p);
    v
}

fn over_gre(g: &[u8]) -> Vec<u8> {
    ip4_full(ROUTER4, [192, 0, 2, 1], 47, 9, 0, g)
}

#[test]
fn gre_plain() {
    // IPv4 (proto 47) | GRE (no flags, 0x0800) | IPv4 | TCP
    let f = over_gre(&gre(0, 0x0800, &[], &https4()));
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.tunnel_depth, 1);
    assert_https4(&Packet {
        tunnel_depth: 0,
        ..p
    });
}

#[test]
fn gre_checksum_key_sequence() {
    // GRE C|K|S: checksum+reserved, key 0x0000beef, sequence 5 | IPv6 | UDP
    let opts = [0xab, 0xcd, 0, 0, 0, 0, 0xbe, 0xef, 0, 0, 0, 5];
    let g = gre(0xb000, 0x86dd, &opts, &dns6());
    let f = over_gre(&g);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_dns6(&p);
    assert_eq!(p.tunnel_depth, 1);
}

#[test]
fn gre_key_sequence_cut() {
    // GRE K|S announces 8 option bytes, 4 are there.
    let g = gre(0x3000, 0x0800, &[0, 0, 0, 1], &[]);
    assert_eq!(
        skip(linktype::RAW, &over_gre(&g)),
        Skip::Truncated("gre header")
    );
}

#[test]
fn gre_pptp_is_opaque() {
    // Enhanced GRE version 1 (PPTP): K set, protocol 0x880b (PPP)
    let g = gre(0x2001, 0x880b, &[0, 4, 0, 1], &[0xff, 0x03]);
    let f = over_gre(&g);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.l4, L4::Other { proto: 47 });
    assert_eq!(p.tunnel_depth, 0);
}

#[test]
fn gre_transparent_ethernet() {
    // GRE 0x6558 | Ethernet | 802.1Q | IPv4 | TCP
    let inner = eth(0x8100, &tag(&[0, 7], 0x0800, &https4()));
    let f = over_gre(&gre(0, 0x6558, &[], &inner));
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.tunnel_depth, 1);
    assert_https4(&Packet {
        tunnel_depth: 0,
        ..p
    });
}

#[test]
fn erspan_type_2() {
    // GRE S (seq 1) 0x88be | ERSPAN II (ver 1, VLAN 0, session 1, index 0) | Ethernet | IPv4
    let erspan = [0x10, 0x00, 0x00, 0x01, 0, 0, 0, 0];
    let inner = cat(&[&erspan, &eth(0x0800, &https4())]);
    let g = gre(0x1000, 0x88be, &[0, 0, 0, 1], &inner);
    let f = over_gre(&g);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.tunnel_depth, 1);
    assert_https4(&Packet {
        tunnel_depth: 0,
        ..p
    });
}

#[test]
fn erspan_type_1() {
    // GRE without S, 0x88be | Ethernet directly | IPv6
    let g = gre(0, 0x88be, &[], &eth(0x86dd, &dns6()));
    assert_dns6(&pkt(decode_one(linktype::RAW, &over_gre(&g)).0));
}

#[test]
fn erspan_type_3() {
    // GRE S 0x22eb | ERSPAN III (ver 2, session 1, timestamp, SGT, flags O=0) | Ethernet
    let erspan = [0x20, 0x00, 0x00, 0x01, 0, 0, 0, 9, 0, 0, 0x00, 0x00];
    let inner = cat(&[&erspan, &eth(0x0800, &https4())]);
    let g = gre(0x1000, 0x22eb, &[0, 0, 0, 1], &inner);
    let f = over_gre(&g);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_https4(&Packet {
        tunnel_depth: 0,
        ..p
    });
}

#[test]
fn erspan_type_3_platform_subheader() {
    // ERSPAN III with O=1 | 8-byte platform-specific subheader | Ethernet
    let erspan = [0x20, 0x00, 0x00, 0x01, 0, 0, 0, 9, 0, 0, 0x00, 0x01];
    let platform = [0x0c, 0, 0, 0, 0, 0, 0, 0];
    let inner = cat(&[&erspan, &platform, &eth(0x86dd, &dns6())]);
    let g = gre(0x1000, 0x22eb, &[0, 0, 0, 1], &inner);
    assert_dns6(&pkt(decode_one(linktype::RAW, &over_gre(&g)).0));
}

#[test]
fn erspan_header_cut() {
    let g = gre(0x1000, 0x22eb, &[0, 0, 0, 1], &[0x20, 0, 0, 1, 0, 0]);
    assert_eq!(
        skip(linktype::RAW, &over_gre(&g)),
        Skip::Truncated("erspan header")
    );
}

#[test]
fn ethernet_padding_is_not_payload() {
    // Ethernet | IPv4 (40 bytes) | TCP ACK without data | 6 padding bytes (60-byte frame)
    let mut f = eth(0x0800, &ip4(IP_TCP, &tcp(50000, 443, 1, 1, ACK, &[])));
    f.resize(60, 0);
    let p = pkt(decode_one(linktype::ETHERNET, &f).0);
    assert_eq!(tcp_of(&p).payload, b"");
    assert!(!p.truncated);
}

#[test]
fn snaplen_truncated_payload() {
    // IPv4 total length says 16 bytes of payload; the capture kept 5 of them.
    let mut f = eth(0x0800, &https4());
    f.truncate(f.len() - 11);
    let (o, s) = decode_one(linktype::ETHERNET, &f);
    let p = pkt(o);
    assert!(p.truncated);
    assert_eq!(tcp_of(&p).payload, b"GET /");
    assert_eq!(s.partial, 1);
}

#[test]
fn tcp_header_cut() {
    // IPv4 total length 30: only 10 TCP bytes
    let seg = tcp(50000, 443, 1, 1, ACK, &[]);
    let f = ip4(IP_TCP, &seg[..10]);
    assert_eq!(skip(linktype::RAW, &f), Skip::Truncated("tcp header"));
}

#[test]
fn tcp_bad_data_offset() {
    // data offset 4 (16 bytes) < 20
    let mut seg = tcp(50000, 443, 1, 1, ACK, &[]);
    seg[12] = 0x40;
    assert_eq!(
        skip(linktype::RAW, &ip4(IP_TCP, &seg)),
        Skip::Malformed("tcp data offset")
    );
    // data offset 15 (60 bytes) in a complete 24-byte segment
    seg[12] = 0xf0;
    seg.extend([1, 1, 1, 0]);
    assert_eq!(
        skip(linktype::RAW, &ip4(IP_TCP, &seg)),
        Skip::Malformed("tcp data offset")
    );
}

#[test]
fn tcp_options_cut_by_snaplen() {
    // data offset 8 (12 option bytes); the frame stops inside the options.
    let mut seg = tcp(
        50000,
        443,
        1,
        0,
        SYN,
        &[2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2],
    );
    seg[12] = 0x80;
    let mut f = ip4(IP_TCP, &seg);
    f.truncate(f.len() - 4);
    // The fixed header is whole: kept (as Wireshark keeps it in its stream), no payload.
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert!(p.truncated);
    let t = tcp_of(&p);
    assert_eq!((t.src_port, t.dst_port, t.flags), (50000, 443, SYN));
    assert!(t.payload.is_empty());
    // Cut inside the fixed 20 bytes: nothing to place.
    let mut g = ip4(IP_TCP, &seg);
    g.truncate(20 + 12);
    assert_eq!(skip(linktype::RAW, &g), Skip::Truncated("tcp header"));
}

#[test]
fn tcp_options_skipped() {
    // SYN with MSS/WS/SACK-permitted options (data offset 8) and no payload
    let mut seg = tcp(
        50000,
        443,
        7,
        0,
        SYN,
        &[2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2],
    );
    seg[12] = 0x80;
    let f = ip4(IP_TCP, &seg);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    let t = tcp_of(&p);
    assert_eq!((t.flags, t.seq, t.payload), (SYN, 7, &b""[..]));
}

#[test]
fn udp_bad_lengths() {
    // UDP length 4 (< 8)
    let mut d = udp(53001, 53, b"abcd");
    d[4..6].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        skip(linktype::RAW, &ip4(IP_UDP, &d)),
        Skip::Malformed("udp length")
    );
    // UDP length 100 > the 12 bytes there: keep them, mark truncated
    d[4..6].copy_from_slice(&100u16.to_be_bytes());
    let f = ip4(IP_UDP, &d);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert!(p.truncated);
    assert_eq!(udp_of(&p).2, b"abcd");
    // UDP length 10 < 12 bytes there: the length wins
    d[4..6].copy_from_slice(&10u16.to_be_bytes());
    let f = ip4(IP_UDP, &d);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert!(!p.truncated);
    assert_eq!(udp_of(&p).2, b"ab");
    // 5 bytes of UDP header
    assert_eq!(
        skip(linktype::RAW, &ip4(IP_UDP, &d[..5])),
        Skip::Truncated("udp header")
    );
}

#[test]
fn ipv4_bad_headers() {
    let mut f = https4();
    f[0] = 0x44; // IHL 4
    assert_eq!(
        skip(linktype::RAW, &f),
        Skip::Malformed("ipv4 header length")
    );
    let mut f = https4();
    f[0] = 0x55; // version 5
    assert_eq!(skip(linktype::RAW, &f), Skip::Malformed("ip version"));
    let mut f = https4();
    f[2..4].copy_from_slice(&12u16.to_be_bytes()); // total length 12 < 20
    assert_eq!(
        skip(linktype::RAW, &f),
        Skip::Malformed("ipv4 total length")
    );
    assert_eq!(skip(linktype::RAW, &f[..12]), Skip::Truncated("ip header"));
    assert_eq!(skip(linktype::RAW, &[]), Skip::Truncated("ip header"));
}

#[test]
fn ipv4_total_length_zero_tso() {
    // TSO leaves total length 0: the captured length counts.
    let mut f = https4();
    f[2..4].copy_from_slice(&[0, 0]);
    assert_https4(&pkt(decode_one(linktype::RAW, &f).0));
}

// ---------------------------------------------------------------- ICMP errors

/// ICMP header: type, code, checksum 0, 4 unused/MTU bytes.
fn icmp_hdr(t: u8, code: u8) -> Vec<u8> {
    vec![t, code, 0, 0, 0, 0, 0, 0]
}

#[test]
fn icmp_port_unreachable_quoting_udp() {
    // IPv4 CAS -> client proto 1 | ICMP 3/3 | quoted IPv4 client -> CAS (UDP) | UDP 8 bytes
    let quoted = ip4(IP_UDP, &udp(53001, 53, b"\x12\x34query"));
    let body = cat(&[&icmp_hdr(3, 3), &quoted[..28]]);
    let f = ip4_full(CAS4, CLIENT4, 1, 5, 0, &body);
    let (o, s) = decode_one(linktype::RAW, &f);
    let p = pkt(o);
    assert!(p.icmp_error);
    assert_eq!((p.src, p.dst), (client4(), cas4()));
    assert_eq!(udp_of(&p), (53001, 53, &b""[..]));
    assert_eq!(
        p.icmp,
        Some(IcmpError {
            reporter: cas4(),
            v6: false,
            icmp_type: 3,
            code: 3
        })
    );
    assert!(!p.truncated);
    assert_eq!((s.icmp_errors, s.udp), (1, 0));
}

#[test]
fn icmp_time_exceeded_quoting_tcp() {
    // Router -> client ICMP 11/0 | quoted IPv4 + 8 TCP bytes (ports, seq)
    let quoted = https4();
    let body = cat(&[&icmp_hdr(11, 0), &quoted[..28]]);
    let f = ip4_full(ROUTER4, CLIENT4, 1, 5, 0, &body);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    let t = tcp_of(&p);
    assert_eq!((p.src, p.dst), (client4(), cas4()));
    assert_eq!(
        (t.src_port, t.dst_port, t.seq, t.flags),
        (50000, 443, 1000, 0)
    );
    assert!(t.payload.is_empty());
    // A router quoting the whole header (RFC 1812) also gives the flags.
    let body = cat(&[&icmp_hdr(11, 0), &quoted]);
    let f = ip4_full(ROUTER4, CLIENT4, 1, 5, 0, &body);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(tcp_of(&p).flags, PSH | ACK);
    assert!(tcp_of(&p).payload.is_empty());
}

#[test]
fn icmp_echo_is_other() {
    let f = ip4_full(CLIENT4, CAS4, 1, 5, 0, &[8, 0, 0, 0, 0, 1, 0, 1, b'p']);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.l4, L4::Other { proto: 1 });
    assert!(!p.icmp_error);
}

#[test]
fn icmp_error_quote_too_short() {
    // Quoted IPv4 header and 2 transport bytes only
    let quoted = https4();
    let body = cat(&[&icmp_hdr(3, 1), &quoted[..22]]);
    let f = ip4_full(ROUTER4, CLIENT4, 1, 5, 0, &body);
    assert_eq!(
        skip(linktype::RAW, &f),
        Skip::Truncated("icmp quoted transport")
    );
    // Quoted IPv4 header cut
    let body = cat(&[&icmp_hdr(3, 1), &quoted[..12]]);
    let f = ip4_full(ROUTER4, CLIENT4, 1, 5, 0, &body);
    assert_eq!(skip(linktype::RAW, &f), Skip::Truncated("icmp quoted ip"));
    // ICMP header cut
    let f = ip4_full(ROUTER4, CLIENT4, 1, 5, 0, &[3, 1, 0]);
    assert_eq!(skip(linktype::RAW, &f), Skip::Truncated("icmp header"));
}

#[test]
fn icmp_error_quoting_ipv6_is_malformed() {
    let body = cat(&[&icmp_hdr(3, 1), &dns6()]);
    let f = ip4_full(ROUTER4, CLIENT4, 1, 5, 0, &body);
    assert_eq!(
        skip(linktype::RAW, &f),
        Skip::Malformed("icmp quoted ip version")
    );
}

#[test]
fn icmp_error_quoting_icmp_error_is_not_followed() {
    // ICMP error quoting an ICMP error quoting UDP: the inner quote stays opaque.
    let inner_body = cat(&[&icmp_hdr(3, 3), &ip4(IP_UDP, &udp(1, 2, b""))]);
    let inner = ip4_full(CAS4, CLIENT4, 1, 5, 0, &inner_body);
    let body = cat(&[&icmp_hdr(11, 0), &inner]);
    let f = ip4_full(ROUTER4, CAS4, 1, 6, 0, &body);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert!(p.icmp_error);
    assert_eq!((p.src, p.dst), (cas4(), client4()));
    assert_eq!(p.l4, L4::Other { proto: 1 });
}

#[test]
fn icmp_error_quoting_later_fragment() {
    // The quoted packet is a non-first fragment: no transport header in the quote.
    let quoted = ip4_frag(IP_UDP, 77, 1480, false, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let body = cat(&[&icmp_hdr(11, 1), &quoted]);
    let f = ip4_full(CAS4, CLIENT4, 1, 5, 0, &body);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert_eq!(p.l4, L4::Other { proto: IP_UDP });
}

#[test]
fn icmpv6_port_unreachable_quoting_udp() {
    // IPv6 CAS -> client next 58 | ICMPv6 1/4 | quoted IPv6 client -> CAS | UDP
    let quoted = dns6();
    let body = cat(&[&icmp_hdr(1, 4), &quoted]);
    let f = ip6_full(CAS6, CLIENT6, 58, &body);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    assert!(p.icmp_error);
    assert_eq!((p.src, p.dst), (client6(), cas6()));
    assert_eq!(udp_of(&p), (53001, 53, &b""[..]));
    assert_eq!(
        p.icmp.map(|i| (i.v6, i.icmp_type, i.code)),
        Some((true, 1, 4))
    );
}

#[test]
fn icmpv6_packet_too_big_quoting_tcp() {
    // Router -> client ICMPv6 2/0 (MTU 1280) | quoted IPv6 (dest options) | TCP 8 bytes
    let seg = tcp(50001, 443, 0xdead_beef, 0, ACK, &[0; 64]);
    let mut ext = vec![IP_TCP, 0, 1, 4, 0, 0, 0, 0];
    ext.extend(&seg);
    let quoted = ip6(60, &ext);
    let mut hdr = icmp_hdr(2, 0);
    hdr[4..8].copy_from_slice(&1280u32.to_be_bytes());
    let body = cat(&[&hdr, &quoted[..40 + 8 + 8]]);
    let f = ip6_full(ROUTER6, CLIENT6, 58, &body);
    let p = pkt(decode_one(linktype::RAW, &f).0);
    let t = tcp_of(&p);
    assert_eq!((t.src_port, t.dst_port, t.seq), (50001, 443, 0xdead_beef));
    assert_eq!(
        p.icmp.map(|i| i.reporter),
        Some(IpAddr::V6(Ipv6Addr::from(ROUTER6)))
    );
}

#[test]
fn icmpv6_echo_is_other() {
    let f = ip6(58, &[128, 0, 0, 0, 0, 1, 0, 1]);
    assert_eq!(
        pkt(decode_one(linktype::RAW, &f).0).l4,
        L4::Other { proto: 58 }
    );
}

// ---------------------------------------------------------------- reassembly

/// A UDP datagram client:53001 -> CAS:53 of 8 + 40 bytes, split in three 16-byte pieces.
fn udp48() -> Vec<u8> {
    udp(53001, 53, &(0u8..40).collect::<Vec<_>>())
}

fn v4_pieces(id: u16, dgram: &[u8], cuts: &[(usize, usize)]) -> Vec<Vec<u8>> {
    cuts.iter()
        .map(|&(s, e)| ip4_frag(IP_UDP, id, s, e < dgram.len(), &dgram[s..e]))
        .collect()
}

fn feed(d: &mut Decoder, frames: &[Vec<u8>]) -> Vec<String> {
    frames
        .iter()
        .enumerate()
        .map(
            |(i, f)| match d.decode(linktype::RAW, f, i as i64, i as u64 + 1) {
                Outcome::Packet(p) => format!("packet reassembled={}", p.reassembled),
                other => format!("{other:?}"),
            },
        )
        .collect()
}

fn check_udp48(p: &Packet<'_>) {
    assert!(p.reassembled);
    assert_eq!((p.src, p.dst), (client4(), cas4()));
    let (s, d, payload) = udp_of(p);
    assert_eq!((s, d), (53001, 53));
    assert_eq!(payload, (0u8..40).collect::<Vec<_>>());
}

#[test]
fn fragments_in_order() {
    let dg = udp48();
    let fr = v4_pieces(7, &dg, &[(0, 16), (16, 32), (32, 48)]);
    let mut d = Decoder::default();
    assert_eq!(d.decode(linktype::RAW, &fr[0], 0, 1), Outcome::Fragment);
    assert_eq!(d.decode(linktype::RAW, &fr[1], 1, 2), Outcome::Fragment);
    let p = pkt(d.decode(linktype::RAW, &fr[2], 2, 3));
    check_udp48(&p);
    assert_eq!(p.first_fragment_frame, Some(1));
    let s = d.stats();
    assert_eq!((s.fragments, s.reassembled, s.packets, s.udp), (2, 1, 1, 1));
    assert_eq!(d.defrag_in_progress(), 0);
    assert_eq!(d.defrag_bytes(), 0);
}

#[test]
fn fragments_reversed() {
    let dg = udp48();
    let fr = v4_pieces(7, &dg, &[(32, 48), (16, 32), (0, 16)]);
    let mut d = Decoder::default();
    assert_eq!(d.decode(linktype::RAW, &fr[0], 0, 1), Outcome::Fragment);
    assert_eq!(d.decode(linktype::RAW, &fr[1], 0, 2), Outcome::Fragment);
    check_udp48(&pkt(d.decode(linktype::RAW, &fr[2], 0, 3)));
}

#[test]
fn fragments_overlapping_same_bytes() {
    // 0..24, 16..40 (overlaps 8 bytes with equal content), 40..48
    let dg = udp48();
    let fr = v4_pieces(7, &dg, &[(0, 24), (16, 40), (40, 48)]);
    let mut d = Decoder::default();
    let r = feed(&mut d, &fr[..2]);
    assert_eq!(r, ["Fragment", "Fragment"]);
    check_udp48(&pkt(d.decode(linktype::RAW, &fr[2], 0, 3)));
    assert_eq!(d.stats().defrag_overlaps, 1);
}

#[test]
fn fragments_overlapping_different_bytes() {
    let dg = udp48();
    let mut fr = v4_pieces(7, &dg, &[(0, 24), (16, 40), (40, 48)]);
    // Second fragment rewrites byte 20 of the datagram (inside the overlap).
    let at = 20 + (20 - 16);
    fr[1][at] ^= 0xff;
    let mut d = Decoder::default();
    let r = feed(&mut d, &fr[..2]);
    assert_eq!(r, ["Fragment", "Fragment"]);
    // Completes, first copy of every byte kept, conflict marked on the packet.
    let p = pkt(d.decode(linktype::RAW, &fr[2], 0, 3));
    assert!(p.frag_conflict);
    check_udp48(&p);
    let s = d.stats();
    assert_eq!(
        (s.defrag_conflicts, s.defrag_dropped, s.reassembled),
        (1, 0, 1)
    );
}

#[test]
fn fragments_conflicting_ends() {
    // Two last fragments ending at 48 and 40.
    let dg = udp48();
    let mut fr = v4_pieces(7, &dg, &[(0, 16), (32, 48)]);
    fr.push(ip4_frag(IP_UDP, 7, 32, false, &dg[32..40]));
    let mut d = Decoder::default();
    assert_eq!(
        feed(&mut d, &fr),
        ["Fragment", "Fragment", "Skip(DefragDropped)"]
    );
    assert_eq!(d.stats().defrag_conflicts, 1);
}

#[test]
fn fragments_duplicate() {
    let dg = udp48();
    let fr = v4_pieces(7, &dg, &[(0, 16), (0, 16), (16, 32), (32, 48)]);
    let mut d = Decoder::default();
    assert_eq!(feed(&mut d, &fr[..3]), ["Fragment"; 3]);
    check_udp48(&pkt(d.decode(linktype::RAW, &fr[3], 0, 4)));
    assert_eq!(d.stats().defrag_overlaps, 1);
}

#[test]
fn fragments_missing_piece_never_completes() {
    let dg = udp48();
    let fr = v4_pieces(7, &dg, &[(0, 16), (32, 48), (0, 16), (32, 48)]);
    let mut d = Decoder::default();
    assert_eq!(feed(&mut d, &fr), ["Fragment"; 4]);
    assert_eq!(d.defrag_in_progress(), 1);
    d.finish();
    assert_eq!(d.stats().defrag_incomplete, 1);
    assert_eq!(d.defrag_in_progress(), 0);
}

#[test]
fn fragments_different_ids_do_not_mix() {
    let dg = udp48();
    let mut fr = v4_pieces(7, &dg, &[(0, 16), (16, 32)]);
    fr.extend(v4_pieces(8, &dg, &[(32, 48)]));
    let mut d = Decoder::default();
    assert_eq!(feed(&mut d, &fr), ["Fragment"; 3]);
    assert_eq!(d.defrag_in_progress(), 2);
}

#[test]
fn fragment_cut_by_snaplen() {
    let dg = udp48();
    let mut f = ip4_frag(IP_UDP, 7, 0, true, &dg[..16]);
    f.truncate(f.len() - 1);
    assert_eq!(skip(linktype::RAW, &f), Skip::Truncated("ip fragment"));
}

#[test]
fn fragment_past_65535() {
    // offset 65528 + 16 bytes
    let f = ip4_frag(IP_UDP, 7, 65528, false, &[0; 16]);
    let mut d = Decoder::default();
    assert_eq!(
        d.decode(linktype::RAW, &f, 0, 1),
        Outcome::Skip(Skip::DefragDropped)
    );
    // A datagram in progress that then receives such a fragment is dropped.
    let first = ip4_frag(IP_UDP, 7, 0, true, &[0; 16]);
    assert_eq!(d.decode(linktype::RAW, &first, 0, 2), Outcome::Fragment);
    assert_eq!(
        d.decode(linktype::RAW, &f, 0, 3),
        Outcome::Skip(Skip::DefragDropped)
    );
    assert_eq!(d.stats().defrag_oversize, 2);
    assert_eq!(d.defrag_in_progress(), 0);
}

#[test]
fn fragments_carrying_ah() {
    // IPv4 proto 51 fragmented: AH + UDP in the first fragment, rest in the second.
    let body = cat(&[&ah(IP_UDP), &udp48()]);
    let fr = [
        ip4_frag(51, 9, 0, true, &body[..40]),
        ip4_frag(51, 9, 40, false, &body[40..]),
    ];
    let mut d = Decoder::default();
    assert_eq!(d.decode(linktype::RAW, &fr[1], 0, 1), Outcome::Fragment);
    let p = pkt(d.decode(linktype::RAW, &fr[0], 0, 2));
    assert!(p.ah);
    check_udp48(&p);
}

#[test]
fn fragmented_tunnel() {
    // The outer IPv4 (proto 4) is fragmented; the reassembled payload is IPv4 + TCP.
    let inner = https4();
    let mk = |off: usize, more: bool, p: &[u8]| {
        let word = (off / 8) as u16 | if more { 0x2000 } else { 0 };
        ip4_full(ROUTER4, [192, 0, 2, 1], 4, 3, word, p)
    };
    let fr = [mk(0, true, &inner[..24]), mk(24, false, &inner[24..])];
    let mut d = Decoder::default();
    assert_eq!(d.decode(linktype::RAW, &fr[0], 0, 1), Outcome::Fragment);
    let p = pkt(d.decode(linktype::RAW, &fr[1], 0, 2));
    assert!(p.reassembled);
    assert_eq!(p.tunnel_depth, 1);
    assert_https4(&Packet {
        reassembled: false,
        first_fragment_frame: None,
        tunnel_depth: 0,
        ..p
    });
}

#[test]
fn ipv6_fragments() {
    // IPv6 | Fragment (next 60) | dest options (next 17) + UDP, in two pieces, reversed.
    let mut body = vec![IP_UDP, 0, 1, 4, 0, 0, 0, 0];
    body.extend(udp48());
    let fr = [
        ip6_frag(60, 0xabcd, 24, false, &body[24..]),
        ip6_frag(60, 0xabcd, 0, true, &body[..24]),
    ];
    let mut d = Decoder::default();
    assert_eq!(d.decode(linktype::RAW, &fr[0], 0, 1), Outcome::Fragment);
    let p = pkt(d.decode(linktype::RAW, &fr[1], 0, 2));
    assert!(p.reassembled);
    assert_eq!((p.src, p.dst), (client6(), cas6()));
    assert_eq!(udp_of(&p).2, (0u8..40).collect::<Vec<_>>());
    assert_eq!(d.stats().ip6, 2);
}

#[test]
fn ipv6_fragment_ids_distinct() {
    let body = udp48();
    let fr = [
        ip6_frag(IP_UDP, 1, 0, true, &body[..24]),
        ip6_frag(IP_UDP, 2, 24, false, &body[24..]),
    ];
    let mut d = Decoder::default();
    assert_eq!(feed(&mut d, &fr), ["Fragment"; 2]);
}

fn small_limits() -> DefragLimits {
    DefragLimits {
        max_datagrams: 2,
        max_bytes: 1 << 20,
        max_fragments_per_datagram: 8,
        timeout_ns: 1_000_000_000,
    }
}

#[test]
fn cap_max_datagrams() {
    let dg = udp48();
    let mut d = Decoder::new(small_limits());
    for id in 1..=3 {
        let f = ip4_frag(IP_UDP, id, 0, true, &dg[..24]);
        assert_eq!(
            d.decode(linktype::RAW, &f, 0, u64::from(id)),
            Outcome::Fragment
        );
    }
    assert_eq!(d.defrag_in_progress(), 2);
    assert_eq!(d.stats().defrag_dropped_cap, 1);
    // Datagram 1 was the oldest and is gone: its tail starts a new, incomplete one.
    let tail1 = ip4_frag(IP_UDP, 1, 24, false, &dg[24..]);
    assert_eq!(d.decode(linktype::RAW, &tail1, 0, 4), Outcome::Fragment);
    // Datagram 2 was evicted by that; datagram 3 still completes.
    let tail3 = ip4_frag(IP_UDP, 3, 24, false, &dg[24..]);
    check_udp48(&pkt(d.decode(linktype::RAW, &tail3, 0, 5)));
    assert_eq!(d.stats().defrag_dropped_cap, 2);
}

#[test]
fn cap_max_bytes() {
    let dg = udp48();
    let limits = DefragLimits {
        max_datagrams: 100,
        max_bytes: 40,
        ..small_limits()
    };
    let mut d = Decoder::new(limits);
    for id in 1..=3 {
        let f = ip4_frag(IP_UDP, id, 0, true, &dg[..16]);
        assert_eq!(d.decode(linktype::RAW, &f, 0, 1), Outcome::Fragment);
        assert!(d.defrag_bytes() <= 40);
    }
    assert_eq!(d.stats().defrag_dropped_cap, 1);
    assert_eq!(d.defrag_in_progress(), 2);
    // A fragment reaching past max_bytes can never be held.
    let f = ip4_frag(IP_UDP, 9, 0, true, &dg[..48]);
    assert_eq!(
        d.decode(linktype::RAW, &f, 0, 1),
        Outcome::Skip(Skip::DefragDropped)
    );
    // A fragment far out is charged its offset: holding it evicts the others.
    let f = ip4_frag(IP_UDP, 10, 24, true, &dg[..16]);
    assert_eq!(d.decode(linktype::RAW, &f, 0, 1), Outcome::Fragment);
    assert_eq!(d.defrag_in_progress(), 1);
    assert!(d.defrag_bytes() <= 40);
}

#[test]
fn cap_fragments_per_datagram() {
    let dg = udp48();
    let limits = DefragLimits {
        max_fragments_per_datagram: 2,
        ..small_limits()
    };
    let fr = v4_pieces(7, &dg, &[(0, 16), (16, 32), (32, 48)]);
    let mut d = Decoder::new(limits);
    assert_eq!(
        feed(&mut d, &fr),
        ["Fragment", "Fragment", "Skip(DefragDropped)"]
    );
    assert_eq!(d.stats().defrag_dropped_cap, 1);
    assert_eq!(d.defrag_in_progress(), 0);
}

#[test]
fn defrag_timeout() {
    let dg = udp48();
    let fr = v4_pieces(7, &dg, &[(0, 16), (16, 32), (32, 48)]);
    let mut d = Decoder::new(small_limits());
    assert_eq!(d.decode(linktype::RAW, &fr[0], 0, 1), Outcome::Fragment);
    assert_eq!(
        d.decode(linktype::RAW, &fr[1], 900_000_000, 2),
        Outcome::Fragment
    );
    // 1.5 s after the first fragment: the datagram timed out, this starts a new one.
    assert_eq!(
        d.decode(linktype::RAW, &fr[2], 1_500_000_000, 3),
        Outcome::Fragment
    );
    assert_eq!(d.stats().defrag_timed_out, 1);
    // Any frame purges: an unrelated packet 3 s later drops the new datagram too.
    d.decode(linktype::RAW, &https4(), 3_000_000_000, 4);
    assert_eq!(d.stats().defrag_timed_out, 2);
    assert_eq!(d.defrag_in_progress(), 0);
}

#[test]
fn stats_account_for_every_frame() {
    let mut d = Decoder::default();
    let dg = udp48();
    let frames: Vec<(u32, Vec<u8>)> = vec![
        (linktype::RAW, https4()),
        (linktype::RAW, ip4_frag(IP_UDP, 1, 0, true, &dg[..16])),
        (linktype::RAW, ip4_frag(IP_UDP, 1, 16, false, &dg[16..])),
        (linktype::ETHERNET, eth(0x0806, &[0; 28])),
        (linktype::RAW, vec![0x45]),
        (linktype::RAW, vec![0x75; 20]),
        (linktype::RAW, ip4_frag(IP_UDP, 2, 65528, false, &[0; 16])),
        (999, vec![]),
    ];
    for (i, (lt, f)) in frames.iter().enumerate() {
        d.decode(*lt, f, 0, i as u64 + 1);
    }
    let s = d.stats();
    assert_eq!(s.frames, 8);
    assert_eq!(
        (
            s.packets,
            s.fragments,
            s.not_ip,
            s.truncated,
            s.malformed,
            s.defrag_dropped
        ),
        (2, 1, 1, 1, 1, 1)
    );
    assert_eq!(invariant_sum(s), s.frames);
    assert_eq!(s.skip_reasons.get("ip version"), Some(&1));
}

fn invariant_sum(s: &DecodeStats) -> u64 {
    s.packets
        + s.fragments
        + s.not_ip
        + s.malformed
        + s.truncated
        + s.defrag_dropped
        + s.unknown_linktypes.values().sum::<u64>()
}

/// Every frame of the generator's fixture capture decodes to a packet.
#[test]
fn fixture_capture_decodes() {
    use crate::capture::{read_capture, FileSummary, Source};
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/exchange-scenarios.pcapng");
    let mut d = Decoder::default();
    let mut summary = FileSummary::default();
    let mut bad = Vec::new();
    read_capture(&Source::Path(path), &mut summary, |f| {
        if let o @ (Outcome::Skip(_) | Outcome::Fragment) =
            d.decode(f.linktype, f.data, f.ts_ns, f.number)
        {
            bad.push((f.number, format!("{o:?}")));
        }
    })
    .expect("fixture reads");
    assert!(bad.is_empty(), "frames not decoded: {bad:?}");
    let s = d.stats();
    assert_eq!(s.frames, summary.frames);
    assert!(s.tcp > 0 && s.ip4 > 0);
    assert_eq!(s.partial, 0);
}

// ---------------------------------------------------------------- properties

/// Every link type the decoder reads (the fuzz target's list), and one it does not.
fn all_linktypes() -> Vec<u32> {
    let mut v = crate::fuzz_api::LINKTYPES.to_vec();
    v.push(u32::MAX);
    v
}

/// Valid frames of every kind, to be mutated.
fn seeds() -> Vec<(u32, Vec<u8>)> {
    let dg = udp48();
    let icmp = ip4_full(
        CAS4,
        CLIENT4,
        1,
        5,
        0,
        &cat(&[&icmp_hdr(3, 3), &https4()[..28]]),
    );
    let gre3 = over_gre(&gre(
        0x1000,
        0x22eb,
        &[0, 0, 0, 1],
        &cat(&[
            &[0x20, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1],
            &[0; 8],
            &eth(0x0800, &https4()),
        ]),
    ));
    vec![
        (linktype::ETHERNET, eth(0x0800, &https4())),
        (
            linktype::ETHERNET,
            eth(0x8100, &tag(&[0, 1], 0x86dd, &dns6())),
        ),
        (
            linktype::ETHERNET,
            eth(0x8847, &cat(&[&[0, 1, 1, 64], &https4()])),
        ),
        (linktype::LINUX_SLL, sll(0x0800, &https4())),
        (
            linktype::RAW,
            ip6(
                0,
                &cat(&[
                    &[60, 0, 1, 4, 0, 0, 0, 0],
                    &[17, 0, 1, 4, 0, 0, 0, 0],
                    &udp(1, 2, b"x"),
                ]),
            ),
        ),
        (
            linktype::RAW,
            ip4(51, &cat(&[&ah(6), &tcp(1, 2, 3, 4, ACK, b"y")])),
        ),
        (linktype::RAW, ip4_frag(IP_UDP, 1, 0, true, &dg[..16])),
        (linktype::RAW, ip4_frag(IP_UDP, 1, 16, false, &dg[16..])),
        (linktype::RAW, ip6_frag(IP_UDP, 5, 0, true, &dg[..16])),
        (linktype::RAW, ip6_frag(IP_UDP, 5, 16, false, &dg[16..])),
        (linktype::RAW, icmp),
        (
            linktype::RAW,
            ip6_full(CAS6, CLIENT6, 58, &cat(&[&icmp_hdr(1, 4), &dns6()])),
        ),
        (linktype::RAW, gre3),
        (
            linktype::RAW,
            over_gre(&gre(0x3000, 0x6558, &[0; 8], &eth(0x0800, &https4()))),
        ),
        (linktype::NFLOG, nflog(&https4())),
        (linktype::NULL, cat(&[&[2, 0, 0, 0], &https4()])),
    ]
}

proptest! {
    /// Random bytes under every link type: no panic, every frame counted once.
    #[test]
    fn random_bytes_never_panic(
        lt in prop::sample::select(all_linktypes()),
        data in prop::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut d = Decoder::default();
        let _ = d.decode(lt, &data, 0, 1);
        prop_assert_eq!(invariant_sum(d.stats()), 1);
    }

    /// Cutting a valid frame (every link type, tunnel and transport of the seeds) at
    /// any length never panics, counts the frame once, and never yields a packet whose
    /// payload reaches past the cut.
    #[test]
    fn any_cut_never_panics(which in 0usize..64, cut in any::<prop::sample::Index>()) {
        let seeds = seeds();
        let (lt, frame) = &seeds[which % seeds.len()];
        let frame = &frame[..cut.index(frame.len() + 1)];
        let mut d = Decoder::default();
        if let Outcome::Packet(p) = d.decode(*lt, frame, 0, 1) {
            let payload = match p.l4 {
                L4::Tcp(t) => t.payload.len(),
                L4::Udp { payload, .. } => payload.len(),
                _ => 0,
            };
            prop_assert!(payload <= frame.len());
        }
        prop_assert_eq!(invariant_sum(d.stats()), 1);
    }

    /// Valid frames with random byte changes and cuts, fed to one decoder with small
    /// limits: no panic, caps hold, every frame counted once.
    #[test]
    fn mutated_frames_never_panic(
        picks in prop::collection::vec(
            (
                0usize..16,
                prop::collection::vec((any::<u16>(), any::<u8>()), 0..4),
                any::<u16>(),
                0i64..3,
            ),
            1..40,
        ),
    ) {
        let seeds = seeds();
        let limits = DefragLimits {
            max_datagrams: 3,
            max_bytes: 4096,
            max_fragments_per_datagram: 4,
            timeout_ns: 2,
        };
        let mut d = Decoder::new(limits);
        let mut ts = 0;
        for (i, (which, flips, cut, dt)) in picks.iter().enumerate() {
            let (lt, seed) = &seeds[which % seeds.len()];
            let mut f = seed.clone();
            for (at, x) in flips {
                let n = f.len();
                if n > 0 {
                    f[usize::from(*at) % n] ^= x;
                }
            }
            f.truncate(usize::from(*cut) % (f.len() + 8));
            ts += dt;
            let _ = d.decode(*lt, &f, ts, i as u64 + 1);
            prop_assert!(d.defrag_in_progress() <= limits.max_datagrams);
            prop_assert!(d.defrag_bytes() <= limits.max_bytes);
        }
        prop_assert_eq!(invariant_sum(d.stats()), picks.len() as u64);
    }

    /// Any split of a datagram into fragments, in any order and with duplicates,
    /// reassembles to the original payload in the frame that fills the last hole.
    #[test]
    fn any_fragmentation_reassembles(
        len in 9usize..400,
        cuts in prop::collection::vec(1usize..50, 0..10),
        order in prop::collection::vec(any::<u32>(), 1..24),
        v6 in any::<bool>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let dg = udp(4000, 5000, &payload);
        // Fragment boundaries on 8-byte units.
        let mut bounds = vec![0usize];
        for c in &cuts {
            let next = bounds.last().copied().unwrap_or(0) + c * 8;
            if next >= dg.len() { break; }
            bounds.push(next);
        }
        bounds.push(dg.len());
        let pieces: Vec<Vec<u8>> = bounds.windows(2).map(|w| {
            let more = w[1] < dg.len();
            if v6 {
                ip6_frag(IP_UDP, 42, w[0], more, &dg[w[0]..w[1]])
            } else {
                ip4_frag(IP_UDP, 42, w[0], more, &dg[w[0]..w[1]])
            }
        }).collect();
        // Order: a random sequence of pieces (with repeats), then every piece once.
        let mut seq: Vec<usize> =
            order.iter().map(|o| *o as usize % pieces.len()).collect();
        seq.extend(0..pieces.len());
        let mut d = Decoder::default();
        let mut done = false;
        for (i, k) in seq.iter().enumerate() {
            match d.decode(linktype::RAW, &pieces[*k], 0, i as u64 + 1) {
                Outcome::Packet(p) => {
                    let (_, _, got) = udp_of(&p);
                    prop_assert_eq!(got, &payload[..]);
                    prop_assert!(p.reassembled || pieces.len() == 1);
                    done = true;
                    // Further pieces start a new datagram.
                    break;
                }
                Outcome::Fragment => {}
                Outcome::Skip(s) => return Err(TestCaseError::fail(format!("skip {s:?}"))),
            }
        }
        prop_assert!(done);
    }

    /// A flood of random fragments (random ids, offsets, lengths, times, v4 and v6)
    /// never holds more than the caps allow and is always counted.
    #[test]
    fn fragment_flood_respects_caps(
        frags in prop::collection::vec(
            (0u16..6, 0usize..8192, 0usize..700, any::<bool>(), any::<bool>(), 0i64..400),
            1..120,
        ),
    ) {
        let limits = DefragLimits {
            max_datagrams: 4,
            max_bytes: 70_000,
            max_fragments_per_datagram: 16,
            timeout_ns: 1_000,
        };
        let mut d = Decoder::new(limits);
        let mut ts = 0;
        for (i, &(id, unit, len, more, v6, dt)) in frags.iter().enumerate() {
            let body = vec![0x5a; len];
            let f = if v6 {
                ip6_frag(IP_UDP, u32::from(id), unit * 8, more, &body)
            } else {
                ip4_frag(IP_UDP, id, unit * 8, more, &body)
            };
            ts += dt;
            let _ = d.decode(linktype::RAW, &f, ts, i as u64 + 1);
            prop_assert!(d.defrag_in_progress() <= limits.max_datagrams);
            prop_assert!(d.defrag_bytes() <= limits.max_bytes);
        }
        prop_assert_eq!(invariant_sum(d.stats()), frags.len() as u64);
    }
}
