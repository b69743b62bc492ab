//! The Internet checksum (RFC 1071) of IPv4 headers and TCP/UDP segments.
//!
//! Captures taken on the sending host often hold packets whose checksum the network
//! card fills in later (checksum offload), so a wrong checksum never stops decoding:
//! like Wireshark, dpaudit reads the packet anyway, and counts it so that the coverage
//! report can say how many there were.

use std::net::IpAddr;

/// Sum of the big-endian 32-bit words of `data` (a trailing 1-3 byte part is padded with
/// zeros), to be folded into a 16-bit one's-complement sum. Valid when `data` starts at
/// an even offset of the checksummed region. Summing 32-bit words is the same sum modulo
/// 0xffff as summing 16-bit words (2^16 = 1 there), and halves the additions.
pub fn ones_sum(data: &[u8]) -> u64 {
    let mut s: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        s += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    s + u64::from(u32::from_be_bytes(tail))
}

/// Folds a word sum into the final Internet checksum (the complement of the folded sum).
pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Sum of the TCP/UDP pseudo-header (RFC 9293 3.1, RFC 8200 8.1).
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let addr = |a: IpAddr| match a {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (0..4).map(|i| ((b >> (32 * i)) as u32) as u64).sum()
        }
    };
    addr(src) + addr(dst) + u64::from(proto) + len as u64
}

/// Whether a whole IPv4 header (options included) carries a correct checksum.
pub fn ipv4_header_ok(header: &[u8]) -> bool {
    fold(ones_sum(header)) == 0
}

/// Whether a whole TCP or UDP segment (header and payload, as the IP length bounds it)
/// carries a correct checksum. A UDP checksum of zero over IPv4 means "not computed"
/// (RFC 768) and counts as correct.
pub fn segment_ok(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    fold(pseudo_header_sum(src, dst, proto, segment.len()) + ones_sum(segment)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 4.1: the words 0001 f203 f4f5 f6f7 sum to ddf2, the checksum is 220d.
    #[test]
    fn rfc1071_example() {
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(ones_sum(&d)), !0xddf2);
    }

    /// An IPv4 header from a real capture (checksum 0xb861): correct as captured, wrong
    /// after one byte of it changes.
    #[test]
    fn ipv4_header_checksum() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(ipv4_header_ok(&h));
        h[8] = 0x3f;
        assert!(!ipv4_header_ok(&h));
    }

    /// A UDP datagram over IPv6 and one over IPv4 with checksums computed here the long way
    /// (16-bit words), which the 32-bit word sum must agree with.
    #[test]
    fn segment_checksum_matches_a_word_by_word_sum() {
        for (src, dst) in [
            (
                "192.0.2.1".parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
            ),
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8:1::25".parse().unwrap(),
            ),
        ] {
            let mut seg = vec![
                0xc0, 0x01, 0x00, 0x35, 0x00, 0x0d, 0x00, 0x00, 1, 2, 3, 4, 5,
            ];
            let mut words: u64 = 0;
            let mut add_bytes = |b: &[u8]| {
                for w in b.chunks(2) {
                    words += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
                }
            };
            for a in [src, dst] {
                match a {
                    IpAddr::V4(v) => add_bytes(&v.octets()),
                    IpAddr::V6(v) => add_bytes(&v.octets()),
                }
            }
            add_bytes(&[0, 17, 0, seg.len() as u8]);
            add_bytes(&seg);
            let c = fold(words);
            seg[6..8].copy_from_slice(&c.to_be_bytes());
            assert!(segment_ok(src, dst, 17, &seg));
            seg[9] ^= 0x40;
            assert!(!segment_ok(src, dst, 17, &seg));
        }
    }
}
