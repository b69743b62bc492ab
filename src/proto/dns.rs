//! DNS over UDP 53 and TCP 53 (RFC 1035; TCP messages carry a 2-byte length, RFC 1035
//! 4.2.2 / RFC 7766), with the GSS-TSIG key exchange of secure dynamic updates (RFC 3645).
//!
//! What this analyzer guarantees:
//! - The header, the questions and every resource record are read with every offset
//!   checked; names are decompressed with at most [`MAX_POINTER_JUMPS`] pointers, each
//!   of which must point strictly backwards, so a pointer loop ends as the anomaly
//!   `dns.name-pointer-loop` and never hangs or panics.
//! - Facts: `dns.qname` (the first [`MAX_QNAME_FACTS`] names), `dns.qtype`, `dns.opcode`,
//!   `dns.rcode` (responses), `dns.tkey` (algorithm and mode), `dns.tsig` (algorithm).
//! - A TKEY record (type 249) whose algorithm is `gss-tsig` or `gss.microsoft.com`
//!   hands its key data, a GSS-API token, to [`inspect_token`] (context `DNS TKEY`).
//! - DNS is never encrypted here: every well-formed message marks the flow cleartext.
//! - TCP buffering is bounded by the 2-byte length: what is kept between calls is at most
//!   one partial message, 65 537 bytes per direction.

use crate::model::Direction;
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration};
use crate::proto::auth::{finish_auth, inspect_token};

/// DNS over TCP 53 (zone transfers, large answers, Windows secure dynamic update).
pub const REGISTRATION: Registration = Registration {
    name: "dns",
    tcp: true,
    ports: &[53],
    probe: probe_tcp,
    make: make_tcp,
};

/// DNS over UDP 53.
pub const REGISTRATION_UDP: Registration = Registration {
    name: "dns",
    tcp: false,
    ports: &[53],
    probe: probe_udp,
    make: make_udp,
};

fn make_tcp() -> Box<dyn Analyzer> {
    Box::new(DnsAnalyzer::new_tcp())
}

fn make_udp() -> Box<dyn Analyzer> {
    Box::new(DnsAnalyzer::new_udp())
}

/// Fixed header size (RFC 1035 4.1.1).
pub const HEADER_LEN: usize = 12;
/// Most compression pointers followed in one name. A legitimate name has at most one
/// pointer per label; 16 covers real messages and stops loops early.
pub const MAX_POINTER_JUMPS: usize = 16;
/// Longest name on the wire, in octets (RFC 1035 2.3.4).
pub const MAX_NAME_OCTETS: usize = 255;
/// Questions read per message (real messages carry one).
pub const MAX_QUESTIONS: usize = 8;
/// Resource records read per message, across all sections (bounds work per datagram).
pub const MAX_RECORDS: usize = 256;
/// Names kept in `dns.qname` per flow: a few identify the flow, more is noise.
pub const MAX_QNAME_FACTS: usize = 8;
/// Most questions a probe accepts as plausible.
const PROBE_MAX_QDCOUNT: u16 = 4;

/// Record types this analyzer names (RFC 1035, 3596, 2782, 2930, 2845, 6891).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrType(pub u16);

impl RrType {
    pub const TKEY: RrType = RrType(249);
    pub const TSIG: RrType = RrType(250);

    pub fn name(self) -> String {
        let s = match self.0 {
            1 => "A",
            2 => "NS",
            5 => "CNAME",
            6 => "SOA",
            12 => "PTR",
            15 => "MX",
            16 => "TXT",
            28 => "AAAA",
            33 => "SRV",
            41 => "OPT",
            249 => "TKEY",
            250 => "TSIG",
            251 => "IXFR",
            252 => "AXFR",
            255 => "ANY",
            n => return format!("TYPE{n}"),
        };
        s.to_string()
    }
}

/// Header opcode (RFC 1035 4.1.1, RFC 1996, RFC 2136).
fn opcode_name(op: u8) -> String {
    match op {
        0 => "QUERY".into(),
        1 => "IQUERY".into(),
        2 => "STATUS".into(),
        4 => "NOTIFY".into(),
        5 => "UPDATE".into(),
        n => format!("OPCODE{n}"),
    }
}

/// Header rcode (RFC 1035 4.1.1, RFC 2136).
fn rcode_name(rc: u8) -> String {
    match rc {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        n => format!("RCODE{n}"),
    }
}

/// Why a name could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// A label or pointer runs past the message.
    OutOfRange,
    /// A pointer that does not point backwards, or too many pointers.
    PointerLoop,
    /// More than 255 octets.
    TooLong,
    /// Label type 01 or 10 (RFC 6891 retired extended labels).
    LabelType,
}

impl NameError {
    pub fn kind(self) -> &'static str {
        match self {
            NameError::OutOfRange => "dns.name-out-of-range",
            NameError::PointerLoop => "dns.name-pointer-loop",
            NameError::TooLong => "dns.name-too-long",
            NameError::LabelType => "dns.name-label-type",
        }
    }
}

/// Walk the name at `start` in `msg`; append its text to `out` when given. Returns the
/// offset just past the name where it began (after the first pointer, if any).
fn walk_name(msg: &[u8], start: usize, mut out: Option<&mut String>) -> Result<usize, NameError> {
    let mut pos = start;
    let mut end_of_name: Option<usize> = None;
    let mut jumps = 0usize;
    let mut octets = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(NameError::OutOfRange)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok(end_of_name.unwrap_or(pos + 1));
                }
                let label_end = pos + 1 + usize::from(len);
                let label = msg.get(pos + 1..label_end).ok_or(NameError::OutOfRange)?;
                octets += 1 + label.len();
                if octets > MAX_NAME_OCTETS {
                    return Err(NameError::TooLong);
                }
                if let Some(s) = out.as_deref_mut() {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.extend(label.iter().map(|&b| {
                        if b.is_ascii_graphic() {
                            char::from(b)
                        } else {
                            '?'
                        }
                    }));
                }
                pos = label_end;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(NameError::OutOfRange)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                jumps += 1;
                if target >= pos || jumps > MAX_POINTER_JUMPS {
                    return Err(NameError::PointerLoop);
                }
                end_of_name.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(NameError::LabelType),
        }
    }
}

/// Read a name as text (`.` for the root).
pub fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), NameError> {
    let mut s = String::new();
    let next = walk_name(msg, start, Some(&mut s))?;
    if s.is_empty() {
        s.push('.');
    }
    Ok((s, next))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

/// The header fields a probe and the parser need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        let flags = be16(b, 2)?;
        Some(Header {
            id: be16(b, 0)?,
            response: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0x0f) as u8,
            rcode: (flags & 0x000f) as u8,
            qdcount: be16(b, 4)?,
            ancount: be16(b, 6)?,
            nscount: be16(b, 8)?,
            arcount: be16(b, 10)?,
        })
    }
}

/// Probe one DNS message at the start of `msg` (no allocation).
fn probe_message(msg: &[u8]) -> Probe {
    let Some(h) = Header::parse(msg) else {
        return Probe::No;
    };
    if h.opcode > 5 || h.qdcount == 0 || h.qdcount > PROBE_MAX_QDCOUNT {
        return Probe::No;
    }
    match walk_name(msg, HEADER_LEN, None) {
        Ok(next) => match (be16(msg, next), be16(msg, next + 2)) {
            // Classes IN, CH, HS, NONE, ANY (RFC 1035 3.2.4, RFC 2136 2.3).
            (Some(_), Some(1 | 3 | 4 | 254 | 255)) => Probe::Certain,
            (Some(_), Some(_)) => Probe::Unsure,
            _ => Probe::Unsure,
        },
        Err(NameError::OutOfRange) => Probe::Unsure,
        Err(_) => Probe::No,
    }
}

/// UDP probe: plausible header is unsure (the port decides); with a well-formed first
/// question it is certain.
pub fn probe_udp(_dir: Direction, prefix: &[u8], _cp: u16, _sp: u16) -> Probe {
    probe_message(prefix)
}

/// TCP probe: the same after the 2-byte length, which must cover at least a header.
pub fn probe_tcp(_dir: Direction, prefix: &[u8], _cp: u16, _sp: u16) -> Probe {
    match be16(prefix, 0) {
        Some(len) if usize::from(len) >= HEADER_LEN => {
            probe_message(prefix.get(2..).unwrap_or_default())
        }
        _ => Probe::No,
    }
}

/// Per-flow DNS state.
pub struct DnsAnalyzer {
    tcp: bool,
    /// Partial TCP messages per direction; boxed and made on first use, since UDP
    /// flows (most DNS flows, each held for the UDP timeout) never need them.
    bufs: Option<Box<[Vec<u8>; 2]>>,
    qnames: usize,
    stopped: bool,
}

impl DnsAnalyzer {
    pub fn new_tcp() -> Self {
        DnsAnalyzer {
            tcp: true,
            bufs: None,
            qnames: 0,
            stopped: false,
        }
    }

    pub fn new_udp() -> Self {
        DnsAnalyzer {
            tcp: false,
            ..Self::new_tcp()
        }
    }

    /// Reassemble 2-byte-length-prefixed messages of one TCP direction.
    fn stream(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) {
        let d = dir.index();
        let bufs = self.bufs.get_or_insert_with(Box::default);
        let mut buf = bufs.get_mut(d).map(std::mem::take).unwrap_or_default();
        buf.extend_from_slice(data);
        let mut off = 0usize;
        while let Some(len) = be16(&buf, off) {
            let start = off + 2;
            let end = start + usize::from(len);
            let Some(msg) = buf.get(start..end) else {
                break;
            };
            self.message(msg, cx);
            off = end;
        }
        buf.drain(..off.min(buf.len()));
        if let Some(b) = self.bufs.as_mut().and_then(|b| b.get_mut(d)) {
            *b = buf;
        }
    }

    /// One DNS message.
    fn message(&mut self, msg: &[u8], cx: &mut Ctx) {
        let Some(h) = Header::parse(msg) else {
            cx.posture.anomaly(
                cx.frame,
                "dns.truncated",
                format!("{} bytes, shorter than the 12-byte header", msg.len()),
            );
            return;
        };
        cx.posture.set_cleartext();
        cx.posture.fact("dns.opcode", opcode_name(h.opcode));
        if h.response {
            cx.posture.fact("dns.rcode", rcode_name(h.rcode));
        }
        let mut pos = HEADER_LEN;
        for _ in 0..usize::from(h.qdcount).min(MAX_QUESTIONS) {
            let (name, next) = match read_name(msg, pos) {
                Ok(v) => v,
                Err(e) => {
                    cx.posture.anomaly(
                        cx.frame,
                        e.kind(),
                        format!("question name at offset {pos}"),
                    );
                    return;
                }
            };
            let Some(qtype) = be16(msg, next) else {
                cx.posture.anomaly(
                    cx.frame,
                    "dns.truncated",
                    "question ends before QTYPE/QCLASS",
                );
                return;
            };
            if be16(msg, next + 2).is_none() {
                cx.posture
                    .anomaly(cx.frame, "dns.truncated", "question ends before QCLASS");
                return;
            }
            if self.qnames < MAX_QNAME_FACTS {
                self.qnames += 1;
                cx.posture.fact("dns.qname", name);
            }
            cx.posture.fact("dns.qtype", RrType(qtype).name());
            pos = next + 4;
        }
        let records = usize::from(h.ancount) + usize::from(h.nscount) + usize::from(h.arcount);
        for _ in 0..records.min(MAX_RECORDS) {
            match self.record(msg, pos, cx) {
                Some(next) => pos = next,
                None => return,
            }
        }
    }

    /// One resource record at `pos`; returns the offset after it, or None after an anomaly.
    fn record(&mut self, msg: &[u8], pos: usize, cx: &mut Ctx) -> Option<usize> {
        let after_name = match walk_name(msg, pos, None) {
            Ok(n) => n,
            Err(e) => {
                cx.posture
                    .anomaly(cx.frame, e.kind(), format!("record name at offset {pos}"));
                return None;
            }
        };
        let fixed = (be16(msg, after_name), be16(msg, after_name + 8));
        let (Some(rtype), Some(rdlen)) = fixed else {
            cx.posture.anomaly(
                cx.frame,
                "dns.truncated",
                "record ends inside its fixed fields",
            );
            return None;
        };
        let rdata_start = after_name + 10;
        let rdata_end = rdata_start + usize::from(rdlen);
        if rdata_end > msg.len() {
            cx.posture.anomaly(
                cx.frame,
                "dns.rdata-out-of-range",
                format!(
                    "{} RDATA of {rdlen} bytes past the message end",
                    RrType(rtype).name()
                ),
            );
            return None;
        }
        match RrType(rtype) {
            RrType::TKEY => self.tkey(msg, rdata_start, rdata_end, cx),
            RrType::TSIG => match read_name(msg, rdata_start) {
                Ok((alg, _)) => cx.posture.fact("dns.tsig", alg.to_ascii_lowercase()),
                Err(e) => cx
                    .posture
                    .anomaly(cx.frame, e.kind(), "TSIG algorithm name"),
            },
            _ => {}
        }
        Some(rdata_end)
    }

    /// TKEY RDATA (RFC 2930 2): algorithm, inception, expiration, mode, error, key, other.
    fn tkey(&mut self, msg: &[u8], start: usize, end: usize, cx: &mut Ctx) {
        let (alg, after) = match read_name(msg, start) {
            Ok(v) => v,
            Err(e) => {
                cx.posture
                    .anomaly(cx.frame, e.kind(), "TKEY algorithm name");
                return;
            }
        };
        let alg = alg.to_ascii_lowercase();
        let rdata = msg.get(..end).unwrap_or_default();
        let (Some(mode), Some(key_len)) = (be16(rdata, after + 8), be16(rdata, after + 12)) else {
            cx.posture.anomaly(
                cx.frame,
                "dns.tkey-truncated",
                "TKEY RDATA ends inside its fixed fields",
            );
            return;
        };
        let key_start = after + 14;
        let Some(key) = rdata.get(key_start..key_start + usize::from(key_len)) else {
            cx.posture.anomaly(
                cx.frame,
                "dns.tkey-truncated",
                format!("TKEY key data of {key_len} bytes past the RDATA end"),
            );
            return;
        };
        cx.posture.fact("dns.tkey", format!("{alg} mode {mode}"));
        let gss = matches!(alg.trim_end_matches('.'), "gss-tsig" | "gss.microsoft.com");
        if gss && !key.is_empty() {
            inspect_token(key, cx, "DNS TKEY");
        }
    }
}

impl Analyzer for DnsAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        cx.posture.protocol.get_or_insert("dns");
        if self.stopped {
            return Next::Done;
        }
        if self.tcp {
            self.stream(dir, data, cx);
        } else {
            self.message(data, cx);
        }
        Next::Continue
    }

    fn gap(&mut self, _dir: Direction, len: u64, cx: &mut Ctx) -> Next {
        cx.posture.anomaly(
            cx.frame,
            "stream.gap",
            format!("{len} bytes missing from the capture; DNS parser stopped"),
        );
        self.stopped = true;
        Next::Done
    }

    fn finish(&mut self, cx: &mut Ctx) {
        finish_auth(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Posture;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0))
            .collect()
    }

    fn run(mut a: DnsAnalyzer, steps: &[(Direction, Vec<u8>)]) -> Posture {
        let mut posture = Posture::default();
        for (i, (dir, bytes)) in steps.iter().enumerate() {
            let mut cx = Ctx {
                limits: &crate::limits::ProtoLimits::DEFAULT,
                frame: i as u64 + 1,
                ts_ns: 0,
                client_port: 50000,
                server_port: 53,
                posture: &mut posture,
            };
            a.data(*dir, bytes, &mut cx);
        }
        posture
    }

    fn kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    /// Header: ID 1234, flags 0100 (QUERY, RD), QD 1, AN/NS/AR 0;
    /// question "www.example.com" A IN.
    const QUERY_A: &str =
        "1234 0100 0001 0000 0000 0000 03777777 076578616d706c65 03636f6d 00 0001 0001";

    /// zeek dns53.pcap frame 1: response 0x6465 for us.v27.distributed.net A, 8 answers,
    /// 7 authority, 7 additional records, names compressed with pointers.
    const REAL_RESPONSE: &str = concat!(
            "646584800001000800070007027573037632370b6469737472696275746564036e65740000010001c00c000100010000",
            "03840004ce6d40bac00c00010001000003840004d801cd51c00c00010001000003840004cd95a3d3c00c000100010000",
            "0384000486358387c00c00010001000003840004863583c0c00c0001000100000384000480681294c00c000100010000",
            "03840004cc98ba8bc00c000100010000038400043f4d21e2037632370b6469737472696275746564036e657400000200",
            "01000003840006036e7331c0acc0a800020001000003840006036e7332c0acc0a800020001000003840006036e7333c0",
            "acc0a800020001000003840006036e7336c0acc0a80002000100000384000e036e7331046265737403636f6d00c0a800",
            "020001000003840006036e7332c113c0a800020001000003840006036e7333c113c0c700010001000038400004d16220",
            "0ec0d9000100010000384000044009a7a6c0eb00010001000038400004d801cd51c0fd00010001000038400004cd95a3",
            "d3c10f000100010002ecac0004d1189529c129000100010001bcf40004d19d660bc13b000100010001bcf40004d11895",
            "2a",
    );

    #[test]
    fn query_over_udp() {
        let p = run(DnsAnalyzer::new_udp(), &[(C, hex(QUERY_A))]);
        assert!(p.has_fact("dns.qname", "www.example.com"));
        assert!(p.has_fact("dns.qtype", "A"));
        assert!(p.has_fact("dns.opcode", "QUERY"));
        assert!(!p.facts.contains_key("dns.rcode"));
        assert_eq!(p.encryption, crate::model::Encryption::None);
        assert!(p.anomalies.is_empty());
    }

    #[test]
    fn real_response_with_compression() {
        let p = run(DnsAnalyzer::new_udp(), &[(S, hex(REAL_RESPONSE))]);
        assert!(p.has_fact("dns.qname", "us.v27.distributed.net"));
        assert!(p.has_fact("dns.rcode", "NOERROR"));
        assert!(p.has_fact("dns.qtype", "A"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn nxdomain_response() {
        // Flags 8183: response, RD, RA, rcode 3.
        let p = run(
            DnsAnalyzer::new_udp(),
            &[(
                S,
                hex("1234 8183 0001 0000 0000 0000 0378797a 00 0001 0001"),
            )],
        );
        assert!(p.has_fact("dns.rcode", "NXDOMAIN"));
        assert!(p.has_fact("dns.qname", "xyz"));
    }

    #[test]
    fn tcp_query_split_across_chunks() {
        let mut framed = vec![0x00, 0x21];
        framed.extend(hex(QUERY_A));
        let (a, b) = framed.split_at(5);
        let p = run(DnsAnalyzer::new_tcp(), &[(C, a.to_vec()), (C, b.to_vec())]);
        assert!(p.has_fact("dns.qname", "www.example.com"));
        assert_eq!(probe_tcp(C, &framed, 50000, 53), Probe::Certain);
    }

    /// GSS-TSIG key exchange query (RFC 3645 3.1.1): question "k1.dc1.lab" TKEY ANY;
    /// additional TKEY record: name -> pointer c00c, type 00f9, class 00ff, TTL 0,
    /// RDLENGTH 0x43: algorithm "gss.microsoft.com", inception, expiration, mode 3
    /// (GSS-API), error 0, key size 0x20, key = raw NTLMSSP NEGOTIATE, other size 0.
    fn tkey_query() -> Vec<u8> {
        hex(concat!(
            "abcd 0000 0001 0000 0000 0001",
            "026b31 03646331 036c6162 00 00f9 00ff",
            "c00c 00f9 00ff 00000000 0043",
            "03677373 096d6963726f736f6674 03636f6d 00",
            "5f000000 5f010000 0003 0000 0020",
            "4e544c4d53535000 01000000 07020000 0000000020000000 0000000020000000",
            "0000"
        ))
    }

    #[test]
    fn tkey_gss_token_goes_to_inspect_token() {
        let p = run(DnsAnalyzer::new_udp(), &[(C, tkey_query())]);
        assert!(p.has_fact("dns.qtype", "TKEY"));
        assert!(p.has_fact("dns.tkey", "gss.microsoft.com mode 3"));
        // The NTLM NEGOTIATE inside TKEY reaches the token parser.
        assert!(p.has_fact("ntlmssp.message", "NEGOTIATE"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn tkey_key_size_past_rdata() {
        let mut m = tkey_query();
        // Key size field: header 12 + question 16 + RR fixed 12 + algorithm 19 + 12 = 71.
        m[71] = 0x02;
        m[72] = 0x00;
        let p = run(DnsAnalyzer::new_udp(), &[(C, m)]);
        assert!(kinds(&p).contains(&"dns.tkey-truncated"));
        assert!(p.auth.is_empty());
    }

    #[test]
    fn tsig_record_is_a_fact() {
        // UPDATE (opcode 5, flags 2800), zone "lab" SOA IN, additional TSIG record:
        // name "k1", type 00fa, class 00ff, TTL 0, RDLENGTH 0x1a: algorithm "gss-tsig",
        // time signed (6), fudge, MAC size 0, original ID, error 0, other len 0.
        let m = hex(concat!(
            "beef 2800 0001 0000 0000 0001",
            "036c6162 00 0006 0001",
            "026b31 00 00fa 00ff 00000000 001a",
            "086773732d74736967 00 00005f000000 012c 0000 beef 0000 0000"
        ));
        let p = run(DnsAnalyzer::new_udp(), &[(C, m)]);
        assert!(p.has_fact("dns.opcode", "UPDATE"));
        assert!(p.has_fact("dns.tsig", "gss-tsig"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn name_pointer_loop() {
        // Question name is a pointer to itself (offset 12).
        let m = hex("0001 0100 0001 0000 0000 0000 c00c 0001 0001");
        let p = run(DnsAnalyzer::new_udp(), &[(C, m.clone())]);
        assert!(kinds(&p).contains(&"dns.name-pointer-loop"));
        assert_eq!(read_name(&m, 12), Err(NameError::PointerLoop));
        assert_eq!(probe_udp(C, &m, 50000, 53), Probe::No);
    }

    #[test]
    fn two_pointers_chasing_each_other() {
        // Label "a", then a pointer forward to offset 17 which points back to 12: the
        // forward pointer is refused before any cycle can form.
        let m = hex("0001 0100 0001 0000 0000 0000 0161 c011 00 c00c");
        assert_eq!(read_name(&m, 12), Err(NameError::PointerLoop));
    }

    #[test]
    fn rdata_past_end() {
        // Response with one answer whose RDLENGTH (0x0040) passes the message end.
        let m = hex(
            "0001 8180 0001 0001 0000 0000 0161 00 0001 0001 c00c 0001 0001 00000e10 0040 0a000001",
        );
        let p = run(DnsAnalyzer::new_udp(), &[(S, m)]);
        assert!(kinds(&p).contains(&"dns.rdata-out-of-range"));
    }

    #[test]
    fn short_datagram() {
        let p = run(DnsAnalyzer::new_udp(), &[(C, hex("0001 0100 00"))]);
        assert!(kinds(&p).contains(&"dns.truncated"));
    }

    #[test]
    fn mutated_messages_never_panic() {
        let seeds = [hex(QUERY_A), hex(REAL_RESPONSE), tkey_query()];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut m = seeds[round % seeds.len()].clone();
            for _ in 0..(rnd() % 4 + 1) {
                let i = (rnd() as usize) % m.len();
                m[i] = rnd() as u8;
            }
            m.truncate((rnd() as usize) % (m.len() + 1));
            let _ = probe_udp(C, &m, 1, 53);
            let _ = run(DnsAnalyzer::new_udp(), &[(C, m.clone())]);
            let mut framed = (m.len() as u16).to_be_bytes().to_vec();
            framed.extend(&m);
            let _ = probe_tcp(C, &framed, 1, 53);
            let _ = run(DnsAnalyzer::new_tcp(), &[(C, framed)]);
        }
    }

    #[test]
    fn probes() {
        assert_eq!(probe_udp(C, &hex(QUERY_A), 50000, 53), Probe::Certain);
        // Header only: plausible, the port decides.
        assert_eq!(
            probe_udp(C, &hex("1234 0100 0001 0000 0000 0000"), 50000, 53),
            Probe::Unsure
        );
        // QDCOUNT 0 or opcode 15: no.
        assert_eq!(
            probe_udp(C, &hex("1234 0100 0000 0000 0000 0000"), 50000, 53),
            Probe::No
        );
        assert_eq!(
            probe_udp(C, &hex("1234 7900 0001 0000 0000 0000"), 50000, 53),
            Probe::No
        );
        assert_eq!(probe_udp(C, b"GET / HTTP/1.1\r\n", 50000, 53), Probe::No);
    }
}
