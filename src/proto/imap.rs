//! IMAP (RFC 9051, RFC 3501) with STARTTLS (RFC 2595), AUTHENTICATE (SASL, with the
//! initial response of RFC 4959) and literals (`{n}`, `{n+}` of RFC 7888, `~{n}` of RFC 3516).
//!
//! Guarantees: a command is assembled across lines and literals whatever the chunking (a
//! literal's bytes may arrive frames after its `{n}`); a tagged reply is matched to its
//! command by tag; literals in server responses (message bodies) are skipped by size and
//! never parsed as responses; LOGIN is recorded as a cleartext secret (atoms, quoted
//! strings with escapes, literals), AUTHENTICATE PLAIN / LOGIN are decoded and NTLM /
//! GSSAPI tokens go to `inspect_token`; once STARTTLS is answered OK every later byte
//! goes to the TLS analyzer. Memory per flow is bounded by [`MAX_LINE`] per direction,
//! [`MAX_KEPT_LITERAL`] per kept argument and the `--max-transactions` cap on commands.

use crate::model::{AuthEvent, Direction, Mechanism, Secret};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration, StreamBuf};
use crate::proto::auth::finish_auth;
use crate::proto::text::{
    drive, is_keyword, printable, split_word, upper, Drive, LineStep, Lines, Sasl, SaslCarrier,
    Step,
};
use crate::proto::tls::TlsAnalyzer;
use std::collections::VecDeque;

/// Longest line, CRLF included. RFC 7162 4 recommends servers accept 8 KiB command lines;
/// AUTHENTICATE lines carry base64 Kerberos tickets of up to 48 KiB (Windows MaxTokenSize).
pub const MAX_LINE: usize = 64 * 1024;

/// Longest literal kept as a LOGIN / AUTHENTICATE argument; user names and passwords are
/// far shorter, and bigger literals (APPEND messages) are skipped by size.
pub const MAX_KEPT_LITERAL: u64 = 1024;

/// Arguments kept per command: tag, verb and the two arguments LOGIN has.
const MAX_KEPT_ARGS: usize = 4;

pub const REGISTRATION: Registration = Registration {
    name: "imap",
    tcp: true,
    ports: &[143],
    probe,
    make: || Box::new(ImapAnalyzer::new()),
};

/// Verbs a client sends first on a fresh connection.
const FIRST_VERBS: &[&[u8]] = &[
    b"CAPABILITY",
    b"LOGIN ",
    b"AUTHENTICATE ",
    b"STARTTLS",
    b"NOOP",
    b"ID ",
];

/// Certain on a `* OK` / `* PREAUTH` greeting or a tagged first command; Unsure on 143.
pub fn probe(dir: Direction, prefix: &[u8], _client_port: u16, server_port: u16) -> Probe {
    let certain = match dir {
        Direction::ToClient => prefix.starts_with(b"* OK") || prefix.starts_with(b"* PREAUTH"),
        Direction::ToServer => {
            let (tag, rest) = split_word(prefix);
            is_tag(tag)
                && FIRST_VERBS.iter().any(|v| {
                    rest.get(..v.len())
                        .is_some_and(|r| r.eq_ignore_ascii_case(v))
                })
        }
    };
    if certain {
        Probe::Certain
    } else if server_port == 143 {
        Probe::Unsure
    } else {
        Probe::No
    }
}

/// RFC 9051 `tag`: ASTRING-CHAR except `+`; printable ASCII without specials.
fn is_tag(t: &[u8]) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.iter()
            .all(|&c| c.is_ascii_graphic() && !b"(){%*\"\\]+".contains(&c))
}

/// What a pending command is, for its tagged reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Login,
    Authenticate,
    StartTls,
    Idle,
    Other,
}

/// A literal being read: bytes left, and the bytes kept (LOGIN / AUTHENTICATE arguments).
#[derive(Debug)]
struct Literal {
    left: u64,
    kept: Option<Vec<u8>>,
}

/// How a line ends, as far as literals go.
enum LineEnd<'a> {
    /// `{n}`, `{n+}` or `~{n}`: the literal's size and the text before the marker.
    Literal(u64, &'a [u8]),
    /// A literal marker whose size does not fit in 64 bits.
    TooBig,
}

/// The literal marker at the end of a line, if any.
fn literal_suffix(line: &[u8]) -> Option<LineEnd<'_>> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let before = inner.get(..open).unwrap_or_default();
    let digits = inner.get(open + 1..).unwrap_or_default();
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let before = before.strip_suffix(b"~").unwrap_or(before);
    let n = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    Some(n.map_or(LineEnd::TooBig, |n| LineEnd::Literal(n, before)))
}

/// Split a line segment into atoms and quoted strings (RFC 9051 4.3), appending at most
/// [`MAX_KEPT_ARGS`] in total. Returns false on an unterminated quoted string.
fn tokenize(mut s: &[u8], out: &mut Vec<Vec<u8>>) -> bool {
    loop {
        s = s.trim_ascii_start();
        let Some(&first) = s.first() else {
            return true;
        };
        let (tok, rest) = if first == b'"' {
            let mut tok = Vec::new();
            let mut i = 1;
            let mut closed = false;
            while let Some(&c) = s.get(i) {
                match c {
                    b'\\' => {
                        if let Some(&e) = s.get(i + 1) {
                            tok.push(e);
                        }
                        i += 2;
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    _ => {
                        tok.push(c);
                        i += 1;
                    }
                }
            }
            if !closed {
                return false;
            }
            (tok, s.get(i..).unwrap_or_default())
        } else {
            let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
            let (t, r) = s.split_at(end);
            (t.to_vec(), r)
        };
        if out.len() < MAX_KEPT_ARGS {
            out.push(tok);
        }
        s = rest;
    }
}

pub struct ImapAnalyzer {
    bufs: [StreamBuf; 2],
    lines: [Lines; 2],
    /// Arguments of the client command being assembled (continues after a literal).
    args: Vec<Vec<u8>>,
    /// The client command continues on the next line (after a literal).
    in_command: bool,
    client_literal: Option<Literal>,
    /// The server response continues on the next line (after a literal).
    in_response: bool,
    server_literal: u64,
    /// The client sent STARTTLS and must wait for the tagged reply.
    client_held: bool,
    pending: VecDeque<(Vec<u8>, Kind)>,
    greeted: bool,
    sasl: Option<Sasl>,
    tls: Option<TlsAnalyzer>,
    pump: bool,
    started: bool,
}

impl Default for ImapAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl ImapAnalyzer {
    pub fn new() -> Self {
        ImapAnalyzer {
            bufs: [StreamBuf::new(MAX_LINE), StreamBuf::new(MAX_LINE)],
            lines: [Lines::new(MAX_LINE); 2],
            args: Vec::new(),
            in_command: false,
            client_literal: None,
            in_response: false,
            server_literal: 0,
            client_held: false,
            pending: VecDeque::new(),
            greeted: false,
            sasl: None,
            tls: None,
            pump: false,
            started: false,
        }
    }

    fn feed(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        let i = dir.index();
        let mut buf = std::mem::take(&mut self.bufs[i]);
        let r = drive(&mut buf, data, |input| self.step(dir, input, cx));
        self.bufs[i] = buf;
        match r {
            Drive::Continue => Next::Continue,
            Drive::Stop => Next::Done,
            Drive::Full => {
                cx.posture.anomaly(
                    cx.frame,
                    "imap.buffer-full",
                    "parser state needs more than MAX_LINE bytes",
                );
                Next::Done
            }
        }
    }

    fn step(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx) -> Step {
        if let Some(tls) = self.tls.as_mut() {
            return match tls.data(dir, input, cx) {
                Next::Continue => Step::Consumed(input.len()),
                Next::Done => Step::Stop,
            };
        }
        match dir {
            Direction::ToServer => {
                if let Some(lit) = self.client_literal.as_mut() {
                    let n = usize::try_from(lit.left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (now, _) = input.split_at(n);
                    if let Some(k) = lit.kept.as_mut() {
                        k.extend_from_slice(now);
                    }
                    lit.left -= n as u64;
                    if lit.left == 0 {
                        if let Some(k) = self.client_literal.take().and_then(|l| l.kept) {
                            if self.args.len() < MAX_KEPT_ARGS {
                                self.args.push(k);
                            }
                        }
                    }
                    return Step::Consumed(n);
                }
                if self.client_held {
                    if input.len() < MAX_LINE {
                        return Step::NeedMore;
                    }
                    cx.posture.anomaly(
                        cx.frame,
                        "imap.client-ran-ahead",
                        format!(
                            "{MAX_LINE} bytes sent before the reply to STARTTLS; assumed accepted"
                        ),
                    );
                    self.client_held = false;
                    self.tls = Some(TlsAnalyzer::new("starttls"));
                    return self.step(dir, input, cx);
                }
            }
            Direction::ToClient if self.server_literal > 0 => {
                let n = usize::try_from(self.server_literal)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                self.server_literal -= n as u64;
                return Step::Consumed(n);
            }
            Direction::ToClient => {}
        }
        match self.lines[dir.index()].next(input) {
            LineStep::NeedMore => Step::NeedMore,
            LineStep::Skip(n) => Step::Consumed(n),
            LineStep::TooLong(n) => {
                cx.posture.anomaly(
                    cx.frame,
                    "imap.line-too-long",
                    format!("line longer than {MAX_LINE} bytes skipped"),
                );
                // Whatever the line was part of is lost: start afresh on the next line.
                match dir {
                    Direction::ToServer => {
                        self.in_command = false;
                        self.args.clear();
                    }
                    Direction::ToClient => self.in_response = false,
                }
                Step::Consumed(n)
            }
            LineStep::Line(line, n) => {
                let ok = match dir {
                    Direction::ToServer => self.client_line(line, cx),
                    Direction::ToClient => self.server_line(line, cx),
                };
                if !ok {
                    return Step::Stop;
                }
                if dir == Direction::ToClient
                    && std::mem::take(&mut self.pump)
                    && self.feed(Direction::ToServer, &[], cx) == Next::Done
                {
                    return Step::Stop;
                }
                Step::Consumed(n)
            }
        }
    }

    /// One client line. Returns false when the stream cannot be followed any more.
    fn client_line(&mut self, line: &[u8], cx: &mut Ctx) -> bool {
        if !self.in_command {
            if let Some(mut sasl) = self.sasl.take() {
                if line == b"*" {
                    sasl.end(cx);
                } else {
                    sasl.client(line, cx);
                    self.sasl = Some(sasl);
                }
                return true;
            }
            if line.eq_ignore_ascii_case(b"DONE")
                && self.pending.iter().any(|(_, k)| *k == Kind::Idle)
            {
                return true;
            }
            self.args.clear();
        }
        let (text, literal) = match literal_suffix(line) {
            None => (line, None),
            Some(LineEnd::Literal(size, before)) => (before, Some(size)),
            Some(LineEnd::TooBig) => {
                cx.posture.anomaly(
                    cx.frame,
                    "imap.bad-literal",
                    format!("literal size too large: {}", printable(line)),
                );
                return false;
            }
        };
        if !tokenize(text, &mut self.args) {
            cx.posture.anomaly(
                cx.frame,
                "imap.bad-quoted-string",
                format!("unterminated quoted string: {}", printable(line)),
            );
        }
        if let Some(size) = literal {
            let verb = self.args.get(1).map(|v| upper(v));
            let keep = matches!(verb.as_deref(), Some("LOGIN" | "AUTHENTICATE"))
                && self.args.len() < MAX_KEPT_ARGS
                && size <= MAX_KEPT_LITERAL;
            self.in_command = true;
            if size == 0 {
                if keep {
                    self.args.push(Vec::new());
                }
            } else {
                self.client_literal = Some(Literal {
                    left: size,
                    kept: keep.then(Vec::new),
                });
            }
            return true;
        }
        self.in_command = false;
        let args = std::mem::take(&mut self.args);
        self.command(&args, cx);
        true
    }

    fn command(&mut self, args: &[Vec<u8>], cx: &mut Ctx) {
        let (Some(tag), Some(verb)) = (args.first(), args.get(1)) else {
            cx.posture
                .anomaly(cx.frame, "imap.bad-command", "command without tag and verb");
            return;
        };
        if !is_tag(tag) || !is_keyword(verb) {
            cx.posture.anomaly(
                cx.frame,
                "imap.bad-command",
                format!("not a command: {} {}", printable(tag), printable(verb)),
            );
            return;
        }
        cx.posture.set_cleartext();
        let verb = upper(verb);
        cx.posture.fact("imap.command", verb.clone());
        let kind = match verb.as_str() {
            "LOGIN" => {
                match (args.get(2), args.get(3)) {
                    (Some(user), Some(pass)) => cx.posture.add_auth(AuthEvent {
                        mechanism: Mechanism::UserPass,
                        user: Some(printable(user).into_owned()),
                        cleartext: true,
                        secret: Some(Secret(String::from_utf8_lossy(pass).into_owned())),
                        frame: cx.frame,
                        context: "IMAP LOGIN".into(),
                        after_tls: false,
                    }),
                    _ => cx.posture.anomaly(
                        cx.frame,
                        "imap.bad-login",
                        "LOGIN without user name and password",
                    ),
                }
                Kind::Login
            }
            "AUTHENTICATE" => {
                let mech = args.get(2).map(Vec::as_slice).unwrap_or_default();
                let mut sasl = Sasl::start(SaslCarrier::Imap, mech, cx);
                if let Some(initial) = args.get(3) {
                    sasl.client(initial, cx);
                }
                self.sasl = Some(sasl);
                Kind::Authenticate
            }
            "STARTTLS" => {
                cx.posture.fact("imap.starttls", "requested");
                self.client_held = true;
                Kind::StartTls
            }
            "IDLE" => Kind::Idle,
            _ => Kind::Other,
        };
        if self.pending.len() >= cx.limits.transactions {
            cx.posture.anomaly(
                cx.frame,
                "imap.too-many-pending",
                format!(
                    "more than {} commands without a tagged reply",
                    cx.limits.transactions
                ),
            );
            return;
        }
        self.pending.push_back((tag.clone(), kind));
    }

    /// One server line. Returns false when the stream cannot be followed any more.
    fn server_line(&mut self, line: &[u8], cx: &mut Ctx) -> bool {
        let continued = std::mem::take(&mut self.in_response);
        let literal = match literal_suffix(line) {
            None => None,
            Some(LineEnd::Literal(size, _)) => Some(size),
            Some(LineEnd::TooBig) => {
                cx.posture.anomaly(
                    cx.frame,
                    "imap.bad-literal",
                    format!("literal size too large: {}", printable(line)),
                );
                return false;
            }
        };
        if let Some(size) = literal {
            self.server_literal = size;
            self.in_response = true;
        }
        if continued {
            // The rest of a response after a literal: nothing the posture needs.
            return true;
        }
        let (first, rest) = split_word(line);
        match first {
            b"*" => self.untagged(rest, cx),
            b"+" => {
                if let Some(sasl) = self.sasl.as_mut() {
                    sasl.server(rest, cx);
                }
            }
            tag if is_tag(tag) => self.tagged(tag, rest, cx),
            _ => cx.posture.anomaly(
                cx.frame,
                "imap.bad-response",
                format!("not a response: {}", printable(line)),
            ),
        }
        true
    }

    fn untagged(&mut self, rest: &[u8], cx: &mut Ctx) {
        cx.posture.set_cleartext();
        let (word, text) = split_word(rest);
        let word = upper(word);
        if !std::mem::replace(&mut self.greeted, true) {
            if matches!(word.as_str(), "OK" | "PREAUTH" | "BYE") {
                cx.posture.fact("imap.greeting", word.to_ascii_lowercase());
                cx.posture.fact("imap.banner", printable(after_code(text)));
            } else {
                // The capture began after the greeting.
                self.greeted = true;
            }
        }
        match word.as_str() {
            "CAPABILITY" => capabilities(text, cx),
            "OK" | "PREAUTH" | "BYE" | "NO" | "BAD" => code_capabilities(text, cx),
            _ => {}
        }
    }

    fn tagged(&mut self, tag: &[u8], rest: &[u8], cx: &mut Ctx) {
        cx.posture.set_cleartext();
        let (status, text) = split_word(rest);
        code_capabilities(text, cx);
        let Some(pos) = self.pending.iter().position(|(t, _)| t == tag) else {
            cx.posture.anomaly(
                cx.frame,
                "imap.unexpected-tag",
                format!("tagged reply {} matches no command", printable(tag)),
            );
            return;
        };
        let kind = self.pending.remove(pos).map_or(Kind::Other, |(_, k)| k);
        let status = upper(status);
        let ok = status == "OK";
        match kind {
            Kind::Login | Kind::Authenticate => {
                let v = if ok {
                    "success".to_string()
                } else {
                    format!("failure:{status}")
                };
                cx.posture.fact("imap.auth-result", v);
                if kind == Kind::Authenticate {
                    if let Some(sasl) = self.sasl.take() {
                        sasl.end(cx);
                    }
                }
            }
            Kind::StartTls => {
                self.client_held = false;
                self.pump = true;
                if ok {
                    cx.posture.fact("imap.starttls", "accepted");
                    self.tls = Some(TlsAnalyzer::new("starttls"));
                } else {
                    cx.posture
                        .fact("imap.starttls", format!("refused:{status}"));
                }
            }
            Kind::Idle | Kind::Other => {}
        }
    }
}

/// Text after an optional `[response code]`.
fn after_code(text: &[u8]) -> &[u8] {
    match text.strip_prefix(b"[") {
        Some(r) => match r.iter().position(|&b| b == b']') {
            Some(i) => r.get(i + 1..).unwrap_or_default().trim_ascii_start(),
            None => text,
        },
        None => text,
    }
}

/// `[CAPABILITY ...]` response code at the start of a status text.
fn code_capabilities(text: &[u8], cx: &mut Ctx) {
    let Some(r) = text.strip_prefix(b"[") else {
        return;
    };
    let code = r.split(|&b| b == b']').next().unwrap_or_default();
    let (name, list) = split_word(code);
    if name.eq_ignore_ascii_case(b"CAPABILITY") {
        capabilities(list, cx);
    }
}

/// A capability list (RFC 9051 7.2.2): `IMAP4rev1 STARTTLS AUTH=PLAIN LOGINDISABLED ...`.
fn capabilities(list: &[u8], cx: &mut Ctx) {
    for cap in list.split(|&b| b == b' ').filter(|c| !c.is_empty()) {
        let cap = upper(cap);
        if let Some(mech) = cap.strip_prefix("AUTH=") {
            cx.posture.fact("imap.auth-offered", mech);
        }
        if cap == "STARTTLS" {
            cx.posture.fact("imap.starttls", "offered");
        }
        cx.posture.fact("imap.capability", cap);
    }
}

impl Analyzer for ImapAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        if !self.started {
            self.started = true;
            cx.posture.protocol = Some("imap");
        }
        let mut next = self.feed(dir, data, cx);
        while next == Next::Continue && std::mem::take(&mut self.pump) {
            next = self.feed(dir.flip(), &[], cx);
        }
        next
    }

    fn gap(&mut self, dir: Direction, len: u64, cx: &mut Ctx) -> Next {
        if let Some(tls) = self.tls.as_mut() {
            return tls.gap(dir, len, cx);
        }
        cx.posture.anomaly(
            cx.frame,
            "stream.gap",
            "bytes missing from the capture; parser stopped",
        );
        Next::Done
    }

    fn finish(&mut self, cx: &mut Ctx) {
        if let Some(sasl) = self.sasl.take() {
            sasl.end(cx);
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
    use crate::model::Encryption;
    use crate::proto::testutil::{
        facts, kinds, ntlm_authenticate, run, tls12_handshake, tls_app_record,
    };
    use base64::Engine as _;
    use Direction::{ToClient as S, ToServer as C};

    fn make() -> Box<dyn Analyzer> {
        (REGISTRATION.make)()
    }

    const GREETING: &[(Direction, &[u8])] = &[(
        S,
        b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=NTLM AUTH=GSSAPI SASL-IR] Microsoft Exchange Server 2007 IMAP4 service ready\r\n",
    )];

    fn with(extra: &[(Direction, &'static [u8])]) -> Vec<(Direction, &'static [u8])> {
        let mut v: Vec<(Direction, &'static [u8])> = GREETING.to_vec();
        v.extend_from_slice(extra);
        v
    }

    fn secrets(p: &crate::model::Posture) -> Vec<(Option<String>, Option<String>, u64)> {
        p.auth
            .iter()
            .map(|e| (e.user.clone(), e.secret.clone().map(|s| s.0), e.frame))
            .collect()
    }

    #[test]
    fn greeting_capabilities_from_the_response_code() {
        let p = run(make, GREETING);
        assert_eq!(p.protocol, Some("imap"));
        assert_eq!(p.encryption, Encryption::None);
        assert_eq!(facts(&p, "imap.greeting"), ["ok"]);
        assert_eq!(
            facts(&p, "imap.banner"),
            ["Microsoft Exchange Server 2007 IMAP4 service ready"]
        );
        assert_eq!(facts(&p, "imap.auth-offered"), ["GSSAPI", "NTLM"]);
        assert!(facts(&p, "imap.capability").contains(&"LOGINDISABLED".to_string()));
        assert_eq!(facts(&p, "imap.starttls"), ["offered"]);
    }

    #[test]
    fn capability_reply_and_login_with_atoms() {
        let p = run(
            make,
            &[
                (S, b"* OK IMAP4 ready\r\n"),
                (C, b"a1 CAPABILITY\r\n"),
                (S, b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na1 OK done\r\n"),
                (C, b"a2 LOGIN john s3cret\r\n"),
                (S, b"a2 OK [CAPABILITY IMAP4rev1 IDLE] LOGIN completed\r\n"),
            ],
        );
        assert_eq!(
            secrets(&p),
            [(Some("john".into()), Some("s3cret".into()), 4)]
        );
        assert!(p.auth[0].cleartext);
        assert_eq!(p.auth[0].context, "IMAP LOGIN");
        assert_eq!(facts(&p, "imap.auth-result"), ["success"]);
        assert!(facts(&p, "imap.capability").contains(&"IDLE".to_string()));
        assert_eq!(facts(&p, "imap.auth-offered"), ["PLAIN"]);
    }

    #[test]
    fn login_with_quoted_escapes() {
        let p = run(
            make,
            &with(&[
                (C, b"x LOGIN \"CORP\\\\jo hn\" \"pa\\\"ss\"\r\n"),
                (S, b"x NO [AUTHENTICATIONFAILED] bad\r\n"),
            ]),
        );
        assert_eq!(
            secrets(&p),
            [(Some("CORP\\jo hn".into()), Some("pa\"ss".into()), 2)]
        );
        assert_eq!(facts(&p, "imap.auth-result"), ["failure:NO"]);
    }

    #[test]
    fn login_with_literals_split_across_chunks() {
        // {4} synchronising literal for the user, {6+} non-synchronising for the password,
        // whose bytes arrive two frames later, split in the middle.
        let p = run(
            make,
            &with(&[
                (C, b"a LOGIN {4}\r\n"),
                (S, b"+ Ready for literal\r\n"),
                (C, b"john {6+}\r\nse"),
                (C, b"cret\r\n"), // frame 5 completes the command
                (S, b"a OK done\r\n"),
            ]),
        );
        assert_eq!(
            secrets(&p),
            [(Some("john".into()), Some("secret".into()), 5)]
        );
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn append_literal_and_fetch_literal_are_skipped() {
        let p = run(
            make,
            &with(&[
                (C, b"a APPEND INBOX {24}\r\n"),
                (S, b"+ go\r\n"),
                (C, b"b LOGIN fake cred\r\nxxxxx\r\n"), // 24 bytes of message
                (S, b"a OK appended\r\n"),
                (C, b"c FETCH 1 BODY[]\r\n"),
                (
                    S,
                    b"* 1 FETCH (BODY[] {18}\r\nd OK not a reply\r\n)\r\nc OK done\r\n",
                ),
            ]),
        );
        assert!(p.auth.is_empty());
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert_eq!(facts(&p, "imap.command"), ["APPEND", "FETCH"]);
    }

    #[test]
    fn authenticate_plain_with_sasl_ir_and_continuations() {
        let tok = base64::engine::general_purpose::STANDARD.encode(ntlm_authenticate());
        let tok: &'static [u8] = format!("{tok}\r\n").into_bytes().leak();
        let p = run(
            make,
            &with(&[
                (C, b"a AUTHENTICATE PLAIN AGpvaG4AcHc=\r\n"),
                (S, b"a OK\r\n"),
                (C, b"b AUTHENTICATE LOGIN\r\n"),
                (S, b"+ VXNlcm5hbWU6\r\n"),
                (C, b"am9obg==\r\n"),
                (S, b"+ UGFzc3dvcmQ6\r\n"),
                (C, b"cHcy\r\n"),
                (S, b"b NO bad\r\n"),
                (C, b"c AUTHENTICATE NTLM\r\n"),
                (S, b"+ \r\n"),
                (C, tok),
                (S, b"c OK\r\n"),
            ]),
        );
        let got: Vec<_> = p
            .auth
            .iter()
            .map(|e| (e.mechanism.clone(), e.context.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Mechanism::Plain, "IMAP AUTHENTICATE PLAIN"),
                (Mechanism::Login, "IMAP AUTHENTICATE LOGIN"),
                (Mechanism::Ntlmv2, "IMAP AUTHENTICATE"),
            ]
        );
        assert_eq!(p.auth[1].secret.as_ref().map(|s| s.0.as_str()), Some("pw2"));
        assert_eq!(facts(&p, "imap.auth-result"), ["failure:NO", "success"]);
    }

    #[test]
    fn starttls_hides_the_later_login() {
        let mut script = with(&[
            (C, b"a STARTTLS\r\n"),
            (S, b"a OK Begin TLS negotiation now\r\n"),
        ]);
        // A TLS handshake, then a record that would look like a login if read as IMAP.
        script.extend(tls12_handshake());
        script.push((C, tls_app_record(b"b LOGIN john pw\r\n")));
        let p = run(make, &script);
        assert!(p.auth.is_empty());
        assert_eq!(
            facts(&p, "imap.starttls"),
            ["accepted", "offered", "requested"]
        );
        assert_eq!(p.encryption, Encryption::Tls);
    }

    #[test]
    fn idle_done_is_not_a_command() {
        let p = run(
            make,
            &with(&[
                (C, b"a IDLE\r\n"),
                (S, b"+ idling\r\n* 3 EXISTS\r\n"),
                (C, b"DONE\r\n"),
                (S, b"a OK\r\n"),
            ]),
        );
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn malformed_input_gives_named_anomalies() {
        let p = run(
            make,
            &with(&[
                (C, b"a LOGIN \"unterminated\r\n"),
                (C, b"b LOGIN onlyuser\r\n"),
                (C, b"c AUTHENTICATE PLAIN !!!\r\n"),
                (S, b"c BAD no\r\nzz OK what\r\n"),
                (C, b"d LOGIN {99999999999999999999999}\r\n"),
            ]),
        );
        assert_eq!(
            kinds(&p),
            [
                "imap.bad-quoted-string",
                "imap.bad-login",
                "imap.bad-login",
                "imap.bad-base64",
                "imap.unexpected-tag",
                "imap.bad-literal",
            ]
        );
    }

    #[test]
    fn probe_recognises_greeting_and_tagged_commands() {
        assert_eq!(probe(S, b"* OK ready", 4000, 1143), Probe::Certain);
        assert_eq!(probe(C, b"a001 login x y", 4000, 1143), Probe::Certain);
        assert_eq!(probe(C, b"GET / HTTP/1.1", 4000, 1143), Probe::No);
        assert_eq!(probe(S, b"xyz", 4000, 143), Probe::Unsure);
    }
}
