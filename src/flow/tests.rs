//! End-to-end tests of the flow stage: hand-built captures (Ethernet, IPv4 / IPv6, TCP /
//! UDP / ESP, built with etherparse) written to a temporary pcap file and run through
//! [`collect_file`], the same path the CLI takes. Each test asserts what an analyst reads
//! off the result: stream indices, client side, record boundaries, reassembly counters,
//! the protocol the analyzers recognised, and the anomalies they named.

use super::{collect_file, ClientFrom, EndReason, EngineConfig, FileResult, Flow, Transport};
use crate::capture::Source;
use crate::decode::{ACK, FIN, PSH, SYN};
use crate::flow::{FlowLimits, ReassemblyLimits};
use crate::gen::{PcapWriter, LINKTYPE_ETHERNET};
use crate::model::{Encryption, Mechanism};
use etherparse::{IpNumber, PacketBuilder};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

const MS: i64 = 1_000_000;
const SEC: i64 = 1_000_000_000;
/// 2024-01-01T00:00:00Z: a plausible capture time.
const T0: i64 = 1_704_067_200 * SEC;
const MAC_C: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_S: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

type Capture = Vec<(i64, Vec<u8>)>;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

// ---------------------------------------------------------------- frame builders

/// Ethernet + IPv4 or IPv6 (by the addresses) + TCP with `flags`; the ACK number is only
/// written when `flags` has ACK.
fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_C, MAC_S);
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
        (IpAddr::V6(a), IpAddr::V6(b)) => eth.ipv6(a.octets(), b.octets(), 64),
        _ => panic!("mixed address families"),
    };
    let mut b = ip.tcp(src.port(), dst.port(), seq, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & PSH != 0 {
        b = b.psh();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    let mut out = Vec::with_capacity(b.size(data.len()));
    b.write(&mut out, data).expect("tcp frame");
    out
}

fn udp(src: SocketAddr, dst: SocketAddr, data: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_C, MAC_S);
    let b = match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
        (IpAddr::V6(a), IpAddr::V6(b)) => eth.ipv6(a.octets(), b.octets(), 64),
        _ => panic!("mixed address families"),
    }
    .udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(b.size(data.len()));
    b.write(&mut out, data).expect("udp frame");
    out
}

/// Ethernet + IPv4 (protocol 50) + ESP: SPI, sequence number, 32 opaque bytes.
fn esp(src: [u8; 4], dst: [u8; 4], spi: u32, seq: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(spi.to_be_bytes());
    body.extend(seq.to_be_bytes());
    body.extend((0..32u8).map(|i| i.wrapping_mul(37) ^ seq as u8));
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_C, MAC_S)
        .ipv4(src, dst, 64)
        .write(&mut out, IpNumber::ENCAPSULATING_SECURITY_PAYLOAD, &body)
        .expect("esp frame");
    out
}

/// One TCP connection, both directions.
#[derive(Clone, Copy)]
struct Conn {
    c: SocketAddr,
    s: SocketAddr,
}

impl Conn {
    fn new(c: &str, s: &str) -> Conn {
        Conn { c: sa(c), s: sa(s) }
    }
    /// Client to server.
    fn cs(&self, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        tcp(self.c, self.s, seq, ack, flags, data)
    }
    /// Server to client.
    fn sc(&self, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        tcp(self.s, self.c, seq, ack, flags, data)
    }

    /// A whole connection in 8 frames (5 from the client, 3 from the server): SYN,
    /// SYN-ACK, ACK, request, response, FIN, FIN, final ACK. `req` must not be empty.
    fn session(&self, ci: u32, si: u32, req: &[u8], resp: &[u8]) -> Vec<Vec<u8>> {
        let (c1, s1) = (ci.wrapping_add(1), si.wrapping_add(1));
        let c2 = c1.wrapping_add(req.len() as u32);
        let s2 = s1.wrapping_add(resp.len() as u32);
        vec![
            self.cs(ci, 0, SYN, b""),
            self.sc(si, c1, SYN | ACK, b""),
            self.cs(c1, s1, ACK, b""),
            self.cs(c1, s1, PSH | ACK, req),
            self.sc(s1, c2, PSH | ACK, resp),
            self.cs(c2, s2, FIN | ACK, b""),
            self.sc(s2, c2.wrapping_add(1), FIN | ACK, b""),
            self.cs(c2.wrapping_add(1), s2.wrapping_add(1), ACK, b""),
        ]
    }
}

/// Frames `step` apart from `start`.
fn timed(start: i64, step: i64, frames: Vec<Vec<u8>>) -> Capture {
    frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (start + i as i64 * step, f))
        .collect()
}

/// Interleave captures by timestamp (stable: equal times keep their order).
fn merge(parts: Vec<Capture>) -> Capture {
    let mut all: Capture = parts.into_iter().flatten().collect();
    all.sort_by_key(|(ts, _)| *ts);
    all
}

// ---------------------------------------------------------------- running a capture

/// A capture file removed when the test ends, pass or fail.
struct TempCapture(PathBuf);

impl Drop for TempCapture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pcap_bytes(frames: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, true).expect("pcap header");
    for (ts, f) in frames {
        w.write_packet(*ts, f, f.len() as u32).expect("pcap record");
    }
    w.finish().expect("pcap flush")
}

fn temp_file(name: &str, bytes: &[u8]) -> TempCapture {
    let p = std::env::temp_dir().join(format!(
        "dpaudit-flow-tests-{}-{name}.pcap",
        std::process::id()
    ));
    std::fs::write(&p, bytes).expect("write temp capture");
    TempCapture(p)
}

fn run_bytes(
    name: &str,
    bytes: &[u8],
    cfg: &EngineConfig,
    threads: usize,
) -> (FileResult, Vec<Flow>) {
    let f = temp_file(name, bytes);
    collect_file(&Source::Path(f.0.clone()), cfg, threads)
}

fn run_cfg(name: &str, frames: &[(i64, Vec<u8>)], cfg: &EngineConfig) -> (FileResult, Vec<Flow>) {
    let (r, flows) = run_bytes(name, &pcap_bytes(frames), cfg, 1);
    assert!(r.error.is_none(), "{name}: {:?}", r.error);
    assert_eq!(r.summary.frames, frames.len() as u64, "{name}: frames read");
    (r, flows)
}

fn run(name: &str, frames: &[(i64, Vec<u8>)]) -> (FileResult, Vec<Flow>) {
    run_cfg(name, frames, &EngineConfig::default())
}

fn has_anomaly(f: &Flow, kind: &str) -> bool {
    f.posture.anomalies.iter().any(|a| a.kind == kind)
}

fn total_frames(flows: &[Flow]) -> u64 {
    flows.iter().map(Flow::total_frames).sum()
}

// ---------------------------------------------------------------- tests

const HTTP_RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

#[test]
fn port_reuse_with_a_new_isn_starts_the_next_stream() {
    let a = Conn::new("10.0.0.1:50000", "10.0.0.2:80");
    // First connection, with its SYN retransmitted (same ISN) before the SYN-ACK.
    let mut first = a.session(1000, 5000, b"GET / HTTP/1.1\r\n\r\n", HTTP_RESP);
    first.insert(1, a.cs(1000, 0, SYN, b""));
    // Same ports after the final ACK, new ISN.
    let second = a.session(90_000, 70_000, b"GET /2 HTTP/1.1\r\n\r\n", HTTP_RESP);
    // Another pair of ports: both FINs, no final ACK, then a SYN with a new ISN while the
    // record is still live (waiting out its close timer).
    let b = Conn::new("10.0.0.1:50001", "10.0.0.2:80");
    let mut third = b.session(200, 300, b"GET /3 HTTP/1.1\r\n\r\n", HTTP_RESP);
    third.pop();
    let fourth = b.session(4_000_000, 400, b"GET /4 HTTP/1.1\r\n\r\n", HTTP_RESP);
    let cap = merge(vec![
        timed(T0, MS, first),
        timed(T0 + SEC, MS, second),
        timed(T0 + 2 * SEC, MS, third),
        timed(T0 + 3 * SEC, MS, fourth),
    ]);
    let (r, flows) = run("port-reuse", &cap);

    let got: Vec<(Option<u64>, [u64; 2], bool, EndReason)> = flows
        .iter()
        .map(|f| (f.stream, f.frames, f.resumed, f.end))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(0), [6, 3], false, EndReason::Closed),
            (Some(1), [5, 3], false, EndReason::Closed),
            (Some(2), [4, 3], false, EndReason::PortReuse),
            (Some(3), [5, 3], false, EndReason::Closed),
        ]
    );
    assert_eq!(flows[0].conversation_frame, 1);
    assert_eq!(flows[1].conversation_frame, 10);
    assert_eq!(flows[3].conversation_frame, 25);
    assert!(flows.iter().all(|f| f.client_from == ClientFrom::Syn));
    assert_eq!(r.table.port_reuse, 2);
    assert_eq!(r.table.resumed, 0);
    assert_eq!(total_frames(&flows), cap.len() as u64);
}

#[test]
fn straggler_after_close_keeps_the_stream_and_a_new_syn_takes_the_next() {
    let a = Conn::new("10.0.0.1:50000", "10.0.0.2:25");
    let mut frames = a.session(1000, 5000, b"EHLO x\r\n", b"250 mx\r\n");
    let last_ack = frames[7].clone();
    frames.push(last_ack); // frame 9: the final ACK again
    frames.push(a.cs(777_777, 0, SYN, b"")); // frame 10: a new connection
    let (r, flows) = run("straggler", &timed(T0, MS, frames));

    assert_eq!(flows.len(), 3, "{flows:#?}");
    let (first, late, next) = (&flows[0], &flows[1], &flows[2]);
    assert_eq!((first.stream, first.resumed), (Some(0), false));
    assert_eq!(first.total_frames(), 8);
    assert_eq!(first.end, EndReason::Closed);
    assert_eq!((late.stream, late.resumed), (Some(0), true));
    assert_eq!((late.first_frame, late.total_frames()), (9, 1));
    assert_eq!(late.conversation_frame, 1);
    assert_eq!(
        late.client, a.c,
        "the straggler keeps the conversation's client"
    );
    assert_eq!((next.stream, next.resumed), (Some(1), false));
    assert_eq!((next.conversation_frame, next.first_frame), (10, 10));
    assert_eq!(r.table.resumed, 1);
    assert_eq!(r.table.port_reuse, 1);
}

#[test]
fn mid_stream_start_takes_the_client_from_ports_and_says_so() {
    // The server (port 25) speaks first in the capture; no SYN was captured.
    let a = Conn::new("10.0.0.1:50000", "10.0.0.2:25");
    let with_data = vec![
        a.sc(7000, 3000, PSH | ACK, b"250 OK\r\n"),
        a.cs(3000, 7008, PSH | ACK, b"QUIT\r\n"),
        a.sc(7008, 3006, PSH | ACK, b"221 bye\r\n"),
    ];
    // Two ephemeral ports, pure ACKs only: the first sender is the client, and without
    // payload there is no start to miss.
    let b = Conn::new("10.0.0.3:50001", "10.0.0.4:50002");
    let acks_only = vec![b.cs(10, 20, ACK, b""), b.sc(20, 10, ACK, b"")];
    let cap = merge(vec![
        timed(T0, MS, with_data),
        timed(T0 + SEC, MS, acks_only),
    ]);
    let (_, flows) = run("mid-stream", &cap);

    assert_eq!(flows.len(), 2);
    let f = &flows[0];
    assert_eq!((f.client, f.server), (a.c, a.s));
    assert_eq!(f.client_from, ClientFrom::Ports);
    assert_eq!(f.frames, [1, 2]);
    assert!(!f.syn_seen && !f.syn_ack_seen);
    assert!(has_anomaly(f, "tcp.handshake-not-seen"), "{:?}", f.posture);
    assert_eq!(f.posture.protocol, Some("smtp"));
    let g = &flows[1];
    assert_eq!((g.client, g.client_from), (b.c, ClientFrom::FirstPacket));
    assert!(!has_anomaly(g, "tcp.handshake-not-seen"), "{:?}", g.posture);
}

#[test]
fn out_of_order_and_retransmitted_segments_still_decode_basic_auth() {
    let a = Conn::new("10.0.0.1:40000", "10.0.0.2:80");
    let req: &[u8] =
        b"GET /owa/ HTTP/1.1\r\nHost: mail.corp\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n";
    // "GET /owa/ " alone leaves the probe unsure; the request completes it.
    let (s1, rest) = req.split_at(10);
    let (s2, s3) = rest.split_at(25);
    let (ci, si) = (1000u32, 5000u32);
    let at = |off: usize| ci + 1 + off as u32;
    let end = at(req.len());
    let frames = vec![
        a.cs(ci, 0, SYN, b""),
        a.sc(si, ci + 1, SYN | ACK, b""),
        a.cs(ci + 1, si + 1, ACK, b""),
        a.cs(at(0), si + 1, PSH | ACK, s1),
        a.cs(at(s1.len() + s2.len()), si + 1, PSH | ACK, s3), // ahead of s2
        a.cs(at(s1.len()), si + 1, PSH | ACK, s2),
        a.cs(at(s1.len()), si + 1, PSH | ACK, s2), // retransmission
        a.sc(si + 1, end, PSH | ACK, HTTP_RESP),
        a.cs(end, si + 1 + HTTP_RESP.len() as u32, FIN | ACK, b""),
    ];
    let (_, flows) = run("ooo-http", &timed(T0, MS, frames));

    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!(f.posture.protocol, Some("http"));
    assert_eq!(f.payload, [req.len() as u64, HTTP_RESP.len() as u64]);
    assert_eq!(f.posture.auth.len(), 1, "{:?}", f.posture.auth);
    let ev = &f.posture.auth[0];
    assert_eq!(ev.mechanism, Mechanism::Basic);
    assert_eq!(ev.user.as_deref(), Some("user"));
    assert!(ev.cleartext);
    assert_eq!(ev.secret.as_ref().map(|s| s.0.as_str()), Some("pass"));
    let rs = &f.reassembly[0];
    assert_eq!(rs.out_of_order, 1);
    assert_eq!(rs.retransmitted_bytes, s2.len() as u64);
    assert_eq!((rs.gaps, rs.conflicting_overlaps), (0, 0));
    assert!(!has_anomaly(f, "stream.gap"));
}

#[test]
fn a_missing_segment_acknowledged_by_the_peer_is_a_gap() {
    let a = Conn::new("10.0.0.1:40000", "10.0.0.2:80");
    let s1: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n";
    let lost: &[u8] = b"Authorization: Basic dXNlcjpwYXNz\r\n";
    let s3: &[u8] = b"\r\n";
    let (ci, si) = (1000u32, 5000u32);
    let after_lost = ci + 1 + (s1.len() + lost.len()) as u32;
    let frames = vec![
        a.cs(ci, 0, SYN, b""),
        a.sc(si, ci + 1, SYN | ACK, b""),
        a.cs(ci + 1, si + 1, ACK, b""),
        a.cs(ci + 1, si + 1, PSH | ACK, s1),
        // the segment carrying `lost` is not in the capture; the server acknowledges it
        a.sc(si + 1, after_lost, ACK, b""),
        a.cs(after_lost, si + 1, PSH | ACK, s3),
    ];
    let (_, flows) = run("gap", &timed(T0, MS, frames));

    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!(f.posture.protocol, Some("http"));
    let rs = &f.reassembly[0];
    assert_eq!(rs.gaps, 1);
    assert_eq!(rs.gap_bytes, lost.len() as u64);
    assert_eq!(f.reassembly[1].gaps, 0);
    assert!(has_anomaly(f, "stream.gap"), "{:?}", f.posture.anomalies);
    assert!(
        f.posture.auth.is_empty(),
        "a lost credential is not invented"
    );
    assert_eq!(f.payload[0], (s1.len() + s3.len()) as u64);
}

#[test]
fn protocols_are_recognised_by_handshake_on_other_ports() {
    let h = Conn::new("10.0.0.1:40001", "10.0.0.2:8081");
    let http = h.session(100, 200, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_RESP);
    let m = Conn::new("[2001:db8::1]:40002", "[2001:db8::2]:2525");
    // The server greets first, as SMTP servers do.
    let banner: &[u8] = b"220 mx.example ESMTP\r\n";
    let smtp = vec![
        m.cs(1000, 0, SYN, b""),
        m.sc(9000, 1001, SYN | ACK, b""),
        m.cs(1001, 9001, ACK, b""),
        m.sc(9001, 1001, PSH | ACK, banner),
        m.cs(1001, 9001 + banner.len() as u32, PSH | ACK, b"EHLO c\r\n"),
    ];
    let cap = merge(vec![timed(T0, MS, http), timed(T0 + SEC, MS, smtp)]);
    let (_, flows) = run("probe", &cap);

    assert_eq!(flows.len(), 2);
    let p: Vec<(u16, Option<&str>, Option<&str>)> = flows
        .iter()
        .map(|f| (f.server.port(), f.posture.protocol, f.posture.detected_by))
        .collect();
    assert_eq!(
        p,
        vec![
            (8081, Some("http"), Some("handshake")),
            (2525, Some("smtp"), Some("handshake")),
        ]
    );
}

/// A DNS query for example.com A (RFC 1035 4.1), and its answer when `answer`.
fn dns(id: u16, answer: bool) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend(id.to_be_bytes());
    m.extend(if answer { [0x81, 0x80] } else { [0x01, 0x00] }); // flags: QR, RD, RA
    m.extend([0, 1, 0, u8::from(answer), 0, 0, 0, 0]); // qd, an, ns, ar
    m.extend(b"\x07example\x03com\x00");
    m.extend([0, 1, 0, 1]); // type A, class IN
    if answer {
        m.extend([0xc0, 0x0c, 0, 1, 0, 1]); // name pointer, A, IN
        m.extend([0, 0, 0x0e, 0x10, 0, 4]); // TTL 3600, rdlength 4
        m.extend([192, 0, 2, 7]);
    }
    m
}

#[test]
fn udp_after_the_timeout_resumes_the_same_stream() {
    let (c, s) = (sa("10.0.0.1:53000"), sa("10.0.0.53:53"));
    let cap = vec![
        (T0, udp(c, s, &dns(1, false))),
        (T0 + 10 * MS, udp(s, c, &dns(1, true))),
        (T0 + 100 * SEC, udp(c, s, &dns(2, false))),
        (T0 + 100 * SEC + 10 * MS, udp(s, c, &dns(2, true))),
    ];
    let (r, flows) = run("udp-timeout", &cap);

    assert_eq!(flows.len(), 2, "{flows:#?}");
    for f in &flows {
        assert_eq!(f.transport, Transport::Udp);
        assert_eq!(f.stream, Some(0));
        assert_eq!((f.client, f.server), (c, s));
        assert_eq!(f.frames, [1, 1]);
        assert_eq!(f.posture.protocol, Some("dns"));
    }
    assert!(!flows[0].resumed);
    assert_eq!(flows[0].end, EndReason::Timeout);
    assert!(flows[1].resumed);
    assert_eq!(flows[1].conversation_frame, 1);
    assert_eq!(flows[1].first_frame, 3);
    assert_eq!((r.table.timed_out, r.table.resumed), (1, 1));
}

#[test]
fn esp_between_two_hosts_is_one_encrypted_flow() {
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let frames = vec![
        esp(a, b, 0x1234, 1),
        esp(b, a, 0x5678, 1),
        esp(a, b, 0x1234, 2),
        esp(b, a, 0x5678, 2),
        esp(a, b, 0x1234, 3),
    ];
    let (_, flows) = run("esp", &timed(T0, MS, frames));

    assert_eq!(flows.len(), 1, "{flows:#?}");
    let f = &flows[0];
    assert_eq!(f.transport, Transport::Esp);
    assert_eq!(f.stream, None);
    assert_eq!(f.posture.encryption, Encryption::Ipsec);
    assert_eq!(f.posture.encryption_frame, Some(1));
    assert_eq!(f.frames, [3, 2]);
    assert_eq!(f.client.ip(), IpAddr::from(a));
    assert!(f.posture.has_fact("esp.spi", "0x00001234"));
    assert!(f.posture.has_fact("esp.spi", "0x00005678"));
}

/// Many flows of every kind, interleaved: TCP over IPv4 and IPv6 with port reuse and
/// stragglers, a mid-stream flow, DNS with a timeout, ESP.
fn busy_capture() -> Capture {
    let mut parts = Vec::new();
    for i in 0..24u16 {
        let conn = if i % 3 == 0 {
            Conn::new(
                &format!("[2001:db8::{}]:{}", i + 1, 41000 + i),
                "[2001:db8::80]:80",
            )
        } else {
            Conn::new(&format!("10.0.1.{}:{}", i + 1, 41000 + i), "10.0.0.25:25")
        };
        let mut frames = conn.session(
            u32::from(i) * 1000,
            u32::from(i) * 7000,
            format!("EHLO host{i}\r\n").as_bytes(),
            b"250 ok\r\n",
        );
        if i % 4 == 1 {
            frames.push(frames[7].clone()); // straggler
        }
        if i % 5 == 2 {
            frames.extend(conn.session(u32::MAX - 3, 11, b"GET / HTTP/1.1\r\n\r\n", HTTP_RESP));
        }
        parts.push(timed(
            T0 + i64::from(i) * 7 * MS,
            3 * MS + i64::from(i),
            frames,
        ));
    }
    let m = Conn::new("10.0.2.1:50123", "10.0.2.2:143");
    parts.push(timed(
        T0 + 5 * MS,
        MS,
        vec![
            m.sc(10, 20, PSH | ACK, b"* OK ready\r\n"),
            m.cs(20, 22, PSH | ACK, b"a1 LOGIN bob secret\r\n"),
        ],
    ));
    let (c, s) = (sa("10.0.3.1:53001"), sa("10.0.0.53:53"));
    parts.push(vec![
        (T0 + 2 * MS, udp(c, s, &dns(7, false))),
        (T0 + 4 * MS, udp(s, c, &dns(7, true))),
        (T0 + 70 * SEC, udp(c, s, &dns(8, false))),
    ]);
    parts.push(timed(
        T0 + MS,
        9 * MS,
        (0..6)
            .map(|i| esp([10, 0, 4, 1], [10, 0, 4, 2], 0xabc, i))
            .collect(),
    ));
    merge(parts)
}

#[test]
fn thread_count_does_not_change_the_flows() {
    let cap = busy_capture();
    let f = temp_file("threads", &pcap_bytes(&cap));
    let cfg = EngineConfig::default();
    let mut results = Vec::new();
    for threads in [1, 2, 4] {
        let (r, flows) = collect_file(&Source::Path(f.0.clone()), &cfg, threads);
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!(total_frames(&flows), cap.len() as u64, "threads {threads}");
        assert_eq!(r.flows, flows.len() as u64);
        let text: Vec<String> = flows.iter().map(|f| format!("{f:?}")).collect();
        results.push((threads, r.table, text));
    }
    let (_, table1, text1) = &results[0];
    assert!(table1.port_reuse > 0 && table1.resumed > 0 && table1.timed_out > 0);
    for (threads, table, text) in &results[1..] {
        assert_eq!(table, table1, "table stats with {threads} threads");
        assert_eq!(text.len(), text1.len(), "flow count with {threads} threads");
        for (a, b) in text1.iter().zip(text) {
            assert_eq!(a, b, "with {threads} threads");
        }
    }
}

/// A capture cut mid-record: with the framing thread (2+ threads) as without it, every
/// frame before the cut is analysed, and the same error names the same offset.
#[test]
fn a_damaged_capture_gives_the_same_partial_result_with_any_thread_count() {
    let bytes = pcap_bytes(&busy_capture());
    let cut = &bytes[..bytes.len() * 2 / 3 + 5];
    let f = temp_file("threads-cut", cut);
    let cfg = EngineConfig::default();
    let (r1, flows1) = collect_file(&Source::Path(f.0.clone()), &cfg, 1);
    let err1 = format!("{:?}", r1.error);
    assert!(err1.contains("Damaged"), "{err1}");
    assert!(r1.summary.frames > 10);
    assert_eq!(total_frames(&flows1), r1.summary.frames);
    for threads in [2, 3] {
        let (r, flows) = collect_file(&Source::Path(f.0.clone()), &cfg, threads);
        assert_eq!(format!("{:?}", r.error), err1, "threads {threads}");
        assert_eq!(r.summary.frames, r1.summary.frames, "threads {threads}");
        assert_eq!(r.summary.bytes, r1.summary.bytes, "threads {threads}");
        assert_eq!(
            format!("{flows:?}"),
            format!("{flows1:?}"),
            "threads {threads}"
        );
    }
}

/// The decoding side panics on an early frame: the panic reaches the caller, and the
/// framing thread stops reading instead of reading the rest of the capture (which, from
/// a live pipe, would never end).
#[test]
fn a_panic_while_decoding_stops_the_framing_thread() {
    let frame = udp(sa("10.0.0.1:5000"), sa("10.0.0.2:53"), b"x");
    let cap = timed(T0, MS, vec![frame; 400_000]);
    let source = Source::Bytes(pcap_bytes(&cap).into());
    let cfg = EngineConfig::default();
    let mut summary = crate::capture::FileSummary::default();
    let mut seen = 0u64;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::pipeline::framed(&source, &cfg, &mut summary, &mut |_| {
            seen += 1;
            assert!(seen < 10, "a decoder bug");
        })
    }));
    assert!(r.is_err());
    assert_eq!(seen, 10);
    // What was in flight (the queue, the buffer being read into, the one being
    // decoded) and no more: far from the whole capture.
    use super::pipeline::FRAME_BATCHES_IN_FLIGHT;
    let in_flight = (FRAME_BATCHES_IN_FLIGHT + 2) * crate::capture::READ_BUFFER;
    let whole = summary_len(&source);
    assert!(2 * in_flight < whole, "{in_flight} of {whole}");
    assert!(
        summary.bytes <= in_flight as u64,
        "{} bytes of {whole} read after the panic",
        summary.bytes
    );
}

fn summary_len(source: &Source) -> usize {
    match source {
        Source::Bytes(b) => b.len(),
        _ => unreachable!("a capture in memory"),
    }
}

#[test]
fn live_flow_cap_evicts_but_loses_no_frame_or_stream() {
    // Five connections open at once, each step taken by all five in turn.
    let conns: Vec<Conn> = (0..5)
        .map(|i| Conn::new(&format!("10.0.0.1:{}", 41000 + i), "10.0.0.2:80"))
        .collect();
    let sessions: Vec<Vec<Vec<u8>>> = conns
        .iter()
        .enumerate()
        .map(|(i, c)| c.session(i as u32 * 100, 9000, b"GET / HTTP/1.1\r\n\r\n", HTTP_RESP))
        .collect();
    let mut frames = Vec::new();
    for step in 0..8 {
        for s in &sessions {
            frames.push(s[step].clone());
        }
    }
    let cap = timed(T0, MS, frames);
    let cfg = EngineConfig {
        flow: FlowLimits {
            max_live: 2,
            ..FlowLimits::default()
        },
        ..EngineConfig::default()
    };
    for threads in [1, 3] {
        let (r, flows) = run_bytes("live-cap", &pcap_bytes(&cap), &cfg, threads);
        assert!(r.error.is_none());
        assert!(r.table.evicted > 0, "{:?}", r.table);
        assert!(r.table.peak_live <= 2, "{:?}", r.table);
        assert_eq!(total_frames(&flows), r.decode.packets);
        assert_eq!(r.decode.packets, cap.len() as u64);
        assert_eq!(r.flows, flows.len() as u64);
        assert!(flows.iter().any(|f| f.end == EndReason::Evicted));
        let mut streams: Vec<Option<u64>> = flows.iter().map(|f| f.stream).collect();
        streams.dedup();
        assert_eq!(
            streams,
            (0..5).map(Some).collect::<Vec<_>>(),
            "eviction must not invent stream indices"
        );
        // Every record after the first of its stream continues it.
        for w in flows.windows(2) {
            if w[0].stream == w[1].stream {
                assert!(w[1].resumed);
                assert_eq!(w[1].conversation_frame, w[0].conversation_frame);
            }
        }
    }
}

#[test]
fn reassembly_cap_is_an_anomaly_not_a_crash() {
    let a = Conn::new("10.0.0.1:40000", "10.0.0.2:80");
    let (ci, si) = (1000u32, 5000u32);
    let parts: [&[u8]; 5] = [
        b"GET /c HTTP/1.1\r\n", // never captured
        b"Host: a.example\r\n",
        b"Accept: */*\r\n",
        b"X-One: 1\r\n",
        b"X-Two: 2\r\n\r\n",
    ];
    let mut frames = vec![
        a.cs(ci, 0, SYN, b""),
        a.sc(si, ci + 1, SYN | ACK, b""),
        a.cs(ci + 1, si + 1, ACK, b""),
    ];
    let mut seq = ci + 1 + parts[0].len() as u32;
    for p in &parts[1..] {
        frames.push(a.cs(seq, si + 1, PSH | ACK, p));
        seq += p.len() as u32;
    }
    let cap = timed(T0, MS, frames);
    let cfg = EngineConfig {
        reassembly: ReassemblyLimits {
            max_segments: 2,
            ..ReassemblyLimits::default()
        },
        ..EngineConfig::default()
    };
    let (r, flows) = run_cfg("reasm-cap", &cap, &cfg);

    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!(f.frames, [6, 1]);
    assert_eq!(total_frames(&flows), r.decode.packets);
    assert!(
        has_anomaly(f, "tcp.reassembly-cap"),
        "{:?}",
        f.posture.anomalies
    );
    let rs = &f.reassembly[0];
    assert!(rs.cap_hits >= 1);
    assert_eq!((rs.gaps, rs.gap_bytes), (1, parts[0].len() as u64));
    let after: usize = parts[1..].iter().map(|p| p.len()).sum();
    assert_eq!(
        f.payload[0], after as u64,
        "every captured byte still reaches the probe"
    );
}

/// A small xorshift generator: the same "random" bytes on every run.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn damaged_captures_keep_the_flows_before_the_damage() {
    let a = Conn::new("10.0.0.1:50000", "10.0.0.2:25");
    let b = Conn::new("10.0.0.1:50001", "10.0.0.2:25");
    let cap = merge(vec![
        timed(T0, MS, a.session(1, 2, b"EHLO a\r\n", b"250 a\r\n")),
        timed(T0 + SEC, MS, b.session(3, 4, b"EHLO b\r\n", b"250 b\r\n")),
    ]);
    let clean = pcap_bytes(&cap);
    let cfg = EngineConfig::default();

    // Garbage after the last record.
    for (i, len) in [1usize, 7, 16, 40, 300, 5000].into_iter().enumerate() {
        for threads in [1, 2] {
            let mut bytes = clean.clone();
            bytes.extend(noise(0x9e37_79b9_7f4a_7c15 ^ i as u64, len));
            let (r, flows) = run_bytes("garbage", &bytes, &cfg, threads);
            assert!(r.error.is_some(), "{len} bytes of garbage: no error");
            assert_eq!(r.summary.frames, 16, "{len} bytes of garbage");
            assert_eq!(flows.len(), 2);
            assert_eq!(total_frames(&flows), 16);
            assert_eq!(flows[1].posture.protocol, Some("smtp"));
        }
    }

    // The file cut in the middle of the last record (its final ACK).
    let cut = &clean[..clean.len() - 20];
    for threads in [1, 2] {
        let (r, flows) = run_bytes("cut", cut, &cfg, threads);
        assert!(r.error.is_some(), "a cut record must be reported");
        assert_eq!(r.summary.frames, 15);
        assert_eq!(flows.len(), 2);
        assert_eq!(total_frames(&flows), 15);
        assert_eq!(flows[0].total_frames(), 8);
        assert_eq!(flows[1].frames, [4, 3]);
    }

    // Cut inside a record header, then inside the file header: never a panic.
    for keep in [24 + 10, 24, 10, 1] {
        let (r, flows) = run_bytes("cut-early", &clean[..keep], &cfg, 1);
        assert!(
            r.error.is_some() || keep == 24,
            "{keep} bytes: {:?}",
            r.error
        );
        assert!(flows.is_empty());
    }
}

#[test]
fn encrypted_payload_goes_to_the_shards_as_lengths_and_changes_nothing() {
    // Long TLS, SMB3 and ESP transfers: once a flow's shard only counts its payload,
    // the reader stops copying the bytes, and every record stays the same.
    let gen_cfg = crate::gen::Config {
        seed: 7,
        target_bytes: 6 << 20,
        format: crate::gen::Format::Pcap,
        mix: crate::gen::Mix::Bulk,
        concurrency: 64,
        vlan_percent: 10,
        ipv6_percent: 10,
    };
    let mut bytes = Vec::new();
    crate::gen::generate(&gen_cfg, &mut bytes).expect("generate");
    let source = Source::Bytes(bytes.into());
    let cfg = EngineConfig::default();
    let (r1, flows1) = collect_file(&source, &cfg, 1);
    let (r2, flows2) = collect_file(&source, &cfg, 2);
    assert!(r1.error.is_none() && r2.error.is_none());
    assert_eq!(
        r1.unsent_payload_bytes, 0,
        "one thread copies nothing anyway"
    );
    let encrypted: u64 = flows1
        .iter()
        .filter(|f| f.transport == Transport::Tcp && f.posture.encryption == Encryption::Tls)
        .map(|f| f.payload[0] + f.payload[1])
        .sum();
    assert!(encrypted > 2 << 20, "{encrypted} TLS payload bytes");
    assert!(
        r2.unsent_payload_bytes > encrypted / 2,
        "{} of {encrypted} encrypted bytes were still copied",
        r2.unsent_payload_bytes
    );
    assert_eq!(r1.table, r2.table);
    assert_eq!(flows1.len(), flows2.len());
    for (a, b) in flows1.iter().zip(&flows2) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

// ---------------------------------------------------------------- endpoint text

proptest::proptest! {
    /// Reports and display filters quote endpoints as the standard library writes them
    /// (`10.1.0.20:80`, `[2001:db8::1]:443`): the IPv4 text built digit by digit must
    /// be the same, edges (`0.0.0.0:0`, `255.255.255.255:65535`) included.
    #[test]
    fn endpoint_text_is_the_standard_text(octets: [u8; 4], port: u16, v6: [u16; 8]) {
        let v4 = SocketAddr::from((octets, port));
        proptest::prop_assert_eq!(super::endpoint(&v4, true), v4.to_string());
        proptest::prop_assert_eq!(super::endpoint(&v4, false), v4.ip().to_string());
        let v6 = SocketAddr::from((v6, port));
        proptest::prop_assert_eq!(super::endpoint(&v6, true), v6.to_string());
        proptest::prop_assert_eq!(super::endpoint(&v6, false), v6.ip().to_string());
    }
}

/// IPv6 groups drawn so that runs of zero groups, ties between runs and IPv4-mapped
/// addresses (`::ffff:a.b.c.d`) come up often.
fn v6_groups() -> impl proptest::strategy::Strategy<Value = [u16; 8]> {
    use proptest::prelude::*;
    let group = prop_oneof![3 => Just(0u16), 1 => Just(0xffff), 1 => 1u16..16, 2 => any::<u16>()];
    (
        proptest::array::uniform8(group),
        any::<bool>(),
        any::<[u8; 4]>(),
    )
        .prop_map(|(g, mapped, v4)| {
            if mapped {
                std::net::Ipv4Addr::from(v4).to_ipv6_mapped().segments()
            } else {
                g
            }
        })
}

proptest::proptest! {
    /// The IPv6 text written on the stack is the standard library's: which run of zero
    /// groups becomes `::` (the first longest, two groups or more), hex without
    /// leading zeros, the mapped form.
    #[test]
    fn ipv6_text_is_the_standard_text(groups in v6_groups(), port: u16) {
        let a = SocketAddr::from((groups, port));
        proptest::prop_assert_eq!(super::endpoint(&a, true), a.to_string());
        proptest::prop_assert_eq!(super::endpoint(&a, false), a.ip().to_string());
        proptest::prop_assert_eq!(super::host(a.ip()).to_string(), a.ip().to_string());
    }

    #[test]
    fn short_hex_is_lower_hex(v: u16) {
        let mut t = super::ShortText::default();
        t.push_hex(v, 1);
        proptest::prop_assert_eq!(t.as_str(), format!("{v:x}"));
        let mut t = super::ShortText::default();
        t.push_hex(v, 4);
        proptest::prop_assert_eq!(t.as_str(), format!("{v:04x}"));
        let mut t = super::ShortText::default();
        t.push_hex(v, 2);
        proptest::prop_assert_eq!(t.as_str(), format!("{v:02x}"));
    }
}

#[test]
fn short_text_keeps_what_fits_and_refuses_the_rest() {
    use std::fmt::Write as _;
    let mut t = super::ShortText::default();
    t.push_str(&"x".repeat(60));
    t.push_str("12345"); // would make 65 bytes: left out whole
    assert_eq!(t.as_str().len(), 60);
    assert!(t.write_str("abcde").is_err());
    assert!(t.write_str("abcd").is_ok());
    assert_eq!(t.as_str().len(), 64);
}

#[test]
fn endpoint_text_at_the_edges() {
    for (text, ip_only) in [
        ("0.0.0.0:0", "0.0.0.0"),
        ("255.255.255.255:65535", "255.255.255.255"),
        ("10.1.0.20:80", "10.1.0.20"),
        ("[::1]:443", "::1"),
        ("[::]:0", "::"),
        ("[::ffff:10.0.0.1]:25", "::ffff:10.0.0.1"),
        ("[1:0:0:2::3]:1", "1:0:0:2::3"),
        ("[1::2:0:0:3]:1", "1::2:0:0:3"),
        ("[1:0:2:0:3:0:4:0]:1", "1:0:2:0:3:0:4:0"),
        (
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ),
    ] {
        let a = sa(text);
        assert_eq!(super::endpoint(&a, true), text);
        assert_eq!(super::endpoint(&a, false), ip_only);
    }
}
