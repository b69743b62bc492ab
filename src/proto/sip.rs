//! SIP signalling (RFC 3261) over TCP and UDP, with SDP bodies (RFC 4566).
//!
//! What this analyzer guarantees:
//! - TCP messages are framed by the blank line and `Content-Length` (RFC 3261 18.3);
//!   headers are buffered up to [`MAX_SIP_HEADERS`] and bodies up to [`MAX_SIP_BODY`];
//!   past either cap the anomaly names the cap and the analyzer stops. CRLF keep-alives
//!   (RFC 5626 4.4.1) are skipped; other bytes before a start line are skipped with the
//!   anomaly `sip.junk-before-message`. A UDP datagram is one message.
//! - Facts: `sip.method`, `sip.status`, `sip.from`, `sip.to` (user parts), `sip.auth-offered`
//!   (WWW-/Proxy-Authenticate schemes), `sip.media` (`audio 49170 RTP/AVP` from SDP `m=`),
//!   `sip.media-addr` (SDP `c=`), `sip.srtp` (a secure RTP profile), `sip.sdes-crypto`
//!   (SRTP keys carried in `a=crypto`, readable when signalling is not TLS).
//! - Authorization / Proxy-Authorization become [`AuthEvent`]s: Digest (user, no
//!   readable secret), Basic (the decoded password is a cleartext secret), and the
//!   MS-SIPAE NTLM / Kerberos `gssapi-data` token through [`inspect_token`].
//! - SIP over TCP/UDP is readable: every parsed message marks the flow cleartext. SIP
//!   over TLS (5061) belongs to the TLS analyzer.

use crate::model::{AuthEvent, Direction, Mechanism, Secret};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration};
use crate::proto::auth::{finish_auth, inspect_token};
use base64::Engine as _;

/// SIP over TCP: 5060 unsecured, 5062 (Exchange UM). 5061 is listed so a cleartext
/// session on the TLS port is still recognised; a TLS handshake there goes to TLS.
pub const REGISTRATION: Registration = Registration {
    name: "sip",
    tcp: true,
    ports: &[5060, 5061, 5062],
    probe,
    make: make_tcp,
};

/// SIP over UDP.
pub const REGISTRATION_UDP: Registration = Registration {
    name: "sip",
    tcp: false,
    ports: &[5060, 5061, 5062],
    probe,
    make: make_udp,
};

fn make_tcp() -> Box<dyn Analyzer> {
    Box::new(SipAnalyzer::new_tcp())
}

fn make_udp() -> Box<dyn Analyzer> {
    Box::new(SipAnalyzer::new_udp())
}

/// Largest start line plus headers buffered. Real SIP headers are a few KiB (UDP
/// messages stay under the path MTU, RFC 3261 18.1.1); 64 KiB is generous.
pub const MAX_SIP_HEADERS: usize = 64 * 1024;
/// Largest body read (SDP offers are under 4 KiB; 64 KiB leaves room for multipart).
pub const MAX_SIP_BODY: usize = 64 * 1024;
/// Most bytes of a user, method or address kept in a fact.
const MAX_FIELD: usize = 128;
/// Most bytes of a probe prefix searched for a start line.
const PROBE_SCAN: usize = 512;

/// What the first line of a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartLine<'a> {
    Request { method: &'a str },
    Status { code: u16 },
}

/// Parse `METHOD SP URI SP SIP/2.0` or `SIP/2.0 SP 3DIGIT SP reason`.
fn start_line(line: &[u8]) -> Option<StartLine<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    if let Some(rest) = text.strip_prefix("SIP/2.0 ") {
        let code = rest.get(..3)?;
        let after = rest.get(3..)?;
        if !code.bytes().all(|b| b.is_ascii_digit())
            || !(after.is_empty() || after.starts_with(' '))
        {
            return None;
        }
        let code: u16 = code.parse().ok()?;
        return (100..=699)
            .contains(&code)
            .then_some(StartLine::Status { code });
    }
    let mut parts = text.split(' ');
    let (method, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "SIP/2.0" {
        return None;
    }
    let method_ok = !method.is_empty()
        && method.len() <= 32
        && method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
    let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    let uri_ok = matches!(scheme.as_deref(), Some("sip" | "sips" | "tel"));
    (method_ok && uri_ok).then_some(StartLine::Request { method })
}

/// Position of the first valid start line in `b` (at a line start), if any.
fn find_start_line(b: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < b.len() {
        let rest = b.get(pos..)?;
        let eol = rest.iter().position(|&c| c == b'\n')?;
        let line = trim_cr(rest.get(..eol)?);
        if start_line(line).is_some() {
            return Some(pos);
        }
        pos += eol + 1;
    }
    None
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Probe: a request or status line is certain (also after junk within the prefix);
/// an upper-case token with no line end yet is unsure.
pub fn probe(_dir: Direction, prefix: &[u8], _cp: u16, _sp: u16) -> Probe {
    let scan = prefix
        .get(..prefix.len().min(PROBE_SCAN))
        .unwrap_or_default();
    match scan.iter().position(|&c| c == b'\n') {
        Some(eol) => {
            if start_line(trim_cr(scan.get(..eol).unwrap_or_default())).is_some() {
                Probe::Certain
            } else if find_start_line(scan).is_some() {
                Probe::Unsure
            } else {
                Probe::No
            }
        }
        None => {
            let head = scan.get(..scan.len().min(8)).unwrap_or_default();
            let plausible = !head.is_empty()
                && head.iter().all(|&b| {
                    b.is_ascii_uppercase()
                        || b == b'/'
                        || b == b'.'
                        || b.is_ascii_digit()
                        || b == b' '
                });
            if plausible {
                Probe::Unsure
            } else {
                Probe::No
            }
        }
    }
}

/// Per-flow SIP state.
pub struct SipAnalyzer {
    tcp: bool,
    bufs: [Vec<u8>; 2],
    stopped: bool,
}

/// End of the header block: offset of the body.
fn header_end(b: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(b, b"\r\n\r\n").map(|p| p + 4);
    let lf = memchr::memmem::find(b, b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Header lines of a header block (after the start line), unfolded per line only.
fn header_lines(head: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    head.split(|&c| c == b'\n')
        .skip(1)
        .filter_map(|l| std::str::from_utf8(trim_cr(l)).ok())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
}

/// The header fields the analyzer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    From,
    To,
    ContentLength,
    ContentType,
    WwwAuthenticate,
    ProxyAuthenticate,
    Authorization,
    ProxyAuthorization,
    Other,
}

/// The field a header name stands for, in any case, with the compact forms of RFC 3261
/// 7.3.3 (compared in place: a message has a dozen headers and most are none of these).
fn field(name: &str) -> Field {
    const NAMES: [(&str, Field); 12] = [
        ("from", Field::From),
        ("f", Field::From),
        ("to", Field::To),
        ("t", Field::To),
        ("content-length", Field::ContentLength),
        ("l", Field::ContentLength),
        ("content-type", Field::ContentType),
        ("c", Field::ContentType),
        ("www-authenticate", Field::WwwAuthenticate),
        ("proxy-authenticate", Field::ProxyAuthenticate),
        ("authorization", Field::Authorization),
        ("proxy-authorization", Field::ProxyAuthorization),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        .map_or(Field::Other, |&(_, f)| f)
}

/// User part of the URI in a From/To value: `"x" <sip:user@host>;tag=..` -> `user`.
fn uri_user(value: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value.get(a + 1..b)?,
        _ => value.split(';').next()?,
    };
    let (_, rest) = uri.split_once(':')?;
    let user = rest.split_once('@').map_or(rest, |(u, _)| u);
    let user = user.split(';').next()?;
    (!user.is_empty()).then(|| clip(user))
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

/// A `name="value"` or `name=value` parameter of an auth header (RFC 3261 25.1).
fn auth_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = params;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q.get(..end)?, q.get(end + 1..)?)
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after.get(..end)?, after.get(end..)?)
        };
        if key
            .trim()
            .trim_start_matches(',')
            .trim()
            .eq_ignore_ascii_case(name)
        {
            return Some(value);
        }
        rest = next.trim_start_matches([',', ' ', '\t']);
    }
    None
}

impl SipAnalyzer {
    pub fn new_tcp() -> Self {
        SipAnalyzer {
            tcp: true,
            bufs: [Vec::new(), Vec::new()],
            stopped: false,
        }
    }

    pub fn new_udp() -> Self {
        SipAnalyzer {
            tcp: false,
            ..Self::new_tcp()
        }
    }

    fn stream(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) {
        let d = dir.index();
        let mut buf = std::mem::take(&mut self.bufs[d]);
        buf.extend_from_slice(data);
        let mut off = 0usize;
        loop {
            let rest = buf.get(off..).unwrap_or_default();
            // Keep-alives and stray line ends between messages.
            let blank = rest
                .iter()
                .take_while(|&&c| c == b'\r' || c == b'\n')
                .count();
            off += blank;
            let rest = rest.get(blank..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            let Some(eol) = rest.iter().position(|&c| c == b'\n') else {
                if rest.len() > MAX_SIP_HEADERS {
                    self.over_cap("sip.header-too-large", rest.len(), cx);
                }
                break;
            };
            if start_line(trim_cr(rest.get(..eol).unwrap_or_default())).is_none() {
                match find_start_line(rest) {
                    Some(skip) => {
                        cx.posture.anomaly(
                            cx.frame,
                            "sip.junk-before-message",
                            format!("{skip} bytes before a SIP start line skipped"),
                        );
                        off += skip;
                        continue;
                    }
                    None if rest.len() > MAX_SIP_HEADERS => {
                        self.over_cap("sip.header-too-large", rest.len(), cx);
                        break;
                    }
                    None => break,
                }
            }
            let Some(body_at) = header_end(rest) else {
                if rest.len() > MAX_SIP_HEADERS {
                    self.over_cap("sip.header-too-large", rest.len(), cx);
                }
                break;
            };
            if body_at > MAX_SIP_HEADERS {
                self.over_cap("sip.header-too-large", body_at, cx);
                break;
            }
            let head = rest.get(..body_at).unwrap_or_default();
            let body_len = match content_length(head) {
                Ok(n) => n.unwrap_or(0),
                Err(detail) => {
                    cx.posture
                        .anomaly(cx.frame, "sip.bad-content-length", detail);
                    self.stopped = true;
                    break;
                }
            };
            if body_len > MAX_SIP_BODY {
                self.over_cap("sip.content-length-over-cap", body_len, cx);
                break;
            }
            let Some(body) = rest.get(body_at..body_at + body_len) else {
                break;
            };
            self.message(head, body, cx);
            off += body_at + body_len;
        }
        buf.drain(..off.min(buf.len()));
        if let Some(b) = self.bufs.get_mut(d) {
            *b = buf;
        }
    }

    fn over_cap(&mut self, kind: &'static str, len: usize, cx: &mut Ctx) {
        let cap = if kind == "sip.content-length-over-cap" {
            MAX_SIP_BODY
        } else {
            MAX_SIP_HEADERS
        };
        cx.posture.anomaly(
            cx.frame,
            kind,
            format!("{len} bytes (cap {cap}); SIP parser stopped"),
        );
        self.stopped = true;
    }

    fn datagram(&mut self, data: &[u8], cx: &mut Ctx) {
        let start = data
            .iter()
            .take_while(|&&c| c == b'\r' || c == b'\n')
            .count();
        let msg = data.get(start..).unwrap_or_default();
        if msg.is_empty() {
            return;
        }
        let first = msg.iter().position(|&c| c == b'\n').unwrap_or(msg.len());
        if start_line(trim_cr(msg.get(..first).unwrap_or_default())).is_none() {
            cx.posture.anomaly(
                cx.frame,
                "sip.not-a-message",
                format!("{}-byte datagram without a SIP start line", data.len()),
            );
            return;
        }
        let body_at = header_end(msg).unwrap_or(msg.len());
        let head = msg.get(..body_at).unwrap_or_default();
        let rest = msg.get(body_at..).unwrap_or_default();
        let body = match content_length(head) {
            Ok(Some(n)) if n > rest.len() => {
                cx.posture.anomaly(
                    cx.frame,
                    "sip.body-truncated",
                    format!(
                        "Content-Length {n} but {} body bytes in the datagram",
                        rest.len()
                    ),
                );
                rest
            }
            Ok(Some(n)) => rest.get(..n).unwrap_or_default(),
            Ok(None) => rest,
            Err(detail) => {
                cx.posture
                    .anomaly(cx.frame, "sip.bad-content-length", detail);
                rest
            }
        };
        self.message(head, body, cx);
    }

    /// One message: start line and headers in `head`, and its body.
    fn message(&mut self, head: &[u8], body: &[u8], cx: &mut Ctx) {
        let first = head.iter().position(|&c| c == b'\n').unwrap_or(head.len());
        let Some(start) = start_line(trim_cr(head.get(..first).unwrap_or_default())) else {
            return;
        };
        cx.posture.set_cleartext();
        match start {
            StartLine::Request { method } => cx.posture.fact("sip.method", clip(method)),
            StartLine::Status { code } => cx.posture.fact("sip.status", code.to_string()),
        }
        let mut sdp = false;
        for (name, value) in header_lines(head) {
            match field(name) {
                Field::From => {
                    if let Some(u) = uri_user(value) {
                        cx.posture.fact("sip.from", u);
                    }
                }
                Field::To => {
                    if let Some(u) = uri_user(value) {
                        cx.posture.fact("sip.to", u);
                    }
                }
                Field::ContentType => {
                    sdp = value.to_ascii_lowercase().starts_with("application/sdp");
                }
                Field::WwwAuthenticate | Field::ProxyAuthenticate => {
                    let scheme = value.split([' ', ',']).next().unwrap_or_default();
                    cx.posture
                        .fact("sip.auth-offered", clip(&scheme.to_ascii_lowercase()));
                }
                Field::Authorization => self.credentials(value, "SIP Authorization", cx),
                Field::ProxyAuthorization => self.credentials(value, "SIP Proxy-Authorization", cx),
                Field::ContentLength | Field::Other => {}
            }
        }
        if sdp {
            sdp_body(body, cx);
        }
    }

    fn credentials(&mut self, value: &str, context: &str, cx: &mut Ctx) {
        let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
        let scheme = scheme.to_ascii_lowercase();
        let frame = cx.frame;
        let event = |mechanism, user, cleartext, secret| AuthEvent {
            mechanism,
            user,
            cleartext,
            secret,
            frame,
            context: context.to_string(),
            after_tls: false,
        };
        let ev = match scheme.as_str() {
            "digest" => event(
                Mechanism::Digest,
                auth_param(params, "username").map(clip),
                false,
                None,
            ),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(params.trim())
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                let (user, pw) = match decoded.as_deref().and_then(|d| d.split_once(':')) {
                    Some((u, p)) => (Some(clip(u)), Some(Secret(p.to_string()))),
                    None => {
                        cx.posture.anomaly(
                            cx.frame,
                            "sip.bad-basic",
                            "Basic credentials do not decode to user:password",
                        );
                        (None, None)
                    }
                };
                event(Mechanism::Basic, user, true, pw)
            }
            "ntlm" | "kerberos" | "tls-dsk" => {
                // MS-SIPAE 3.2.5: the security token travels base64 in gssapi-data.
                let token = auth_param(params, "gssapi-data")
                    .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
                if let Some(t) = token.filter(|t| !t.is_empty()) {
                    if inspect_token(&t, cx, context).is_some() {
                        return;
                    }
                }
                let mech = if scheme == "kerberos" {
                    Mechanism::Kerberos
                } else if scheme == "ntlm" {
                    Mechanism::Ntlm
                } else {
                    Mechanism::Certificate
                };
                event(mech, None, false, None)
            }
            other => event(Mechanism::Sasl(clip(other)), None, false, None),
        };
        cx.posture.add_auth(ev);
    }
}

/// Media lines of an SDP body (RFC 4566 5.7, 5.14).
fn sdp_body(body: &[u8], cx: &mut Ctx) {
    let Ok(text) = std::str::from_utf8(body) else {
        cx.posture
            .anomaly(cx.frame, "sip.sdp-not-text", "SDP body is not UTF-8");
        return;
    };
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let (Some(media), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
                cx.posture
                    .anomaly(cx.frame, "sip.sdp-bad-media", clip(line));
                continue;
            };
            cx.posture
                .fact("sip.media", clip(&format!("{media} {port} {proto}")));
            if proto.to_ascii_uppercase().contains("SAVP") {
                cx.posture
                    .fact("sip.srtp", clip(&format!("{media} {port}")));
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            if let Some(addr) = c.split_whitespace().nth(2) {
                cx.posture.fact("sip.media-addr", clip(addr));
            }
        } else if line.starts_with("a=crypto:") {
            cx.posture.fact("sip.sdes-crypto", "present");
        }
    }
}

/// The Content-Length of a header block, if present.
fn content_length(head: &[u8]) -> Result<Option<usize>, String> {
    for (name, value) in header_lines(head) {
        if field(name) == Field::ContentLength {
            return value
                .parse::<usize>()
                .map(Some)
                .map_err(|_| format!("Content-Length {:?} is not a number", clip(value)));
        }
    }
    Ok(None)
}

impl Analyzer for SipAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        cx.posture.protocol.get_or_insert("sip");
        if self.stopped {
            return Next::Done;
        }
        if self.tcp {
            self.stream(dir, data, cx);
        } else {
            self.datagram(data, cx);
        }
        if self.stopped {
            Next::Done
        } else {
            Next::Continue
        }
    }

    fn gap(&mut self, _dir: Direction, len: u64, cx: &mut Ctx) -> Next {
        cx.posture.anomaly(
            cx.frame,
            "stream.gap",
            format!("{len} bytes missing from the capture; SIP parser stopped"),
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
    use crate::model::{Encryption, Posture};

    #[test]
    fn header_names_in_any_case_and_compact_form() {
        for (name, want) in [
            ("Content-Length", Field::ContentLength),
            ("CONTENT-LENGTH", Field::ContentLength),
            ("l", Field::ContentLength),
            ("L", Field::ContentLength),
            ("f", Field::From),
            ("From", Field::From),
            ("T", Field::To),
            ("c", Field::ContentType),
            ("WWW-Authenticate", Field::WwwAuthenticate),
            ("Proxy-Authorization", Field::ProxyAuthorization),
            ("authorization", Field::Authorization),
            ("Content-Lengthx", Field::Other),
            ("Via", Field::Other),
            ("v", Field::Other),
            ("", Field::Other),
        ] {
            assert_eq!(field(name), want, "{name}");
        }
        // Compact From and To feed the same facts as the long forms.
        let msg = "INVITE sip:bob@example.com SIP/2.0\r\nf: <sip:alice@a.example>\r\nT: <sip:bob@example.com>\r\nl: 0\r\n\r\n";
        let (p, _) = run(SipAnalyzer::new_tcp(), &[(C, msg.as_bytes())]);
        assert!(p.has_fact("sip.from", "alice"), "{:?}", p.facts);
        assert!(p.has_fact("sip.to", "bob"), "{:?}", p.facts);
    }

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    fn run(mut a: SipAnalyzer, steps: &[(Direction, &[u8])]) -> (Posture, Next) {
        let mut posture = Posture::default();
        let mut next = Next::Continue;
        for (i, (dir, bytes)) in steps.iter().enumerate() {
            let mut cx = Ctx {
                limits: &crate::limits::ProtoLimits::DEFAULT,
                frame: i as u64 + 1,
                ts_ns: 0,
                client_port: 5060,
                server_port: 5060,
                posture: &mut posture,
            };
            next = a.data(*dir, bytes, &mut cx);
        }
        (posture, next)
    }

    fn kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    /// INVITE after zeek sip_wireshark.pcap frame 19 (headers shortened), SDP offer with
    /// one audio stream; Content-Length computed from the body.
    fn invite(sdp: &str) -> String {
        format!(
            concat!(
                "INVITE sip:97239287044@voip.brujula.net SIP/2.0\r\n",
                "Via: SIP/2.0/TCP 192.168.1.2:5060;branch=z9hG4bKnp104984053\r\n",
                "From: \"arik\" <sip:816666@voip.brurjula.net>;tag=6433ef9\r\n",
                "To: <sip:97239287044@voip.brujula.net>\r\n",
                "Call-ID: 105090259-446faf7a@192.168.1.2\r\n",
                "CSeq: 1 INVITE\r\n",
                "Content-Type: application/sdp\r\n",
                "Content-Length: {}\r\n",
                "\r\n{}"
            ),
            sdp.len(),
            sdp
        )
    }

    const SDP_RTP: &str = concat!(
        "v=0\r\n",
        "o=SIPPS 105015165 105015162 IN IP4 192.168.1.2\r\n",
        "s=SIP call\r\n",
        "c=IN IP4 192.168.1.2\r\n",
        "t=0 0\r\n",
        "m=audio 30000 RTP/AVP 0 8 97 2 3\r\n",
        "a=rtpmap:0 pcmu/8000\r\n"
    );

    #[test]
    fn invite_with_sdp_over_tcp_in_pieces() {
        let msg = invite(SDP_RTP);
        let (a, rest) = msg.as_bytes().split_at(40);
        let (b, c) = rest.split_at(rest.len() - 10);
        let (p, next) = run(SipAnalyzer::new_tcp(), &[(C, a), (C, b), (C, c)]);
        assert_eq!(next, Next::Continue);
        assert!(p.has_fact("sip.method", "INVITE"));
        assert!(p.has_fact("sip.from", "816666"));
        assert!(p.has_fact("sip.to", "97239287044"));
        assert!(p.has_fact("sip.media", "audio 30000 RTP/AVP"));
        assert!(p.has_fact("sip.media-addr", "192.168.1.2"));
        assert!(!p.facts.contains_key("sip.srtp"));
        assert_eq!(p.encryption, Encryption::None);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn srtp_offer_with_sdes_keys() {
        let sdp = concat!(
            "v=0\r\n",
            "c=IN IP4 10.0.0.5\r\n",
            "m=audio 49170 RTP/SAVP 0\r\n",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n"
        );
        let msg = invite(sdp);
        let (p, _) = run(SipAnalyzer::new_udp(), &[(C, msg.as_bytes())]);
        assert!(p.has_fact("sip.media", "audio 49170 RTP/SAVP"));
        assert!(p.has_fact("sip.srtp", "audio 49170"));
        assert!(p.has_fact("sip.sdes-crypto", "present"));
    }

    /// zeek sip_wireshark.pcap frame 2 (UDP): 401 with a Digest challenge.
    const UNAUTHORIZED: &str = concat!(
        "SIP/2.0 401 Unauthorized\r\n",
        "Call-ID: 578222729-4665d775@578222732-4665d772\r\n",
        "CSeq: 68 REGISTER\r\n",
        "From: <sip:voi18063@sip.cybercity.dk>;tag=903df0a\r\n",
        "To: <sip:voi18063@sip.cybercity.dk>;tag=00-04092-1701af62-120c67172\r\n",
        "Via: SIP/2.0/UDP 192.168.1.2;received=80.230.219.70;rport=5060;branch=z9hG4bKnp151248737-46ea715e192.168.1.2\r\n",
        "WWW-Authenticate: Digest realm=\"sip.cybercity.dk\",nonce=\"1701af566be182070084c6f740706bb\",opaque=\"1701a1351f70795\",stale=false,algorithm=MD5\r\n",
        "Content-Length: 0\r\n",
        "\r\n"
    );

    /// zeek sip_wireshark.pcap frame 3 (UDP): REGISTER with Digest credentials.
    const REGISTER_DIGEST: &str = concat!(
        "REGISTER sip:sip.cybercity.dk SIP/2.0\r\n",
        "Via: SIP/2.0/UDP 192.168.1.2;branch=z9hG4bKnp149505178-438c528b192.168.1.2;rport\r\n",
        "From: <sip:voi18063@sip.cybercity.dk>;tag=8e948b0\r\n",
        "To: <sip:voi18063@sip.cybercity.dk>\r\n",
        "Call-ID: 578222729-4665d775@578222732-4665d772\r\n",
        "Contact:  <sip:voi18063@192.168.1.2:5060;line=9c7d2dbd8822013c>;expires=1200;q=0.500\r\n",
        "Expires: 1200\r\n",
        "CSeq: 69 REGISTER\r\n",
        "Content-Length: 0\r\n",
        "Authorization: Digest username=\"voi18063\",realm=\"sip.cybercity.dk\",uri=\"sip:192.168.1.2\",nonce=\"1701af566be182070084c6f740706bb\",opaque=\"1701a1351f70795\",nc=\"00000001\",response=\"bd79fecae600a2eb79d37ec73214830b\"\r\n",
        "Max-Forwards: 70\r\n",
        "User-Agent: Nero SIPPS IP Phone Version 2.0.51.16\r\n",
        "\r\n"
    );

    #[test]
    fn unauthorized_with_digest_challenge() {
        let (p, _) = run(SipAnalyzer::new_udp(), &[(S, UNAUTHORIZED.as_bytes())]);
        assert!(p.has_fact("sip.status", "401"));
        assert!(p.has_fact("sip.auth-offered", "digest"));
        assert!(p.has_fact("sip.from", "voi18063"));
        assert!(p.auth.is_empty());
    }

    #[test]
    fn register_with_digest_credentials() {
        let (p, _) = run(SipAnalyzer::new_udp(), &[(C, REGISTER_DIGEST.as_bytes())]);
        assert!(p.has_fact("sip.method", "REGISTER"));
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Digest);
        assert_eq!(p.auth[0].user.as_deref(), Some("voi18063"));
        assert!(!p.auth[0].cleartext);
        assert!(p.auth[0].secret.is_none());
        assert_eq!(p.auth[0].context, "SIP Authorization");
    }

    #[test]
    fn basic_proxy_authorization_is_cleartext() {
        // "alice:s3cret" in base64.
        let msg = concat!(
            "INVITE sip:bob@example.com SIP/2.0\r\n",
            "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n",
            "Content-Length: 0\r\n\r\n"
        );
        let (p, _) = run(SipAnalyzer::new_tcp(), &[(C, msg.as_bytes())]);
        assert_eq!(p.auth[0].mechanism, Mechanism::Basic);
        assert!(p.auth[0].cleartext);
        assert_eq!(p.auth[0].user.as_deref(), Some("alice"));
        assert_eq!(p.auth[0].secret, Some(Secret("s3cret".into())));
    }

    #[test]
    fn two_messages_and_keepalive_in_one_chunk() {
        let mut bytes = b"\r\n\r\n".to_vec();
        bytes.extend_from_slice(REGISTER_DIGEST.as_bytes());
        bytes.extend_from_slice(b"OPTIONS sip:bob@example.com SIP/2.0\r\nl: 0\r\n\r\n");
        let (p, _) = run(SipAnalyzer::new_tcp(), &[(C, &bytes)]);
        assert!(p.has_fact("sip.method", "REGISTER"));
        assert!(p.has_fact("sip.method", "OPTIONS"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn junk_before_request_is_skipped() {
        let mut bytes = b"\x00\x00\x00\x00garbage\r\n".to_vec();
        bytes.extend_from_slice(REGISTER_DIGEST.as_bytes());
        let (p, _) = run(SipAnalyzer::new_tcp(), &[(C, &bytes)]);
        assert!(kinds(&p).contains(&"sip.junk-before-message"));
        assert!(p.has_fact("sip.method", "REGISTER"));
    }

    #[test]
    fn content_length_over_cap_stops() {
        let msg = "INVITE sip:bob@example.com SIP/2.0\r\nContent-Length: 9999999\r\n\r\nv=0\r\n";
        let (p, next) = run(SipAnalyzer::new_tcp(), &[(C, msg.as_bytes())]);
        assert_eq!(next, Next::Done);
        assert!(kinds(&p).contains(&"sip.content-length-over-cap"));
    }

    #[test]
    fn content_length_not_a_number() {
        let msg = "INVITE sip:bob@example.com SIP/2.0\r\nContent-Length: -1\r\n\r\n";
        let (p, next) = run(SipAnalyzer::new_tcp(), &[(C, msg.as_bytes())]);
        assert_eq!(next, Next::Done);
        assert!(kinds(&p).contains(&"sip.bad-content-length"));
    }

    #[test]
    fn udp_junk_and_truncated_body() {
        // zeek sip-junk-before-request.pcap frame 1: four zero bytes alone in a datagram.
        let (p, _) = run(SipAnalyzer::new_udp(), &[(C, &[0, 0, 0, 0])]);
        assert!(kinds(&p).contains(&"sip.not-a-message"));
        let short = "INVITE sip:bob@example.com SIP/2.0\r\nContent-Length: 50\r\n\r\nv=0\r\n";
        let (p, _) = run(SipAnalyzer::new_udp(), &[(C, short.as_bytes())]);
        assert!(kinds(&p).contains(&"sip.body-truncated"));
    }

    #[test]
    fn header_block_over_cap_stops() {
        let mut bytes = b"INVITE sip:bob@example.com SIP/2.0\r\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', MAX_SIP_HEADERS + 10));
        let (p, next) = run(SipAnalyzer::new_tcp(), &[(C, &bytes)]);
        assert_eq!(next, Next::Done);
        assert!(kinds(&p).contains(&"sip.header-too-large"));
    }

    #[test]
    fn probes() {
        assert_eq!(
            probe(C, REGISTER_DIGEST.as_bytes(), 5060, 5060),
            Probe::Certain
        );
        assert_eq!(
            probe(S, UNAUTHORIZED.as_bytes(), 5060, 5060),
            Probe::Certain
        );
        assert_eq!(probe(C, b"INVI", 5060, 5060), Probe::Unsure);
        assert_eq!(probe(C, b"GET / HTTP/1.1\r\n\r\n", 5060, 5060), Probe::No);
        assert_eq!(probe(C, &[0x16, 0x03, 0x01, 0x00], 5061, 5061), Probe::No);
        assert_eq!(probe(C, b"SIP/2.0 999 Nope\r\n", 5060, 5060), Probe::No);
    }
}
