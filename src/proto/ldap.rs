//! LDAP over TCP (RFC 4511, binds per RFC 4513, SASL per RFC 4422) and CLDAP over UDP.
//!
//! What this analyzer guarantees:
//! - Messages are framed by their BER length (definite form only, RFC 4511 5.1), across
//!   any chunking; one message is buffered at most, up to [`MAX_LDAP_MESSAGE`]. A longer
//!   declared length is the anomaly `ldap.message-too-large` and the analyzer stops.
//! - Messages are decoded with `ldap-parser`; Microsoft's Sicily bind choices `[9]`/`[10]`/`[11]`
//!   (MS-ADTS 5.1.1.1.3), which that crate rejects, are decoded here.
//! - Every bind becomes an [`AuthEvent`]: simple binds with a password are cleartext
//!   credentials (the password is kept as a [`Secret`]); empty name and password is
//!   anonymous; a name with an empty password is an unauthenticated bind (RFC 4513 5.1.2).
//!   SASL and Sicily tokens go through [`inspect_token`], which records NTLM/Kerberos.
//! - StartTLS (RFC 4511 4.14) answered with success hands every later byte of both
//!   directions to a [`TlsAnalyzer`] started by `ldap-starttls`.
//! - After a successful SASL bind whose mechanism can negotiate a security layer
//!   (GSSAPI, GSS-SPNEGO, NTLM, DIGEST-MD5, Sicily NTLM), the next bytes of each direction
//!   are checked: a BER SEQUENCE means no layer; a 4-byte length then a token means a
//!   layer (RFC 4422 3.7). The flow is marked [`Encryption::SaslSeal`] only when the token
//!   itself shows confidentiality: a Kerberos CFX wrap token with the Sealed flag
//!   (RFC 4121 4.2.6.2), an RFC 1964/4757 wrap token whose SEAL_ALG is not `ffff`, or an
//!   NTLM (MS-NLMP 3.4.4) / DIGEST-MD5 (RFC 2831 2.3) layer whose payload is not a
//!   readable LDAP message. A token that shows only integrity is `ldap.sasl-layer` =
//!   `*-sign` (payload readable, flow stays cleartext); a token of unknown format is
//!   `ldap.sasl-layer` = `sasl-wrapped` and the encryption is left as it was, because
//!   nothing on the wire proves confidentiality.
//! - Readable LDAP marks the flow cleartext.

use crate::model::{AuthEvent, Direction, Encryption, Mechanism, Secret};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration};
use crate::proto::auth::{finish_auth, inspect_token, TokenSummary};
use crate::proto::tls::TlsAnalyzer;
use ldap_parser::ldap::{AuthenticationChoice, LdapMessage, ProtocolOp};
use ldap_parser::FromBer;

/// LDAP over TCP: 389, the global catalog 3268, ADAM / EdgeSync 50389. 636 and 3269 are
/// implicit TLS and belong to the TLS analyzer.
pub const REGISTRATION: Registration = Registration {
    name: "ldap",
    tcp: true,
    ports: &[389, 3268, 50389],
    probe,
    make: make_tcp,
};

/// Connectionless LDAP (CLDAP, RFC 1798 / MS-ADTS 6.3.3) over UDP 389: DC locator pings.
pub const REGISTRATION_UDP: Registration = Registration {
    name: "ldap",
    tcp: false,
    ports: &[389],
    probe,
    make: make_udp,
};

fn make_tcp() -> Box<dyn Analyzer> {
    Box::new(LdapAnalyzer::new(Transport::Tcp))
}

fn make_udp() -> Box<dyn Analyzer> {
    Box::new(LdapAnalyzer::new(Transport::Udp))
}

/// Largest LDAP message buffered. Active Directory's default MaxReceiveBuffer is 10 MB,
/// but binds, StartTLS and DC pings are a few KiB; 1 MiB bounds memory per direction
/// while keeping every message this analyzer learns from.
pub const MAX_LDAP_MESSAGE: usize = 1 << 20;
/// Largest SASL-wrapped token accepted (RFC 4422 3.7 lets peers announce up to 16 MiB;
/// only the first token of each direction is inspected, so 1 MiB is plenty).
pub const MAX_SASL_TOKEN: usize = 1 << 20;
/// Bytes needed to read any LDAP BER header: identifier, `0x84`, four length octets.
const MAX_BER_HEADER: usize = 6;
/// Most bytes of a DN or SASL user kept in a fact or event.
const MAX_NAME_LEN: usize = 256;

/// LDAP StartTLS extended operation (RFC 4511 4.14.1).
pub const OID_STARTTLS: &str = "1.3.6.1.4.1.1466.20037";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// What the bytes of one direction are expected to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    /// BER LDAPMessages.
    Plain,
    /// A SASL security layer may have begun: the next bytes decide.
    Maybe,
    /// 4-byte length then a SASL token.
    Wrapped,
}

/// LDAP result codes (RFC 4511 4.1.9); unknown values are kept as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultCode(pub u32);

impl ResultCode {
    pub const SUCCESS: ResultCode = ResultCode(0);
    pub const SASL_BIND_IN_PROGRESS: ResultCode = ResultCode(14);

    /// RFC 4511 name of the code, or its number.
    pub fn name(self) -> String {
        let s = match self.0 {
            0 => "success",
            1 => "operationsError",
            2 => "protocolError",
            7 => "authMethodNotSupported",
            8 => "strongerAuthRequired",
            13 => "confidentialityRequired",
            14 => "saslBindInProgress",
            48 => "inappropriateAuthentication",
            49 => "invalidCredentials",
            50 => "insufficientAccessRights",
            51 => "busy",
            52 => "unavailable",
            53 => "unwillingToPerform",
            80 => "other",
            n => return n.to_string(),
        };
        s.to_string()
    }
}

/// Name of a protocolOp by its APPLICATION tag number (RFC 4511 4.2..4.14 ASN.1 names).
pub fn op_name(tag: u8) -> &'static str {
    match tag {
        0 => "bindRequest",
        1 => "bindResponse",
        2 => "unbindRequest",
        3 => "searchRequest",
        4 => "searchResEntry",
        5 => "searchResDone",
        6 => "modifyRequest",
        7 => "modifyResponse",
        8 => "addRequest",
        9 => "addResponse",
        10 => "delRequest",
        11 => "delResponse",
        12 => "modDNRequest",
        13 => "modDNResponse",
        14 => "compareRequest",
        15 => "compareResponse",
        16 => "abandonRequest",
        19 => "searchResRef",
        23 => "extendedReq",
        24 => "extendedResp",
        25 => "intermediateResponse",
        _ => "unknown",
    }
}

/// True for the identifier octets RFC 4511 gives protocolOps: constructed
/// [APPLICATION n] for most, primitive for unbind (2), delRequest (10), abandon (16).
fn is_ldap_op_tag(id: u8) -> bool {
    match id {
        0x42 | 0x4a | 0x50 => true,
        0x60..=0x79 => op_name(id & 0x1f) != "unknown",
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// BER framing
// ---------------------------------------------------------------------------------------

/// One BER header: identifier octet, header size, content length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BerHeader {
    id: u8,
    hdr: usize,
    len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ber {
    /// More bytes are needed to read the header.
    Need,
    Header(BerHeader),
    /// Not a BER form LDAP allows; the text says why.
    Bad(&'static str),
}

/// Read a BER identifier and definite length (low tag numbers only, as LDAP uses).
fn ber_header(b: &[u8]) -> Ber {
    let Some(&id) = b.first() else {
        return Ber::Need;
    };
    if id & 0x1f == 0x1f {
        return Ber::Bad("high tag number form");
    }
    let Some(&l0) = b.get(1) else {
        return Ber::Need;
    };
    if l0 < 0x80 {
        return Ber::Header(BerHeader {
            id,
            hdr: 2,
            len: usize::from(l0),
        });
    }
    if l0 == 0x80 {
        return Ber::Bad("indefinite length (RFC 4511 5.1 forbids it)");
    }
    let n = usize::from(l0 & 0x7f);
    if n > 4 {
        return Ber::Bad("length of length over 4 octets");
    }
    let Some(octets) = b.get(2..2 + n) else {
        return Ber::Need;
    };
    let len = octets
        .iter()
        .fold(0usize, |acc, &o| (acc << 8) | usize::from(o));
    Ber::Header(BerHeader {
        id,
        hdr: 2 + n,
        len,
    })
}

/// Split one complete TLV off `b`: (identifier, content, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let Ber::Header(h) = ber_header(b) else {
        return None;
    };
    let end = h.hdr.checked_add(h.len)?;
    let content = b.get(h.hdr..end)?;
    let rest = b.get(end..)?;
    Some((h.id, content, rest))
}

/// True when `b` is exactly one LDAPMessage envelope: SEQUENCE { INTEGER, op }.
fn looks_like_ldap_message(b: &[u8]) -> bool {
    match tlv(b) {
        Some((0x30, content, [])) => match tlv(content) {
            Some((0x02, id, after)) => {
                (1..=4).contains(&id.len()) && after.first().is_some_and(|&t| is_ldap_op_tag(t))
            }
            _ => false,
        },
        _ => false,
    }
}

/// Probe: a SEQUENCE holding an INTEGER messageID then an LDAP APPLICATION tag is
/// certain; a SEQUENCE start too short to tell is unsure. A SASL-wrapped start (4-byte
/// length) cannot begin a flow, so it is not recognised.
pub fn probe(_dir: Direction, prefix: &[u8], _client_port: u16, _server_port: u16) -> Probe {
    let outer = match ber_header(prefix) {
        Ber::Header(h) if h.id == 0x30 => h,
        Ber::Need if prefix.first() == Some(&0x30) => return Probe::Unsure,
        _ => return Probe::No,
    };
    if outer.len > MAX_LDAP_MESSAGE {
        return Probe::No;
    }
    let Some(inner) = prefix.get(outer.hdr..) else {
        return Probe::Unsure;
    };
    let msg_id = match ber_header(inner) {
        Ber::Header(h) if h.id == 0x02 && (1..=4).contains(&h.len) => h,
        Ber::Need => return Probe::Unsure,
        _ => return Probe::No,
    };
    match inner.get(msg_id.hdr + msg_id.len) {
        Some(&t) if is_ldap_op_tag(t) => Probe::Certain,
        Some(_) => Probe::No,
        None => Probe::Unsure,
    }
}

// ---------------------------------------------------------------------------------------
// Binds, decoded independently of ldap-parser's types
// ---------------------------------------------------------------------------------------

/// The Sicily choices of MS-ADTS 5.1.1.1.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sicily {
    PackageDiscovery,
    Negotiate,
    Response,
}

enum BindAuth<'a> {
    Simple(&'a [u8]),
    Sasl {
        mechanism: &'a str,
        credentials: Option<&'a [u8]>,
    },
    Sicily(Sicily, &'a [u8]),
}

/// A SASL (or Sicily) exchange in progress: recorded when the exchange ends.
#[derive(Debug)]
struct PendingSasl {
    /// Upper-case SASL mechanism name, or `SICILY`.
    mechanism: String,
    user: Option<String>,
    frame: u64,
    /// A token went through `inspect_token` and was recognised (it recorded the event).
    token_recognised: bool,
    /// The mechanism can negotiate integrity / confidentiality.
    layer_capable: bool,
    /// Mechanism learnt from the tokens (NTLM inside GSS-SPNEGO...).
    token_mechanism: Option<Mechanism>,
    /// Last Sicily step: a sicilyNegotiate is answered with success and the CHALLENGE,
    /// yet the exchange goes on with sicilyResponse.
    sicily_step: Option<Sicily>,
}

/// Per-flow LDAP state.
pub struct LdapAnalyzer {
    transport: Transport,
    bufs: [Vec<u8>; 2],
    layer: [Layer; 2],
    pending_sasl: Option<PendingSasl>,
    starttls_msgid: Option<u32>,
    /// Boxed: only after StartTLS, and CLDAP flows (held for the UDP timeout) never need it.
    tls: Option<Box<TlsAnalyzer>>,
    stopped: bool,
}

impl LdapAnalyzer {
    fn new(transport: Transport) -> Self {
        LdapAnalyzer {
            transport,
            bufs: [Vec::new(), Vec::new()],
            layer: [Layer::Plain; 2],
            pending_sasl: None,
            starttls_msgid: None,
            tls: None,
            stopped: false,
        }
    }

    /// A TCP LDAP analyzer (what [`REGISTRATION`] makes).
    pub fn new_tcp() -> Self {
        Self::new(Transport::Tcp)
    }

    /// A CLDAP analyzer (what [`REGISTRATION_UDP`] makes).
    pub fn new_udp() -> Self {
        Self::new(Transport::Udp)
    }

    /// Length of the frame at the start of `b` in the current layer, or why not.
    fn frame_len(&self, d: usize, b: &[u8]) -> Result<Option<usize>, (&'static str, String)> {
        let layer = self.layer.get(d).copied().unwrap_or(Layer::Plain);
        let wrapped = match layer {
            Layer::Plain => false,
            Layer::Wrapped => true,
            Layer::Maybe => match b.first() {
                None => return Ok(None),
                Some(&0x30) => false,
                Some(_) => true,
            },
        };
        if wrapped {
            let Some(len) = b.get(..4) else {
                return Ok(None);
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if len > MAX_SASL_TOKEN {
                return Err((
                    "ldap.sasl-token-too-large",
                    format!("SASL-wrapped token of {len} bytes (cap {MAX_SASL_TOKEN})"),
                ));
            }
            return Ok(Some(4 + len));
        }
        match ber_header(b) {
            Ber::Need => Ok(None),
            Ber::Bad(why) => Err(("ldap.bad-ber", why.to_string())),
            Ber::Header(h) if h.id != 0x30 => Err((
                "ldap.not-a-message",
                format!(
                    "identifier 0x{:02x} where an LDAPMessage SEQUENCE (0x30) was expected",
                    h.id
                ),
            )),
            Ber::Header(h) => {
                let total = h.hdr.saturating_add(h.len);
                if total > MAX_LDAP_MESSAGE {
                    Err((
                        "ldap.message-too-large",
                        format!("LDAPMessage of {total} bytes (cap {MAX_LDAP_MESSAGE})"),
                    ))
                } else {
                    Ok(Some(total))
                }
            }
        }
    }

    /// Frame the TCP stream of one direction and handle each complete unit.
    fn stream(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        let d = dir.index();
        let mut pending = std::mem::take(&mut self.bufs[d]);
        let mut input = data;
        loop {
            if self.stopped {
                return Next::Done;
            }
            if self.tls.is_some() {
                let mut rest = std::mem::take(&mut pending);
                rest.extend_from_slice(input);
                return self.forward_to_tls(dir, &rest, cx);
            }
            let src: &[u8] = if pending.is_empty() { input } else { &pending };
            if src.is_empty() {
                break;
            }
            match self.frame_len(d, src) {
                Err((kind, detail)) => {
                    cx.posture.anomaly(cx.frame, kind, detail);
                    self.stopped = true;
                    return Next::Done;
                }
                Ok(Some(total)) if src.len() >= total => {
                    let unit = src.get(..total).unwrap_or_default().to_vec();
                    if pending.is_empty() {
                        input = input.get(total..).unwrap_or_default();
                    } else {
                        pending.clear();
                    }
                    self.unit(dir, &unit, cx);
                }
                Ok(need) => {
                    if input.is_empty() {
                        break;
                    }
                    let want = need.unwrap_or(MAX_BER_HEADER).saturating_sub(pending.len());
                    let take = want.max(1).min(input.len());
                    pending.extend_from_slice(input.get(..take).unwrap_or_default());
                    input = input.get(take..).unwrap_or_default();
                }
            }
        }
        if let Some(b) = self.bufs.get_mut(d) {
            *b = pending;
        }
        if self.stopped {
            Next::Done
        } else {
            Next::Continue
        }
    }

    fn forward_to_tls(&mut self, dir: Direction, bytes: &[u8], cx: &mut Ctx) -> Next {
        match self.tls.as_mut() {
            Some(tls) if !bytes.is_empty() => tls.data(dir, bytes, cx),
            _ => Next::Continue,
        }
    }

    /// One complete frame of the current layer of `dir`.
    fn unit(&mut self, dir: Direction, unit: &[u8], cx: &mut Ctx) {
        let d = dir.index();
        let layer = self.layer.get(d).copied().unwrap_or(Layer::Plain);
        let wrapped = match layer {
            Layer::Plain => false,
            Layer::Wrapped => true,
            Layer::Maybe => unit.first() != Some(&0x30),
        };
        if let Some(l) = self.layer.get_mut(d) {
            *l = if wrapped {
                Layer::Wrapped
            } else {
                Layer::Plain
            };
        }
        if wrapped {
            self.wrapped_token(unit.get(4..).unwrap_or_default(), cx);
            return;
        }
        self.message(unit, cx);
        if self.tls.is_some() {
            let other = dir.flip();
            let rest = std::mem::take(&mut self.bufs[other.index()]);
            self.forward_to_tls(other, &rest, cx);
        }
    }

    /// Classify the first SASL-wrapped token and stop: what follows is opaque or signed.
    fn wrapped_token(&mut self, token: &[u8], cx: &mut Ctx) {
        let verdict = classify_wrap(token);
        cx.posture.fact("ldap.sasl-layer", verdict.as_str());
        if verdict.sealed() {
            cx.posture.set_encryption(Encryption::SaslSeal, cx.frame);
        }
        self.stopped = true;
    }

    /// One BER LDAPMessage.
    fn message(&mut self, msg: &[u8], cx: &mut Ctx) {
        cx.posture.set_cleartext();
        let (msg_id, op_tag) = envelope(msg);
        let Some(op_tag) = op_tag else {
            cx.posture.anomaly(
                cx.frame,
                "ldap.malformed",
                "LDAPMessage without messageID and protocolOp",
            );
            return;
        };
        cx.posture.fact("ldap.op", op_label(op_tag));
        match LdapMessage::from_ber(msg) {
            Ok((_, m)) => self.parsed(m, cx),
            Err(_) => self.fallback(msg, msg_id, op_tag, cx),
        }
    }

    fn parsed(&mut self, m: LdapMessage<'_>, cx: &mut Ctx) {
        let id = m.message_id.0;
        match &m.protocol_op {
            ProtocolOp::BindRequest(req) => {
                let auth = match &req.authentication {
                    AuthenticationChoice::Simple(pw) => BindAuth::Simple(pw),
                    AuthenticationChoice::Sasl(s) => BindAuth::Sasl {
                        mechanism: &s.mechanism.0,
                        credentials: s.credentials.as_deref(),
                    },
                };
                self.bind_request(req.name.0.as_bytes(), auth, cx);
            }
            ProtocolOp::BindResponse(resp) => {
                self.bind_response(
                    ResultCode(resp.result.result_code.0),
                    resp.server_sasl_creds.as_deref(),
                    cx,
                );
            }
            ProtocolOp::ExtendedRequest(req) => {
                if req.request_name.0 == OID_STARTTLS {
                    cx.posture.fact("ldap.starttls", "requested");
                    self.starttls_msgid = Some(id);
                } else {
                    cx.posture
                        .fact("ldap.extended", truncate(&req.request_name.0));
                }
            }
            ProtocolOp::ExtendedResponse(resp) => {
                let is_starttls = self.starttls_msgid == Some(id)
                    || resp
                        .response_name
                        .as_ref()
                        .is_some_and(|n| n.0 == OID_STARTTLS);
                if is_starttls {
                    self.starttls_msgid = None;
                    let code = ResultCode(resp.result.result_code.0);
                    if code == ResultCode::SUCCESS && self.transport == Transport::Tcp {
                        cx.posture.fact("ldap.starttls", "accepted");
                        self.tls = Some(Box::new(TlsAnalyzer::new("ldap-starttls")));
                    } else {
                        cx.posture.fact("ldap.starttls", "refused");
                        cx.posture.fact("ldap.starttls-result", code.name());
                    }
                }
            }
            ProtocolOp::SearchRequest(req) => {
                let netlogon = req
                    .attributes
                    .iter()
                    .any(|a| a.0.eq_ignore_ascii_case("netlogon"));
                if netlogon && self.transport == Transport::Udp {
                    cx.posture.fact("ldap.cldap", "netlogon");
                }
            }
            _ => {}
        }
    }

    /// ldap-parser refused the message: decode the Sicily binds it does not know, and
    /// BindResponses whose matchedDN carries Sicily's binary serverCreds.
    fn fallback(&mut self, msg: &[u8], msg_id: Option<u32>, op_tag: u8, cx: &mut Ctx) {
        let op = tlv(msg)
            .and_then(|(_, content, _)| tlv(content))
            .and_then(|(_, _, after_id)| tlv(after_id));
        let decoded = match (op_tag, op) {
            (0x60, Some((_, body, _))) => match sicily_bind_request(body) {
                Some((name, auth)) => {
                    self.bind_request(name, auth, cx);
                    true
                }
                None => false,
            },
            (0x61, Some((_, body, _))) => match sicily_bind_response(body) {
                Some((code, creds)) => {
                    self.bind_response(code, creds, cx);
                    true
                }
                None => false,
            },
            _ => false,
        };
        if !decoded {
            let id = msg_id.map_or_else(|| "?".to_string(), |i| i.to_string());
            cx.posture.anomaly(
                cx.frame,
                "ldap.malformed",
                format!("{} (messageID {id}) does not decode", op_label(op_tag)),
            );
        }
    }

    fn bind_request(&mut self, name: &[u8], auth: BindAuth<'_>, cx: &mut Ctx) {
        let dn = truncate(&String::from_utf8_lossy(name));
        if !dn.is_empty() {
            cx.posture.fact("ldap.bind-dn", dn.clone());
        }
        match auth {
            BindAuth::Simple(pw) => self.simple_bind(dn, pw, cx),
            BindAuth::Sasl {
                mechanism,
                credentials,
            } => self.sasl_bind(mechanism, credentials, cx),
            BindAuth::Sicily(choice, blob) => {
                cx.posture.fact("ldap.mechanism", "SICILY");
                if choice == Sicily::PackageDiscovery {
                    // Package discovery lists the server's packages: no authentication yet.
                    return;
                }
                self.continue_sasl("SICILY", cx);
                if let Some(p) = self.pending_sasl.as_mut() {
                    p.sicily_step = Some(choice);
                }
                if !blob.is_empty() {
                    self.token(blob, "LDAP Sicily bind", cx);
                }
            }
        }
    }

    fn simple_bind(&mut self, dn: String, pw: &[u8], cx: &mut Ctx) {
        self.pending_sasl = None;
        let (mechanism, user, cleartext, secret, context, label) =
            match (dn.is_empty(), pw.is_empty()) {
                (true, true) => (
                    Mechanism::Anonymous,
                    None,
                    false,
                    None,
                    "LDAP anonymous bind",
                    "anonymous",
                ),
                (false, true) => {
                    cx.posture.fact("ldap.unauthenticated-bind", dn.clone());
                    cx.posture.anomaly(
                        cx.frame,
                        "ldap.unauthenticated-bind",
                        format!("simple bind as {dn} with an empty password (RFC 4513 5.1.2)"),
                    );
                    (
                        Mechanism::Anonymous,
                        Some(dn),
                        false,
                        None,
                        "LDAP unauthenticated bind",
                        "unauthenticated",
                    )
                }
                (_, false) => (
                    Mechanism::Simple,
                    (!dn.is_empty()).then_some(dn),
                    true,
                    Some(Secret(String::from_utf8_lossy(pw).into_owned())),
                    "LDAP simple bind",
                    "simple",
                ),
            };
        cx.posture.fact("ldap.mechanism", label);
        cx.posture.add_auth(AuthEvent {
            mechanism,
            user,
            cleartext,
            secret,
            frame: cx.frame,
            context: context.to_string(),
            after_tls: false,
        });
    }

    /// Start or continue the pending SASL exchange for `mechanism`.
    fn continue_sasl(&mut self, mechanism: &str, cx: &mut Ctx) {
        let same = self
            .pending_sasl
            .as_ref()
            .is_some_and(|p| p.mechanism == mechanism);
        if !same {
            self.pending_sasl = Some(PendingSasl {
                mechanism: mechanism.to_string(),
                user: None,
                frame: cx.frame,
                token_recognised: false,
                layer_capable: matches!(
                    mechanism,
                    "GSSAPI" | "GSS-SPNEGO" | "NTLM" | "DIGEST-MD5" | "SICILY"
                ),
                token_mechanism: None,
                sicily_step: None,
            });
        }
    }

    fn sasl_bind(&mut self, mechanism: &str, credentials: Option<&[u8]>, cx: &mut Ctx) {
        let mech = truncate(&mechanism.to_ascii_uppercase());
        cx.posture.fact("ldap.mechanism", mech.clone());
        self.continue_sasl(&mech, cx);
        let creds = credentials.unwrap_or_default();
        match mech.as_str() {
            "GSSAPI" | "GSS-SPNEGO" | "NTLM" => {
                if !creds.is_empty() {
                    self.token(creds, "LDAP SASL bind", cx);
                }
            }
            "PLAIN" => self.sasl_plain(creds, cx),
            _ => {
                if let Some(user) = sasl_user(&mech, creds) {
                    if let Some(p) = self.pending_sasl.as_mut() {
                        p.user = Some(user);
                    }
                }
            }
        }
    }

    /// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, a cleartext password.
    fn sasl_plain(&mut self, creds: &[u8], cx: &mut Ctx) {
        self.pending_sasl = None;
        let mut parts = creds.splitn(3, |&b| b == 0);
        let (_authz, authc, pw) = (parts.next(), parts.next(), parts.next());
        let user = authc
            .filter(|u| !u.is_empty())
            .map(|u| truncate(&String::from_utf8_lossy(u)));
        cx.posture.add_auth(AuthEvent {
            mechanism: Mechanism::Plain,
            user,
            cleartext: true,
            secret: pw.map(|p| Secret(String::from_utf8_lossy(p).into_owned())),
            frame: cx.frame,
            context: "LDAP SASL bind".to_string(),
            after_tls: false,
        });
    }

    fn token(&mut self, blob: &[u8], context: &str, cx: &mut Ctx) {
        let summary: Option<TokenSummary> = inspect_token(blob, cx, context);
        if let (Some(s), Some(p)) = (summary, self.pending_sasl.as_mut()) {
            p.token_recognised = true;
            if let Some(m) = s.mechanism {
                if p.token_mechanism.is_none() || m.is_ntlm() {
                    p.token_mechanism = Some(m);
                }
            }
            if s.user.is_some() {
                p.user = s.user;
            }
        } else if blob.starts_with(b"NTLMSSP\0") {
            if let Some(p) = self.pending_sasl.as_mut() {
                p.token_mechanism = Some(Mechanism::Ntlm);
            }
        }
    }

    fn bind_response(&mut self, code: ResultCode, creds: Option<&[u8]>, cx: &mut Ctx) {
        cx.posture.fact("ldap.bind-result", code.name());
        let token_mech = self.pending_sasl.as_ref().is_some_and(|p| {
            matches!(
                p.mechanism.as_str(),
                "GSSAPI" | "GSS-SPNEGO" | "NTLM" | "SICILY"
            )
        });
        if let Some(c) = creds.filter(|c| !c.is_empty() && token_mech) {
            self.token(c, "LDAP SASL bind", cx);
        }
        let sicily_challenge = self
            .pending_sasl
            .as_ref()
            .is_some_and(|p| p.sicily_step == Some(Sicily::Negotiate));
        if code == ResultCode::SASL_BIND_IN_PROGRESS
            || (sicily_challenge && code == ResultCode::SUCCESS)
        {
            return;
        }
        let Some(p) = self.pending_sasl.take() else {
            return;
        };
        if let Some(m) = &p.token_mechanism {
            if p.mechanism == "GSS-SPNEGO" || p.mechanism == "SICILY" {
                cx.posture
                    .fact("ldap.mechanism", format!("{}:{}", p.mechanism, m.name()));
            }
        }
        let layer_capable = p.layer_capable;
        record_sasl(p, cx);
        if code == ResultCode::SUCCESS && layer_capable {
            self.layer = [Layer::Maybe; 2];
        }
    }
}

/// Record a finished SASL exchange that no token inspection already recorded.
fn record_sasl(p: PendingSasl, cx: &mut Ctx) {
    if p.token_recognised {
        return;
    }
    let mechanism = match p.mechanism.as_str() {
        "GSSAPI" => Mechanism::Kerberos,
        "NTLM" | "SICILY" => Mechanism::Ntlm,
        "DIGEST-MD5" => Mechanism::Digest,
        "CRAM-MD5" => Mechanism::CramMd5,
        "ANONYMOUS" => Mechanism::Anonymous,
        _ => p.token_mechanism.unwrap_or(Mechanism::Sasl(p.mechanism)),
    };
    cx.posture.add_auth(AuthEvent {
        mechanism,
        user: p.user,
        cleartext: false,
        secret: None,
        frame: p.frame,
        context: "LDAP SASL bind".to_string(),
        after_tls: false,
    });
}

/// The user a non-token SASL mechanism names in its client message.
fn sasl_user(mech: &str, creds: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(creds).ok()?;
    let user = if mech.starts_with("SCRAM-") {
        // RFC 5802 7: gs2-header "n,," then "n=<user>,r=<nonce>".
        text.split(',').find_map(|f| f.strip_prefix("n="))?
    } else if mech == "DIGEST-MD5" {
        // RFC 2831 2.1.2: username="<user>" in the digest-response.
        let start = text.find("username=\"")? + "username=\"".len();
        let rest = text.get(start..)?;
        rest.get(..rest.find('"')?)?
    } else if mech == "CRAM-MD5" {
        // RFC 2195: "<user> <hex digest>".
        text.rsplit_once(' ')?.0
    } else if mech == "EXTERNAL" {
        text
    } else {
        return None;
    };
    (!user.is_empty()).then(|| truncate(user))
}

/// messageID (when it fits u32) and protocolOp identifier of an LDAPMessage.
fn envelope(msg: &[u8]) -> (Option<u32>, Option<u8>) {
    let Some((_, content, _)) = tlv(msg) else {
        return (None, None);
    };
    match tlv(content) {
        Some((0x02, id, rest)) if (1..=4).contains(&id.len()) => {
            let v = id.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b));
            (Some(v), rest.first().copied())
        }
        _ => (None, None),
    }
}

fn op_label(id: u8) -> &'static str {
    if is_ldap_op_tag(id) {
        op_name(id & 0x1f)
    } else {
        "unknown"
    }
}

/// BindRequest body (after [APPLICATION 0]) with a Sicily choice.
fn sicily_bind_request(body: &[u8]) -> Option<(&[u8], BindAuth<'_>)> {
    let (vt, _version, rest) = tlv(body)?;
    let (nt, name, rest) = tlv(rest)?;
    let (ct, blob, _) = tlv(rest)?;
    if vt != 0x02 || nt != 0x04 {
        return None;
    }
    let choice = match ct {
        0x89 => Sicily::PackageDiscovery,
        0x8a => Sicily::Negotiate,
        0x8b => Sicily::Response,
        _ => return None,
    };
    Some((name, BindAuth::Sicily(choice, blob)))
}

/// BindResponse body: resultCode, then Sicily's serverCreds in the matchedDN slot
/// (MS-ADTS SicilyBindResponse), or RFC 4511 fields with a serverSaslCreds [7].
fn sicily_bind_response(body: &[u8]) -> Option<(ResultCode, Option<&[u8]>)> {
    let (rt, code, rest) = tlv(body)?;
    if rt != 0x0a || code.is_empty() || code.len() > 4 {
        return None;
    }
    let code = code.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b));
    let (mt, matched, rest) = tlv(rest)?;
    if mt != 0x04 {
        return None;
    }
    let sasl = tlv(rest)
        .and_then(|(_, _, r)| tlv(r))
        .filter(|(t, _, _)| *t == 0x87)
        .map(|(_, c, _)| c);
    Some((
        ResultCode(code),
        sasl.or((!matched.is_empty()).then_some(matched)),
    ))
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------
// SASL security layer tokens
// ---------------------------------------------------------------------------------------

/// What the first SASL-wrapped token shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapVerdict {
    Krb5Seal,
    Krb5Sign,
    NtlmSeal,
    NtlmSign,
    DigestSeal,
    DigestSign,
    /// Wrapped, but the token format does not say whether it is sealed.
    Unknown,
}

impl WrapVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            WrapVerdict::Krb5Seal => "krb5-seal",
            WrapVerdict::Krb5Sign => "krb5-sign",
            WrapVerdict::NtlmSeal => "ntlm-seal",
            WrapVerdict::NtlmSign => "ntlm-sign",
            WrapVerdict::DigestSeal => "digest-seal",
            WrapVerdict::DigestSign => "digest-sign",
            WrapVerdict::Unknown => "sasl-wrapped",
        }
    }
    pub fn sealed(self) -> bool {
        matches!(
            self,
            WrapVerdict::Krb5Seal | WrapVerdict::NtlmSeal | WrapVerdict::DigestSeal
        )
    }
}

/// RFC 4121 4.2.6.2 wrap token identifier.
const KRB5_CFX_WRAP: [u8; 2] = [0x05, 0x04];
/// RFC 4121 4.2.2 Flags: Sealed.
const KRB5_CFX_SEALED: u8 = 0x02;
/// RFC 1964 1.2 wrap token identifier (also RFC 4757 RC4-HMAC).
const KRB5_1964_WRAP: [u8; 2] = [0x02, 0x01];
/// RFC 1964 SEAL_ALG "none": integrity only.
const KRB5_1964_NO_SEAL: [u8; 2] = [0xff, 0xff];
/// Kerberos v5 mechanism OID 1.2.840.113554.1.2.2, DER content.
const KRB5_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// MS-NLMP 2.2.2.9.1 NTLMSSP_MESSAGE_SIGNATURE: Version 1, 16 bytes.
const NTLM_SIG_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const NTLM_SIG_LEN: usize = 16;
/// RFC 2831 2.3/2.4: 10-byte MAC, 2-byte message type 1, 4-byte sequence number.
const DIGEST_TRAILER_LEN: usize = 16;

/// Classify one SASL security-layer token (without its 4-byte length).
pub fn classify_wrap(token: &[u8]) -> WrapVerdict {
    if token.get(..2) == Some(&KRB5_CFX_WRAP[..]) {
        return match token.get(2) {
            Some(f) if f & KRB5_CFX_SEALED != 0 => WrapVerdict::Krb5Seal,
            Some(_) => WrapVerdict::Krb5Sign,
            None => WrapVerdict::Unknown,
        };
    }
    if token.first() == Some(&0x60) {
        return classify_krb5_1964(token);
    }
    if token.get(..4) == Some(&NTLM_SIG_VERSION[..]) && token.len() > NTLM_SIG_LEN {
        let inner = token.get(NTLM_SIG_LEN..).unwrap_or_default();
        return if looks_like_ldap_message(inner) {
            WrapVerdict::NtlmSign
        } else {
            WrapVerdict::NtlmSeal
        };
    }
    if token.len() > DIGEST_TRAILER_LEN {
        let split = token.len() - DIGEST_TRAILER_LEN;
        let (inner, trailer) = token.split_at(split);
        if trailer.get(10..12) == Some(&[0x00, 0x01][..]) {
            return if looks_like_ldap_message(inner) {
                WrapVerdict::DigestSign
            } else {
                WrapVerdict::DigestSeal
            };
        }
    }
    WrapVerdict::Unknown
}

/// `[APPLICATION 0] { OID krb5, TOK_ID 02 01, SGN_ALG, SEAL_ALG, ff ff, ... }`.
fn classify_krb5_1964(token: &[u8]) -> WrapVerdict {
    let Ber::Header(h) = ber_header(token) else {
        return WrapVerdict::Unknown;
    };
    let Some(body) = token.get(h.hdr..) else {
        return WrapVerdict::Unknown;
    };
    match tlv(body) {
        Some((0x06, oid, rest)) if oid == KRB5_OID => {
            if rest.get(..2) != Some(&KRB5_1964_WRAP[..]) {
                return WrapVerdict::Unknown;
            }
            match rest.get(4..6) {
                Some(s) if s == KRB5_1964_NO_SEAL => WrapVerdict::Krb5Sign,
                Some(_) => WrapVerdict::Krb5Seal,
                None => WrapVerdict::Unknown,
            }
        }
        _ => WrapVerdict::Unknown,
    }
}

impl Analyzer for LdapAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        cx.posture.protocol.get_or_insert("ldap");
        if let Some(tls) = self.tls.as_mut() {
            return tls.data(dir, data, cx);
        }
        if self.stopped {
            return Next::Done;
        }
        match self.transport {
            Transport::Tcp => self.stream(dir, data, cx),
            Transport::Udp => {
                // One datagram carries whole messages (RFC 1798 / MS-ADTS 6.3.3).
                let mut rest = data;
                while !rest.is_empty() {
                    match self.frame_len(0, rest) {
                        Ok(Some(total)) if total <= rest.len() => {
                            self.message(rest.get(..total).unwrap_or_default(), cx);
                            rest = rest.get(total..).unwrap_or_default();
                        }
                        Ok(_) => {
                            cx.posture.anomaly(
                                cx.frame,
                                "ldap.truncated",
                                "CLDAP datagram ends inside a message",
                            );
                            break;
                        }
                        Err((kind, detail)) => {
                            cx.posture.anomaly(cx.frame, kind, detail);
                            break;
                        }
                    }
                }
                Next::Continue
            }
        }
    }

    fn gap(&mut self, dir: Direction, len: u64, cx: &mut Ctx) -> Next {
        if let Some(tls) = self.tls.as_mut() {
            return tls.gap(dir, len, cx);
        }
        cx.posture.anomaly(
            cx.frame,
            "stream.gap",
            format!("{len} bytes missing from the capture; LDAP parser stopped"),
        );
        self.stopped = true;
        Next::Done
    }

    fn finish(&mut self, cx: &mut Ctx) {
        if let Some(p) = self.pending_sasl.take() {
            record_sasl(p, cx);
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.finish(cx);
        }
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

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    /// Feed (direction, frame, bytes) in order; returns the posture and the last Next.
    fn run(mut a: LdapAnalyzer, steps: &[(Direction, u64, Vec<u8>)]) -> (Posture, Next) {
        let mut posture = Posture::default();
        let mut next = Next::Continue;
        for (dir, frame, bytes) in steps {
            let mut cx = Ctx {
                limits: &crate::limits::ProtoLimits::DEFAULT,
                frame: *frame,
                ts_ns: 0,
                client_port: 50000,
                server_port: 389,
                posture: &mut posture,
            };
            next = a.data(*dir, bytes, &mut cx);
        }
        let mut cx = Ctx {
            limits: &crate::limits::ProtoLimits::DEFAULT,
            frame: 999,
            ts_ns: 0,
            client_port: 50000,
            server_port: 389,
            posture: &mut posture,
        };
        a.finish(&mut cx);
        (posture, next)
    }

    fn tcp(steps: &[(Direction, u64, Vec<u8>)]) -> (Posture, Next) {
        run(LdapAnalyzer::new_tcp(), steps)
    }

    fn anomaly_kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    /// BindResponse success, messageID 1: SEQUENCE { INTEGER 1, [APP 1] { ENUM 0, "", "" } }.
    const BIND_OK: &str = "300c 020101 6107 0a0100 0400 0400";

    /// zeek ldap-who-am-i.pcap frame 4: SEQUENCE { INTEGER 1, [APP 0] { version 3,
    /// name "cn=admin,dc=example,dc=com", simple [0] "zeek" } }.
    const SIMPLE_BIND: &str = "302a 020101 6025 020103 041a636e3d61646d696e2c64633d6578616d706c652c64633d636f6d 80047a65656b";

    #[test]
    fn simple_bind_is_a_cleartext_password() {
        let (p, _) = tcp(&[(C, 4, hex(SIMPLE_BIND)), (S, 6, hex(BIND_OK))]);
        assert_eq!(p.auth.len(), 1);
        let ev = &p.auth[0];
        assert_eq!(ev.mechanism, Mechanism::Simple);
        assert!(ev.cleartext);
        assert_eq!(ev.user.as_deref(), Some("cn=admin,dc=example,dc=com"));
        assert_eq!(ev.secret, Some(Secret("zeek".into())));
        assert_eq!(ev.frame, 4);
        assert!(p.has_fact("ldap.bind-dn", "cn=admin,dc=example,dc=com"));
        assert!(p.has_fact("ldap.mechanism", "simple"));
        assert!(p.has_fact("ldap.bind-result", "success"));
        assert!(p.has_fact("ldap.op", "bindRequest"));
        assert!(p.has_fact("ldap.op", "bindResponse"));
        assert_eq!(p.encryption, Encryption::None);
        assert!(p.anomalies.is_empty());
    }

    #[test]
    fn simple_bind_split_one_byte_at_a_time() {
        let bytes = hex(SIMPLE_BIND);
        let steps: Vec<_> = bytes.iter().map(|&b| (C, 4, vec![b])).collect();
        let (p, next) = tcp(&steps);
        assert_eq!(next, Next::Continue);
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].secret, Some(Secret("zeek".into())));
    }

    #[test]
    fn two_messages_in_one_chunk() {
        let mut both = hex(SIMPLE_BIND);
        // unbindRequest: SEQUENCE { INTEGER 3, [APP 2] NULL (primitive 0x42) }.
        both.extend(hex("3005 020103 4200"));
        let (p, _) = tcp(&[(C, 4, both)]);
        assert!(p.has_fact("ldap.op", "bindRequest"));
        assert!(p.has_fact("ldap.op", "unbindRequest"));
    }

    #[test]
    fn anonymous_bind() {
        // SEQUENCE { INTEGER 1, [APP 0] { version 3, name "", simple [0] "" } }.
        let (p, _) = tcp(&[(C, 1, hex("300c 020101 6007 020103 0400 8000"))]);
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Anonymous);
        assert!(!p.auth[0].cleartext);
        assert!(p.has_fact("ldap.mechanism", "anonymous"));
        assert!(!p
            .anomalies
            .iter()
            .any(|a| a.kind == "ldap.unauthenticated-bind"));
    }

    #[test]
    fn unauthenticated_bind() {
        // [APP 0] { version 3, name "cn=nobody", simple [0] "" }: RFC 4513 5.1.2.
        let (p, _) = tcp(&[(
            C,
            7,
            hex("3015 020102 6010 020103 0409636e3d6e6f626f6479 8000"),
        )]);
        assert!(p.has_fact("ldap.unauthenticated-bind", "cn=nobody"));
        assert!(anomaly_kinds(&p).contains(&"ldap.unauthenticated-bind"));
        assert_eq!(p.auth[0].mechanism, Mechanism::Anonymous);
        assert_eq!(p.auth[0].user.as_deref(), Some("cn=nobody"));
        assert!(p.auth[0].secret.is_none());
    }

    /// NTLMSSP NEGOTIATE (zeek ldap_sasl-ntlm.pcap frame 4): signature, type 1,
    /// flags 0x00000207, empty domain and workstation fields.
    const NTLM_NEGOTIATE: &str =
        "4e544c4d53535000 01000000 07020000 0000000020000000 0000000020000000";

    /// zeek ldap_sasl-ntlm.pcap frame 6: BindResponse saslBindInProgress (0a 01 0e),
    /// diagnosticMessage, serverSaslCreds [7] = NTLMSSP CHALLENGE.
    const NTLM_CHALLENGE_RESP: &str = concat!(
        "306c02010161670a010e0400041c5341534c2830293a207375636365737366756c20726573756c743a20",
        "87424e544c4d5353500002000000120012003000000005020200e30c69d67f04fda00000000000000000",
        "00000000000000004c004f00430041004c0048004f0053005400"
    );

    fn gss_spnego_ntlm_bind() -> Vec<u8> {
        // SEQUENCE { INTEGER 1, [APP 0] { version 3, name "",
        //   sasl [3] { "GSS-SPNEGO", OCTET STRING raw NTLMSSP NEGOTIATE } } }.
        hex(&format!(
            "303a 020101 6035 020103 0400 a32e 040a4753532d53504e45474f 0420{NTLM_NEGOTIATE}"
        ))
    }

    #[test]
    fn gss_spnego_with_ntlmssp_is_ntlm_then_sealed() {
        // Sealed NTLM layer: length 0x24, signature version 1 + 12 bytes, then 20 bytes
        // of ciphertext that do not parse as an LDAPMessage.
        let sealed = hex(concat!(
            "00000024 01000000 a1b2c3d4e5f60718 00000000",
            "9f3c22aa017be4c81d55e0f3a9b2c7d60e11f4a2"
        ));
        let (p, next) = tcp(&[
            (C, 4, gss_spnego_ntlm_bind()),
            (S, 6, hex(NTLM_CHALLENGE_RESP)),
            (S, 9, hex(BIND_OK)),
            (C, 11, sealed),
        ]);
        assert!(p.has_fact("ldap.mechanism", "GSS-SPNEGO"));
        assert!(p.has_fact("ldap.mechanism", "GSS-SPNEGO:ntlm"));
        assert!(p.has_fact("ldap.bind-result", "saslBindInProgress"));
        assert!(p.has_fact("ldap.sasl-layer", "ntlm-seal"));
        assert_eq!(p.encryption, Encryption::SaslSeal);
        assert_eq!(p.encryption_frame, Some(11));
        assert_eq!(next, Next::Done);
    }

    #[test]
    fn ntlm_signed_layer_stays_cleartext() {
        // Length 0x1b: 16-byte signature then a readable unbindRequest (3005 020103 4200)
        // plus nothing else: integrity only.
        let signed = hex("00000017 01000000 a1b2c3d4e5f60718 00000000 3005020103 4200");
        let (p, _) = tcp(&[
            (C, 4, gss_spnego_ntlm_bind()),
            (S, 9, hex(BIND_OK)),
            (C, 11, signed),
        ]);
        assert!(p.has_fact("ldap.sasl-layer", "ntlm-sign"));
        assert_eq!(p.encryption, Encryption::None);
    }

    #[test]
    fn sasl_ntlm_without_layer_keeps_parsing() {
        // zeek ldap_sasl-ntlm.pcap frames 4, 6, 8 (AUTHENTICATE), 9, then 11: a plain
        // searchRequest after the bind, so no security layer was negotiated.
        let (p, next) = tcp(&[
            (C, 4, hex("3034020101602f0201030400a32804044e544c4d0420 4e544c4d53535000010000000702000000000000200000000000000020000000")),
            (S, 6, hex(NTLM_CHALLENGE_RESP)),
            (C, 8, hex(concat!(
                "3081a90201026081a30201030400a3819b04044e544c4d0481924e544c4d5353500003000000",
                "000000004000000018001800400000001200120058000000280028006a000000000000009200",
                "0000000000009200000005020000b307b4721e6428222aeb80adc9b17a010848da0d601fdcd7",
                "4c004f00430041004c0048004f00530054007300610073006c00610064006d0069006e004000",
                "73006c006100700064002e006c00640061007000"
            ))),
            (S, 9, hex("300c02010261070a010004000400")),
            (C, 11, hex("30360201036331041164633d6578616d706c652c64633d636f6d0a01020a0100020100020100010100870b6f626a656374636c6173733000")),
        ]);
        assert_eq!(next, Next::Continue);
        assert!(p.has_fact("ldap.mechanism", "NTLM"));
        assert!(p.has_fact("ldap.op", "searchRequest"));
        assert!(!p.facts.contains_key("ldap.sasl-layer"));
        assert_eq!(p.encryption, Encryption::None);
        assert!(p.anomalies.is_empty());
    }

    #[test]
    fn sasl_gssapi_then_sealed_wrapped_traffic() {
        // SEQUENCE { INTEGER 1, [APP 0] { version 3, name "", sasl [3] { "GSSAPI",
        //   OCTET STRING: GSS InitialContextToken header 60 0f, OID krb5, TOK_ID 01 00,
        //   2 bytes standing for the AP-REQ } } }.
        let bind = hex("3026 020101 6021 020103 0400 a31a 0406475353415049 0410 600e 06092a864886f712010202 0100 6e00");
        // RFC 4121 CFX wrap token: TOK_ID 05 04, Flags 0x06 (Sealed | AcceptorSubkey),
        // Filler ff, EC 0010, RRC 001c, SND_SEQ, then ciphertext.
        let cfx =
            hex("00000020 0504 06 ff 0010 001c 0000000000000001 8d41a7c03e9b51f27764e0aa19c2d3b5");
        let (p, _) = tcp(&[(C, 3, bind), (S, 4, hex(BIND_OK)), (S, 5, cfx)]);
        assert!(p.has_fact("ldap.mechanism", "GSSAPI"));
        assert!(p.has_fact("ldap.sasl-layer", "krb5-seal"));
        assert_eq!(p.encryption, Encryption::SaslSeal);
        assert_eq!(p.encryption_frame, Some(5));
    }

    #[test]
    fn cfx_wrap_without_sealed_flag_is_sign_only() {
        // Flags 0x04 (AcceptorSubkey only): integrity, payload readable.
        let t = hex("0504 04 ff 0000 0000 0000000000000001 3005020103 4200");
        assert_eq!(classify_wrap(&t), WrapVerdict::Krb5Sign);
        assert!(!WrapVerdict::Krb5Sign.sealed());
        assert_eq!(classify_wrap(&hex("abcdef0123")), WrapVerdict::Unknown);
    }

    #[test]
    fn digest_md5_layer() {
        // RFC 2831: data, 10-byte MAC, msgtype 0001, seqnum.
        let signed = hex("3005020103 4200 00112233445566778899 0001 00000000");
        assert_eq!(classify_wrap(&signed), WrapVerdict::DigestSign);
        let sealed = hex("9a8b7c6d5e4f3a2b1c0d 00112233445566778899 0001 00000000");
        assert_eq!(classify_wrap(&sealed), WrapVerdict::DigestSeal);
    }

    #[test]
    fn unknown_wrapped_token_is_not_called_sealed() {
        // A GSSAPI bind succeeds, then a token in no known layer format.
        let bind = hex("3016 020101 6011 020103 0400 a30a 0406475353415049 0400");
        let odd = hex("00000006 abcdef012345");
        let (p, _) = tcp(&[(C, 3, bind), (S, 4, hex(BIND_OK)), (C, 5, odd)]);
        assert!(p.has_fact("ldap.sasl-layer", "sasl-wrapped"));
        assert_eq!(p.encryption, Encryption::None);
    }

    /// Real GSS-SPNEGO (Kerberos) BindRequest, messageID 215, Windows 4-byte BER lengths: SEQUENCE 84 0000054b { INTEGER 00d7, [APP 0] { version 3, name "", sasl [3] { "GSS-SPNEGO", SPNEGO NegTokenInit with AP-REQ } } }.
    const KRB_SPNEGO_BIND: &str = concat!(
        "30840000054b020200d76084000005410201030400a38400000536040a4753532d53504e45474f048205266082052206",
        "062b0601050502a082051630820512a024302206092a864882f71201020206092a864886f712010202060a2b06010401",
        "823702020aa28204e8048204e4608204e006092a864886f71201020201006e8204cf308204cba003020105a10302010e",
        "a20703050020000000a38203e2618203de308203daa003020105a1151b1357324b332e564d4e4554312e564d2e424153",
        "45a2443042a003020102a13b30391b046c6461701b1c77326b332d3130312e77326b332e766d6e6574312e766d2e6261",
        "73651b1377326b332e766d6e6574312e766d2e62617365a382037430820370a003020117a103020108a2820362048203",
        "5ea235aaeb4b8dad2cc1a67f54db030352cc34864c8cf3b643a2d7d3111e0aebe0eef971306dba4dde28b01c6c2bb49a",
        "eded09b8644ec146d29409d71838187b135aa779ca3e35c7b3d02cc60c53d65199e04b12cdc980d05cd1b0abd83791ec",
        "ee27d795679594064442bcb1ecb8639a7ef1825665683557bad4839e1a7b3cc5b76fc0ac093dcc62dd34116e7f202e38",
        "118c94c6ee468ae137aa6fce3070c081dd3941889887aac17b7b9fae84978a6801801a76f588bfc196e924338201fe3b",
        "5e5d1743d6817779d9d3eef990ede178f7373a04f3821809f800ac201ca3bc67b32e9b2a2a3745cf67c91941a1ec2fdf",
        "50aa7a3c2dbc821831e8fcc4d15150c706bdb1bfa166de99a6db5009981fd6600457146375991f97952b088fe20e91d0",
        "9841845473a02774973cb808f9dd49d625907f04553888ff86539547d07cfe631a32fc285a875a9cbb906c900f252a80",
        "e2443e750babc30f7376aa3a12f7780e373f32583c195a2e7217b64b81adeca4c16bbab93d754e16bc1f4573c4957f48",
        "bbcf4d6b75f45a3ea185f2ba7d4eb2913e9ffdc4dd0756c30286235817023879312a64e1146c1d62c8b3e0dc97cb4078",
        "bbd999ead69fdaf07fcf65699a9faab0e2403cc08bb7bb1a3b7dc48eb1bddf5d228c0730b805ed0204b92682a28a1446",
        "6c94994990cc0fc052dd15294cc2ed6c9cb7b0051d20aa65caf175e7c0cd441d0ccb4a18bc9390faf460b19f85501740",
        "a9d01f779e06b55e55d429e47ff2d56ef54bbece13a37c66a18ed7ce446af4ff4425f10df250b06f7158f296dc744b55",
        "ee92a003fb1d135ca5f361a6549092955159577b08118d8e4bc60f50f877fd5cfe6f2c8963c4513785feaad8c1294219",
        "805fd51676a4a9f9e0f7d193296da473c53a18435036fe556c8ec3cb65f43384814cc21bd50aa8958aa43b2b1c598ed7",
        "fd5c4c380c79a6160aa474034b1a36d9aa2882925a3e1ae724afbb259c4c7df41e5db57337f7002559265937bcf57973",
        "cfa5adad113c37e3d4901a5c7707785ef92cfeecae9ca5e5c1997908d4067374437dddd78283219c36eaae4e3bc566ea",
        "0137dc3c23d5229ed92ae271479ef8832b3236c941ccf940c99635fee585a65eadb0cd5d83380e9bb2b6b88990ae027c",
        "48947bdc30de8c1107acd729f9241f24c23f7d095e64bc44e03e5fefc746922cf43f2f9c404a9938b2f66fe6445f42a4",
        "81cf3081cca003020117a281c40481c1a4c512aa45ad25db7acbbfcfa6083e3eba0a90edb649b329a9d6d21bb507b5da",
        "bdb226ddd268a63db88375b70368a0e856c8d1022cfc3cea184ac5dee88e1d47d0db5f65d4c7f70547bc10365dcb7c59",
        "cfed9e6f7c5ef3cfe4ef753eb108cfae8a25efbdaebc45a32937f0493baae32ef76c32071b973eebd408dff78ee34c15",
        "b7a11b8db0591d9fad924a4770d1ac6e0d0de9af77d9177fbb83ebb39d1e1c9bf2b1f5ab44ca627cffa1071149e7fc5d",
        "ce64ebc447617ec77098c6991bee8471ab",
    );
    /// Its BindResponse: resultCode success (0a 01 00), empty matchedDN / diagnostic, serverSaslCreds [7] = SPNEGO NegTokenResp carrying a Kerberos AP-REP.
    const KRB_SPNEGO_BIND_OK: &str = concat!(
        "3084000000b9020200d76184000000af0a010004000400878200a4a181a130819ea0030a0100a10b06092a864882f712",
        "010202a2818904818660818306092a864886f71201020202006f743072a003020105a10302010fa2663064a003020117",
        "a25d045b4a9f10ab8996fa43f2fb4092a76cc3fa6c1f001167fac904dab067f5f2da59a7549057bd3eb46cb467fd3b01",
        "d73f5051aa632ed8d6a6e581bbab1780faabac515284139cfb44c204ae1ec25a2d58909d22ff52349e6d2e4d835b98",
    );
    /// Next client bytes: SASL length 0x62, then an RFC 1964/4757 wrap token: 60 60 OID krb5, TOK_ID 02 01, SGN_ALG 11 00 (HMAC-MD5), SEAL_ALG 10 00 (RC4), filler ff ff, then sequence/checksum/confounder and ciphertext.
    const KRB_SEALED: &str = concat!(
        "00000062606006092a864886f712010202020111001000ffff75b15340fbb34295ad58191d21416129eb7ee0027d0a53",
        "93af5fa18749f2eefd88d88fc8914e699d11e13d43a050c1f500a79e3ab0b292cb497d8063adbe4bf5bea0ac95520406",
        "46090e8d42ce",
    );

    #[test]
    fn real_windows_gss_spnego_kerberos_sealed() {
        // zeek ldap_krb5-sign-seal-01.pcap frames 8, 9, 10.
        let (p, next) = tcp(&[
            (C, 8, hex(KRB_SPNEGO_BIND)),
            (S, 9, hex(KRB_SPNEGO_BIND_OK)),
            (C, 10, hex(KRB_SEALED)),
        ]);
        assert!(p.has_fact("ldap.mechanism", "GSS-SPNEGO"));
        assert!(p.has_fact("ldap.bind-result", "success"));
        assert!(p.has_fact("ldap.sasl-layer", "krb5-seal"));
        assert_eq!(p.encryption, Encryption::SaslSeal);
        assert_eq!(p.encryption_frame, Some(10));
        assert_eq!(next, Next::Done);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn starttls_accepted_hands_bytes_to_tls() {
        // zeek ldap-starttls.pcap frame 4: extendedReq [APP 23] { [0] "1.3.6.1.4.1.1466.20037" }.
        let req = hex("301d02010177188016312e332e362e312e342e312e313436362e3230303337");
        // frame 6: extendedResp [APP 24] { success, "", "" }.
        let resp = hex("300c02010178070a010004000400");
        // frame 8 start: TLS handshake record, ClientHello.
        let hello = hex("160303018a010001860303a8c0de83b41d5326c6");
        let (p, next) = tcp(&[(C, 4, req), (S, 6, resp), (C, 8, hello)]);
        assert!(p.has_fact("ldap.starttls", "requested"));
        assert!(p.has_fact("ldap.starttls", "accepted"));
        assert!(p.has_fact("ldap.op", "extendedReq"));
        assert_eq!(next, Next::Continue);
        // The ClientHello never reached the LDAP framer.
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn starttls_refused_keeps_ldap() {
        let req = hex("301d02010177188016312e332e362e312e342e312e313436362e3230303337");
        // extendedResp resultCode protocolError (2).
        let resp = hex("300c02010178070a010204000400");
        let (p, _) = tcp(&[(C, 4, req), (S, 6, resp), (C, 8, hex(SIMPLE_BIND))]);
        assert!(p.has_fact("ldap.starttls", "refused"));
        assert!(p.has_fact("ldap.starttls-result", "protocolError"));
        assert_eq!(p.auth[0].mechanism, Mechanism::Simple);
    }

    #[test]
    fn cldap_netlogon_search() {
        // suricata-verify ldap-udp_cldap.pcap frame 1: searchRequest with Windows 4-byte
        // lengths, filter (&(DnsDomain=..)(Host=..)(NtVer=..)), attributes { "Netlogon" }.
        let req = hex(concat!(
            "30840000008302010163840000007a04000a01000a0100020100020100010100a08400000053a384",
            "000000220409446e73446f6d61696e041573342e686f77746f2e61626172746c65742e6e6574a384",
            "000000120404486f7374040a57494e444f5753372d33a3840000000d04054e7456657204041600",
            "000030840000000a04084e65746c6f676f6e"
        ));
        // frame 2: searchResEntry with the netlogon blob, then searchResDone.
        let resp = hex(concat!(
            "3081860201016481800400307c307a04086e65746c6f676f6e316e046c17000000bd1100007497781f",
            "053bd7428bb28cf3d97a7f6a02733405686f77746f0861626172746c6574036e657400c018046f6265",
            "64c0180853342d484f57544f00044f42454400001744656661756c742d46697273742d536974652d4e",
            "616d6500c04905000000ffffffff300c02010165070a010004000400"
        ));
        let (p, _) = run(LdapAnalyzer::new_udp(), &[(C, 1, req), (S, 2, resp)]);
        assert!(p.has_fact("ldap.cldap", "netlogon"));
        assert!(p.has_fact("ldap.op", "searchResEntry"));
        assert!(p.has_fact("ldap.op", "searchResDone"));
        assert_eq!(p.encryption, Encryption::None);
        assert!(p.anomalies.is_empty());
    }

    #[test]
    fn cldap_truncated_datagram() {
        let (p, _) = run(LdapAnalyzer::new_udp(), &[(C, 1, hex("3030 020101 6300"))]);
        assert!(anomaly_kinds(&p).contains(&"ldap.truncated"));
    }

    #[test]
    fn sicily_ntlm_bind() {
        // sicilyPackageDiscovery: [APP 0] { 3, "", [9] "" }.
        let disc = hex("300c 020101 6007 020103 0400 8900");
        // SicilyBindResponse { success, serverCreds "NTLM", errorMessage "" }.
        let disc_ok = hex("3010 020101 610b 0a0100 04044e544c4d 0400");
        // sicilyNegotiate: [APP 0] { 3, "NTLM", [10] NTLMSSP NEGOTIATE }.
        let nego = hex(&format!(
            "3030 020102 602b 020103 04044e544c4d 8a20{NTLM_NEGOTIATE}"
        ));
        // SicilyBindResponse { success, serverCreds = NTLMSSP CHALLENGE (binary), "" }.
        let chal = hex(concat!(
            "304e 020102 6149 0a0100 0442",
            "4e544c4d5353500002000000120012003000000005020200e30c69d67f04fda00000000000000000",
            "00000000000000004c004f00430041004c0048004f0053005400 0400"
        ));
        // sicilyResponse: [APP 0] { 3, "", [11] "NTLMSSP\0" type 3 (stub body) }.
        let auth = hex("3018 020103 6013 020103 0400 8b0c 4e544c4d53535000 03000000");
        let done = hex("300c 020103 6107 0a0100 0400 0400");
        let (p, _) = tcp(&[
            (C, 1, disc),
            (S, 2, disc_ok),
            (C, 3, nego),
            (S, 4, chal),
            (C, 5, auth),
            (S, 6, done),
        ]);
        assert!(p.has_fact("ldap.mechanism", "SICILY"));
        assert!(
            p.has_fact("ldap.mechanism", "SICILY:ntlm"),
            "{:?} {:?}",
            p.facts,
            p.anomalies
        );
        assert!(p.has_fact("ldap.bind-result", "success"));
        assert!(
            !anomaly_kinds(&p).contains(&"ldap.malformed"),
            "{:?}",
            p.anomalies
        );
        assert!(p.auth.iter().all(|e| !e.cleartext));
    }

    #[test]
    fn ber_length_over_cap_stops() {
        let (p, next) = tcp(&[(C, 1, hex("3084 7fffffff 020101"))]);
        assert_eq!(next, Next::Done);
        assert!(anomaly_kinds(&p).contains(&"ldap.message-too-large"));
    }

    #[test]
    fn indefinite_length_is_bad_ber() {
        let (p, next) = tcp(&[(C, 1, hex("3080 020101 4200 0000"))]);
        assert_eq!(next, Next::Done);
        assert!(anomaly_kinds(&p).contains(&"ldap.bad-ber"));
    }

    #[test]
    fn inner_length_past_end_is_malformed() {
        // Outer SEQUENCE of 12 bytes, but the BindRequest claims 0x30 content bytes.
        let (p, next) = tcp(&[(C, 1, hex("300c 020101 6030 020103 0400 8000"))]);
        assert_eq!(next, Next::Continue);
        assert!(anomaly_kinds(&p).contains(&"ldap.malformed"));
        assert!(p.auth.is_empty());
    }

    #[test]
    fn not_a_sequence_stops() {
        let (p, next) = tcp(&[(C, 1, b"GET / HTTP/1.1\r\n".to_vec())]);
        assert_eq!(next, Next::Done);
        assert!(anomaly_kinds(&p).contains(&"ldap.not-a-message"));
    }

    #[test]
    fn mutated_messages_never_panic() {
        // Deterministic xorshift mutations of real vectors, fed in uneven chunks to both
        // transports: the analyzer must only ever report anomalies.
        let seeds = [
            hex(SIMPLE_BIND),
            hex(NTLM_CHALLENGE_RESP),
            gss_spnego_ntlm_bind(),
            hex(KRB_SPNEGO_BIND_OK),
            hex(KRB_SEALED),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
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
            let cut = (rnd() as usize) % (m.len() + 1);
            let (a, b) = m.split_at(cut);
            let mut ok = hex(BIND_OK);
            ok.extend_from_slice(a);
            let _ = tcp(&[(C, 1, hex(SIMPLE_BIND)), (S, 2, ok), (S, 3, b.to_vec())]);
            let _ = tcp(&[
                (C, 1, gss_spnego_ntlm_bind()),
                (S, 2, hex(BIND_OK)),
                (C, 3, m.clone()),
            ]);
            let _ = run(LdapAnalyzer::new_udp(), &[(C, 1, m)]);
        }
    }

    #[test]
    fn probe_recognises_ldap() {
        assert_eq!(probe(C, &hex(SIMPLE_BIND), 5000, 389), Probe::Certain);
        assert_eq!(
            probe(C, &hex("3084000000830201016384"), 5000, 389),
            Probe::Certain
        );
        assert_eq!(probe(C, &hex("30"), 5000, 389), Probe::Unsure);
        assert_eq!(probe(C, &hex("300c 020101 0407"), 5000, 389), Probe::No);
        assert_eq!(probe(C, &hex("00000062 6060"), 5000, 389), Probe::No);
        assert_eq!(probe(C, b"220 mail ESMTP", 5000, 389), Probe::No);
    }
}
