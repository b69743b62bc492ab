//! The Internet checksum (RFC 1071) of IPv4 headers and TCP/UDP segments.
//!
//! Captures taken on the sending host often hold packets whose checksum the network
//! card fills in later (checksum offload), so a wrong checksum never stops decoding:
//! like Wireshark, dpaudit reads the packet anyway, and counts it so that the coverage
//! report can say how many there were.

use std::net::IpAddr;

/// One's-complement sum of `data` as big-endian 16-bit words (a trailing odd byte is
/// padded with a zero), not yet folded: [`fold`] it, alone or with other sums. Valid when
/// `data` starts at an even offset of the checksummed region. It is zero only when every
/// byte is.
///
/// Wider words give the same sum modulo 0xffff (2^16 = 1 there). Short segments
/// (handshakes) are added as big-endian 32-bit words, the least work per call; long ones
/// (bulk transfers) as little-endian 64-bit loads split in 32-bit halves, a loop the
/// compiler turns into vector code, folded and byte-swapped once at the end (the
/// one's-complement sum of byte-swapped words is the byte-swapped sum, RFC 1071 2(B)).
pub fn ones_sum(data: &[u8]) -> u64 {
    if data.len() >= VECTOR_MIN {
        ones_sum_long(data)
    } else {
        ones_sum_short(data)
    }
}

/// Length from which the vector loop pays for its set-up and the final fold.
const VECTOR_MIN: usize = 256;

/// The 8-byte words of `data` (the last one padded with zeros) as little-endian numbers,
/// each split in 32-bit halves, summed.
fn halves(data: &[u8]) -> u64 {
    let (mut lo, mut hi) = (0u64, 0u64);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let w = u64::from_le_bytes(w);
        lo += w & 0xffff_ffff;
        hi += w >> 32;
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let w = u64::from_le_bytes(tail);
    // Each addend is below 2^32: no overflow before 2^32 words (32 GiB).
    lo + (w & 0xffff_ffff) + hi + (w >> 32)
}

/// Big-endian 32-bit words, added one by one (the fewest instructions on a few dozen
/// bytes).
fn ones_sum_short(data: &[u8]) -> u64 {
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

fn ones_sum_long(data: &[u8]) -> u64 {
    let mut s = halves(data);
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    u64::from((s as u16).swap_bytes())
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

    /// The word-by-word sum of RFC 1071, the long way.
    fn words_sum(data: &[u8]) -> u64 {
        data.chunks(2)
            .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum()
    }

    proptest::proptest! {
        /// Every length (odd ones, remainders of the 8-byte loads, both sides of
        /// `VECTOR_MIN`) and content, all-zero and all-ones included, against the 16-bit
        /// word sum, alone and after a pseudo-header sum.
        #[test]
        fn ones_sum_is_the_word_sum(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
            fill in proptest::option::of(proptest::prelude::prop_oneof![proptest::prelude::Just(0u8), proptest::prelude::Just(0xffu8)]),
            pseudo in 0u64..0x6_0000,
        ) {
            let data = match fill {
                Some(b) => vec![b; data.len()],
                None => data,
            };
            proptest::prop_assert_eq!(fold(ones_sum(&data)), fold(words_sum(&data)));
            proptest::prop_assert_eq!(fold(pseudo + ones_sum(&data)), fold(pseudo + words_sum(&data)));
        }
    }

    /// A UDP datagram over IPv6 and one over IPv4 with checksums computed here the long way
    /// (16-bit words), which `ones_sum` must agree with.
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
