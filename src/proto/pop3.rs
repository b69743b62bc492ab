//! POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and SASL AUTH (RFC 5034).
//!
//! Guarantees: responses are matched to commands in order (pipelining allowed); the
//! multi-line responses of RETR, TOP, LIST and UIDL are skipped without being parsed as
//! responses; USER/PASS is recorded as a cleartext secret, APOP as the user only (its
//! digest is not reusable), AUTH PLAIN / LOGIN are decoded, NTLM / GSSAPI tokens go to
//! `inspect_token`; after STLS answered `+OK` every later byte goes to the TLS analyzer.
//! Memory per flow is bounded by [`MAX_LINE`] per direction and the `--max-transactions`
//! cap on queued commands.

use crate::model::{AuthEvent, Direction, Mechanism, Secret};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration, StreamBuf};
use crate::proto::auth::finish_auth;
use crate::proto::text::{
    drive, is_keyword, printable, split_word, upper, DotBody, Drive, LineStep, Lines, Sasl,
    SaslCarrier, Step,
};
use crate::proto::tls::TlsAnalyzer;
use std::collections::VecDeque;

/// Longest command or response line, CRLF included. RFC 1939 3 allows 512 octets for
/// responses, RFC 5034 4 lifts it for AUTH lines (base64 Kerberos tickets, up to 48 KiB
/// once encoded).
pub const MAX_LINE: usize = 64 * 1024;

pub const REGISTRATION: Registration = Registration {
    name: "pop3",
    tcp: true,
    ports: &[110],
    probe,
    make: || Box::new(Pop3Analyzer::new()),
};

/// Certain on a `+OK` greeting or a client `USER ` / `CAPA`; Unsure on port 110.
pub fn probe(dir: Direction, prefix: &[u8], _client_port: u16, server_port: u16) -> Probe {
    let starts = |p: &[u8]| {
        prefix
            .get(..p.len())
            .is_some_and(|v| v.eq_ignore_ascii_case(p))
    };
    let certain = match dir {
        Direction::ToClient => prefix.starts_with(b"+OK"),
        Direction::ToServer => starts(b"USER ") || starts(b"CAPA\r\n") || starts(b"CAPA\n"),
    };
    if certain {
        Probe::Certain
    } else if server_port == 110 {
        Probe::Unsure
    } else {
        Probe::No
    }
}

/// A command waiting for its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Greeting,
    Pass,
    Apop,
    Auth,
    /// AUTH without a mechanism: a multi-line list of mechanisms follows `+OK`.
    AuthList,
    Stls,
    Capa,
    /// RETR, TOP, LIST / UIDL without argument: a multi-line body follows `+OK`.
    MultiLine,
    Other,
}

/// What the server's next bytes are.
#[derive(Clone, Copy, Debug)]
enum Server {
    Responses,
    /// Lines of a CAPA (or AUTH) listing, up to the `.` line.
    Listing(Cmd),
    /// A message or listing to skip, up to the `.` line.
    Body(DotBody),
}

pub struct Pop3Analyzer {
    bufs: [StreamBuf; 2],
    lines: [Lines; 2],
    server: Server,
    /// The client sent STLS and must wait for the response.
    client_held: bool,
    pending: VecDeque<Cmd>,
    user: Option<String>,
    sasl: Option<Sasl>,
    tls: Option<TlsAnalyzer>,
    pump: bool,
    started: bool,
}

impl Default for Pop3Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pop3Analyzer {
    pub fn new() -> Self {
        Pop3Analyzer {
            bufs: [StreamBuf::new(MAX_LINE), StreamBuf::new(MAX_LINE)],
            lines: [Lines::new(MAX_LINE); 2],
            server: Server::Responses,
            client_held: false,
            pending: VecDeque::from([Cmd::Greeting]),
            user: None,
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
                    "pop3.buffer-full",
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
        if dir == Direction::ToServer && self.client_held {
            if input.len() < MAX_LINE {
                return Step::NeedMore;
            }
            cx.posture.anomaly(
                cx.frame,
                "pop3.client-ran-ahead",
                format!("{MAX_LINE} bytes sent before the response to STLS; assumed accepted"),
            );
            self.client_held = false;
            self.tls = Some(TlsAnalyzer::new("stls"));
            return self.step(dir, input, cx);
        }
        if dir == Direction::ToClient {
            if let Server::Body(mut body) = self.server {
                let Some((n, ended)) = body.step(input) else {
                    return Step::NeedMore;
                };
                self.server = if ended {
                    Server::Responses
                } else {
                    Server::Body(body)
                };
                return Step::Consumed(n);
            }
        }
        match self.lines[dir.index()].next(input) {
            LineStep::NeedMore => Step::NeedMore,
            LineStep::Skip(n) => Step::Consumed(n),
            LineStep::TooLong(n) => {
                cx.posture.anomaly(
                    cx.frame,
                    "pop3.line-too-long",
                    format!("line longer than {MAX_LINE} bytes skipped"),
                );
                Step::Consumed(n)
            }
            LineStep::Line(line, n) => {
                match dir {
                    Direction::ToServer => self.command(line, cx),
                    Direction::ToClient => self.response(line, cx),
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

    fn expect(&mut self, cmd: Cmd, cx: &mut Ctx) {
        if self.pending.len() >= cx.limits.transactions {
            cx.posture.anomaly(
                cx.frame,
                "pop3.too-many-pending",
                format!(
                    "more than {} commands without a response",
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
        if self.pending.front() == Some(&Cmd::Greeting) {
            self.pending.pop_front();
        }
        let (verb, arg) = split_word(line);
        if !is_keyword(verb) {
            cx.posture.anomaly(
                cx.frame,
                "pop3.bad-command",
                format!("not a command: {}", printable(line)),
            );
            self.expect(Cmd::Other, cx);
            return;
        }
        cx.posture.set_cleartext();
        let verb = upper(verb);
        cx.posture.fact("pop3.command", verb.clone());
        let cmd = match verb.as_str() {
            "USER" => {
                self.user = Some(printable(arg).into_owned());
                Cmd::Other
            }
            "PASS" => {
                // RFC 1939 7: the password is the rest of the line, spaces included.
                let pass = line.get(5..).unwrap_or_default();
                cx.posture.add_auth(AuthEvent {
                    mechanism: Mechanism::UserPass,
                    user: self.user.clone(),
                    cleartext: true,
                    secret: Some(Secret(String::from_utf8_lossy(pass).into_owned())),
                    frame: cx.frame,
                    context: "POP3 USER/PASS".into(),
                    after_tls: false,
                });
                Cmd::Pass
            }
            "APOP" => {
                let (name, _digest) = split_word(arg);
                cx.posture.add_auth(AuthEvent {
                    mechanism: Mechanism::Apop,
                    user: Some(printable(name).into_owned()),
                    cleartext: false,
                    secret: None,
                    frame: cx.frame,
                    context: "POP3 APOP".into(),
                    after_tls: false,
                });
                Cmd::Apop
            }
            "AUTH" if arg.is_empty() => Cmd::AuthList,
            "AUTH" => {
                let (mech, initial) = split_word(arg);
                let mut sasl = Sasl::start(SaslCarrier::Pop3, mech, cx);
                if !initial.is_empty() {
                    sasl.client(initial, cx);
                }
                self.sasl = Some(sasl);
                Cmd::Auth
            }
            "STLS" => {
                cx.posture.fact("pop3.stls", "requested");
                self.client_held = true;
                Cmd::Stls
            }
            "CAPA" => Cmd::Capa,
            "RETR" | "TOP" => Cmd::MultiLine,
            "LIST" | "UIDL" if arg.is_empty() => Cmd::MultiLine,
            _ => Cmd::Other,
        };
        self.expect(cmd, cx);
    }

    fn response(&mut self, line: &[u8], cx: &mut Ctx) {
        if let Server::Listing(cmd) = self.server {
            if line == b"." {
                self.server = Server::Responses;
            } else {
                listing_line(cmd, line, cx);
            }
            return;
        }
        let (status, text) = split_word(line);
        let ok = match status {
            b"+OK" => true,
            b"-ERR" => false,
            b"+" => {
                // SASL continuation (RFC 5034 4): a base64 challenge.
                match (self.pending.front(), self.sasl.as_mut()) {
                    (Some(Cmd::Auth), Some(sasl)) => sasl.server(text, cx),
                    _ => cx.posture.anomaly(
                        cx.frame,
                        "pop3.unexpected-continuation",
                        "'+' continuation outside AUTH",
                    ),
                }
                return;
            }
            _ => {
                cx.posture.anomaly(
                    cx.frame,
                    "pop3.bad-response",
                    format!("not a response: {}", printable(line)),
                );
                return;
            }
        };
        cx.posture.set_cleartext();
        let Some(cmd) = self.pending.pop_front() else {
            cx.posture.anomaly(
                cx.frame,
                "pop3.unexpected-response",
                "response with no command waiting",
            );
            return;
        };
        let result = || if ok { "success" } else { "failure" };
        match cmd {
            Cmd::Greeting => cx.posture.fact("pop3.banner", printable(text)),
            Cmd::Pass | Cmd::Apop => cx.posture.fact("pop3.auth-result", result()),
            Cmd::Auth => {
                cx.posture.fact("pop3.auth-result", result());
                if let Some(sasl) = self.sasl.take() {
                    sasl.end(cx);
                }
            }
            Cmd::Stls => {
                self.client_held = false;
                self.pump = true;
                if ok {
                    cx.posture.fact("pop3.stls", "accepted");
                    self.tls = Some(TlsAnalyzer::new("stls"));
                } else {
                    cx.posture.fact("pop3.stls", "refused");
                }
            }
            Cmd::Capa | Cmd::AuthList if ok => self.server = Server::Listing(cmd),
            Cmd::MultiLine if ok => self.server = Server::Body(DotBody::default()),
            Cmd::Capa | Cmd::AuthList | Cmd::MultiLine | Cmd::Other => {}
        }
    }
}

/// One line of a CAPA listing (RFC 2449 6) or of an AUTH mechanism listing.
fn listing_line(cmd: Cmd, line: &[u8], cx: &mut Ctx) {
    let (word, params) = split_word(line);
    if !is_keyword(word) {
        cx.posture
            .anomaly(cx.frame, "pop3.bad-capability", printable(line));
        return;
    }
    if cmd == Cmd::AuthList {
        cx.posture.fact("pop3.auth-offered", upper(word));
        return;
    }
    let word = upper(word);
    match word.as_str() {
        "STLS" => cx.posture.fact("pop3.stls", "offered"),
        "SASL" => {
            for mech in params.split(|&b| b == b' ').filter(|m| is_keyword(m)) {
                cx.posture.fact("pop3.auth-offered", upper(mech));
            }
        }
        _ => {}
    }
    cx.posture.fact("pop3.capability", word);
}

impl Analyzer for Pop3Analyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        if !self.started {
            self.started = true;
            cx.posture.protocol = Some("pop3");
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

    const CAPA: &[(Direction, &[u8])] = &[
        (
            S,
            b"+OK Microsoft Exchange Server 2007 POP3 service ready\r\n",
        ),
        (C, b"CAPA\r\n"),
        (
            S,
            b"+OK\r\nTOP\r\nUIDL\r\nSASL NTLM GSSAPI PLAIN\r\nUSER\r\nSTLS\r\n.\r\n",
        ),
    ];

    fn with(extra: &[(Direction, &'static [u8])]) -> Vec<(Direction, &'static [u8])> {
        let mut v: Vec<(Direction, &'static [u8])> = CAPA.to_vec();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn banner_and_capa_listing() {
        let p = run(make, CAPA);
        assert_eq!(p.protocol, Some("pop3"));
        assert_eq!(p.encryption, Encryption::None);
        assert_eq!(
            facts(&p, "pop3.banner"),
            ["Microsoft Exchange Server 2007 POP3 service ready"]
        );
        assert_eq!(
            facts(&p, "pop3.capability"),
            ["SASL", "STLS", "TOP", "UIDL", "USER"]
        );
        assert_eq!(facts(&p, "pop3.auth-offered"), ["GSSAPI", "NTLM", "PLAIN"]);
        assert_eq!(facts(&p, "pop3.stls"), ["offered"]);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn user_pass_is_a_cleartext_secret() {
        let p = run(
            make,
            &with(&[
                (C, b"USER john\r\n"),
                (S, b"+OK\r\n"),
                (C, b"PASS pass word\r\n"), // frame 6; spaces belong to the password
                (S, b"-ERR Logon failure\r\n"),
            ]),
        );
        assert_eq!(p.auth.len(), 1);
        let ev = &p.auth[0];
        assert_eq!(
            (ev.mechanism.clone(), ev.user.as_deref()),
            (Mechanism::UserPass, Some("john"))
        );
        assert!(ev.cleartext);
        assert_eq!(ev.secret.as_ref().map(|s| s.0.as_str()), Some("pass word"));
        assert_eq!(ev.frame, 6);
        assert_eq!(facts(&p, "pop3.auth-result"), ["failure"]);
    }

    #[test]
    fn apop_shows_user_only() {
        let p = run(
            make,
            &[
                (
                    S,
                    b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
                ),
                (C, b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
                (S, b"+OK maildrop has 1 message\r\n"),
            ],
        );
        assert_eq!(p.auth[0].mechanism, Mechanism::Apop);
        assert_eq!(p.auth[0].user.as_deref(), Some("mrose"));
        assert!(!p.auth[0].cleartext && p.auth[0].secret.is_none());
        assert_eq!(facts(&p, "pop3.auth-result"), ["success"]);
    }

    #[test]
    fn auth_plain_login_and_ntlm() {
        let tok = base64::engine::general_purpose::STANDARD.encode(ntlm_authenticate());
        let tok: &'static [u8] = format!("{tok}\r\n").into_bytes().leak();
        let p = run(
            make,
            &with(&[
                (C, b"AUTH PLAIN\r\n"),
                (S, b"+ \r\n"),
                (C, b"AGpvaG4AcHc=\r\n"), // "\0john\0pw"
                (S, b"+OK\r\n"),
                (C, b"AUTH LOGIN am9obg==\r\n"),
                (S, b"+ UGFzc3dvcmQ6\r\n"),
                (C, b"cHc=\r\n"),
                (S, b"+OK\r\n"),
                (C, b"AUTH NTLM\r\n"),
                (S, b"+ \r\n"),
                (C, tok),
                (S, b"+OK\r\n"),
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
                (Mechanism::Plain, "POP3 AUTH PLAIN"),
                (Mechanism::Login, "POP3 AUTH LOGIN"),
                (Mechanism::Ntlmv2, "POP3 AUTH"),
            ]
        );
        assert!(p.auth[..2]
            .iter()
            .all(|e| e.cleartext && e.user.as_deref() == Some("john")));
    }

    #[test]
    fn stls_hides_the_later_login() {
        let mut script = with(&[(C, b"STLS\r\n"), (S, b"+OK Begin TLS negotiation\r\n")]);
        // A TLS handshake, then a record that would look like a login if read as POP3.
        script.extend(tls12_handshake());
        script.push((C, tls_app_record(b"USER john\r\nPASS pw\r\n")));
        let p = run(make, &script);
        assert!(p.auth.is_empty());
        assert_eq!(facts(&p, "pop3.stls"), ["accepted", "offered", "requested"]);
        assert_eq!(p.tls.as_ref().map(|t| t.started_by.as_str()), Some("stls"));
        assert_eq!(p.encryption, Encryption::Tls);
    }

    #[test]
    fn retr_body_is_skipped() {
        let p = run(
            make,
            &with(&[
                (C, b"RETR 1\r\nLIST\r\nQUIT\r\n"),
                (S, b"+OK 120 octets\r\nSubject: x\r\n\r\n-ERR looks like a response\r\n..\r\n.\r\n"),
                (S, b"+OK\r\n1 120\r\n.\r\n+OK bye\r\n"),
            ]),
        );
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert_eq!(facts(&p, "pop3.command"), ["CAPA", "LIST", "QUIT", "RETR"]);
    }

    #[test]
    fn malformed_input_gives_named_anomalies() {
        let p = run(
            make,
            &with(&[
                (C, b"AUTH LOGIN\r\n"),
                (S, b"+ VXNlcm5hbWU6\r\n"),
                (C, b"%%%\r\n"),
                (C, b"*\r\n"),
                (S, b"-ERR cancelled\r\n* junk\r\n+OK\r\n"),
            ]),
        );
        assert_eq!(
            kinds(&p),
            [
                "pop3.bad-base64",
                "pop3.bad-response",
                "pop3.unexpected-response"
            ]
        );
    }

    #[test]
    fn probe_recognises_greeting_and_commands() {
        assert_eq!(probe(S, b"+OK ready", 4000, 1110), Probe::Certain);
        assert_eq!(probe(C, b"capa\r\n", 4000, 1110), Probe::Certain);
        assert_eq!(probe(C, b"GET / HTTP/1.1", 4000, 1110), Probe::No);
        assert_eq!(probe(C, b"xyz", 4000, 110), Probe::Unsure);
    }
}
