//! TLS / SSL handshake analyzer (SSL 2.0 hello, SSL 3.0, TLS 1.0 to 1.3) on `tls-parser`.
//!
//! Guarantees:
//! - Each direction is read as a stream of records (RFC 5246 6.2.1) delivered in chunks of
//!   any size, one byte at a time included; the result does not depend on the chunking.
//!   At most one record header and one alert or handshake record body are buffered per
//!   direction ([`MAX_RECORD_LEN`]); application data, ChangeCipherSpec and heartbeat
//!   bodies are passed over unread.
//! - Handshake messages are reassembled across records and several messages in one record
//!   are all read; a message longer than [`MAX_HANDSHAKE_MSG`] is passed over with the
//!   anomaly `tls.handshake-too-long`, and the messages after it are still read.
//! - The ClientHello gives the offered version (the highest of the legacy version and
//!   the `supported_versions` values, GREASE ignored), SNI and ALPN; the final ServerHello
//!   (a HelloRetryRequest is not final) gives the version and cipher suite. A
//!   CertificateRequest and a non-empty client Certificate (in clear up to TLS 1.2) are
//!   noted. SSLv2-format hellos are recognised (fact `tls.sslv2-hello`).
//! - Encryption is recorded at the frame where the server's side becomes ciphertext: its
//!   ChangeCipherSpec (TLS 1.2 and older) or, for TLS 1.3, its first record after the
//!   ServerHello (the compatibility ChangeCipherSpec or the encrypted extensions). The
//!   ServerHello frame is in [`TlsInfo::server_hello_frame`]. A handshake that stops at
//!   a fatal alert, a gap or bytes that are not TLS never records encryption. An SSL 2.0
//!   ServerHello records encryption at once (SSL 2.0 records are not followed further).
//! - A direction that starts with application data, ChangeCipherSpec or an encrypted
//!   alert is a connection picked up mid-stream: `tls.handshake-not-seen`, encryption
//!   recorded, versions left unknown.
//! - Once both directions are ciphertext (or on an error) the analyzer answers
//!   [`Next::Done`]; [`TlsAnalyzer::bytes`] counts every byte it was given regardless.

use crate::model::{Direction, Encryption, TlsInfo};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration};
use crate::proto::text::printable;
use tls_parser::{
    parse_tls_client_hello_extension, parse_tls_handshake_client_hello,
    parse_tls_handshake_msg_certificate, parse_tls_handshake_server_hello, parse_tls_record_header,
    parse_tls_server_hello_extension, SNIType, TlsAlertSeverity, TlsExtension, TlsHandshakeType,
    TlsMessageHandshake, TlsRecordType,
};

/// Largest record body: TLSCiphertext.length may reach 2^14 + 2048 (RFC 5246 6.2.3).
pub const MAX_RECORD_LEN: usize = (1 << 14) + 2048;
/// Record header: type (1), version (2), length (2) (RFC 5246 6.2.1).
const RECORD_HEADER_LEN: usize = 5;
/// Largest handshake message reassembled for parsing. Only Certificate and
/// CertificateRequest (long CA lists) grow large; longer messages are passed over.
pub const MAX_HANDSHAKE_MSG: usize = 64 * 1024;
/// Handshake message header: type (1), length (3) (RFC 5246 7.4).
const HANDSHAKE_HEADER_LEN: usize = 4;
/// ServerHello.random of a HelloRetryRequest: SHA-256 of "HelloRetryRequest"
/// (RFC 8446 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];
/// Longest SNI host name kept: a DNS name is at most 255 octets (RFC 1035 2.3.4).
const MAX_SNI_LEN: usize = 255;
/// Most ALPN protocol names kept from one ClientHello (browsers offer two or three).
const MAX_ALPN_NAMES: usize = 16;

/// SSL 2.0 as a protocol version number.
const SSL2: u16 = 0x0002;
const SSL3: u16 = 0x0300;
const TLS13: u16 = 0x0304;
/// SSLv2 record header with a 2-byte length: high bit set, 15-bit length
/// (draft-hickman-netscape-ssl-00 "Record Header"; RFC 5246 E.2).
const SSL2_LONG_HEADER: u8 = 0x80;
const SSL2_CLIENT_HELLO: u8 = 1;
const SSL2_SERVER_HELLO: u8 = 4;
/// Header bytes read before deciding on an SSLv2 CLIENT-HELLO: length (2), type,
/// version (2).
const SSL2_CLIENT_HELLO_PREFIX: usize = 5;
/// Header bytes read before deciding on an SSLv2 SERVER-HELLO: length (2), type,
/// session-id-hit, certificate type, version (2).
const SSL2_SERVER_HELLO_PREFIX: usize = 7;
/// Smallest CLIENT-HELLO body: type, version, three 2-byte lengths (RFC 5246 E.2).
const SSL2_CLIENT_HELLO_MIN: usize = 9;
/// Smallest SERVER-HELLO body: type, hit, certificate type, version, three 2-byte lengths.
const SSL2_SERVER_HELLO_MIN: usize = 11;

pub const REGISTRATION: Registration = Registration {
    name: "tls",
    tcp: true,
    // HTTPS (OWA, EWS, Autodiscover, Outlook Anywhere), SMTPS, LDAPS, IMAPS, POP3S, GC
    // over SSL, SIP/TLS (UM), ADAM/EdgeSync LDAPS, alternative HTTPS ports.
    ports: &[443, 465, 636, 993, 995, 3269, 5061, 50636, 8443, 444],
    probe,
    make: || Box::new(TlsAnalyzer::new("implicit")),
};

/// Certain on a ClientHello record (or SSLv2 CLIENT-HELLO) from the client or a
/// ServerHello record (or SSLv2 SERVER-HELLO) from the server; Unsure on a consistent
/// prefix too short to tell, or on an application-data / alert / ChangeCipherSpec record
/// header (a connection picked up mid-stream, where the port decides); No otherwise.
pub fn probe(dir: Direction, prefix: &[u8], _client_port: u16, _server_port: u16) -> Probe {
    let Some(&first) = prefix.first() else {
        return Probe::Unsure;
    };
    if first & SSL2_LONG_HEADER != 0 {
        return probe_sslv2(dir, prefix);
    }
    if prefix.get(1).is_some_and(|&major| major != 3)
        || prefix.get(2).is_some_and(|&minor| minor > 4)
    {
        return Probe::No;
    }
    if let (Some(&hi), Some(&lo)) = (prefix.get(3), prefix.get(4)) {
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 || len > MAX_RECORD_LEN {
            return Probe::No;
        }
    }
    match TlsRecordType(first) {
        TlsRecordType::Handshake => {
            let hello = match dir {
                Direction::ToServer => TlsHandshakeType::ClientHello,
                Direction::ToClient => TlsHandshakeType::ServerHello,
            };
            match prefix.get(RECORD_HEADER_LEN) {
                None => Probe::Unsure,
                Some(&t) if t == hello.0 => Probe::Certain,
                Some(_) => Probe::No,
            }
        }
        TlsRecordType::ApplicationData | TlsRecordType::Alert | TlsRecordType::ChangeCipherSpec => {
            Probe::Unsure
        }
        _ => Probe::No,
    }
}

fn probe_sslv2(dir: Direction, prefix: &[u8]) -> Probe {
    let (hello, at, need, min) = match dir {
        Direction::ToServer => (
            SSL2_CLIENT_HELLO,
            3,
            SSL2_CLIENT_HELLO_PREFIX,
            SSL2_CLIENT_HELLO_MIN,
        ),
        Direction::ToClient => (
            SSL2_SERVER_HELLO,
            5,
            SSL2_SERVER_HELLO_PREFIX,
            SSL2_SERVER_HELLO_MIN,
        ),
    };
    if let (Some(&hi), Some(&lo)) = (prefix.first(), prefix.get(1)) {
        if usize::from(u16::from_be_bytes([hi & !SSL2_LONG_HEADER, lo])) < min {
            return Probe::No;
        }
    }
    if prefix.get(2).is_some_and(|&t| t != hello) {
        return Probe::No;
    }
    if let (Some(&hi), Some(&lo)) = (prefix.get(at), prefix.get(at + 1)) {
        let v = u16::from_be_bytes([hi, lo]);
        let ok = match dir {
            Direction::ToServer => known_version(v),
            Direction::ToClient => v == SSL2,
        };
        if !ok {
            return Probe::No;
        }
    }
    if prefix.len() >= need {
        Probe::Certain
    } else {
        Probe::Unsure
    }
}

/// SSL 2.0, SSL 3.0 and TLS 1.0 to 1.3: the versions the report can name.
fn known_version(v: u16) -> bool {
    v == SSL2 || (SSL3..=TLS13).contains(&v)
}

/// GREASE values reserved by RFC 8701 (0x0a0a, 0x1a1a, ... 0xfafa).
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a
}

fn hex16(v: u16) -> String {
    format!("0x{v:04x}")
}

/// What the bytes read so far of a record header say.
enum Header {
    /// Undecided: read another byte.
    More,
    /// Not a record this analyzer accepts: the first byte at fault, named.
    Bad(String),
    /// Length field past [`MAX_RECORD_LEN`].
    TooLong(usize),
    /// A TLS record header.
    Record { typ: TlsRecordType, len: usize },
    /// An SSLv2 CLIENT-HELLO: version offered, bytes left in the record after the prefix.
    Sslv2ClientHello { version: u16, rest: usize },
    /// An SSLv2 SERVER-HELLO.
    Sslv2ServerHello,
}

/// Decide on a record header from its first bytes; `first` allows the SSLv2 format,
/// which only a direction's first record may use.
fn header(h: &[u8], first: bool) -> Header {
    let Some(&b0) = h.first() else {
        return Header::More;
    };
    if b0 & SSL2_LONG_HEADER != 0 {
        if first {
            return sslv2_header(h);
        }
        return Header::Bad(format!("content type 0x{b0:02x}"));
    }
    if !(TlsRecordType::ChangeCipherSpec.0..=TlsRecordType::Heartbeat.0).contains(&b0) {
        return Header::Bad(format!("content type 0x{b0:02x}"));
    }
    if let Some(&major) = h.get(1).filter(|&&m| m != 3) {
        return Header::Bad(format!("version major 0x{major:02x}"));
    }
    if let Some(&minor) = h.get(2).filter(|&&m| m > 4) {
        return Header::Bad(format!("version minor 0x{minor:02x}"));
    }
    if h.len() < RECORD_HEADER_LEN {
        return Header::More;
    }
    match parse_tls_record_header(h) {
        Ok((_, hdr)) if usize::from(hdr.len) > MAX_RECORD_LEN => {
            Header::TooLong(usize::from(hdr.len))
        }
        Ok((_, hdr)) => Header::Record {
            typ: hdr.record_type,
            len: usize::from(hdr.len),
        },
        Err(_) => Header::Bad("record header".to_string()),
    }
}

fn sslv2_header(h: &[u8]) -> Header {
    let (Some(&hi), Some(&lo), Some(&typ)) = (h.first(), h.get(1), h.get(2)) else {
        return Header::More;
    };
    let len = usize::from(u16::from_be_bytes([hi & !SSL2_LONG_HEADER, lo]));
    let (need, min, at) = match typ {
        SSL2_CLIENT_HELLO => (SSL2_CLIENT_HELLO_PREFIX, SSL2_CLIENT_HELLO_MIN, 3),
        SSL2_SERVER_HELLO => (SSL2_SERVER_HELLO_PREFIX, SSL2_SERVER_HELLO_MIN, 5),
        _ => return Header::Bad(format!("SSLv2 message type {typ}")),
    };
    if len < min {
        return Header::Bad(format!("SSLv2 record of {len} bytes"));
    }
    let (Some(&vh), Some(&vl)) = (h.get(at), h.get(at + 1)) else {
        return Header::More;
    };
    let version = u16::from_be_bytes([vh, vl]);
    let ok = match typ {
        SSL2_CLIENT_HELLO => known_version(version),
        _ => version == SSL2,
    };
    if !ok {
        return Header::Bad(format!("SSLv2 hello version {}", hex16(version)));
    }
    if h.len() < need {
        return Header::More;
    }
    match typ {
        SSL2_CLIENT_HELLO => Header::Sslv2ClientHello {
            version,
            // 2 header bytes plus `len`, of which `need` are read.
            rest: (2 + len).saturating_sub(need),
        },
        _ => Header::Sslv2ServerHello,
    }
}

/// Reading state of one direction.
#[derive(Debug, Default)]
struct Side {
    /// Header, then body (alert and handshake records only), of the record being read.
    rec: Vec<u8>,
    /// Type and length of the record whose body is being read into `rec`.
    body: Option<(TlsRecordType, usize)>,
    /// Stream bytes to pass over unread (record bodies nobody needs).
    skip: usize,
    /// Handshake message being reassembled, header included.
    hs: Vec<u8>,
    /// Handshake bytes of an oversized message still to pass over.
    hs_skip: usize,
    /// Records seen (an SSLv2 hello counts).
    records: u64,
    /// Everything this side sends from now on is ciphertext: no more parsing.
    encrypted: bool,
}

/// TLS analyzer for one flow: implicit TLS, or the bytes after STARTTLS / STLS /
/// X-ANONYMOUSTLS / LDAP StartTLS handed over by the text protocols.
pub struct TlsAnalyzer {
    started_by: &'static str,
    /// Bytes forwarded per direction (tests read it).
    pub bytes: [u64; 2],
    sides: [Side; 2],
    /// Index of the direction that sent the final ServerHello (the server).
    server: Option<usize>,
    /// Encryption was recorded in the posture.
    encrypted: bool,
    /// A valid record header or SSLv2 hello was seen in some direction.
    recognised: bool,
    /// Nothing more to learn: every call answers `Done`.
    stopped: bool,
    /// `tls.handshake-not-seen` was reported.
    pickup_reported: bool,
}

impl TlsAnalyzer {
    pub fn new(started_by: &'static str) -> Self {
        TlsAnalyzer {
            started_by,
            bytes: [0; 2],
            sides: Default::default(),
            server: None,
            encrypted: false,
            recognised: false,
            stopped: false,
            pickup_reported: false,
        }
    }

    fn next(&self) -> Next {
        if self.stopped || self.sides.iter().all(|s| s.encrypted) {
            Next::Done
        } else {
            Next::Continue
        }
    }

    /// The flow's TlsInfo, created on first use.
    fn info<'p>(&self, cx: &'p mut Ctx) -> &'p mut TlsInfo {
        let by = self.started_by;
        cx.posture.tls.get_or_insert_with(|| {
            Box::new(TlsInfo {
                started_by: by.to_string(),
                ..TlsInfo::default()
            })
        })
    }

    /// Give up on the flow. Bytes that never looked like TLS leave no TlsInfo behind.
    fn fail(&mut self, kind: &'static str, detail: String, cx: &mut Ctx) {
        cx.posture.anomaly(cx.frame, kind, detail);
        if !self.recognised {
            cx.posture.tls = None;
        }
        self.stopped = true;
    }

    /// Is direction `d` the client? The side that sent the ServerHello is the server;
    /// before that, trust the engine's orientation.
    fn is_client(&self, d: usize) -> bool {
        match self.server {
            Some(s) => s != d,
            None => d == Direction::ToServer.index(),
        }
    }

    fn feed(&mut self, d: usize, mut input: &[u8], cx: &mut Ctx) {
        loop {
            if self.stopped {
                return;
            }
            let Some(side) = self.sides.get_mut(d) else {
                return;
            };
            if side.encrypted {
                return;
            }
            if side.skip > 0 {
                let n = side.skip.min(input.len());
                if n == 0 {
                    return;
                }
                side.skip -= n;
                input = input.get(n..).unwrap_or_default();
                continue;
            }
            if let Some((typ, len)) = side.body {
                let want = RECORD_HEADER_LEN + len;
                let n = want.saturating_sub(side.rec.len()).min(input.len());
                let (head, rest) = input.split_at(n);
                side.rec.extend_from_slice(head);
                input = rest;
                if side.rec.len() < want {
                    return;
                }
                side.body = None;
                let rec = std::mem::take(&mut side.rec);
                let body = rec.get(RECORD_HEADER_LEN..).unwrap_or_default();
                match typ {
                    TlsRecordType::Alert => self.alerts(body, cx),
                    _ => self.handshake_bytes(d, body, cx),
                }
                if let Some(side) = self.sides.get_mut(d) {
                    side.rec = rec;
                    side.rec.clear();
                }
                continue;
            }
            // Record header, one byte at a time so that the verdict never depends on
            // how the stream was chunked.
            let Some((&b, rest)) = input.split_first() else {
                return;
            };
            input = rest;
            side.rec.push(b);
            let first = side.records == 0;
            match header(&side.rec, first) {
                Header::More => {}
                Header::Bad(what) => {
                    let (kind, detail) = if first {
                        ("tls.not-tls", format!("not a TLS record: {what}"))
                    } else {
                        ("tls.bad-record", format!("TLS stream lost: {what}"))
                    };
                    self.fail(kind, detail, cx);
                }
                Header::TooLong(len) => self.fail(
                    "tls.record-too-long",
                    format!("record length {len} > {MAX_RECORD_LEN}"),
                    cx,
                ),
                Header::Sslv2ClientHello { version, rest } => {
                    side.rec.clear();
                    side.records += 1;
                    side.skip = rest;
                    self.recognised = true;
                    self.sslv2_client_hello(version, cx);
                }
                Header::Sslv2ServerHello => {
                    side.rec.clear();
                    side.records += 1;
                    self.recognised = true;
                    self.server = Some(d);
                    cx.posture.fact("tls.sslv2-hello", "server");
                    let frame = cx.frame;
                    let info = self.info(cx);
                    info.version = Some(SSL2);
                    info.server_hello_frame = Some(frame);
                    // SSL 2.0 records are not followed: the session is encrypted from here.
                    cx.posture.set_encryption(Encryption::Tls, frame);
                    self.encrypted = true;
                    self.stopped = true;
                }
                Header::Record { typ, len } => {
                    side.rec.truncate(RECORD_HEADER_LEN);
                    side.records += 1;
                    if side.records > cx.limits.tls_handshake_records {
                        let n = side.records - 1;
                        self.fail(
                            "tls.too-many-records",
                            format!("{n} records before encryption; parser stopped (cap)"),
                            cx,
                        );
                        continue;
                    }
                    self.recognised = true;
                    self.info(cx);
                    self.record_header(d, first, typ, len, cx);
                }
            }
        }
    }

    /// A complete TLS record header: pass the body over or arrange to read it.
    fn record_header(
        &mut self,
        d: usize,
        first: bool,
        typ: TlsRecordType,
        len: usize,
        cx: &mut Ctx,
    ) {
        let server_hello_seen = self.server.is_some();
        let Some(side) = self.sides.get_mut(d) else {
            return;
        };
        // A direction whose first record is not a handshake (nor a 2-byte clear alert)
        // is a connection picked up after its handshake.
        let pickup = first
            && (matches!(
                typ,
                TlsRecordType::ApplicationData | TlsRecordType::ChangeCipherSpec
            ) || (typ == TlsRecordType::Alert && len != 2));
        match typ {
            TlsRecordType::Alert | TlsRecordType::Handshake if !pickup => {
                side.body = Some((typ, len));
            }
            _ => {
                side.rec.clear();
                side.skip = len;
            }
        }
        if pickup {
            self.pickup(d, typ, cx);
            return;
        }
        match typ {
            TlsRecordType::ApplicationData | TlsRecordType::ChangeCipherSpec
                if server_hello_seen =>
            {
                self.side_encrypted(d, cx);
            }
            TlsRecordType::ApplicationData => {
                // Before the ServerHello: TLS 1.3 early data (RFC 8446 4.2.10).
                cx.posture.fact("tls.early-data", "seen");
            }
            TlsRecordType::Heartbeat => cx.posture.fact("tls.heartbeat", "seen"),
            // ChangeCipherSpec before the final ServerHello: the TLS 1.3 compatibility
            // record around a HelloRetryRequest (RFC 8446 D.4), not encryption yet.
            _ => {}
        }
    }

    fn pickup(&mut self, d: usize, typ: TlsRecordType, cx: &mut Ctx) {
        if !self.pickup_reported {
            self.pickup_reported = true;
            let dir = if d == Direction::ToServer.index() {
                "client"
            } else {
                "server"
            };
            cx.posture.anomaly(
                cx.frame,
                "tls.handshake-not-seen",
                format!(
                    "{dir} stream starts with a {typ:?} record; the handshake was not captured"
                ),
            );
        }
        if let Some(side) = self.sides.get_mut(d) {
            side.encrypted = true;
        }
        cx.posture.set_encryption(Encryption::Tls, cx.frame);
        self.encrypted = true;
    }

    fn side_encrypted(&mut self, d: usize, cx: &mut Ctx) {
        if let Some(side) = self.sides.get_mut(d) {
            side.encrypted = true;
            side.hs.clear();
            side.hs_skip = 0;
        }
        if self.server == Some(d) {
            cx.posture.set_encryption(Encryption::Tls, cx.frame);
            self.encrypted = true;
        }
    }

    /// A clear alert record: level and description pairs (RFC 5246 7.2).
    fn alerts(&mut self, body: &[u8], cx: &mut Ctx) {
        if body.is_empty() || body.len() % 2 != 0 {
            cx.posture.anomaly(
                cx.frame,
                "tls.bad-alert",
                format!("alert record of {} bytes", body.len()),
            );
        }
        for pair in body.chunks_exact(2) {
            let &[level, desc] = pair else {
                continue;
            };
            let name = match TlsAlertSeverity(level) {
                TlsAlertSeverity::Warning => "warning".to_string(),
                TlsAlertSeverity::Fatal => "fatal".to_string(),
                _ => format!("level{level}"),
            };
            cx.posture.fact("tls.alert", format!("{name}:{desc}"));
            if TlsAlertSeverity(level) == TlsAlertSeverity::Fatal {
                // The connection ends here (RFC 5246 7.2.2).
                self.stopped = true;
            }
        }
    }

    /// Bytes of a handshake record: reassemble messages across records.
    fn handshake_bytes(&mut self, d: usize, mut data: &[u8], cx: &mut Ctx) {
        while !data.is_empty() {
            let Some(side) = self.sides.get_mut(d) else {
                return;
            };
            if side.encrypted || self.stopped {
                return;
            }
            if side.hs_skip > 0 {
                let n = side.hs_skip.min(data.len());
                side.hs_skip -= n;
                data = data.get(n..).unwrap_or_default();
                continue;
            }
            let want = match handshake_len(&side.hs) {
                Some(len) => HANDSHAKE_HEADER_LEN + len,
                None => HANDSHAKE_HEADER_LEN,
            };
            let n = want.saturating_sub(side.hs.len()).min(data.len());
            let (head, rest) = data.split_at(n);
            side.hs.extend_from_slice(head);
            data = rest;
            let Some(len) = handshake_len(&side.hs) else {
                continue;
            };
            let typ = TlsHandshakeType(side.hs.first().copied().unwrap_or(0));
            if len > MAX_HANDSHAKE_MSG {
                side.hs_skip = (HANDSHAKE_HEADER_LEN + len).saturating_sub(side.hs.len());
                side.hs.clear();
                cx.posture.anomaly(
                    cx.frame,
                    "tls.handshake-too-long",
                    format!("{typ:?} message of {len} bytes > {MAX_HANDSHAKE_MSG}; passed over"),
                );
                // The type alone is enough for these two.
                self.oversized(d, typ, cx);
                continue;
            }
            if side.hs.len() < HANDSHAKE_HEADER_LEN + len {
                continue;
            }
            let msg = std::mem::take(&mut side.hs);
            self.message(
                d,
                typ,
                msg.get(HANDSHAKE_HEADER_LEN..).unwrap_or_default(),
                cx,
            );
            if let Some(side) = self.sides.get_mut(d) {
                side.hs = msg;
                side.hs.clear();
            }
        }
    }

    fn oversized(&mut self, d: usize, typ: TlsHandshakeType, cx: &mut Ctx) {
        let client = self.is_client(d);
        match typ {
            // Longer than any empty list: certificates were sent.
            TlsHandshakeType::Certificate if client => {
                cx.posture.fact("tls.client-certificate", "present");
                self.info(cx).client_cert = true;
            }
            TlsHandshakeType::CertificateRequest if !client => self.info(cx).cert_requested = true,
            _ => {}
        }
    }

    /// One complete handshake message from direction `d`.
    fn message(&mut self, d: usize, typ: TlsHandshakeType, body: &[u8], cx: &mut Ctx) {
        let client = self.is_client(d);
        match typ {
            TlsHandshakeType::ClientHello => self.client_hello(body, cx),
            TlsHandshakeType::ServerHello => self.server_hello(d, body, cx),
            TlsHandshakeType::Certificate if client => {
                match parse_tls_handshake_msg_certificate(body) {
                    Ok((_, TlsMessageHandshake::Certificate(c))) => {
                        let sent = !c.cert_chain.is_empty();
                        cx.posture.fact(
                            "tls.client-certificate",
                            if sent { "present" } else { "empty" },
                        );
                        if sent {
                            self.info(cx).client_cert = true;
                        }
                    }
                    _ => cx.posture.anomaly(
                        cx.frame,
                        "tls.bad-certificate",
                        format!("client Certificate message of {} bytes", body.len()),
                    ),
                }
            }
            TlsHandshakeType::CertificateRequest if !client => {
                self.info(cx).cert_requested = true;
            }
            _ => {}
        }
    }

    fn sslv2_client_hello(&mut self, version: u16, cx: &mut Ctx) {
        cx.posture.fact("tls.sslv2-hello", hex16(version));
        cx.posture.fact("tls.client-versions", hex16(version));
        let frame = cx.frame;
        let info = self.info(cx);
        info.offered_version = info.offered_version.max(Some(version));
        info.client_hello_frame.get_or_insert(frame);
    }

    fn client_hello(&mut self, body: &[u8], cx: &mut Ctx) {
        let frame = cx.frame;
        let ch = match parse_tls_handshake_client_hello(body) {
            Ok((_, ch)) => ch,
            Err(_) => {
                cx.posture.anomaly(
                    frame,
                    "tls.bad-client-hello",
                    format!("ClientHello of {} bytes does not parse", body.len()),
                );
                let legacy = legacy_version(body);
                let info = self.info(cx);
                info.client_hello_frame.get_or_insert(frame);
                info.offered_version = info.offered_version.max(legacy);
                return;
            }
        };
        let mut listed: Vec<u16> = Vec::new();
        let mut sni: Option<String> = None;
        let mut alpn: Vec<String> = Vec::new();
        for ext in Extensions(ch.ext.unwrap_or_default()) {
            let Ok(raw) = ext else {
                cx.posture.anomaly(
                    frame,
                    "tls.bad-extension",
                    "truncated ClientHello extension",
                );
                break;
            };
            match parse_tls_client_hello_extension(raw) {
                Ok((_, TlsExtension::SupportedVersions(vs))) => {
                    listed.extend(vs.iter().map(|v| v.0).filter(|&v| !is_grease(v)));
                }
                Ok((_, TlsExtension::SNI(names))) => {
                    for (typ, name) in names {
                        if typ == SNIType::HostName && sni.is_none() {
                            sni = host_name(name, cx);
                        }
                    }
                }
                Ok((_, TlsExtension::ALPN(names))) => {
                    alpn.extend(
                        names
                            .iter()
                            .take(MAX_ALPN_NAMES)
                            .map(|n| printable(n).into_owned()),
                    );
                }
                Ok(_) => {}
                Err(_) => cx.posture.anomaly(
                    frame,
                    "tls.bad-extension",
                    format!("ClientHello extension {} does not parse", ext_type(raw)),
                ),
            }
        }
        let legacy = ch.version.0;
        let offered = listed
            .iter()
            .copied()
            .chain([legacy])
            .filter(|&v| known_version(v))
            .max();
        if offered.is_none() {
            cx.posture.anomaly(
                frame,
                "tls.unknown-version",
                format!(
                    "ClientHello offers no known version (legacy {})",
                    hex16(legacy)
                ),
            );
        }
        if listed.is_empty() {
            listed.push(legacy);
        }
        for v in &listed {
            cx.posture.fact("tls.client-versions", hex16(*v));
        }
        let info = self.info(cx);
        info.client_hello_frame.get_or_insert(frame);
        info.offered_version = info.offered_version.max(offered);
        if info.sni.is_none() {
            info.sni = sni;
        }
        if info.alpn.is_empty() {
            info.alpn = alpn;
        }
    }

    fn server_hello(&mut self, d: usize, body: &[u8], cx: &mut Ctx) {
        let frame = cx.frame;
        let sh = match parse_tls_handshake_server_hello(body) {
            Ok((_, sh)) => sh,
            Err(_) => {
                // Still the server's answer: keep following the handshake.
                cx.posture.anomaly(
                    frame,
                    "tls.bad-server-hello",
                    format!("ServerHello of {} bytes does not parse", body.len()),
                );
                let legacy = legacy_version(body);
                self.server = Some(d);
                let info = self.info(cx);
                info.version = legacy;
                info.server_hello_frame = Some(frame);
                return;
            }
        };
        let mut selected: Option<u16> = None;
        for ext in Extensions(sh.ext.unwrap_or_default()) {
            let Ok(raw) = ext else {
                cx.posture.anomaly(
                    frame,
                    "tls.bad-extension",
                    "truncated ServerHello extension",
                );
                break;
            };
            match parse_tls_server_hello_extension(raw) {
                Ok((_, TlsExtension::SupportedVersions(vs))) => {
                    selected = vs.first().map(|v| v.0);
                }
                Ok(_) => {}
                Err(_) => cx.posture.anomaly(
                    frame,
                    "tls.bad-extension",
                    format!("ServerHello extension {} does not parse", ext_type(raw)),
                ),
            }
        }
        if sh.random == HRR_RANDOM {
            // Not the final ServerHello: the client sends a second ClientHello.
            cx.posture
                .fact("tls.hello-retry-request", hex16(sh.cipher.0));
            return;
        }
        self.server = Some(d);
        let info = self.info(cx);
        info.version = Some(selected.unwrap_or(sh.version.0));
        info.cipher = Some(sh.cipher.0);
        info.server_hello_frame = Some(frame);
    }
}

/// An SNI host_name as text, or None (with an anomaly) when it cannot be one.
fn host_name(name: &[u8], cx: &mut Ctx) -> Option<String> {
    if name.is_empty() || name.len() > MAX_SNI_LEN {
        cx.posture.anomaly(
            cx.frame,
            "tls.bad-sni",
            format!("server_name of {} bytes", name.len()),
        );
        return None;
    }
    Some(
        String::from_utf8_lossy(name)
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect(),
    )
}

/// Length of the handshake message whose header starts `hs`, once its 4 bytes are there.
fn handshake_len(hs: &[u8]) -> Option<usize> {
    match hs.get(..HANDSHAKE_HEADER_LEN)? {
        [_, a, b, c] => Some(usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c)),
        _ => None,
    }
}

/// client_version / server_version, the first two bytes of a hello.
fn legacy_version(body: &[u8]) -> Option<u16> {
    match body.get(..2)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])).filter(|&v| known_version(v)),
        _ => None,
    }
}

fn ext_type(raw: &[u8]) -> String {
    match raw.get(..2) {
        Some([a, b]) => u16::from_be_bytes([*a, *b]).to_string(),
        _ => "?".to_string(),
    }
}

/// Raw extensions (type, length, data) of a hello's extension block (RFC 5246 7.4.1.4);
/// `Err` once one is truncated, then nothing more.
struct Extensions<'a>(&'a [u8]);

impl<'a> Iterator for Extensions<'a> {
    type Item = Result<&'a [u8], ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let len = match self.0.get(2..4) {
            Some([a, b]) => usize::from(u16::from_be_bytes([*a, *b])),
            _ => {
                self.0 = &[];
                return Some(Err(()));
            }
        };
        match self.0.split_at_checked(4 + len) {
            Some((ext, rest)) => {
                self.0 = rest;
                Some(Ok(ext))
            }
            None => {
                self.0 = &[];
                Some(Err(()))
            }
        }
    }
}

impl Analyzer for TlsAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        let d = dir.index();
        if let Some(b) = self.bytes.get_mut(d) {
            *b = b.saturating_add(data.len() as u64);
        }
        if self.stopped {
            return Next::Done;
        }
        if !data.is_empty() {
            self.info(cx);
        }
        self.feed(d, data, cx);
        self.next()
    }

    fn gap(&mut self, dir: Direction, len: u64, cx: &mut Ctx) -> Next {
        if self.stopped {
            return Next::Done;
        }
        if self.encrypted {
            // Ciphertext is only counted: losing some of it loses nothing, but this
            // direction's record boundaries are gone, so stop reading it.
            if let Some(side) = self.sides.get_mut(dir.index()) {
                side.encrypted = true;
            }
            return self.next();
        }
        cx.posture.anomaly(
            cx.frame,
            "stream.gap",
            format!("{len} bytes missing before TLS encryption began; parser stopped"),
        );
        self.stopped = true;
        Next::Done
    }
}

#[cfg(test)]
mod tests;
