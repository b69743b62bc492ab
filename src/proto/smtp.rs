//! SMTP (RFC 5321) with STARTTLS (RFC 3207), AUTH (RFC 4954), BDAT (RFC 3030), PIPELINING
//! (RFC 2920) and the Exchange extensions X-ANONYMOUSTLS, X-EXPS and XEXCH50.
//!
//! Guarantees: replies are matched to commands in order, so pipelined commands and
//! multi-line replies are attributed correctly; message content (DATA up to `CRLF.CRLF`,
//! BDAT chunks, XEXCH50 blobs) is skipped and never parsed as commands; once STARTTLS or
//! X-ANONYMOUSTLS is answered 220 every later byte of both directions goes to the TLS
//! analyzer only. Credentials of AUTH LOGIN / PLAIN are recorded as cleartext secrets,
//! CRAM-MD5 as the user only, NTLM / GSSAPI tokens go to `inspect_token`. Memory per flow
//! is bounded by [`MAX_LINE`] per direction and the `--max-transactions` cap on queued commands.

use crate::model::Direction;
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration, StreamBuf};
use crate::proto::auth::finish_auth;
use crate::proto::text::{
    drive, is_keyword, printable, split_word, upper, DotBody, Drive, LineStep, Lines, Sasl,
    SaslCarrier, Step,
};
use crate::proto::tls::TlsAnalyzer;
use std::collections::VecDeque;

/// Longest command or reply line, CRLF included. RFC 5321 4.5.3.1.4 allows 512 octets,
/// but RFC 4954 4 lifts the limit for AUTH lines, which carry base64 Kerberos tickets of
/// up to 48 KiB (Windows MaxTokenSize) once encoded.
pub const MAX_LINE: usize = 64 * 1024;

pub const REGISTRATION: Registration = Registration {
    name: "smtp",
    tcp: true,
    ports: &[25, 587],
    probe,
    make: || Box::new(SmtpAnalyzer::new()),
};

/// Certain on a `220` banner (not an FTP one) or an `EHLO` / `HELO` command; Unsure on the
/// submission and relay ports.
pub fn probe(dir: Direction, prefix: &[u8], _client_port: u16, server_port: u16) -> Probe {
    let certain = match dir {
        Direction::ToClient => {
            (prefix.starts_with(b"220 ") || prefix.starts_with(b"220-")) && !mentions_ftp(prefix)
        }
        Direction::ToServer => prefix
            .get(..5)
            .is_some_and(|v| v.eq_ignore_ascii_case(b"EHLO ") || v.eq_ignore_ascii_case(b"HELO ")),
    };
    if certain {
        Probe::Certain
    } else if matches!(server_port, 25 | 587) {
        Probe::Unsure
    } else {
        Probe::No
    }
}

/// FTP servers greet with `220` too; their banner line usually says so.
fn mentions_ftp(prefix: &[u8]) -> bool {
    let line = prefix.split(|&b| b == b'\n').next().unwrap_or_default();
    line.windows(3).any(|w| w.eq_ignore_ascii_case(b"ftp"))
}

/// A command waiting for its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Greeting,
    Ehlo,
    StartTls,
    AnonymousTls,
    Auth,
    Data,
    /// The message content ended: its reply says whether it was accepted.
    DataEnd,
    Xexch50(u64),
    Other,
}

/// What the client's next bytes are.
#[derive(Clone, Copy, Debug)]
enum Client {
    Commands,
    /// The client must wait for a reply before sending more (STARTTLS, DATA, XEXCH50).
    Hold(Cmd),
    Content(DotBody),
    /// A BDAT chunk (`false`: its reply is already queued) or an XEXCH50 blob (`true`:
    /// a reply follows the blob): this many bytes remain.
    Skip(u64, bool),
}

/// Reply line being assembled (RFC 5321 4.2.1: `ddd-text` lines then `ddd text`).
#[derive(Clone, Copy, Debug)]
struct ReplyLine<'a> {
    code: u16,
    last: bool,
    text: &'a [u8],
}

fn parse_reply(line: &[u8]) -> Option<ReplyLine<'_>> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, line.get(4..).unwrap_or_default()),
        Some(b'-') => (false, line.get(4..).unwrap_or_default()),
        Some(_) => return None,
    };
    Some(ReplyLine { code, last, text })
}

pub struct SmtpAnalyzer {
    bufs: [StreamBuf; 2],
    lines: [Lines; 2],
    client: Client,
    pending: VecDeque<Cmd>,
    /// The next server line starts a new reply.
    reply_start: bool,
    sasl: Option<Sasl>,
    tls: Option<TlsAnalyzer>,
    /// Bytes are held in the other direction's buffer that a state change released.
    pump: bool,
    /// Any server byte seen: without one, the capture holds the client side only and
    /// DATA is not held back waiting for a 354 that will never be seen.
    server_seen: bool,
    started: bool,
}

impl Default for SmtpAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl SmtpAnalyzer {
    pub fn new() -> Self {
        SmtpAnalyzer {
            bufs: [StreamBuf::new(MAX_LINE), StreamBuf::new(MAX_LINE)],
            lines: [Lines::new(MAX_LINE); 2],
            client: Client::Commands,
            pending: VecDeque::from([Cmd::Greeting]),
            reply_start: true,
            sasl: None,
            tls: None,
            pump: false,
            server_seen: false,
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
                    "smtp.buffer-full",
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
        if dir == Direction::ToServer {
            match self.client {
                Client::Commands => {}
                Client::Hold(cmd) => return self.held(cmd, input, cx),
                Client::Content(mut body) => {
                    let Some((n, ended)) = body.step(input) else {
                        return Step::NeedMore;
                    };
                    self.client = if ended {
                        self.expect(Cmd::DataEnd, cx);
                        Client::Commands
                    } else {
                        Client::Content(body)
                    };
                    return Step::Consumed(n);
                }
                Client::Skip(left, reply_follows) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let left = left.saturating_sub(n as u64);
                    self.client = if left == 0 {
                        if reply_follows {
                            self.expect(Cmd::Other, cx);
                        }
                        Client::Commands
                    } else {
                        Client::Skip(left, reply_follows)
                    };
                    return Step::Consumed(n);
                }
            }
        }
        let i = dir.index();
        match self.lines[i].next(input) {
            LineStep::NeedMore => Step::NeedMore,
            LineStep::Skip(n) => Step::Consumed(n),
            LineStep::TooLong(n) => {
                cx.posture.anomaly(
                    cx.frame,
                    "smtp.line-too-long",
                    format!("line longer than {MAX_LINE} bytes skipped"),
                );
                Step::Consumed(n)
            }
            LineStep::Line(line, n) => {
                match dir {
                    Direction::ToServer => self.command(line, cx),
                    Direction::ToClient => self.reply(line, cx),
                }
                // A reply released held client bytes: they come before the next reply.
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

    /// The client sent bytes while it should wait for a reply. Keep them until the reply
    /// says what they are; past the buffer cap, assume the command was accepted.
    fn held(&mut self, cmd: Cmd, input: &[u8], cx: &mut Ctx) -> Step {
        if input.len() < MAX_LINE {
            return Step::NeedMore;
        }
        cx.posture.anomaly(
            cx.frame,
            "smtp.client-ran-ahead",
            format!("{MAX_LINE} bytes sent before the reply to {cmd:?}; assumed accepted"),
        );
        match cmd {
            Cmd::StartTls => self.start_tls("starttls"),
            Cmd::AnonymousTls => self.start_tls("x-anonymoustls"),
            Cmd::Data => self.client = Client::Content(DotBody::default()),
            Cmd::Xexch50(n) => self.client = Client::Skip(n, true),
            _ => self.client = Client::Commands,
        }
        // Nothing consumed: the next call sees the bytes in the new state.
        self.step(Direction::ToServer, input, cx)
    }

    fn start_tls(&mut self, by: &'static str) {
        self.tls = Some(TlsAnalyzer::new(by));
        self.client = Client::Commands;
        self.pump = true;
    }

    fn expect(&mut self, cmd: Cmd, cx: &mut Ctx) {
        if self.pending.len() >= cx.limits.transactions {
            cx.posture.anomaly(
                cx.frame,
                "smtp.too-many-pending",
                format!(
                    "more than {} commands without a reply",
                    cx.limits.transactions
                ),
            );
            return;
        }
        self.pending.push_back(cmd);
    }

    fn command(&mut self, line: &[u8], cx: &mut Ctx) {
        if let Some(mut sasl) = self.sasl.take() {
            if line == b"*" {
                sasl.end(cx);
            } else {
                sasl.client(line, cx);
                self.sasl = Some(sasl);
            }
            return;
        }
        // A client never speaks before the banner: the capture began after it.
        if self.pending.front() == Some(&Cmd::Greeting) {
            self.pending.pop_front();
        }
        let (verb, arg) = split_word(line);
        if !is_keyword(verb) {
            cx.posture.anomaly(
                cx.frame,
                "smtp.bad-command",
                format!("not a command: {}", printable(line)),
            );
            self.expect(Cmd::Other, cx);
            return;
        }
        cx.posture.set_cleartext();
        let verb = upper(verb);
        cx.posture.fact("smtp.command", verb.clone());
        match verb.as_str() {
            "EHLO" | "HELO" => {
                cx.posture.fact("smtp.helo", printable(arg));
                self.expect(Cmd::Ehlo, cx);
            }
            "STARTTLS" => {
                cx.posture.fact("smtp.starttls", "requested");
                self.expect(Cmd::StartTls, cx);
                self.client = Client::Hold(Cmd::StartTls);
            }
            "X-ANONYMOUSTLS" => {
                cx.posture.fact("smtp.x-anonymoustls", "requested");
                self.expect(Cmd::AnonymousTls, cx);
                self.client = Client::Hold(Cmd::AnonymousTls);
            }
            "AUTH" | "X-EXPS" => {
                let carrier = if verb == "AUTH" {
                    SaslCarrier::Smtp
                } else {
                    SaslCarrier::SmtpExps
                };
                let (mech, initial) = split_word(arg);
                let mut sasl = Sasl::start(carrier, mech, cx);
                if !initial.is_empty() {
                    sasl.client(initial, cx);
                }
                self.sasl = Some(sasl);
                self.expect(Cmd::Auth, cx);
            }
            "DATA" if !self.server_seen => {
                // Client side only: the message follows as if the 354 had been seen.
                cx.posture.fact("smtp.capture", "client-side-only");
                self.client = Client::Content(DotBody::default());
            }
            "DATA" => {
                self.expect(Cmd::Data, cx);
                self.client = Client::Hold(Cmd::Data);
            }
            "BDAT" | "XEXCH50" => {
                let (size, _) = split_word(arg);
                let size = std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok());
                match (size, verb.as_str()) {
                    (None, _) => {
                        cx.posture.anomaly(
                            cx.frame,
                            "smtp.bad-chunk-size",
                            format!("{verb} without a decimal size: {}", printable(arg)),
                        );
                        self.expect(Cmd::Other, cx);
                    }
                    (Some(n), "BDAT") => {
                        self.expect(Cmd::Other, cx);
                        if n > 0 {
                            self.client = Client::Skip(n, false);
                        }
                    }
                    (Some(n), _) => {
                        self.expect(Cmd::Xexch50(n), cx);
                        self.client = Client::Hold(Cmd::Xexch50(n));
                    }
                }
            }
            _ => self.expect(Cmd::Other, cx),
        }
    }

    fn reply(&mut self, line: &[u8], cx: &mut Ctx) {
        let Some(r) = parse_reply(line) else {
            cx.posture.anomaly(
                cx.frame,
                "smtp.bad-reply",
                format!("not a reply: {}", printable(line)),
            );
            return;
        };
        cx.posture.set_cleartext();
        let first = std::mem::replace(&mut self.reply_start, r.last);
        let Some(&cmd) = self.pending.front() else {
            if first {
                cx.posture.anomaly(
                    cx.frame,
                    "smtp.unexpected-reply",
                    format!("reply {} with no command waiting", r.code),
                );
            }
            return;
        };
        match cmd {
            Cmd::Greeting if first => self.banner(r.text, cx),
            Cmd::Ehlo if !first && r.code == 250 => ehlo_keyword(r.text, cx),
            Cmd::Auth if r.code == 334 => {
                if let Some(sasl) = self.sasl.as_mut() {
                    sasl.server(r.text, cx);
                }
                // The exchange goes on: the command keeps waiting for its final reply.
                return;
            }
            _ => {}
        }
        if !r.last {
            return;
        }
        self.pending.pop_front();
        let ok = (200..300).contains(&r.code);
        match cmd {
            Cmd::StartTls | Cmd::AnonymousTls => {
                let key = if cmd == Cmd::StartTls {
                    "smtp.starttls"
                } else {
                    "smtp.x-anonymoustls"
                };
                if r.code == 220 {
                    cx.posture.fact(key, "accepted");
                    self.start_tls(if cmd == Cmd::StartTls {
                        "starttls"
                    } else {
                        "x-anonymoustls"
                    });
                } else {
                    cx.posture.fact(key, format!("refused:{}", r.code));
                    self.release();
                }
            }
            Cmd::Auth => {
                let result = if ok {
                    "success".to_string()
                } else {
                    format!("failure:{}", r.code)
                };
                cx.posture.fact("smtp.auth-result", result);
                if let Some(sasl) = self.sasl.take() {
                    sasl.end(cx);
                }
            }
            Cmd::Data if r.code == 354 => {
                if let Client::Hold(Cmd::Data) = self.client {
                    self.client = Client::Content(DotBody::default());
                    self.pump = true;
                }
            }
            Cmd::Xexch50(n) if r.code == 354 => {
                if let Client::Hold(Cmd::Xexch50(_)) = self.client {
                    self.client = Client::Skip(n, true);
                    self.pump = true;
                }
            }
            Cmd::Data | Cmd::Xexch50(_) => self.release(),
            Cmd::DataEnd => {
                let v = if ok { "accepted" } else { "rejected" };
                cx.posture.fact("smtp.message", v);
            }
            Cmd::Greeting | Cmd::Ehlo | Cmd::Other => {}
        }
    }

    /// A refused STARTTLS / DATA / XEXCH50: the held bytes are commands again.
    fn release(&mut self) {
        if let Client::Hold(_) = self.client {
            self.client = Client::Commands;
            self.pump = true;
        }
    }

    fn banner(&mut self, text: &[u8], cx: &mut Ctx) {
        cx.posture.fact("smtp.banner", printable(text));
        let has = |needle: &[u8]| memchr::memmem::find(text, needle).is_some();
        if has(b"Version: 6.0.3790") {
            cx.posture.fact("smtp.server-software", "exchange-2003");
        } else if has(b"Microsoft ESMTP MAIL Service ready at") {
            cx.posture.fact("smtp.server-software", "exchange-2007");
        }
    }
}

/// One line of an EHLO reply after the first: `KEYWORD [params]` (RFC 5321 4.1.1.1), or the
/// obsolete `AUTH=LOGIN` form some servers still send.
fn ehlo_keyword(text: &[u8], cx: &mut Ctx) {
    let (word, params) = split_word(text);
    let (word, params) = match word.iter().position(|&b| b == b'=') {
        Some(eq) if params.is_empty() => (
            word.get(..eq).unwrap_or_default(),
            word.get(eq + 1..).unwrap_or_default(),
        ),
        _ => (word, params),
    };
    if !is_keyword(word) {
        cx.posture
            .anomaly(cx.frame, "smtp.bad-ehlo-keyword", printable(text));
        return;
    }
    let word = upper(word);
    let per_mechanism = match word.as_str() {
        "STARTTLS" => {
            cx.posture.fact("smtp.starttls", "offered");
            None
        }
        "X-ANONYMOUSTLS" => {
            cx.posture.fact("smtp.x-anonymoustls", "offered");
            None
        }
        "AUTH" => Some("smtp.auth-offered"),
        "X-EXPS" => Some("smtp.exps-offered"),
        _ => None,
    };
    if let Some(key) = per_mechanism {
        for mech in params.split(|&b| b == b' ').filter(|m| is_keyword(m)) {
            cx.posture.fact(key, upper(mech));
        }
    }
    cx.posture.fact("smtp.extension", word);
}

impl Analyzer for SmtpAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        if !self.started {
            self.started = true;
            cx.posture.protocol = Some("smtp");
        }
        if dir == Direction::ToClient && !data.is_empty() {
            self.server_seen = true;
        }
        let mut next = self.feed(dir, data, cx);
        // A reply released bytes the other direction held back: parse them now.
        while next == Next::Continue && std::mem::take(&mut self.pump) {
            next = self.feed(dir.flip(), &[], cx);
            if next == Next::Continue {
                next = self.feed(dir, &[], cx);
            }
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
mod one_sided_tests {
    use super::*;
    use crate::model::Posture;

    /// zeek/smtp-one-side-only.pcap: only the client's half was captured; the second
    /// message and QUIT after the first DATA must still be read.
    #[test]
    fn client_side_only_capture_reads_past_data() {
        let mut p = Posture::default();
        let mut a = SmtpAnalyzer::new();
        let mut cx = Ctx {
            limits: &crate::limits::ProtoLimits::DEFAULT,
            frame: 1,
            ts_ns: 0,
            client_port: 50000,
            server_port: 25,
            posture: &mut p,
        };
        let client = b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nMAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nDATA\r\nyo\r\n.\r\nQUIT\r\n";
        a.data(Direction::ToServer, client, &mut cx);
        a.finish(&mut cx);
        assert!(p.has_fact("smtp.command", "QUIT"), "{:?}", p.facts);
        assert!(p.has_fact("smtp.capture", "client-side-only"));
        assert!(!p.has_fact("smtp.command", "HI"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Encryption, Mechanism};
    use crate::proto::testutil::{
        facts, kinds, ntlm_authenticate, run, tls12_handshake, tls_app_record,
    };
    use base64::Engine as _;
    use Direction::{ToClient as S, ToServer as C};

    fn make() -> Box<dyn Analyzer> {
        (REGISTRATION.make)()
    }

    /// Exchange 2007 banner, EHLO and its multi-line reply (RFC 5321 4.1.1.1).
    const EHLO_EXCHANGE: &[(Direction, &[u8])] = &[
        (S, b"220 hub1.corp.example Microsoft ESMTP MAIL Service ready at Mon, 1 Jan 2007 10:00:00 +0000\r\n"),
        (C, b"EHLO edge1.corp.example\r\n"),
        (
            S,
            b"250-hub1.corp.example Hello [10.0.0.5]\r\n250-SIZE\r\n250-PIPELINING\r\n250-STARTTLS\r\n\
250-X-ANONYMOUSTLS\r\n250-AUTH NTLM LOGIN\r\n250-X-EXPS GSSAPI NTLM\r\n250-XEXCH50\r\n250 CHUNKING\r\n",
        ),
    ];

    fn with(extra: &[(Direction, &'static [u8])]) -> Vec<(Direction, &'static [u8])> {
        let mut v: Vec<(Direction, &'static [u8])> = EHLO_EXCHANGE.to_vec();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn banner_and_ehlo_keywords() {
        let p = run(make, EHLO_EXCHANGE);
        assert_eq!(p.protocol, Some("smtp"));
        assert_eq!(p.encryption, Encryption::None);
        assert_eq!(facts(&p, "smtp.server-software"), ["exchange-2007"]);
        assert_eq!(facts(&p, "smtp.helo"), ["edge1.corp.example"]);
        let ext = facts(&p, "smtp.extension");
        for k in [
            "STARTTLS",
            "X-ANONYMOUSTLS",
            "AUTH",
            "X-EXPS",
            "XEXCH50",
            "CHUNKING",
            "PIPELINING",
        ] {
            assert!(ext.iter().any(|e| e == k), "{k} in {ext:?}");
        }
        // The first reply line is the server's greeting, not a keyword.
        assert!(!ext.iter().any(|e| e.starts_with("HUB1")));
        assert_eq!(facts(&p, "smtp.auth-offered"), ["LOGIN", "NTLM"]);
        assert_eq!(facts(&p, "smtp.exps-offered"), ["GSSAPI", "NTLM"]);
        assert_eq!(facts(&p, "smtp.starttls"), ["offered"]);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn exchange_2003_banner_and_old_auth_form() {
        let p = run(
            make,
            &[
                (S, b"220 mail.example Microsoft ESMTP MAIL Service, Version: 6.0.3790.3959 ready at x\r\n"),
                (C, b"EHLO a\r\n"),
                (S, b"250-mail.example Hello\r\n250-AUTH=LOGIN\r\n250 OK\r\n"),
            ],
        );
        assert_eq!(facts(&p, "smtp.server-software"), ["exchange-2003"]);
        assert_eq!(facts(&p, "smtp.auth-offered"), ["LOGIN"]);
    }

    #[test]
    fn auth_login_with_prompts_is_a_cleartext_secret() {
        let p = run(
            make,
            &with(&[
                (C, b"AUTH LOGIN\r\n"),
                (S, b"334 VXNlcm5hbWU6\r\n"), // "Username:"
                (C, b"am9obg==\r\n"),         // "john"
                (S, b"334 UGFzc3dvcmQ6\r\n"), // "Password:"
                (C, b"czNjcjN0\r\n"),         // "s3cr3t", frame 8
                (S, b"235 2.7.0 Authentication successful\r\n"),
            ]),
        );
        assert_eq!(p.auth.len(), 1);
        let ev = &p.auth[0];
        assert_eq!(ev.mechanism, Mechanism::Login);
        assert_eq!(ev.user.as_deref(), Some("john"));
        assert!(ev.cleartext);
        assert_eq!(
            ev.secret.as_ref().map(|s| s.redacted()),
            Some("s***".to_string())
        );
        assert_eq!(ev.secret.as_ref().map(|s| s.0.as_str()), Some("s3cr3t"));
        assert_eq!(ev.frame, 8);
        assert_eq!(ev.context, "SMTP AUTH LOGIN");
        assert_eq!(facts(&p, "smtp.auth-result"), ["success"]);
    }

    #[test]
    fn auth_login_with_initial_response() {
        let p = run(
            make,
            &with(&[
                (C, b"AUTH LOGIN am9obg==\r\n"),
                (S, b"334 UGFzc3dvcmQ6\r\n"),
                (C, b"cHc=\r\n"),
                (S, b"535 5.7.3 Authentication unsuccessful\r\n"),
            ]),
        );
        assert_eq!(p.auth[0].user.as_deref(), Some("john"));
        assert_eq!(p.auth[0].secret.as_ref().map(|s| s.0.as_str()), Some("pw"));
        assert_eq!(facts(&p, "smtp.auth-result"), ["failure:535"]);
    }

    #[test]
    fn auth_plain_initial_and_after_prompt() {
        // "\0john\0pw" and "admin\0john\0pw2"
        let p = run(
            make,
            &with(&[
                (C, b"AUTH PLAIN AGpvaG4AcHc=\r\n"),
                (S, b"235 ok\r\n"),
                (C, b"AUTH PLAIN\r\n"),
                (S, b"334 \r\n"),
                (C, b"YWRtaW4Aam9obgBwdzI=\r\n"),
                (S, b"235 ok\r\n"),
            ]),
        );
        let secrets: Vec<_> = p
            .auth
            .iter()
            .map(|e| (e.mechanism.clone(), e.secret.clone().map(|s| s.0)))
            .collect();
        assert_eq!(
            secrets,
            [
                (Mechanism::Plain, Some("pw".into())),
                (Mechanism::Plain, Some("pw2".into()))
            ]
        );
        assert!(p
            .auth
            .iter()
            .all(|e| e.user.as_deref() == Some("john") && e.cleartext));
    }

    #[test]
    fn cram_md5_shows_the_user_but_no_secret() {
        let p = run(
            make,
            &with(&[
                (C, b"AUTH CRAM-MD5\r\n"),
                (
                    S,
                    b"334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
                ),
                // "tim b913a602c7eda7a495b4e6e7334d3890" (RFC 2195)
                (C, b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"),
                (S, b"235 ok\r\n"),
            ]),
        );
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::CramMd5);
        assert_eq!(p.auth[0].user.as_deref(), Some("tim"));
        assert!(!p.auth[0].cleartext && p.auth[0].secret.is_none());
    }

    #[test]
    fn ntlm_tokens_go_to_inspect_token_with_the_carrier_context() {
        let tok = base64::engine::general_purpose::STANDARD.encode(ntlm_authenticate());
        let auth_line: &'static [u8] = format!("AUTH NTLM {tok}\r\n").into_bytes().leak();
        let exps_line: &'static [u8] = format!("{tok}\r\n").into_bytes().leak();
        let p = run(
            make,
            &with(&[
                (C, b"AUTH NTLM\r\n"),
                (S, b"334 NTLM supported\r\n"), // Exchange's non-base64 prompt: ignored
                (C, exps_line),
                (S, b"235 ok\r\n"),
                (C, b"X-EXPS NTLM\r\n"),
                (S, b"334 \r\n"),
                (C, exps_line),
                (S, b"235 ok\r\n"),
                (C, auth_line),
                (S, b"535 no\r\n"),
            ]),
        );
        let ctx: Vec<_> = p
            .auth
            .iter()
            .map(|e| (e.context.as_str(), e.mechanism.is_ntlm()))
            .collect();
        // Three exchanges (the last one failed, but its token was on the wire).
        assert_eq!(
            ctx,
            [
                ("SMTP AUTH", true),
                ("SMTP X-EXPS", true),
                ("SMTP AUTH", true)
            ]
        );
        assert!(p.auth.iter().all(|e| !e.cleartext));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn starttls_hides_the_later_login() {
        let mut script = with(&[
            (C, b"STARTTLS\r\n"),
            (S, b"220 2.0.0 SMTP server ready\r\n"),
        ]);
        // A TLS handshake (frames 6 to 9), then records that would look like a login if
        // they were read as SMTP.
        script.extend(tls12_handshake());
        script.push((C, tls_app_record(b"AUTH PLAIN AGpvaG4AcHc=\r\n")));
        script.push((S, tls_app_record(b"235 ok\r\n")));
        let p = run(make, &script);
        assert!(p.auth.is_empty());
        assert_eq!(
            facts(&p, "smtp.starttls"),
            ["accepted", "offered", "requested"]
        );
        assert_eq!(facts(&p, "smtp.command"), ["EHLO", "STARTTLS"]);
        assert_eq!(
            p.tls.as_ref().map(|t| t.started_by.as_str()),
            Some("starttls")
        );
        assert_eq!(p.encryption, Encryption::Tls);
        // The server's ChangeCipherSpec.
        assert_eq!(p.encryption_frame, Some(9));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn x_anonymoustls_hands_over_too() {
        let p = run(
            make,
            &with(&[
                (C, b"X-ANONYMOUSTLS\r\n"),
                (S, b"220 go\r\n"),
                (C, b"\x16\x03\x01"),
            ]),
        );
        assert_eq!(
            facts(&p, "smtp.x-anonymoustls"),
            ["accepted", "offered", "requested"]
        );
        assert_eq!(
            p.tls.as_ref().map(|t| t.started_by.as_str()),
            Some("x-anonymoustls")
        );
    }

    #[test]
    fn refused_starttls_keeps_parsing_commands() {
        let p = run(
            make,
            &with(&[
                (C, b"STARTTLS\r\n"),
                (S, b"454 4.7.0 TLS not available\r\n"),
                (C, b"AUTH PLAIN AGpvaG4AcHc=\r\n"),
                (S, b"235 ok\r\n"),
            ]),
        );
        assert!(facts(&p, "smtp.starttls").contains(&"refused:454".to_string()));
        assert_eq!(p.auth.len(), 1);
        assert!(p.tls.is_none());
        assert_eq!(p.encryption, Encryption::None);
    }

    #[test]
    fn pipelined_commands_and_data_content_is_skipped() {
        let p = run(
            make,
            &with(&[
                (
                    C,
                    b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n",
                ),
                (
                    S,
                    b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go ahead\r\n",
                ),
                // Content: a line that looks like a command, a dot-stuffed line, then the end.
                (
                    C,
                    b"Subject: hi\r\n\r\nAUTH PLAIN AGpvaG4AcHc=\r\n..STARTTLS\r\n.\r\nQUIT\r\n",
                ),
                (S, b"250 2.6.0 queued\r\n221 bye\r\n"),
            ]),
        );
        assert_eq!(
            facts(&p, "smtp.command"),
            ["DATA", "EHLO", "MAIL", "QUIT", "RCPT"]
        );
        assert!(p.auth.is_empty());
        assert_eq!(facts(&p, "smtp.message"), ["accepted"]);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn rejected_data_keeps_the_next_lines_as_commands() {
        let p = run(
            make,
            &with(&[
                (C, b"DATA\r\nQUIT\r\n"),
                (S, b"554 no valid recipients\r\n221 bye\r\n"),
            ]),
        );
        assert!(facts(&p, "smtp.command").contains(&"QUIT".to_string()));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn bdat_and_xexch50_payloads_are_not_commands() {
        let p = run(
            make,
            &with(&[
                // BDAT 11: the 11 bytes "EHLO evil\r\n" are content.
                (C, b"BDAT 11 LAST\r\nEHLO evil\r\n"),
                (S, b"250 ok\r\n"),
                (C, b"XEXCH50 6 2\r\n"),
                (S, b"354 Send binary data\r\n"),
                (C, b"QUIT\r\nNOOP\r\n"),
                (S, b"250 ok\r\n250 ok\r\n"),
            ]),
        );
        assert_eq!(facts(&p, "smtp.helo"), ["edge1.corp.example"]);
        assert_eq!(
            facts(&p, "smtp.command"),
            ["BDAT", "EHLO", "NOOP", "XEXCH50"]
        );
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn malformed_input_gives_named_anomalies() {
        let long: &'static [u8] = [b'A'; MAX_LINE + 10].as_slice().to_vec().leak();
        let p = run(
            make,
            &with(&[
                (C, long),
                (C, b"\r\nAUTH LOGIN\r\n"),
                (S, b"334 VXNlcm5hbWU6\r\n"),
                (C, b"!!!notbase64\r\n"),
                (C, b"*\r\n"),
                (S, b"501 cancelled\r\nhello\r\n"),
                (C, b"BDAT lots\r\n\x00\x01\r\n"),
            ]),
        );
        assert_eq!(
            kinds(&p),
            [
                "smtp.line-too-long",
                "smtp.bad-base64",
                "smtp.bad-reply",
                "smtp.bad-chunk-size",
                "smtp.bad-command"
            ]
        );
        // The cancelled LOGIN is still an (unsuccessful, secret-less) attempt.
        assert_eq!(p.auth.len(), 1);
        assert!(!p.auth[0].cleartext);
    }

    #[test]
    fn garbage_never_panics() {
        let mut junk = Vec::new();
        for i in 0..4096u32 {
            junk.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
        }
        let junk: &'static [u8] = junk.leak();
        let _ = run(make, &[(S, junk), (C, junk), (S, b"220-"), (C, junk)]);
    }

    #[test]
    fn probe_recognises_banners_and_greetings() {
        assert_eq!(probe(S, b"220 mx ESMTP", 40000, 2525), Probe::Certain);
        assert_eq!(probe(S, b"220-mx", 40000, 2525), Probe::Certain);
        assert_eq!(probe(C, b"ehlo x\r\n", 40000, 2525), Probe::Certain);
        assert_eq!(
            probe(S, b"220 ProFTPD Server ready\r\n", 40000, 21),
            Probe::No
        );
        assert_eq!(probe(S, b"SSH-2.0", 40000, 25), Probe::Unsure);
        assert_eq!(probe(S, b"SSH-2.0", 40000, 22), Probe::No);
    }
}
