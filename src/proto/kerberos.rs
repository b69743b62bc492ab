//! Kerberos KDC traffic on port 88 (RFC 4120 7.2): TCP records with a 4-byte
//! big-endian length, or one message per UDP datagram.
//!
//! Guarantees: TCP records are reassembled across chunks in a buffer capped at
//! [`MAX_RECORD_LEN`]; a record declared larger, or with the reserved high bit set, is
//! an anomaly and stops parsing of that direction (the framing cannot be trusted after
//! it). Each complete message goes to
//! `crate::proto::auth::kerberos::record_kdc_message`, which writes the facts
//! (`krb5.msg-type`, `krb5.client`, `krb5.service`, `krb5.etype-offered`,
//! `krb5.etype-used`, `krb5.preauth`, `krb5.error`) and one Kerberos authentication
//! event per AS-REQ / TGS-REQ.
//!
//! Encryption: the transport is readable (names, realms, services and encryption types
//! are on the wire), so the flow is marked
//! [`Encryption::None`](crate::model::Encryption::None); but Kerberos encrypts
//! its secrets itself, so no event is ever a cleartext credential.

use crate::model::Direction;
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration, StreamBuf};
use crate::proto::auth::kerberos::{
    record_kdc_message, TAG_AP_REQ, TAG_AS_REP, TAG_AS_REQ, TAG_KRB_ERROR, TAG_TGS_REP, TAG_TGS_REQ,
};

/// Largest KDC message accepted over TCP. RFC 4120 sets no limit; Windows KDCs answer
/// with tickets carrying a PAC, which stay under 64 KiB with the default
/// MaxTokenSize (48 000 bytes), so a bigger record is an attack or not Kerberos.
pub const MAX_RECORD_LEN: usize = 64 * 1024;

/// Length prefix of a TCP record (RFC 4120 7.2.2).
const RECORD_MARK_LEN: usize = 4;
/// The high bit of the record mark is reserved and must be zero (RFC 4120 7.2.2).
const RESERVED_BIT: u32 = 0x8000_0000;

/// The KDC port (RFC 4120 7.2.1, 7.2.2).
const KDC_PORTS: &[u16] = &[88];

pub const REGISTRATION_TCP: Registration = Registration {
    name: "kerberos",
    tcp: true,
    ports: KDC_PORTS,
    probe: probe_tcp,
    make: make_tcp,
};

pub const REGISTRATION_UDP: Registration = Registration {
    name: "kerberos",
    tcp: false,
    ports: KDC_PORTS,
    probe: probe_udp,
    make: make_udp,
};

fn make_tcp() -> Box<dyn Analyzer> {
    Box::new(KerberosAnalyzer::new(true))
}

fn make_udp() -> Box<dyn Analyzer> {
    Box::new(KerberosAnalyzer::new(false))
}

/// What a DER header at the start of a buffer says.
enum DerHeader {
    /// Header length and content length.
    Complete(usize, usize),
    /// More bytes needed to read the length.
    Short,
    /// Not a definite DER length (indefinite form, or more than 4 length bytes).
    Invalid,
}

fn der_header(b: &[u8]) -> DerHeader {
    let Some(&first) = b.get(1) else {
        return DerHeader::Short;
    };
    if first < 0x80 {
        return DerHeader::Complete(2, usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return DerHeader::Invalid;
    }
    let Some(bytes) = b.get(2..2 + n) else {
        return DerHeader::Short;
    };
    let len = bytes
        .iter()
        .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
    DerHeader::Complete(2 + n, len)
}

fn is_kdc_tag(tag: u8) -> bool {
    matches!(
        tag,
        TAG_AS_REQ | TAG_AS_REP | TAG_TGS_REQ | TAG_TGS_REP | TAG_KRB_ERROR
    )
}

/// Certain when a record mark is followed by a Kerberos APPLICATION tag whose DER
/// length fills the record exactly and whose content opens with a SEQUENCE.
pub fn probe_tcp(_dir: Direction, prefix: &[u8], _client_port: u16, _server_port: u16) -> Probe {
    let Some(mark) = prefix.get(..RECORD_MARK_LEN) else {
        return Probe::Unsure;
    };
    let record = u32::from_be_bytes([mark[0], mark[1], mark[2], mark[3]]);
    if record & RESERVED_BIT != 0 || record == 0 {
        return Probe::No;
    }
    let Ok(record) = usize::try_from(record) else {
        return Probe::No;
    };
    if record > MAX_RECORD_LEN {
        return Probe::No;
    }
    let msg = prefix.get(RECORD_MARK_LEN..).unwrap_or(&[]);
    match msg.first() {
        None => Probe::Unsure,
        Some(&t) if is_kdc_tag(t) || t == TAG_AP_REQ => match der_header(msg) {
            DerHeader::Complete(h, len) if h + len == record => match msg.get(h) {
                Some(0x30) => Probe::Certain,
                Some(_) => Probe::No,
                None => Probe::Unsure,
            },
            DerHeader::Complete(..) | DerHeader::Invalid => Probe::No,
            DerHeader::Short => Probe::Unsure,
        },
        Some(_) => Probe::No,
    }
}

/// Certain when the datagram opens with a KDC APPLICATION tag, a definite DER length
/// that does not end before the prefix, and a SEQUENCE.
pub fn probe_udp(_dir: Direction, prefix: &[u8], _client_port: u16, _server_port: u16) -> Probe {
    match prefix.first() {
        None => Probe::Unsure,
        Some(&t) if is_kdc_tag(t) => match der_header(prefix) {
            DerHeader::Complete(h, len) if h + len >= prefix.len() => match prefix.get(h) {
                Some(0x30) => Probe::Certain,
                Some(_) => Probe::No,
                None => Probe::Unsure,
            },
            DerHeader::Complete(..) | DerHeader::Invalid => Probe::No,
            DerHeader::Short => Probe::Unsure,
        },
        Some(_) => Probe::No,
    }
}

/// One Kerberos flow (TCP or UDP) to a KDC.
pub struct KerberosAnalyzer {
    tcp: bool,
    /// Partial TCP records, per direction.
    bufs: [StreamBuf; 2],
    /// A direction whose framing broke: its bytes are ignored.
    stopped: [bool; 2],
}

impl KerberosAnalyzer {
    pub fn new(tcp: bool) -> Self {
        let cap = RECORD_MARK_LEN + MAX_RECORD_LEN;
        KerberosAnalyzer {
            tcp,
            bufs: [StreamBuf::new(cap), StreamBuf::new(cap)],
            stopped: [false; 2],
        }
    }

    /// Parse every complete record in the buffer of direction `d`.
    fn drain_records(&mut self, d: usize, cx: &mut Ctx) {
        loop {
            let buf = &self.bufs[d].buf;
            let Some(mark) = buf.get(..RECORD_MARK_LEN) else {
                return;
            };
            let mark = u32::from_be_bytes([mark[0], mark[1], mark[2], mark[3]]);
            let len = usize::try_from(mark).unwrap_or(usize::MAX);
            if mark & RESERVED_BIT != 0 || len > MAX_RECORD_LEN {
                let kind = if mark & RESERVED_BIT != 0 {
                    "krb5.record-reserved-bit"
                } else {
                    "krb5.record-too-large"
                };
                cx.posture.anomaly(
                    cx.frame,
                    kind,
                    format!("record mark {mark:#010x} (limit {MAX_RECORD_LEN} bytes); direction no longer parsed"),
                );
                self.stopped[d] = true;
                self.bufs[d].buf = Vec::new();
                return;
            }
            let Some(msg) = buf.get(RECORD_MARK_LEN..RECORD_MARK_LEN + len) else {
                return;
            };
            record_kdc_message(msg, cx);
            self.bufs[d].consume(RECORD_MARK_LEN + len);
        }
    }
}

impl Analyzer for KerberosAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        cx.posture.protocol = Some("kerberos");
        // The KDC exchange itself is readable; see the module doc.
        cx.posture.set_cleartext();
        if !self.tcp {
            record_kdc_message(data, cx);
            return Next::Continue;
        }
        let d = dir.index();
        let mut rest = data;
        while !rest.is_empty() && !self.stopped[d] {
            // Take what fits: complete records leave the buffer at once, so room
            // always returns unless a record was declared too large (stopped above).
            let room = self.bufs[d].cap.saturating_sub(self.bufs[d].buf.len());
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.bufs[d].push(now);
            rest = later;
            self.drain_records(d, cx);
            if now.is_empty() {
                break;
            }
        }
        if self.stopped.iter().all(|&s| s) {
            Next::Done
        } else {
            Next::Continue
        }
    }

    fn finish(&mut self, cx: &mut Ctx) {
        for (d, buf) in self.bufs.iter().enumerate() {
            if !buf.buf.is_empty() && !self.stopped[d] {
                cx.posture.anomaly(
                    cx.frame,
                    "krb5.record-incomplete",
                    format!(
                        "flow ended inside a record ({} bytes buffered)",
                        buf.buf.len()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Encryption, Mechanism, Posture};
    use crate::proto::auth::kerberos::tests::{kdc_rep_bytes, krb_error_bytes, REAL_AS_REQ};
    use crate::proto::auth::tests::{ctx, hex};

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut out = (msg.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(msg);
        out
    }

    fn kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn probes_recognise_kdc_messages() {
        let as_req = hex(REAL_AS_REQ);
        let tcp = framed(&as_req);
        assert_eq!(
            probe_tcp(Direction::ToServer, &tcp, 5000, 88),
            Probe::Certain
        );
        assert_eq!(
            probe_tcp(Direction::ToServer, &tcp[..5], 5000, 88),
            Probe::Unsure
        );
        assert_eq!(
            probe_tcp(Direction::ToServer, &tcp[..2], 5000, 88),
            Probe::Unsure
        );
        assert_eq!(
            probe_tcp(Direction::ToServer, b"GET / HTTP/1.1\r\n", 5000, 88),
            Probe::No
        );
        let mut wrong_len = tcp.clone();
        wrong_len[3] = wrong_len[3].wrapping_add(1);
        assert_eq!(
            probe_tcp(Direction::ToServer, &wrong_len, 5000, 88),
            Probe::No
        );
        assert_eq!(
            probe_udp(Direction::ToServer, &as_req, 5000, 88),
            Probe::Certain
        );
        assert_eq!(
            probe_udp(Direction::ToServer, &as_req[..1], 5000, 88),
            Probe::Unsure
        );
        assert_eq!(
            probe_udp(Direction::ToServer, &[0x6a, 0x80, 0x30], 5000, 88),
            Probe::No
        );
        assert_eq!(
            probe_udp(Direction::ToServer, &[0x16, 0x03, 0x01], 5000, 88),
            Probe::No
        );
        assert_eq!(
            probe_udp(Direction::ToClient, &krb_error_bytes(), 88, 5000),
            Probe::Certain
        );
    }

    #[test]
    fn udp_datagrams_are_one_message_each() {
        let mut p = Posture::default();
        let mut a = KerberosAnalyzer::new(false);
        a.data(Direction::ToServer, &hex(REAL_AS_REQ), &mut ctx(&mut p, 1));
        a.data(Direction::ToClient, &krb_error_bytes(), &mut ctx(&mut p, 2));
        assert_eq!(p.protocol, Some("kerberos"));
        assert_eq!(p.encryption, Encryption::None);
        assert!(p.has_fact("krb5.msg-type", "AS-REQ"));
        assert!(p.has_fact("krb5.error", "25 preauth-required"));
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Kerberos);
        assert_eq!(p.auth[0].frame, 1);
        assert!(!p.auth[0].cleartext);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn tcp_records_split_anywhere_and_joined() {
        let mut stream = framed(&hex(REAL_AS_REQ));
        stream.extend(framed(&krb_error_bytes()));
        for split in 0..stream.len() {
            let mut p = Posture::default();
            let mut a = KerberosAnalyzer::new(true);
            let (x, y) = stream.split_at(split);
            a.data(Direction::ToServer, x, &mut ctx(&mut p, 1));
            a.data(Direction::ToServer, y, &mut ctx(&mut p, 2));
            a.finish(&mut ctx(&mut p, 3));
            assert!(p.has_fact("krb5.msg-type", "AS-REQ"), "split {split}");
            assert!(p.has_fact("krb5.msg-type", "KRB-ERROR"), "split {split}");
            assert!(p.anomalies.is_empty(), "split {split}: {:?}", p.anomalies);
            let ev_frame = if split >= framed(&hex(REAL_AS_REQ)).len() {
                1
            } else {
                2
            };
            assert_eq!(
                p.auth[0].frame, ev_frame,
                "evidence frame completes the record"
            );
        }
    }

    #[test]
    fn tcp_reply_direction_is_separate() {
        let mut p = Posture::default();
        let mut a = KerberosAnalyzer::new(true);
        let rep = framed(&kdc_rep_bytes(0x6b, 11, 18, 18));
        a.data(
            Direction::ToServer,
            &framed(&hex(REAL_AS_REQ))[..10],
            &mut ctx(&mut p, 1),
        );
        a.data(Direction::ToClient, &rep, &mut ctx(&mut p, 2));
        assert!(p.has_fact("krb5.msg-type", "AS-REP"));
        assert!(!p.has_fact("krb5.msg-type", "AS-REQ"));
        a.finish(&mut ctx(&mut p, 3));
        assert_eq!(kinds(&p), ["krb5.record-incomplete"]);
    }

    #[test]
    fn tcp_record_too_large_stops_the_direction() {
        let mut p = Posture::default();
        let mut a = KerberosAnalyzer::new(true);
        let mark = ((MAX_RECORD_LEN + 1) as u32).to_be_bytes();
        let next = a.data(Direction::ToServer, &mark, &mut ctx(&mut p, 1));
        assert_eq!(next, Next::Continue, "the other direction still parses");
        a.data(
            Direction::ToServer,
            &framed(&hex(REAL_AS_REQ)),
            &mut ctx(&mut p, 2),
        );
        assert_eq!(kinds(&p), ["krb5.record-too-large"]);
        assert!(!p.facts.contains_key("krb5.msg-type"));
        let next = a.data(
            Direction::ToClient,
            &[0x80, 0, 0, 1, 0],
            &mut ctx(&mut p, 3),
        );
        assert_eq!(next, Next::Done);
        assert_eq!(
            kinds(&p),
            ["krb5.record-too-large", "krb5.record-reserved-bit"]
        );
        a.finish(&mut ctx(&mut p, 4));
        assert_eq!(p.anomalies.len(), 2);
    }

    #[test]
    fn tcp_many_records_in_one_chunk_beyond_the_buffer_cap() {
        // 1000 framed KRB-ERRORs in one chunk: larger than the per-direction cap.
        let one = framed(&krb_error_bytes());
        let many: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        assert!(many.len() > MAX_RECORD_LEN);
        let mut p = Posture::default();
        let mut a = KerberosAnalyzer::new(true);
        a.data(Direction::ToClient, &many, &mut ctx(&mut p, 7));
        a.finish(&mut ctx(&mut p, 8));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert!(p.has_fact("krb5.error", "25 preauth-required"));
    }
}
