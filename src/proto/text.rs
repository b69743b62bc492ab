//! Shared machinery of the text protocols (SMTP, POP3, IMAP, HTTP).
//!
//! - [`drive`] feeds a byte chunk to a parsing step, zero-copy when nothing is pending and
//!   through the direction's bounded [`StreamBuf`] otherwise, so a message split anywhere
//!   (down to one byte per call) gives the same result as a whole one.
//! - [`Lines`] cuts CRLF (or bare LF) lines with a length cap; an over-long line is
//!   reported once and skipped up to its end, never buffered past the cap.
//! - [`DotBody`] skips a dot-terminated block (SMTP DATA, POP3 RETR) holding at most two
//!   bytes.
//! - [`Sasl`] follows one SASL exchange (SMTP AUTH, POP3 AUTH, IMAP AUTHENTICATE): it
//!   decodes LOGIN and PLAIN credentials, reads the CRAM-MD5 user, sends NTLM / GSSAPI
//!   tokens to [`inspect_token`] and records one [`AuthEvent`] per exchange.
//!
//! Nothing here panics on input; base64 is decoded with the `base64` crate.

use crate::model::{AuthEvent, Mechanism, Secret};
use crate::proto::api::{Ctx, StreamBuf};
use crate::proto::auth::inspect_token;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Lenient standard-alphabet base64: senders differ on padding and on trailing bits.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Longest string kept as a fact value or user name: a banner or a user agent longer
/// than this is truncated (facts are for reading in a report, not for replay).
pub const MAX_VALUE_CHARS: usize = 160;

/// What a parsing step did with the bytes it was shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The first `n` bytes are dealt with (n > 0); call again with the rest.
    Consumed(usize),
    /// The bytes shown are an incomplete unit: call again once more have arrived.
    NeedMore,
    /// Stop parsing this flow (the engine is told `Next::Done`).
    Stop,
}

/// How a [`drive`] call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drive {
    /// Everything was consumed or buffered.
    Continue,
    /// A step asked to stop.
    Stop,
    /// A step wanted more bytes while the buffer was at its cap (a step bug or a unit
    /// larger than the cap); the caller reports it and stops.
    Full,
}

/// Feed `data` to `step`. Steps see the pending bytes of `buf` first (if any), then the new
/// bytes; only what a step leaves unconsumed is copied into `buf`. A step must be a pure
/// function of the bytes shown when it answers `NeedMore` (it is shown them again later,
/// longer), and must never answer `NeedMore` on `buf.cap` bytes or more.
pub fn drive(buf: &mut StreamBuf, data: &[u8], mut step: impl FnMut(&[u8]) -> Step) -> Drive {
    let mut rest = data;
    loop {
        while !buf.buf.is_empty() {
            match step(&buf.buf) {
                Step::Consumed(n) if n > 0 => buf.consume(n),
                Step::Stop => return Drive::Stop,
                _ => break,
            }
        }
        if buf.buf.is_empty() {
            while !rest.is_empty() {
                match step(rest) {
                    Step::Consumed(n) if n > 0 => rest = rest.get(n..).unwrap_or_default(),
                    Step::Stop => return Drive::Stop,
                    _ => break,
                }
            }
        }
        if rest.is_empty() {
            return Drive::Continue;
        }
        let room = buf.cap.saturating_sub(buf.buf.len());
        if room == 0 {
            return Drive::Full;
        }
        let (now, later) = rest.split_at(room.min(rest.len()));
        buf.push(now);
        rest = later;
    }
}

/// One step of [`Lines::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum LineStep<'a> {
    /// A complete line without its CRLF / LF, and the bytes it took.
    Line(&'a [u8], usize),
    /// No line end yet.
    NeedMore,
    /// The rest of an over-long line, dropped silently (already reported).
    Skip(usize),
    /// An over-long line began here: report it; `n` bytes are dropped.
    TooLong(usize),
}

/// Line cutter with a cap on the line length (CRLF included).
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    max: usize,
    discarding: bool,
    /// Bytes already searched for LF by the last `NeedMore` (the same bytes come back
    /// first in the next call, per the [`drive`] contract): keeps the search linear.
    scanned: usize,
}

impl Lines {
    pub const fn new(max: usize) -> Self {
        Lines {
            max,
            discarding: false,
            scanned: 0,
        }
    }

    /// Next line of `input`. Never answers `NeedMore` on `max` bytes or more.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> LineStep<'a> {
        let from = std::mem::take(&mut self.scanned).min(input.len());
        let lf = input
            .get(from..)
            .and_then(|tail| memchr::memchr(b'\n', tail))
            .map(|i| i + from);
        if self.discarding {
            return match lf {
                Some(i) => {
                    self.discarding = false;
                    LineStep::Skip(i + 1)
                }
                None => LineStep::Skip(input.len()),
            };
        }
        match lf {
            Some(i) if i < self.max => {
                let line = input.get(..i).unwrap_or_default();
                LineStep::Line(line.strip_suffix(b"\r").unwrap_or(line), i + 1)
            }
            Some(i) => LineStep::TooLong(i + 1),
            None if input.len() >= self.max => {
                self.discarding = true;
                LineStep::TooLong(input.len())
            }
            None => {
                self.scanned = input.len();
                LineStep::NeedMore
            }
        }
    }
}

/// Skips a dot-terminated block (RFC 5321 4.5.2, RFC 1939 3): ends at a line that is
/// exactly `.`. Holds at most two bytes back.
#[derive(Debug, Clone, Copy)]
pub struct DotBody {
    at_line_start: bool,
}

impl Default for DotBody {
    fn default() -> Self {
        DotBody {
            at_line_start: true,
        }
    }
}

impl DotBody {
    /// `Some((n, ended))`: `n` bytes belong to the block, `ended` when the terminator was
    /// among them. `None`: too few bytes to tell (a lone `.` or `.\r` at a line start).
    pub fn step(&mut self, input: &[u8]) -> Option<(usize, bool)> {
        if self.at_line_start {
            if input.starts_with(b".\r\n") {
                return Some((3, true));
            }
            if input.starts_with(b".\n") {
                return Some((2, true));
            }
            if input == b"." || input == b".\r" {
                return None;
            }
        }
        match memchr::memchr(b'\n', input) {
            Some(i) => {
                self.at_line_start = true;
                Some((i + 1, false))
            }
            None => {
                self.at_line_start = false;
                Some((input.len(), false))
            }
        }
    }
}

/// Decode base64 text (surrounding spaces ignored). A lone `=` is the SASL empty response.
pub fn b64(text: &[u8]) -> Option<Vec<u8>> {
    let t = text.trim_ascii();
    if t == b"=" {
        return Some(Vec::new());
    }
    B64.decode(t).ok()
}

/// Bytes as a short printable string for a fact (lossy UTF-8, control characters
/// replaced, at most [`MAX_VALUE_CHARS`] characters).
pub fn printable(b: &[u8]) -> std::borrow::Cow<'_, str> {
    // Most values are short printable ASCII: the bytes themselves, no copy (a fact
    // copies them into its flow's text anyway).
    if b.len() <= MAX_VALUE_CHARS && b.iter().all(|c| (b' '..=b'~').contains(c)) {
        if let Ok(s) = std::str::from_utf8(b) {
            return s.into();
        }
    }
    String::from_utf8_lossy(b)
        .chars()
        .take(MAX_VALUE_CHARS)
        .map(|c| if c.is_control() { '.' } else { c })
        .collect::<String>()
        .into()
}

/// First word of `line` and the rest after one or more spaces.
pub fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => {
            let (w, r) = line.split_at(i);
            (w, r.trim_ascii_start())
        }
        None => (line, &[]),
    }
}

/// True when `b` looks like a command verb or a keyword (ASCII letters, digits, `-`, `_`).
pub fn is_keyword(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= 32
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// Upper-case printable copy of a keyword.
pub fn upper(b: &[u8]) -> String {
    let mut s = printable(b).into_owned();
    s.make_ascii_uppercase();
    s
}

/// The text protocol a [`Sasl`] exchange runs in: names its contexts and anomalies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslCarrier {
    Smtp,
    /// SMTP `X-EXPS` (Exchange server-to-server authentication).
    SmtpExps,
    Pop3,
    Imap,
}

impl SaslCarrier {
    /// Context prefix of events and the context given to [`inspect_token`].
    pub fn context(self) -> &'static str {
        match self {
            SaslCarrier::Smtp => "SMTP AUTH",
            SaslCarrier::SmtpExps => "SMTP X-EXPS",
            SaslCarrier::Pop3 => "POP3 AUTH",
            SaslCarrier::Imap => "IMAP AUTHENTICATE",
        }
    }
    fn bad_base64(self) -> &'static str {
        match self {
            SaslCarrier::Smtp | SaslCarrier::SmtpExps => "smtp.bad-base64",
            SaslCarrier::Pop3 => "pop3.bad-base64",
            SaslCarrier::Imap => "imap.bad-base64",
        }
    }
    fn bad_credentials(self) -> &'static str {
        match self {
            SaslCarrier::Smtp | SaslCarrier::SmtpExps => "smtp.bad-sasl-credentials",
            SaslCarrier::Pop3 => "pop3.bad-sasl-credentials",
            SaslCarrier::Imap => "imap.bad-sasl-credentials",
        }
    }
}

/// The SASL mechanisms whose messages are understood.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SaslMech {
    Login,
    Plain,
    CramMd5,
    /// NTLM, GSSAPI, GSS-SPNEGO: binary tokens for [`inspect_token`].
    Token,
    /// XOAUTH2 / OAUTHBEARER: a bearer token in the client message.
    OAuth,
    Anonymous,
    /// Anything else, upper case.
    Other(String),
}

/// One SASL exchange, from the command that starts it to its final reply.
#[derive(Debug)]
pub struct Sasl {
    carrier: SaslCarrier,
    mech: SaslMech,
    name: String,
    responses: u32,
    user: Option<String>,
    recorded: bool,
    first_frame: u64,
}

impl Sasl {
    /// A new exchange for mechanism `mech` (as typed by the client).
    pub fn start(carrier: SaslCarrier, mech: &[u8], cx: &Ctx) -> Sasl {
        let name = upper(mech);
        let kind = match name.as_str() {
            "LOGIN" => SaslMech::Login,
            "PLAIN" => SaslMech::Plain,
            "CRAM-MD5" => SaslMech::CramMd5,
            "NTLM" | "GSSAPI" | "GSS-SPNEGO" => SaslMech::Token,
            "XOAUTH2" | "OAUTHBEARER" => SaslMech::OAuth,
            "ANONYMOUS" => SaslMech::Anonymous,
            _ => SaslMech::Other(name.clone()),
        };
        Sasl {
            carrier,
            mech: kind,
            name,
            responses: 0,
            user: None,
            recorded: false,
            first_frame: cx.frame,
        }
    }

    fn event(&mut self, mechanism: Mechanism, secret: Option<String>, cx: &mut Ctx) {
        self.recorded = true;
        cx.posture.add_auth(AuthEvent {
            mechanism,
            user: self.user.clone(),
            cleartext: secret.is_some(),
            secret: secret.map(Secret),
            frame: cx.frame,
            context: format!("{} {}", self.carrier.context(), self.name),
            after_tls: false,
        });
    }

    /// A client message: base64 text (an initial response or a continuation line).
    pub fn client(&mut self, text: &[u8], cx: &mut Ctx) {
        let n = self.responses;
        self.responses = self.responses.saturating_add(1);
        let Some(raw) = b64(text) else {
            cx.posture.anomaly(
                cx.frame,
                self.carrier.bad_base64(),
                format!(
                    "{} {} response is not base64",
                    self.carrier.context(),
                    self.name
                ),
            );
            return;
        };
        match self.mech {
            SaslMech::Login if n == 0 => self.user = Some(printable(&raw).into_owned()),
            SaslMech::Login if n == 1 => self.event(
                Mechanism::Login,
                Some(String::from_utf8_lossy(&raw).into()),
                cx,
            ),
            SaslMech::Login => {}
            SaslMech::Plain => {
                let mut parts = raw.split(|&b| b == 0);
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(_authzid), Some(authcid), Some(pass), None) => {
                        self.user = Some(printable(authcid).into_owned());
                        self.event(
                            Mechanism::Plain,
                            Some(String::from_utf8_lossy(pass).into()),
                            cx,
                        );
                    }
                    _ => cx.posture.anomaly(
                        cx.frame,
                        self.carrier.bad_credentials(),
                        "PLAIN response is not authzid NUL authcid NUL password",
                    ),
                }
            }
            SaslMech::CramMd5 => {
                let user = raw
                    .rsplit(|&b| b == b' ')
                    .nth(1)
                    .map(|u| printable(u).into_owned());
                self.user = user;
                self.event(Mechanism::CramMd5, None, cx);
            }
            SaslMech::Token => {
                inspect_token(&raw, cx, self.carrier.context());
            }
            SaslMech::OAuth => {
                let (user, token) = oauth_fields(&raw);
                self.user = user;
                match token {
                    Some(t) => self.event(Mechanism::Bearer, Some(t), cx),
                    None => cx.posture.anomaly(
                        cx.frame,
                        self.carrier.bad_credentials(),
                        "OAuth response without auth=Bearer",
                    ),
                }
            }
            SaslMech::Anonymous | SaslMech::Other(_) => {}
        }
    }

    /// A server challenge (base64 text). Only security tokens are of interest; a challenge
    /// that is not base64 (Exchange answers `334 NTLM supported`) is ignored.
    pub fn server(&mut self, text: &[u8], cx: &mut Ctx) {
        if self.mech != SaslMech::Token {
            return;
        }
        if let Some(raw) = b64(text).filter(|r| !r.is_empty()) {
            inspect_token(&raw, cx, self.carrier.context());
        }
    }

    /// The exchange ended (final reply, or cancelled): record what was not yet recorded.
    pub fn end(mut self, cx: &mut Ctx) {
        if self.recorded {
            return;
        }
        let mech = match &self.mech {
            SaslMech::Login => Mechanism::Login,
            SaslMech::Plain => Mechanism::Plain,
            SaslMech::CramMd5 => Mechanism::CramMd5,
            SaslMech::OAuth => Mechanism::Bearer,
            SaslMech::Anonymous => Mechanism::Anonymous,
            SaslMech::Other(name) => Mechanism::Sasl(name.to_ascii_lowercase()),
            // NTLM and Kerberos events come from the tokens (or from `finish_auth`).
            SaslMech::Token => return,
        };
        let frame = cx.frame;
        cx.frame = self.first_frame;
        self.event(mech, None, cx);
        cx.frame = frame;
    }
}

/// User and bearer token of an XOAUTH2 (`user=..^Aauth=Bearer ..^A^A`) or OAUTHBEARER
/// (RFC 7628: `n,a=user,^Aauth=Bearer ..^A^A`) client message.
fn oauth_fields(raw: &[u8]) -> (Option<String>, Option<String>) {
    let mut user = None;
    let mut token = None;
    for field in raw.split(|&b| b == 1) {
        if let Some(u) = field.strip_prefix(b"user=") {
            user = Some(printable(u).into_owned());
        } else if let Some(a) = field.strip_prefix(b"auth=") {
            let (scheme, t) = split_word(a);
            if scheme.eq_ignore_ascii_case(b"bearer") && !t.is_empty() {
                token = Some(String::from_utf8_lossy(t.trim_ascii()).into_owned());
            }
        } else if field.starts_with(b"n,") || field.starts_with(b"y,") || field.starts_with(b"p=") {
            user = field
                .split(|&b| b == b',')
                .find_map(|p| p.strip_prefix(b"a="))
                .filter(|a| !a.is_empty())
                .map(|a| printable(a).into_owned())
                .or(user);
        }
    }
    (user, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keeps_text_and_marks_control_characters() {
        assert_eq!(printable(b"EHLO mail.contoso.com"), "EHLO mail.contoso.com");
        assert_eq!(printable(b"a\tb\x7fc\r"), "a.b.c.");
        assert_eq!(printable(b"caf\xc3\xa9 \xff"), "caf\u{e9} \u{fffd}");
        let long = vec![b'x'; MAX_VALUE_CHARS + 5];
        assert_eq!(printable(&long), "x".repeat(MAX_VALUE_CHARS));
        let long_utf8 = "\u{e9}".repeat(MAX_VALUE_CHARS + 5);
        assert_eq!(
            printable(long_utf8.as_bytes()).chars().count(),
            MAX_VALUE_CHARS
        );
        assert_eq!(upper(b"starttls\x01"), "STARTTLS.");
    }

    #[test]
    fn lines_cut_crlf_and_lf_and_cap_long_ones() {
        let mut l = Lines::new(8);
        assert_eq!(l.next(b"EHLO x\r\nrest"), LineStep::Line(b"EHLO x", 8));
        assert_eq!(l.next(b"a\nb"), LineStep::Line(b"a", 2));
        assert_eq!(l.next(b"abc"), LineStep::NeedMore);
        // 8 bytes without LF: over the cap, dropped, then the rest up to LF skipped.
        assert_eq!(l.next(b"12345678"), LineStep::TooLong(8));
        assert_eq!(l.next(b"9\r\nok\r\n"), LineStep::Skip(3));
        assert_eq!(l.next(b"ok\r\n"), LineStep::Line(b"ok", 4));
        // A complete line over the cap in one chunk is the same anomaly.
        assert_eq!(l.next(b"123456789\r\n"), LineStep::TooLong(11));
    }

    #[test]
    fn dot_body_finds_terminator_across_splits() {
        let mut d = DotBody::default();
        assert_eq!(d.step(b"Subject: x\r\n"), Some((12, false)));
        assert_eq!(d.step(b"..stuffed\r\n"), Some((11, false)));
        assert_eq!(d.step(b"."), None);
        assert_eq!(d.step(b".\r"), None);
        assert_eq!(d.step(b".\r\nQUIT\r\n"), Some((3, true)));
        let mut d = DotBody::default();
        // A dot in the middle of a line is content.
        assert_eq!(d.step(b"a.\r\n"), Some((4, false)));
    }

    #[test]
    fn b64_is_lenient_on_padding_and_rejects_garbage() {
        assert_eq!(b64(b" dXNlcg== "), Some(b"user".to_vec()));
        assert_eq!(b64(b"dXNlcg"), Some(b"user".to_vec()));
        assert_eq!(b64(b"="), Some(Vec::new()));
        assert_eq!(b64(b"!!notbase64"), None);
    }

    #[test]
    fn oauth_messages_give_user_and_token() {
        let x = b"user=a@b.c\x01auth=Bearer tok123\x01\x01";
        assert_eq!(
            oauth_fields(x),
            (Some("a@b.c".into()), Some("tok123".into()))
        );
        let o = b"n,a=u@e.f,\x01host=h\x01auth=Bearer t0k\x01\x01";
        assert_eq!(oauth_fields(o), (Some("u@e.f".into()), Some("t0k".into())));
    }
}
