//! Flow records and findings as `audit` spills them (see [`super::spill`]): their sort
//! keys and a compact encoding that reads back to equal values.
//!
//! The encoders take every struct apart field by field with nothing left over, and
//! give every enum its code by an exhaustive match, so a field or variant added to
//! [`Flow`] or [`Finding`] does not compile until it is spilled too.

use super::spill::{enc, Dec, Key};
use crate::findings::{Finding, Severity, RULES};
use crate::flow::hash::FlowHash;
use crate::flow::{ClientFrom, EndReason, Flow, ReassemblyStats, ReassemblyTotals, Transport};
use crate::model::{Anomaly, AuthEvent, Encryption, Facts, Mechanism, Posture, Secret, TlsInfo};
use serde::Serialize;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Order of the audit's flows: by capture, then as [`crate::flow::sort_flows`] orders
/// one capture's flows (TCP streams, UDP streams, the rest; by index, first frame, id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub file: u32,
    rank: u8,
    stream: Option<u64>,
    first_frame: u64,
    id: u64,
}

impl FlowKey {
    pub fn of(file: u32, f: &Flow) -> FlowKey {
        let (rank, stream, first_frame, id) = crate::flow::pipeline::order_key(f);
        FlowKey {
            file,
            rank,
            stream,
            first_frame,
            id,
        }
    }
}

impl Key for FlowKey {
    fn put(&self, out: &mut Vec<u8>) {
        enc::u64(out, u64::from(self.file));
        out.push(self.rank);
        enc::opt_u64(out, self.stream);
        enc::u64(out, self.first_frame);
        enc::u64(out, self.id);
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        Some(FlowKey {
            file: d.u32()?,
            rank: d.byte()?,
            stream: d.opt_u64()?,
            first_frame: d.u64()?,
            id: d.u64()?,
        })
    }
}

/// Order of the audit's findings: most severe first, then capture, stream, rule and
/// fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FindingKey {
    severity: Reverse<Severity>,
    pub file: u32,
    stream: Option<u64>,
    rule: &'static str,
    /// The fingerprint's 32 hex digits as a number: the same order as the text, without
    /// a heap string per finding.
    fingerprint: u128,
}

impl FindingKey {
    pub fn of(file: u32, f: &Finding) -> FindingKey {
        FindingKey {
            severity: Reverse(f.severity),
            file,
            stream: f.stream,
            rule: f.rule,
            // Always 32 hex digits (see `findings::fingerprint`).
            fingerprint: u128::from_str_radix(&f.fingerprint, 16).unwrap_or(u128::MAX),
        }
    }
}

fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Critical => 0,
        Severity::High => 1,
        Severity::Medium => 2,
        Severity::Low => 3,
        Severity::Info => 4,
    }
}

fn severity_of(code: u8) -> Option<Severity> {
    Severity::ALL.get(usize::from(code)).copied()
}

/// A rule id back as the program's own literal.
fn rule_of(id: &str) -> Option<&'static str> {
    RULES.iter().map(|r| r.id).find(|r| *r == id)
}

impl Key for FindingKey {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(severity_code(self.severity.0));
        enc::u64(out, u64::from(self.file));
        enc::opt_u64(out, self.stream);
        enc::str(out, self.rule);
        enc::u64(out, (self.fingerprint >> 64) as u64);
        enc::u64(out, self.fingerprint as u64);
    }
    fn get(d: &mut Dec<'_>) -> Option<Self> {
        Some(FindingKey {
            severity: Reverse(severity_of(d.byte()?)?),
            file: d.u32()?,
            stream: d.opt_u64()?,
            rule: rule_of(d.str()?)?,
            fingerprint: (u128::from(d.u64()?) << 64) | u128::from(d.u64()?),
        })
    }
}

/// Distinct names a spill may bring back (fact keys, anomaly kinds, protocol names).
/// They are the program's own literals, a few hundred; more means damaged bytes.
const MAX_NAMES: usize = 4096;

/// A name read back from a spill as a `&'static str`, leaked once per distinct name.
/// A thread finds the names it has seen by their bytes (no UTF-8 check on the way:
/// the check was made when the name first came in).
fn intern(bytes: &[u8]) -> Option<&'static str> {
    thread_local! {
        static LOCAL: RefCell<HashMap<&'static [u8], &'static str, FlowHash>> =
            RefCell::new(HashMap::default());
    }
    static SHARED: OnceLock<Mutex<HashSet<&'static str, FlowHash>>> = OnceLock::new();
    if let Some(k) = LOCAL.with(|l| l.borrow().get(bytes).copied()) {
        return Some(k);
    }
    let s = std::str::from_utf8(bytes).ok()?;
    let mut shared = SHARED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let k = match shared.get(s) {
        Some(k) => *k,
        None if shared.len() >= MAX_NAMES => return None,
        None => {
            let k: &'static str = Box::leak(s.to_owned().into_boxed_str());
            shared.insert(k);
            k
        }
    };
    LOCAL.with(|l| l.borrow_mut().insert(k.as_bytes(), k));
    Some(k)
}

fn name(d: &mut Dec<'_>) -> Option<&'static str> {
    intern(d.bytes()?)
}

fn opt_name(d: &mut Dec<'_>) -> Option<Option<&'static str>> {
    Some(if d.bool()? { Some(name(d)?) } else { None })
}

fn put_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    enc::u64(out, u64::from(a.port()));
}

fn get_addr(d: &mut Dec<'_>) -> Option<SocketAddr> {
    let ip = match d.byte()? {
        4 => {
            let mut o = [0u8; 4];
            for b in &mut o {
                *b = d.byte()?;
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        6 => {
            let mut o = [0u8; 16];
            for b in &mut o {
                *b = d.byte()?;
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, d.u16()?))
}

fn put_transport(out: &mut Vec<u8>, t: Transport) {
    match t {
        Transport::Tcp => out.push(0),
        Transport::Udp => out.push(1),
        Transport::Esp => out.push(2),
        Transport::Ip(p) => {
            out.push(3);
            out.push(p);
        }
    }
}

fn get_transport(d: &mut Dec<'_>) -> Option<Transport> {
    Some(match d.byte()? {
        0 => Transport::Tcp,
        1 => Transport::Udp,
        2 => Transport::Esp,
        3 => Transport::Ip(d.byte()?),
        _ => return None,
    })
}

const CLIENT_FROM: [ClientFrom; 4] = [
    ClientFrom::Syn,
    ClientFrom::SynAck,
    ClientFrom::Ports,
    ClientFrom::FirstPacket,
];
const END_REASONS: [EndReason; 5] = [
    EndReason::Closed,
    EndReason::Timeout,
    EndReason::Evicted,
    EndReason::PortReuse,
    EndReason::CaptureEnd,
];
const ENCRYPTIONS: [Encryption; 7] = [
    Encryption::None,
    Encryption::Tls,
    Encryption::RpcPrivacy,
    Encryption::Smb3,
    Encryption::SaslSeal,
    Encryption::Ipsec,
    Encryption::Unknown,
];

// The codes below are written by exhaustive matches (a new variant does not compile
// until it has one) and read back through the tables above; a test checks that each
// code is its variant's place in its table.

fn client_from_code(c: ClientFrom) -> u8 {
    match c {
        ClientFrom::Syn => 0,
        ClientFrom::SynAck => 1,
        ClientFrom::Ports => 2,
        ClientFrom::FirstPacket => 3,
    }
}

fn end_code(e: EndReason) -> u8 {
    match e {
        EndReason::Closed => 0,
        EndReason::Timeout => 1,
        EndReason::Evicted => 2,
        EndReason::PortReuse => 3,
        EndReason::CaptureEnd => 4,
    }
}

fn encryption_code(e: Encryption) -> u8 {
    match e {
        Encryption::None => 0,
        Encryption::Tls => 1,
        Encryption::RpcPrivacy => 2,
        Encryption::Smb3 => 3,
        Encryption::SaslSeal => 4,
        Encryption::Ipsec => 5,
        Encryption::Unknown => 6,
    }
}

/// The code of a mechanism without data; `SASL` for `Sasl`, written apart.
fn mechanism_code(m: &Mechanism) -> u8 {
    match m {
        Mechanism::Basic => 0,
        Mechanism::Digest => 1,
        Mechanism::Forms => 2,
        Mechanism::Ntlmv1 => 3,
        Mechanism::Ntlmv2 => 4,
        Mechanism::Ntlm => 5,
        Mechanism::Kerberos => 6,
        Mechanism::Plain => 7,
        Mechanism::Login => 8,
        Mechanism::CramMd5 => 9,
        Mechanism::UserPass => 10,
        Mechanism::Apop => 11,
        Mechanism::Simple => 12,
        Mechanism::Bearer => 13,
        Mechanism::Anonymous => 14,
        Mechanism::Certificate => 15,
        Mechanism::ByIp => 16,
        Mechanism::Sasl(_) => SASL,
    }
}

fn from_code<T: Copy>(all: &[T], d: &mut Dec<'_>) -> Option<T> {
    all.get(usize::from(d.byte()?)).copied()
}

fn put_stats(out: &mut Vec<u8>, s: &ReassemblyStats) {
    let ReassemblyStats {
        retransmitted_bytes,
        conflicting_overlaps,
        out_of_order,
        gaps,
        gap_bytes,
        cap_hits,
        implausible,
    } = *s;
    for v in [
        retransmitted_bytes,
        conflicting_overlaps,
        out_of_order,
        gaps,
        gap_bytes,
        cap_hits,
        implausible,
    ] {
        enc::u64(out, v);
    }
}

fn get_stats(d: &mut Dec<'_>) -> Option<ReassemblyStats> {
    Some(ReassemblyStats {
        retransmitted_bytes: d.u64()?,
        conflicting_overlaps: d.u64()?,
        out_of_order: d.u64()?,
        gaps: d.u64()?,
        gap_bytes: d.u64()?,
        cap_hits: d.u64()?,
        implausible: d.u64()?,
    })
}

/// Mechanisms without data, in their wire code order (`Sasl` is written apart).
const MECHANISMS: [Mechanism; 17] = [
    Mechanism::Basic,
    Mechanism::Digest,
    Mechanism::Forms,
    Mechanism::Ntlmv1,
    Mechanism::Ntlmv2,
    Mechanism::Ntlm,
    Mechanism::Kerberos,
    Mechanism::Plain,
    Mechanism::Login,
    Mechanism::CramMd5,
    Mechanism::UserPass,
    Mechanism::Apop,
    Mechanism::Simple,
    Mechanism::Bearer,
    Mechanism::Anonymous,
    Mechanism::Certificate,
    Mechanism::ByIp,
];
const SASL: u8 = 0xff;

fn put_auth(out: &mut Vec<u8>, a: &AuthEvent) {
    let AuthEvent {
        mechanism,
        user,
        cleartext,
        secret,
        frame,
        context,
        after_tls,
    } = a;
    match mechanism {
        Mechanism::Sasl(m) => {
            out.push(SASL);
            enc::str(out, m);
        }
        m => out.push(mechanism_code(m)),
    }
    enc::opt_str(out, user.as_deref());
    enc::bool(out, *cleartext);
    enc::opt_str(out, secret.as_ref().map(|s| s.0.as_str()));
    enc::u64(out, *frame);
    enc::str(out, context);
    enc::bool(out, *after_tls);
}

fn get_auth(d: &mut Dec<'_>) -> Option<AuthEvent> {
    let mechanism = match d.byte()? {
        SASL => Mechanism::Sasl(d.string()?),
        c => MECHANISMS.get(usize::from(c))?.clone(),
    };
    Some(AuthEvent {
        mechanism,
        user: d.opt_string()?,
        cleartext: d.bool()?,
        secret: d.opt_string()?.map(Secret),
        frame: d.u64()?,
        context: d.string()?,
        after_tls: d.bool()?,
    })
}

fn put_opt_u16(out: &mut Vec<u8>, v: Option<u16>) {
    enc::opt_u64(out, v.map(u64::from));
}

fn get_opt_u16(d: &mut Dec<'_>) -> Option<Option<u16>> {
    match d.opt_u64()? {
        None => Some(None),
        Some(v) => Some(Some(u16::try_from(v).ok()?)),
    }
}

fn put_tls(out: &mut Vec<u8>, t: &TlsInfo) {
    let TlsInfo {
        offered_version,
        version,
        cipher,
        sni,
        alpn,
        cert_requested,
        client_cert,
        client_hello_frame,
        server_hello_frame,
        started_by,
    } = t;
    put_opt_u16(out, *offered_version);
    put_opt_u16(out, *version);
    put_opt_u16(out, *cipher);
    enc::opt_str(out, sni.as_deref());
    enc::u64(out, alpn.len() as u64);
    for a in alpn {
        enc::str(out, a);
    }
    enc::bool(out, *cert_requested);
    enc::bool(out, *client_cert);
    enc::opt_u64(out, *client_hello_frame);
    enc::opt_u64(out, *server_hello_frame);
    enc::str(out, started_by);
}

fn get_tls(d: &mut Dec<'_>) -> Option<TlsInfo> {
    Some(TlsInfo {
        offered_version: get_opt_u16(d)?,
        version: get_opt_u16(d)?,
        cipher: get_opt_u16(d)?,
        sni: d.opt_string()?,
        alpn: d.list(Dec::string)?,
        cert_requested: d.bool()?,
        client_cert: d.bool()?,
        client_hello_frame: d.opt_u64()?,
        server_hello_frame: d.opt_u64()?,
        started_by: d.string()?,
    })
}

fn put_posture(out: &mut Vec<u8>, p: &Posture) {
    let Posture {
        protocol,
        detected_by,
        encryption,
        encryption_frame,
        tls,
        auth,
        facts,
        anomalies,
        anomalies_dropped,
        facts_dropped,
    } = p;
    enc::opt_str(out, *protocol);
    enc::opt_str(out, *detected_by);
    out.push(encryption_code(*encryption));
    enc::opt_u64(out, *encryption_frame);
    enc::bool(out, tls.is_some());
    if let Some(t) = tls {
        put_tls(out, t);
    }
    enc::u64(out, auth.len() as u64);
    for a in auth {
        put_auth(out, a);
    }
    let (items, text) = facts.raw();
    enc::u64(out, items.len() as u64);
    for (k, end) in items {
        enc::str(out, k);
        enc::u64(out, u64::from(*end));
    }
    enc::str(out, text);
    enc::u64(out, anomalies.len() as u64);
    for a in anomalies {
        let Anomaly {
            frame,
            kind,
            detail,
        } = a;
        enc::u64(out, *frame);
        enc::str(out, kind);
        enc::str(out, detail);
    }
    enc::u64(out, *anomalies_dropped);
    enc::u64(out, *facts_dropped);
}

fn get_posture(d: &mut Dec<'_>) -> Option<Posture> {
    let protocol = opt_name(d)?;
    let detected_by = opt_name(d)?;
    let encryption = from_code(&ENCRYPTIONS, d)?;
    let encryption_frame = d.opt_u64()?;
    let tls = if d.bool()? {
        Some(Box::new(get_tls(d)?))
    } else {
        None
    };
    let auth = d.list(get_auth)?;
    let items = d.list(|d| Some((name(d)?, d.u32()?)))?;
    let facts = Facts::from_raw(items, d.string()?)?;
    let anomalies = d.list(|d| {
        Some(Anomaly {
            frame: d.u64()?,
            kind: name(d)?,
            detail: d.string()?,
        })
    })?;
    Some(Posture {
        protocol,
        detected_by,
        encryption,
        encryption_frame,
        tls,
        auth,
        facts,
        anomalies,
        anomalies_dropped: d.u64()?,
        facts_dropped: d.u64()?,
    })
}

/// Append the encoding of a flow record.
pub fn put_flow(out: &mut Vec<u8>, f: &Flow) {
    let Flow {
        id,
        transport,
        client,
        server,
        client_from,
        conversation_frame,
        stream,
        resumed,
        first_frame,
        last_frame,
        first_ts_ns,
        last_ts_ns,
        frames,
        bytes,
        payload,
        syn_seen,
        syn_ack_seen,
        fin_seen,
        rst_seen,
        end,
        truncated_frames,
        icmp_errors,
        ah_seen,
        tunneled,
        reassembly,
        posture,
    } = f;
    enc::u64(out, *id);
    put_transport(out, *transport);
    put_addr(out, client);
    put_addr(out, server);
    out.push(client_from_code(*client_from));
    enc::u64(out, *conversation_frame);
    enc::opt_u64(out, *stream);
    enc::bool(out, *resumed);
    enc::u64(out, *first_frame);
    enc::u64(out, *last_frame);
    enc::i64(out, *first_ts_ns);
    enc::i64(out, *last_ts_ns);
    for v in frames.iter().chain(bytes).chain(payload) {
        enc::u64(out, *v);
    }
    let flags = [
        *syn_seen,
        *syn_ack_seen,
        fin_seen[0],
        fin_seen[1],
        *rst_seen,
        *ah_seen,
        *tunneled,
    ];
    out.push(
        flags
            .iter()
            .enumerate()
            .fold(0u8, |b, (i, &on)| b | (u8::from(on) << i)),
    );
    out.push(end_code(*end));
    enc::u64(out, *truncated_frames);
    enc::u64(out, *icmp_errors);
    let counted = *reassembly != ReassemblyTotals::default();
    enc::bool(out, counted);
    if counted {
        put_stats(out, &reassembly[0]);
        put_stats(out, &reassembly[1]);
    }
    put_posture(out, posture);
}

/// A flow record back from its encoding; `None` when the bytes are not one.
pub fn get_flow(d: &mut Dec<'_>) -> Option<Flow> {
    let id = d.u64()?;
    let transport = get_transport(d)?;
    let client = get_addr(d)?;
    let server = get_addr(d)?;
    let client_from = from_code(&CLIENT_FROM, d)?;
    let conversation_frame = d.u64()?;
    let stream = d.opt_u64()?;
    let resumed = d.bool()?;
    let first_frame = d.u64()?;
    let last_frame = d.u64()?;
    let first_ts_ns = d.i64()?;
    let last_ts_ns = d.i64()?;
    let mut counts = [0u64; 6];
    for c in &mut counts {
        *c = d.u64()?;
    }
    let flags = d.byte()?;
    let on = |i: u8| flags & (1 << i) != 0;
    let end = from_code(&END_REASONS, d)?;
    let truncated_frames = d.u64()?;
    let icmp_errors = d.u64()?;
    let mut reassembly = ReassemblyTotals::default();
    if d.bool()? {
        reassembly[0] = get_stats(d)?;
        reassembly[1] = get_stats(d)?;
    }
    let posture = get_posture(d)?;
    Some(Flow {
        id,
        transport,
        client,
        server,
        client_from,
        conversation_frame,
        stream,
        resumed,
        first_frame,
        last_frame,
        first_ts_ns,
        last_ts_ns,
        frames: [counts[0], counts[1]],
        bytes: [counts[2], counts[3]],
        payload: [counts[4], counts[5]],
        syn_seen: on(0),
        syn_ack_seen: on(1),
        fin_seen: [on(2), on(3)],
        rst_seen: on(4),
        end,
        truncated_frames,
        icmp_errors,
        ah_seen: on(5),
        tunneled: on(6),
        reassembly,
        posture,
    })
}

/// Append the encoding of a finding.
pub fn put_finding(out: &mut Vec<u8>, f: &Finding) {
    let Finding {
        rule,
        severity,
        data_path,
        stream,
        transport,
        client,
        server,
        frames,
        ts_ns,
        user,
        expected,
        observed,
        message,
        filter,
        fingerprint,
    } = f;
    enc::str(out, rule);
    out.push(severity_code(*severity));
    enc::opt_str(out, data_path.as_deref());
    enc::opt_u64(out, *stream);
    enc::str(out, transport);
    enc::str(out, client);
    enc::str(out, server);
    enc::u64(out, frames.len() as u64);
    for x in frames {
        enc::u64(out, *x);
    }
    enc::i64(out, *ts_ns);
    enc::opt_str(out, user.as_deref());
    for s in [expected, observed, message, filter, fingerprint] {
        enc::str(out, s);
    }
}

/// A finding back from its encoding; `None` when the bytes are not one.
/// A finding read from its record without copying its texts: the reports that write
/// each finding once (JSON, JSON lines, SARIF) write it from the record's bytes.
/// Serialises exactly as [`Finding`] does (same fields, same order).
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct FindingRef<'a> {
    pub rule: &'static str,
    pub severity: Severity,
    pub data_path: Option<&'a str>,
    pub stream: Option<u64>,
    pub transport: &'a str,
    pub client: &'a str,
    pub server: &'a str,
    pub frames: Vec<u64>,
    pub ts_ns: i64,
    pub user: Option<&'a str>,
    pub expected: &'a str,
    pub observed: &'a str,
    pub message: &'a str,
    pub filter: &'a str,
    pub fingerprint: &'a str,
}

impl FindingRef<'_> {
    pub fn to_finding(&self) -> Finding {
        Finding {
            rule: self.rule,
            severity: self.severity,
            data_path: self.data_path.map(str::to_string),
            stream: self.stream,
            transport: self.transport.to_string(),
            client: self.client.to_string(),
            server: self.server.to_string(),
            frames: self.frames.clone(),
            ts_ns: self.ts_ns,
            user: self.user.map(str::to_string),
            expected: self.expected.to_string(),
            observed: self.observed.to_string(),
            message: self.message.to_string(),
            filter: self.filter.to_string(),
            fingerprint: self.fingerprint.to_string(),
        }
    }
}

/// The record [`put_finding`] wrote, its texts borrowed from it.
pub fn get_finding_ref<'a>(d: &mut Dec<'a>) -> Option<FindingRef<'a>> {
    let opt_str = |d: &mut Dec<'a>| -> Option<Option<&'a str>> {
        Some(if d.bool()? { Some(d.str()?) } else { None })
    };
    Some(FindingRef {
        rule: rule_of(d.str()?)?,
        severity: severity_of(d.byte()?)?,
        data_path: opt_str(d)?,
        stream: d.opt_u64()?,
        transport: d.str()?,
        client: d.str()?,
        server: d.str()?,
        frames: d.list(Dec::u64)?,
        ts_ns: d.i64()?,
        user: opt_str(d)?,
        expected: d.str()?,
        observed: d.str()?,
        message: d.str()?,
        filter: d.str()?,
        fingerprint: d.str()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Source;
    use crate::flow::{collect_file, EngineConfig, ReassemblyStats};
    use crate::model::Direction;

    fn round_trip(f: &Flow) -> Flow {
        let mut b = Vec::new();
        put_flow(&mut b, f);
        let mut d = Dec::new(&b);
        let back = get_flow(&mut d).expect("reads back");
        assert!(d.is_empty(), "every byte read");
        // A record cut short never reads back as a flow.
        for cut in [0, 1, b.len() / 2, b.len() - 1] {
            assert!(get_flow(&mut Dec::new(&b[..cut])).is_none(), "cut at {cut}");
        }
        back
    }

    /// Every field away from its default, at its extremes where it has them.
    fn busy_flow() -> Flow {
        let mut p = Posture {
            protocol: Some("smtp"),
            detected_by: Some("handshake"),
            encryption: Encryption::SaslSeal,
            encryption_frame: Some(u64::MAX),
            tls: Some(Box::new(TlsInfo {
                offered_version: Some(0x0304),
                version: Some(0x0303),
                cipher: Some(0xc02f),
                sni: Some("mail.contoso.com".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
                cert_requested: true,
                client_cert: true,
                client_hello_frame: Some(4),
                server_hello_frame: Some(0),
                started_by: "starttls".into(),
            })),
            anomalies_dropped: 3,
            facts_dropped: 1 << 40,
            ..Posture::default()
        };
        p.fact("smtp.ehlo.keyword", "STARTTLS");
        p.fact("smtp.ehlo.keyword", "");
        p.fact("http.host", "hôte.example");
        p.anomaly(9, "smtp.line-too-long", "a line of 9000 bytes");
        p.add_auth(AuthEvent {
            mechanism: Mechanism::Sasl("SCRAM-SHA-256".into()),
            user: Some("CONTOSO\\ann".into()),
            cleartext: true,
            secret: Some(Secret("hunter2".into())),
            frame: 12,
            context: "SMTP AUTH".into(),
            after_tls: true,
        });
        p.add_auth(AuthEvent {
            mechanism: Mechanism::ByIp,
            user: None,
            cleartext: false,
            secret: None,
            frame: 0,
            context: String::new(),
            after_tls: false,
        });
        let mut reassembly = ReassemblyTotals::default();
        reassembly[Direction::ToClient.index()] = ReassemblyStats {
            retransmitted_bytes: 1,
            conflicting_overlaps: 2,
            out_of_order: 3,
            gaps: 4,
            gap_bytes: u64::MAX,
            cap_hits: 6,
            implausible: 7,
        };
        Flow {
            id: 42,
            transport: Transport::Ip(47),
            client: "[2001:db8::1]:0".parse().unwrap(),
            server: "10.0.0.5:65535".parse().unwrap(),
            client_from: ClientFrom::FirstPacket,
            conversation_frame: 7,
            stream: Some(0),
            resumed: true,
            first_frame: 1,
            last_frame: u64::MAX,
            first_ts_ns: -5,
            last_ts_ns: i64::MAX,
            frames: [1, 2],
            bytes: [3, 4],
            payload: [5, 6],
            syn_seen: false,
            syn_ack_seen: true,
            fin_seen: [false, true],
            rst_seen: true,
            end: EndReason::PortReuse,
            truncated_frames: 8,
            icmp_errors: 9,
            ah_seen: true,
            tunneled: false,
            reassembly,
            posture: p,
        }
    }

    #[test]
    fn every_code_is_its_variants_place_in_its_table() {
        for (i, x) in CLIENT_FROM.iter().enumerate() {
            assert_eq!(usize::from(client_from_code(*x)), i);
        }
        for (i, x) in END_REASONS.iter().enumerate() {
            assert_eq!(usize::from(end_code(*x)), i);
        }
        for (i, x) in ENCRYPTIONS.iter().enumerate() {
            assert_eq!(usize::from(encryption_code(*x)), i);
        }
        for (i, x) in MECHANISMS.iter().enumerate() {
            assert_eq!(usize::from(mechanism_code(x)), i);
        }
        assert_eq!(mechanism_code(&Mechanism::Sasl("x".into())), SASL);
        for (i, x) in Severity::ALL.iter().enumerate() {
            assert_eq!(usize::from(severity_code(*x)), i);
        }
    }

    #[test]
    fn a_flow_with_every_field_set_reads_back_equal() {
        let f = busy_flow();
        let back = round_trip(&f);
        assert_eq!(format!("{back:?}"), format!("{f:?}"));
        assert_eq!(back.posture.facts, f.posture.facts);
        assert!(back.posture.has_fact("http.host", "hôte.example"));
        assert_eq!(back.posture.anomalies, f.posture.anomalies);
        assert_eq!(back.posture.auth, f.posture.auth);
        assert_eq!(back.reassembly, f.reassembly);
    }

    #[test]
    fn every_flow_of_the_fixtures_reads_back_equal() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut paths = vec![dir.join("exchange-scenarios.pcapng")];
        for sub in ["families", "damaged"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "pcapng" || x == "pcap") {
                    paths.push(p);
                }
            }
        }
        let mut n = 0;
        for p in paths {
            let (_, flows) = collect_file(&Source::Path(p), &EngineConfig::default(), 1);
            for f in &flows {
                assert_eq!(format!("{:?}", round_trip(f)), format!("{f:?}"));
                n += 1;
            }
        }
        assert!(n > 80, "{n} flows");
    }

    #[test]
    fn a_finding_reads_back_equal_and_keys_order_by_severity_first() {
        let f = Finding {
            rule: crate::findings::rule::UNKNOWN_VISIBILITY,
            severity: Severity::Low,
            data_path: Some("HT-04".into()),
            stream: None,
            transport: "udp".into(),
            client: "[::1]:5".into(),
            server: "x".into(),
            frames: vec![1, u64::MAX],
            ts_ns: i64::MIN,
            user: None,
            expected: "e".into(),
            observed: String::new(),
            message: "m".into(),
            filter: "udp.stream eq 3".into(),
            fingerprint: "ab12".into(),
        };
        let mut b = Vec::new();
        put_finding(&mut b, &f);
        let back = get_finding_ref(&mut Dec::new(&b)).map(|r| r.to_finding());
        assert_eq!(back, Some(f.clone()));
        // Read in place, it writes the same JSON as the finding (users, quotes and all).
        for user in [None, Some("j\"doe\\\u{7}".to_string())] {
            let f = Finding { user, ..f.clone() };
            let mut b = Vec::new();
            put_finding(&mut b, &f);
            let r = get_finding_ref(&mut Dec::new(&b)).unwrap();
            assert_eq!(r.to_finding(), f);
            let mut ours = Vec::new();
            crate::report::json::write(&mut ours, &r).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&f).unwrap()
            );
        }
        assert!(get_finding_ref(&mut Dec::new(&b[..b.len() - 1])).is_none());
        let mut k = Vec::new();
        let key = FindingKey::of(3, &f);
        key.put(&mut k);
        assert_eq!(FindingKey::get(&mut Dec::new(&k)), Some(key.clone()));
        let critical = Finding {
            severity: Severity::Critical,
            ..f.clone()
        };
        assert!(
            FindingKey::of(9, &critical) < key,
            "severity before capture"
        );
        let later = Finding {
            stream: Some(0),
            ..f.clone()
        };
        assert!(key < FindingKey::of(3, &later), "no stream before stream 0");
    }
}
