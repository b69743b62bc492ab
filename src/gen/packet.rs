//! Flow templates and the frame emitter.
//!
//! A [`Template`] holds one scenario's packets at layer 4 only: who sends, TCP flags and
//! sequence numbers relative to each side's initial sequence number, and the payload
//! (kept in one byte buffer, with its one's-complement sum computed once). [`emit`]
//! turns one template packet into a full Ethernet frame for a concrete flow ([`Wire`]):
//! it writes the Ethernet, optional 802.1Q, IPv4 or IPv6 and TCP/UDP/ESP headers, copies
//! the payload, and computes the IPv4 header checksum and the TCP/UDP checksum from the
//! header bytes plus the stored payload sum. Every frame it writes is well formed: the
//! lengths agree and the checksums verify.

/// TCP flag bits (RFC 9293 3.1).
pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;

/// IP protocol numbers (IANA).
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ESP: u8 = 50;

/// Receive window of SYN segments (never scaled) and of later segments, which the
/// window-scale option (shift 8) multiplies to 262,656 bytes (Windows 2008 style).
const SYN_WINDOW: u16 = 64240;
const TCP_WINDOW: u16 = 1026;
/// Length of the Windows-style SYN options: MSS, NOP, WS, NOP, NOP, SACK permitted.
const SYN_OPTS_LEN: usize = 12;
/// Delay between two packets sent the same way in a row (microseconds).
pub(crate) const GAP_SAME_US: u32 = 12;
/// Delay before a packet that answers the other side (a LAN round trip, microseconds).
pub(crate) const GAP_TURN_US: u32 = 180;

/// Layer 4 of a template packet.
#[derive(Clone, Copy, Debug)]
pub(crate) enum L4 {
    /// `seq` and `ack` are relative to the sender's and the receiver's ISN.
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
        /// Some(mss) on SYN and SYN-ACK: the segment carries the SYN options.
        mss: Option<u16>,
    },
    Udp,
    /// ESP header fields (RFC 4303); the payload is the encrypted part and ICV.
    Esp {
        spi: u32,
        seq: u32,
    },
}

/// One packet of a template.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TplPkt {
    pub from_client: bool,
    pub l4: L4,
    /// Payload range in [`Template::data`].
    pub off: u32,
    pub len: u32,
    /// One's-complement sum of the payload (32-bit word sum, folded later).
    pub psum: u64,
    /// Delay before this packet when the template is played alone.
    pub gap_us: u32,
}

/// Which transport a template uses (decides the close at the end of `generate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Udp,
    Esp,
}

/// A scenario's packets, ready to be stamped onto any address pair.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pub transport: Transport,
    /// The client's address when it is a server of the plan; None = a client from the pool.
    pub client: Option<[u8; 4]>,
    pub server: [u8; 4],
    /// Fixed client port (e.g. SIP gateways, cluster heartbeats); None = ephemeral.
    pub client_port: Option<u16>,
    pub server_port: u16,
    pub data: Vec<u8>,
    pub pkts: Vec<TplPkt>,
}

pub(crate) use crate::decode::checksum::{fold as fold_checksum, ones_sum};

/// The concrete identity of one flow: addresses, ports, ISNs, IP id counters, VLAN.
#[derive(Clone, Debug)]
pub(crate) struct Wire {
    pub v6: bool,
    pub c_ip: [u8; 16],
    pub s_ip: [u8; 16],
    pub c_port: u16,
    pub s_port: u16,
    pub c_isn: u32,
    pub s_isn: u32,
    pub c_ipid: u16,
    pub s_ipid: u16,
    pub vlan: Option<u16>,
    /// XORed into ESP SPIs so that different flows use different security associations.
    pub spi_xor: u32,
}

impl Wire {
    /// IPv4 address of the client (only meaningful when `!v6`).
    pub(crate) fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&a);
        o
    }
}

fn mac_of(ip: &[u8; 16], v6: bool) -> [u8; 6] {
    // Locally administered MACs derived from the address: 02:15:5d:<low 3 address bytes>.
    let tail = if v6 { &ip[13..16] } else { &ip[1..4] };
    [0x02, 0x15, 0x5d, tail[0], tail[1], tail[2]]
}

/// Appends the Ethernet frame for `p` of a flow using `w` to `buf`, returning its length.
pub(crate) fn emit(buf: &mut Vec<u8>, tpl: &Template, p: &TplPkt, w: &mut Wire) -> usize {
    let start = buf.len();
    let (src, dst, sport, dport) = if p.from_client {
        (&w.c_ip, &w.s_ip, w.c_port, w.s_port)
    } else {
        (&w.s_ip, &w.c_ip, w.s_port, w.c_port)
    };
    let payload = &tpl.data[p.off as usize..(p.off + p.len) as usize];
    // Ethernet II (+ 802.1Q)
    buf.extend_from_slice(&mac_of(dst, w.v6));
    buf.extend_from_slice(&mac_of(src, w.v6));
    if let Some(vid) = w.vlan {
        buf.extend_from_slice(&[0x81, 0x00]);
        buf.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    buf.extend_from_slice(if w.v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let (proto, l4_hdr_len) = match p.l4 {
        L4::Tcp { mss, .. } => (
            IPPROTO_TCP,
            20 + if mss.is_some() { SYN_OPTS_LEN } else { 0 },
        ),
        L4::Udp => (IPPROTO_UDP, 8),
        L4::Esp { .. } => (IPPROTO_ESP, 8),
    };
    let l4_len = l4_hdr_len + payload.len();
    // IP header; the pseudo-header sum for TCP/UDP is built alongside.
    let mut pseudo: u64;
    if w.v6 {
        buf.extend_from_slice(&[0x60, 0, 0, 0]);
        buf.extend_from_slice(&(l4_len as u16).to_be_bytes());
        buf.push(proto);
        buf.push(128);
        buf.extend_from_slice(src);
        buf.extend_from_slice(dst);
        pseudo = ones_sum(src) + ones_sum(dst) + l4_len as u64 + u64::from(proto);
    } else {
        let id = if p.from_client {
            w.c_ipid = w.c_ipid.wrapping_add(1);
            w.c_ipid
        } else {
            w.s_ipid = w.s_ipid.wrapping_add(1);
            w.s_ipid
        };
        let tot = (20 + l4_len) as u16;
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&tot.to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6] = 0x40; // DF
        h[8] = 128;
        h[9] = proto;
        h[12..16].copy_from_slice(&src[..4]);
        h[16..20].copy_from_slice(&dst[..4]);
        let c = fold_checksum(ones_sum(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        buf.extend_from_slice(&h);
        pseudo = ones_sum(&src[..4]) + ones_sum(&dst[..4]) + l4_len as u64 + u64::from(proto);
    }
    match p.l4 {
        L4::Tcp {
            flags,
            seq,
            ack,
            mss,
        } => {
            let (isn_s, isn_r) = if p.from_client {
                (w.c_isn, w.s_isn)
            } else {
                (w.s_isn, w.c_isn)
            };
            let mut h = [0u8; 20 + SYN_OPTS_LEN];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..8].copy_from_slice(&isn_s.wrapping_add(seq).to_be_bytes());
            let ackv = if flags & ACK != 0 {
                isn_r.wrapping_add(ack)
            } else {
                0
            };
            h[8..12].copy_from_slice(&ackv.to_be_bytes());
            h[12] = ((l4_hdr_len / 4) as u8) << 4;
            h[13] = flags;
            let win = if mss.is_some() {
                SYN_WINDOW
            } else {
                TCP_WINDOW
            };
            h[14..16].copy_from_slice(&win.to_be_bytes());
            if let Some(m) = mss {
                h[20..32].copy_from_slice(&[
                    2,
                    4,
                    (m >> 8) as u8,
                    m as u8, // MSS
                    1,
                    3,
                    3,
                    8, // NOP, window scale 8
                    1,
                    1,
                    4,
                    2, // NOP, NOP, SACK permitted
                ]);
            }
            let h = &mut h[..l4_hdr_len];
            pseudo += ones_sum(h) + p.psum;
            let c = fold_checksum(pseudo);
            h[16..18].copy_from_slice(&c.to_be_bytes());
            buf.extend_from_slice(h);
        }
        L4::Udp => {
            let mut h = [0u8; 8];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            pseudo += ones_sum(&h) + p.psum;
            let mut c = fold_checksum(pseudo);
            if c == 0 {
                c = 0xffff; // RFC 768: a computed zero is sent as all ones
            }
            h[6..8].copy_from_slice(&c.to_be_bytes());
            buf.extend_from_slice(&h);
        }
        L4::Esp { spi, seq } => {
            buf.extend_from_slice(&(spi ^ w.spi_xor).to_be_bytes());
            buf.extend_from_slice(&seq.to_be_bytes());
        }
    }
    buf.extend_from_slice(payload);
    buf.len() - start
}

/// Builds a template packet by packet: a TCP session (handshake, data segmented at the
/// MSS with ACKs, FIN close), a UDP exchange or an ESP stream.
pub(crate) struct Session {
    transport: Transport,
    mss: usize,
    data: Vec<u8>,
    pkts: Vec<TplPkt>,
    /// Next relative sequence number of each side (client, server).
    next: [u32; 2],
    last_from_client: Option<bool>,
}

impl Session {
    /// A TCP session that starts with the 3-way handshake. `mss` is the segment size used
    /// for data (1448 for IPv4, 1428 for IPv6); the SYN announces `mss + 12`.
    pub(crate) fn tcp(mss: usize) -> Session {
        let mut s = Session::bare(Transport::Tcp, mss);
        let syn_mss = (mss + 12) as u16;
        s.push_tcp(true, SYN, &[], Some(syn_mss));
        s.push_tcp(false, SYN | ACK, &[], Some(syn_mss));
        s.push_tcp(true, ACK, &[], None);
        s
    }

    /// A TCP session whose start the capture missed (it began before the capture did):
    /// no handshake, the first packet is data. `mss` as in [`Session::tcp`].
    pub(crate) fn tcp_midstream(mss: usize) -> Session {
        Session::bare(Transport::Tcp, mss)
    }

    pub(crate) fn udp() -> Session {
        Session::bare(Transport::Udp, 1472)
    }

    pub(crate) fn esp() -> Session {
        Session::bare(Transport::Esp, 1400)
    }

    fn bare(transport: Transport, mss: usize) -> Session {
        Session {
            transport,
            mss,
            data: Vec::new(),
            pkts: Vec::new(),
            next: [0, 0],
            last_from_client: None,
        }
    }

    fn gap(&mut self, from_client: bool) -> u32 {
        let g = match self.last_from_client {
            None => 0,
            Some(prev) if prev == from_client => GAP_SAME_US,
            Some(_) => GAP_TURN_US,
        };
        self.last_from_client = Some(from_client);
        g
    }

    fn push(&mut self, from_client: bool, l4: L4, payload: &[u8]) {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(payload);
        let gap_us = self.gap(from_client);
        self.pkts.push(TplPkt {
            from_client,
            l4,
            off,
            len: payload.len() as u32,
            psum: ones_sum(payload),
            gap_us,
        });
    }

    fn push_tcp(&mut self, from_client: bool, flags: u8, payload: &[u8], mss: Option<u16>) {
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        let seq = self.next[me];
        let ack = self.next[peer];
        self.push(
            from_client,
            L4::Tcp {
                flags,
                seq,
                ack,
                mss,
            },
            payload,
        );
        let mut adv = payload.len() as u32;
        if flags & (SYN | FIN) != 0 {
            adv += 1;
        }
        self.next[me] = self.next[me].wrapping_add(adv);
    }

    /// Sends `bytes` one way. TCP: segments of at most MSS bytes, PSH on the last; when
    /// more than one segment is needed the peer ACKs every segment (bulk pattern).
    /// UDP: one datagram.
    pub(crate) fn send(&mut self, from_client: bool, bytes: &[u8]) {
        match self.transport {
            Transport::Tcp => {
                if bytes.is_empty() {
                    return;
                }
                let n = bytes.len().div_ceil(self.mss);
                for (i, seg) in bytes.chunks(self.mss).enumerate() {
                    let last = i + 1 == n;
                    let flags = if last { PSH | ACK } else { ACK };
                    self.push_tcp(from_client, flags, seg, None);
                    if n > 1 {
                        self.push_tcp(!from_client, ACK, &[], None);
                    }
                }
            }
            Transport::Udp => self.push(from_client, L4::Udp, bytes),
            Transport::Esp => {}
        }
    }

    pub(crate) fn client(&mut self, bytes: &[u8]) {
        self.send(true, bytes);
    }

    pub(crate) fn server(&mut self, bytes: &[u8]) {
        self.send(false, bytes);
    }

    /// A pure ACK from one side.
    pub(crate) fn ack(&mut self, from_client: bool) {
        self.push_tcp(from_client, ACK, &[], None);
    }

    /// One ESP packet.
    pub(crate) fn esp_packet(&mut self, from_client: bool, spi: u32, seq: u32, body: &[u8]) {
        self.push(from_client, L4::Esp { spi, seq }, body);
    }

    /// Orderly TCP close: FIN from the client, FIN from the server, last ACK.
    pub(crate) fn close(&mut self) {
        if self.transport != Transport::Tcp {
            return;
        }
        self.push_tcp(true, FIN | ACK, &[], None);
        self.push_tcp(false, FIN | ACK, &[], None);
        self.push_tcp(true, ACK, &[], None);
    }

    pub(crate) fn finish(
        self,
        client: Option<[u8; 4]>,
        server: [u8; 4],
        client_port: Option<u16>,
        server_port: u16,
    ) -> Template {
        Template {
            transport: self.transport,
            client,
            server,
            client_port,
            server_port,
            data: self.data,
            pkts: self.pkts,
        }
    }
}

/// The sender and its next relative sequence number after TCP packet `p`.
pub(crate) fn next_seq(p: &TplPkt) -> Option<(bool, u32)> {
    match p.l4 {
        L4::Tcp { flags, seq, .. } => {
            let mut adv = p.len;
            if flags & (SYN | FIN) != 0 {
                adv += 1;
            }
            Some((p.from_client, seq.wrapping_add(adv)))
        }
        _ => None,
    }
}

/// A TCP control segment (close or reset) for a flow cut short by `generate`.
pub(crate) fn control(from_client: bool, flags: u8, seq: u32, ack: u32) -> TplPkt {
    TplPkt {
        from_client,
        l4: L4::Tcp {
            flags,
            seq,
            ack,
            mss: None,
        },
        off: 0,
        len: 0,
        psum: 0,
        gap_us: GAP_SAME_US,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN whose checksum was computed independently (by hand-folding the 16-bit
    /// words): 10.2.0.1:50000 -> 10.1.0.20:443, seq 1, no options, window 64240.
    #[test]
    fn tcp_checksum_known_value() {
        let mut s = Session::bare(Transport::Tcp, 1448);
        s.push_tcp(true, SYN, &[], None);
        let tpl = s.finish(None, [10, 1, 0, 20], None, 443);
        let mut w = Wire {
            v6: false,
            c_ip: Wire::v4([10, 2, 0, 1]),
            s_ip: Wire::v4([10, 1, 0, 20]),
            c_port: 50000,
            s_port: 443,
            c_isn: 1,
            s_isn: 0,
            c_ipid: 0,
            s_ipid: 0,
            vlan: None,
            spi_xor: 0,
        };
        let mut buf = Vec::new();
        let n = emit(&mut buf, &tpl, &tpl.pkts[0], &mut w);
        assert_eq!(n, 54);
        // Pseudo header: 0a02+0001+0a01+0014+0006+0014 = 0x1432
        // TCP header: c350+01bb+0000+0001+0000+0000+5002+0402+0000+0000 = 0x11910
        // total 0x12d42 -> fold 0x2d43 -> checksum !0x2d43 = 0xd2bc
        assert_eq!(&buf[14 + 20 + 16..14 + 20 + 18], &[0xd2, 0xbc]);
        // IPv4 header checksum verifies to zero.
        assert_eq!(fold_checksum(ones_sum(&buf[14..34])), 0);
    }
}
