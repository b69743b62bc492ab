//! HTTP/1.x (RFC 9112) with authentication (RFC 9110 11, RFC 7617 Basic, RFC 7616 Digest,
//! RFC 4559 Negotiate / NTLM, RFC 6750 Bearer) and the Exchange 2007 endpoints: OWA (with
//! its forms login), EWS, ActiveSync, Autodiscover, OAB, UM, the WebDAV roots and Outlook
//! Anywhere (RPC over HTTP, MS-RPCH).
//!
//! Guarantees: requests and responses are framed exactly as RFC 9112 6.3 says
//! (Content-Length, chunked, no body for HEAD / 1xx / 204 / 304, until close otherwise),
//! over keep-alive and pipelining, whatever the chunking of the stream; header blocks are
//! capped at [`MAX_HEADER`] and an OWA forms body at [`MAX_FORM_BODY`]; credentials that
//! can be replayed (Basic, Bearer, forms) are recorded as cleartext secrets, NTLM and
//! Negotiate tokens of both sides go to `inspect_token`; the bodies of RPC_IN_DATA /
//! RPC_OUT_DATA go to one DCE/RPC analyzer per flow; a CONNECT answered 2xx ends parsing.

use crate::model::{AuthEvent, Direction, Mechanism, Secret};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration, StreamBuf};
use crate::proto::auth::{finish_auth, inspect_token};
use crate::proto::dcerpc::DceRpcAnalyzer;
use crate::proto::text::{b64, drive, is_keyword, printable, Drive, LineStep, Lines, Step};
use std::collections::VecDeque;

/// Largest request or response header block by default (the run's cap is
/// [`crate::limits::ProtoLimits::http_header`]).
pub const MAX_HEADER: usize = crate::limits::DEFAULT_HTTP_HEADER;

/// Largest OWA forms-login body kept. The form has six short fields (destination,
/// flags, trusted, username, password, isUtf8); 16 KiB holds any real one.
pub const MAX_FORM_BODY: usize = 16 * 1024;

/// Longest chunk-size or trailer line (RFC 9112 7.1.1 chunk extensions are short).
pub const MAX_CHUNK_LINE: usize = 4096;

/// Distinct User-Agent / Server values recorded per flow: enough to tell clients apart.
const MAX_AGENTS: usize = 4;

pub const REGISTRATION: Registration = Registration {
    name: "http",
    tcp: true,
    ports: &[80],
    probe,
    make: || Box::new(HttpAnalyzer::new()),
};

/// Request methods recognised by the probe: RFC 9110, WebDAV (RFC 4918, Exchange's B*
/// batch methods, SEARCH, POLL, SUBSCRIBE) and MS-RPCH.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"BPROPFIND",
    b"BPROPPATCH",
    b"BMOVE",
    b"BCOPY",
    b"BDELETE",
    b"POLL",
    b"SUBSCRIBE",
    b"RPC_IN_DATA",
    b"RPC_OUT_DATA",
];

/// Certain on `METHOD SP target SP HTTP/1.x` (a known method) or a `HTTP/1.` status line;
/// Unsure when a known method is followed by a space but the line is not complete yet.
pub fn probe(dir: Direction, prefix: &[u8], _client_port: u16, server_port: u16) -> Probe {
    let verdict = match dir {
        Direction::ToClient if prefix.starts_with(b"HTTP/1.") => Probe::Certain,
        Direction::ToClient => Probe::No,
        Direction::ToServer => {
            let known = METHODS
                .iter()
                .any(|m| prefix.starts_with(m) && prefix.get(m.len()) == Some(&b' '));
            let line = prefix.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let complete = line.len() < prefix.len();
            match (known, complete) {
                (true, true) if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") => {
                    Probe::Certain
                }
                (true, false) => Probe::Unsure,
                _ => Probe::No,
            }
        }
    };
    match verdict {
        Probe::No if server_port == 80 => Probe::Unsure,
        v => v,
    }
}

/// What a request's method means for framing and for the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MethodKind {
    Head,
    Connect,
    /// RPC_IN_DATA / RPC_OUT_DATA: the bodies are DCE/RPC PDUs.
    Rpc,
    Other,
}

/// A request waiting for its response.
#[derive(Clone, Debug)]
struct Pending {
    kind: MethodKind,
    target: String,
}

/// Where a chunked body is.
#[derive(Clone, Copy, Debug)]
enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailer,
}

#[derive(Clone, Copy, Debug)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// What a body's bytes are for.
#[derive(Debug)]
enum Sink {
    Discard,
    /// An OWA forms-login body, kept up to [`MAX_FORM_BODY`].
    Form {
        data: Vec<u8>,
        truncated: bool,
    },
    Rpc,
}

#[derive(Debug)]
enum Side {
    Head,
    Body(Framing, Sink),
    /// The client sent CONNECT: its next bytes are a tunnel if the answer is 2xx.
    Held,
}

pub struct HttpAnalyzer {
    bufs: [StreamBuf; 2],
    sides: [Side; 2],
    chunk_lines: [Lines; 2],
    /// Bytes of the current header block already searched for its end.
    scanned: [usize; 2],
    pending: VecDeque<Pending>,
    rpc: Option<DceRpcAnalyzer>,
    rpc_done: bool,
    /// Body bytes handed to the DCE/RPC analyzer per direction.
    rpc_bytes: [u64; 2],
    pump: bool,
    started: bool,
}

impl Default for HttpAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

/// End of the header block (just past the empty line) if present.
fn header_end(input: &[u8], from: usize) -> Option<usize> {
    for p in memchr::memchr_iter(b'\n', input.get(from..)?) {
        let lf = from + p;
        match (input.get(lf + 1), input.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => {}
        }
    }
    None
}

/// The lines of a header block: start line and fields (obs-fold lines are skipped).
struct Head<'a> {
    start: &'a [u8],
    fields: Vec<(&'a [u8], &'a [u8])>,
    malformed: usize,
}

fn parse_head(block: &[u8]) -> Head<'_> {
    let mut lines = memchr::memchr_iter(b'\n', block)
        .chain(std::iter::once(block.len()))
        .scan(0, |start, end| {
            let line = block.get(*start..end).unwrap_or_default();
            *start = end + 1;
            Some(line.strip_suffix(b"\r").unwrap_or(line))
        });
    let start = lines.next().unwrap_or_default();
    let mut fields = Vec::new();
    let mut malformed = 0;
    for line in lines {
        if line.is_empty() || line.starts_with(b" ") || line.starts_with(b"\t") {
            continue;
        }
        match line.iter().position(|&b| b == b':') {
            Some(c) if c > 0 => {
                let (name, value) = line.split_at(c);
                fields.push((name, value.get(1..).unwrap_or_default().trim_ascii()));
            }
            _ => malformed += 1,
        }
    }
    Head {
        start,
        fields,
        malformed,
    }
}

impl Head<'_> {
    fn get<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Split at the first run of spaces or tabs.
fn split_ws(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => {
            let (a, b) = s.split_at(i);
            (a, b.trim_ascii())
        }
        None => (s, &[]),
    }
}

/// Percent-decoding (RFC 3986 2.1), with `+` as space for form bodies and query strings
/// (WHATWG application/x-www-form-urlencoded). Bad escapes are kept as they are.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                if let (Some(h), Some(l)) = (
                    s.get(i + 1).copied().and_then(hex),
                    s.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// `key=value` pairs of a query string or form body, keys matched case-insensitively.
fn form_value(s: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    s.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (pair.get(..i)?, pair.get(i + 1..)?),
            None => (pair, &[][..]),
        };
        percent_decode(k)
            .eq_ignore_ascii_case(key)
            .then(|| percent_decode(v))
    })
}

/// Value of the auth-param `name` (RFC 9110 11.2): `name=token` or `name="quoted"`.
fn auth_param(params: &[u8], name: &[u8]) -> Option<String> {
    let mut s = params;
    loop {
        s = s.trim_ascii_start();
        while let Some(r) = s.strip_prefix(b",") {
            s = r.trim_ascii_start();
        }
        if s.is_empty() {
            return None;
        }
        let eq = s.iter().position(|&b| b == b'=')?;
        let key = s.get(..eq)?.trim_ascii();
        s = s.get(eq + 1..)?.trim_ascii_start();
        let value = if let Some(q) = s.strip_prefix(b"\"") {
            let mut v = Vec::new();
            let mut i = 0;
            while let Some(&c) = q.get(i) {
                match c {
                    b'\\' => {
                        if let Some(&e) = q.get(i + 1) {
                            v.push(e);
                        }
                        i += 2;
                    }
                    b'"' => break,
                    _ => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            s = q.get(i + 1..).unwrap_or_default();
            v
        } else {
            let end = s.iter().position(|&b| b == b',').unwrap_or(s.len());
            let (v, r) = s.split_at(end);
            s = r;
            v.trim_ascii().to_vec()
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(printable(&value).into_owned());
        }
    }
}

/// Path of a request target in lower case, without query; and the query.
fn path_and_query(target: &[u8]) -> (String, &[u8]) {
    // absolute-form (to a proxy): drop `scheme://authority`.
    let t = match target.windows(3).position(|w| w == b"://") {
        Some(i) if target.first() != Some(&b'/') => {
            let after = target.get(i + 3..).unwrap_or_default();
            after
                .iter()
                .position(|&b| b == b'/')
                .and_then(|p| after.get(p..))
                .unwrap_or(b"/")
        }
        _ => target,
    };
    let (path, query) = match t.iter().position(|&b| b == b'?') {
        Some(q) => (
            t.get(..q).unwrap_or_default(),
            t.get(q + 1..).unwrap_or_default(),
        ),
        None => (t, &[][..]),
    };
    (String::from_utf8_lossy(path).to_ascii_lowercase(), query)
}

/// OWA forms-login endpoints: Exchange 2007 `/owa/auth/owaauth.dll`, Exchange 2003
/// `/exchweb/bin/auth/owaauth.dll`, Exchange 2010 `/owa/auth.owa`.
fn is_forms_login(path: &str) -> bool {
    matches!(
        path,
        "/owa/auth/owaauth.dll" | "/exchweb/bin/auth/owaauth.dll" | "/owa/auth.owa"
    )
}

/// Exchange endpoint named by the first path segment.
fn endpoint(path: &str) -> Option<&'static str> {
    let seg = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    Some(match seg {
        "owa" => "owa",
        "ews" => "ews",
        "microsoft-server-activesync" => "activesync",
        "autodiscover" => "autodiscover",
        "rpc" if path.starts_with("/rpc/rpcproxy.dll") => "outlook-anywhere",
        "oab" => "oab",
        "unifiedmessaging" => "um",
        "exchange" => "webdav-exchange",
        "public" => "webdav-public",
        "exadmin" => "exadmin",
        "exchweb" => "exchweb",
        _ => return None,
    })
}

/// `chunk-size [; ext]` (RFC 9112 7.1): hexadecimal, at most 16 digits.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let digits = line.get(..end)?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// How a message's body is framed (RFC 9112 6.3), from its header fields.
enum Length {
    None,
    Framed(Framing),
    /// Unusable framing: parsing cannot go on.
    Bad(&'static str, String),
}

fn body_length(head: &Head, request: bool, cx: &mut Ctx) -> Length {
    let te: Vec<&[u8]> = head.get(b"transfer-encoding").collect();
    let cl: Vec<&[u8]> = head.get(b"content-length").collect();
    if let Some(last) = te.last() {
        if !cl.is_empty() {
            cx.posture.anomaly(
                cx.frame,
                "http.te-and-cl",
                "both Transfer-Encoding and Content-Length; Transfer-Encoding used",
            );
        }
        let last_coding = last
            .rsplit(|&b| b == b',')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if last_coding.eq_ignore_ascii_case(b"chunked") {
            return Length::Framed(Framing::Chunked(Chunk::Size));
        }
        if request {
            return Length::Bad("http.bad-transfer-encoding", printable(last).into_owned());
        }
        return Length::Framed(Framing::UntilClose);
    }
    let mut value: Option<u64> = None;
    for v in cl.iter().flat_map(|v| v.split(|&b| b == b',')) {
        let v = v.trim_ascii();
        let n = std::str::from_utf8(v)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        match (n, value) {
            (None, _) => return Length::Bad("http.bad-content-length", printable(v).into_owned()),
            (Some(n), Some(prev)) if n != prev => {
                return Length::Bad("http.bad-content-length", format!("{prev} and {n}"))
            }
            (Some(n), _) => value = Some(n),
        }
    }
    match value {
        Some(0) => Length::None,
        Some(n) => Length::Framed(Framing::Length(n)),
        None if request => Length::None,
        None => Length::Framed(Framing::UntilClose),
    }
}

impl HttpAnalyzer {
    pub fn new() -> Self {
        HttpAnalyzer {
            bufs: [StreamBuf::new(MAX_HEADER), StreamBuf::new(MAX_HEADER)],
            sides: [Side::Head, Side::Head],
            chunk_lines: [Lines::new(MAX_CHUNK_LINE); 2],
            scanned: [0, 0],
            pending: VecDeque::new(),
            rpc: None,
            rpc_done: false,
            rpc_bytes: [0, 0],
            pump: false,
            started: false,
        }
    }

    fn feed(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        let i = dir.index();
        let mut buf = std::mem::take(&mut self.bufs[i]);
        buf.cap = cx.limits.http_header;
        let r = drive(&mut buf, data, |input| self.step(dir, input, cx));
        self.bufs[i] = buf;
        match r {
            Drive::Continue => Next::Continue,
            Drive::Stop => Next::Done,
            Drive::Full => {
                cx.posture.anomaly(
                    cx.frame,
                    "http.buffer-full",
                    format!(
                        "parser state needs more than {} bytes",
                        cx.limits.http_header
                    ),
                );
                Next::Done
            }
        }
    }

    fn step(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx) -> Step {
        let i = dir.index();
        match std::mem::replace(&mut self.sides[i], Side::Head) {
            Side::Head => self.head(dir, input, cx),
            Side::Body(framing, sink) => self.body(dir, framing, sink, input, cx),
            Side::Held => {
                if input.len() < cx.limits.http_header {
                    self.sides[i] = Side::Held;
                    return Step::NeedMore;
                }
                cx.posture.anomaly(
                    cx.frame,
                    "http.client-ran-ahead",
                    format!(
                        "{} bytes sent before the answer to CONNECT; assumed a tunnel",
                        cx.limits.http_header
                    ),
                );
                Step::Stop
            }
        }
    }

    /// A header block (request or response), once complete.
    fn head(&mut self, dir: Direction, input: &[u8], cx: &mut Ctx) -> Step {
        let i = dir.index();
        // RFC 9112 2.2: empty lines before a request-line are ignored.
        if input.starts_with(b"\r\n") {
            return Step::Consumed(2);
        }
        if input.starts_with(b"\n") {
            return Step::Consumed(1);
        }
        if input == b"\r" {
            return Step::NeedMore;
        }
        let from = std::mem::take(&mut self.scanned[i]).min(input.len());
        let Some(end) = header_end(input, from.saturating_sub(2)) else {
            let cap = cx.limits.http_header;
            if input.len() >= cap {
                cx.posture.anomaly(
                    cx.frame,
                    "http.header-too-large",
                    format!("header block longer than {cap} bytes; parser stopped"),
                );
                return Step::Stop;
            }
            self.scanned[i] = input.len();
            return Step::NeedMore;
        };
        let cap = cx.limits.http_header;
        if end > cap {
            cx.posture.anomaly(
                cx.frame,
                "http.header-too-large",
                format!("header block of {end} bytes, over {cap}; parser stopped"),
            );
            return Step::Stop;
        }
        let head = parse_head(input.get(..end).unwrap_or_default());
        if head.malformed > 0 {
            cx.posture.anomaly(
                cx.frame,
                "http.bad-header",
                format!("{} header lines without a colon", head.malformed),
            );
        }
        let go_on = match dir {
            Direction::ToServer => self.request(&head, cx),
            Direction::ToClient => self.response(&head, cx),
        };
        if !go_on {
            return Step::Stop;
        }
        if dir == Direction::ToClient
            && std::mem::take(&mut self.pump)
            && self.feed(Direction::ToServer, &[], cx) == Next::Done
        {
            return Step::Stop;
        }
        Step::Consumed(end)
    }

    /// Request line and fields. Returns false when the stream cannot be followed.
    fn request(&mut self, head: &Head, cx: &mut Ctx) -> bool {
        let parts: Vec<&[u8]> = head
            .start
            .split(|&b| b == b' ')
            .filter(|p| !p.is_empty())
            .collect();
        let (Some(&method), Some(&target), Some(&version)) =
            (parts.first(), parts.get(1), parts.last())
        else {
            cx.posture.anomaly(
                cx.frame,
                "http.bad-request-line",
                format!("not a request line: {}", printable(head.start)),
            );
            return false;
        };
        if parts.len() < 3 || !is_keyword(method) || !version.starts_with(b"HTTP/1.") {
            cx.posture.anomaly(
                cx.frame,
                "http.bad-request-line",
                format!("not a request line: {}", printable(head.start)),
            );
            return false;
        }
        if parts.len() > 3 {
            // Seen from proxy-abusing spam tools (`CONNECT host:25 / HTTP/1.0`): framing is
            // still clear, so go on with the first word as the target.
            cx.posture.anomaly(
                cx.frame,
                "http.odd-request-line",
                format!("extra words in the request line: {}", printable(head.start)),
            );
        }
        cx.posture.set_cleartext();
        let method_s = printable(method);
        cx.posture.fact("http.method", method_s.clone());
        let kind = match method {
            b"HEAD" => MethodKind::Head,
            b"CONNECT" => MethodKind::Connect,
            b"RPC_IN_DATA" | b"RPC_OUT_DATA" => MethodKind::Rpc,
            _ => MethodKind::Other,
        };
        for host in head.get(b"host") {
            cx.posture.fact("http.host", printable(host));
        }
        for ua in head.get(b"user-agent") {
            let known = cx
                .posture
                .facts
                .get("http.user-agent")
                .map_or(0, |s| s.len());
            if known < MAX_AGENTS {
                cx.posture.fact("http.user-agent", printable(ua));
            }
        }
        let (path, query) = path_and_query(target);
        if let Some(ep) = endpoint(&path) {
            cx.posture.fact("http.endpoint", ep);
        }
        let forms = method == b"POST" && is_forms_login(&path);
        if forms {
            cx.posture.fact("http.endpoint", "owa-forms-login");
        }
        if path.starts_with("/microsoft-server-activesync") {
            if let Some(user) = form_value(query, b"user") {
                cx.posture.fact("http.activesync-user", printable(&user));
            }
            if let Some(dt) = form_value(query, b"devicetype") {
                cx.posture
                    .fact("http.activesync-device-type", printable(&dt));
            }
        }
        if kind == MethodKind::Rpc && !query.is_empty() {
            cx.posture.fact("http.rpc-proxy-target", printable(query));
        }
        for (name, ctx) in [
            (&b"authorization"[..], "HTTP Authorization"),
            (&b"proxy-authorization"[..], "HTTP Proxy-Authorization"),
        ] {
            for value in head.get(name) {
                authorization(value, ctx, cx);
            }
        }
        let pending = Pending {
            kind,
            target: printable(target).into_owned(),
        };
        if self.pending.len() < cx.limits.transactions {
            self.pending.push_back(pending);
        } else {
            cx.posture.anomaly(
                cx.frame,
                "http.too-many-pending",
                format!(
                    "more than {} requests without a response",
                    cx.limits.transactions
                ),
            );
        }
        let sink = if forms {
            Sink::Form {
                data: Vec::new(),
                truncated: false,
            }
        } else if kind == MethodKind::Rpc {
            Sink::Rpc
        } else {
            Sink::Discard
        };
        let i = Direction::ToServer.index();
        match body_length(head, true, cx) {
            Length::Bad(kind, detail) => {
                cx.posture.anomaly(cx.frame, kind, detail);
                return false;
            }
            Length::Framed(f) => self.sides[i] = Side::Body(f, sink),
            Length::None => {
                self.body_end(sink, cx);
                if kind == MethodKind::Connect {
                    self.sides[i] = Side::Held;
                }
            }
        }
        true
    }

    /// Status line and fields. Returns false when parsing ends (tunnel, upgrade, bad).
    fn response(&mut self, head: &Head, cx: &mut Ctx) -> bool {
        let mut parts = head.start.splitn(3, |&b| b == b' ');
        let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
            cx.posture
                .anomaly(cx.frame, "http.bad-status-line", printable(head.start));
            return false;
        };
        let code = std::str::from_utf8(code)
            .ok()
            .filter(|c| c.len() == 3)
            .and_then(|c| c.parse::<u16>().ok());
        let (true, Some(code)) = (version.starts_with(b"HTTP/1."), code) else {
            cx.posture.anomaly(
                cx.frame,
                "http.bad-status-line",
                format!("not a status line: {}", printable(head.start)),
            );
            return false;
        };
        cx.posture.set_cleartext();
        cx.posture.fact("http.status", code.to_string());
        for server in head.get(b"server") {
            let known = cx.posture.facts.get("http.server").map_or(0, |s| s.len());
            if known < MAX_AGENTS {
                cx.posture.fact("http.server", printable(server));
            }
        }
        for (name, ctx) in [
            (&b"www-authenticate"[..], "HTTP WWW-Authenticate"),
            (&b"proxy-authenticate"[..], "HTTP Proxy-Authenticate"),
        ] {
            for value in head.get(name) {
                challenges(value, ctx, cx);
            }
        }
        if code == 101 {
            cx.posture.fact(
                "http.upgrade",
                head.get(b"upgrade")
                    .next()
                    .map(printable)
                    .unwrap_or_default(),
            );
            return false;
        }
        if (100..200).contains(&code) {
            // Interim response: the request still waits for its final one; no body.
            return true;
        }
        let req = self.pending.pop_front().unwrap_or(Pending {
            kind: MethodKind::Other,
            target: String::new(),
        });
        let success = (200..300).contains(&code);
        let client = Direction::ToServer.index();
        if req.kind == MethodKind::Connect {
            if success {
                cx.posture.fact("http.connect", req.target);
                return false;
            }
            if let Side::Held = self.sides[client] {
                self.sides[client] = Side::Head;
                self.pump = true;
            }
        }
        if req.kind == MethodKind::Head || code == 204 || code == 304 {
            return true;
        }
        let sink = if req.kind == MethodKind::Rpc && success {
            Sink::Rpc
        } else {
            Sink::Discard
        };
        match body_length(head, false, cx) {
            Length::Bad(kind, detail) => {
                cx.posture.anomaly(cx.frame, kind, detail);
                return false;
            }
            Length::Framed(f) => self.sides[Direction::ToClient.index()] = Side::Body(f, sink),
            Length::None => {}
        }
        true
    }

    fn body(
        &mut self,
        dir: Direction,
        mut framing: Framing,
        mut sink: Sink,
        input: &[u8],
        cx: &mut Ctx,
    ) -> Step {
        let i = dir.index();
        let mut ended = false;
        let step = match &mut framing {
            Framing::Length(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                self.sink(dir, &mut sink, input.get(..n).unwrap_or_default(), cx);
                *left -= n as u64;
                ended = *left == 0;
                Step::Consumed(n)
            }
            Framing::UntilClose => {
                self.sink(dir, &mut sink, input, cx);
                Step::Consumed(input.len())
            }
            Framing::Chunked(chunk) => match *chunk {
                Chunk::Size => match self.chunk_lines[i].next(input) {
                    LineStep::NeedMore => Step::NeedMore,
                    LineStep::Line(line, n) => match chunk_size(line) {
                        Some(0) => {
                            *chunk = Chunk::Trailer;
                            Step::Consumed(n)
                        }
                        Some(size) => {
                            *chunk = Chunk::Data(size);
                            Step::Consumed(n)
                        }
                        None => {
                            cx.posture.anomaly(
                                cx.frame,
                                "http.bad-chunk-size",
                                format!("not a chunk size: {}", printable(line)),
                            );
                            Step::Stop
                        }
                    },
                    LineStep::Skip(_) | LineStep::TooLong(_) => {
                        cx.posture.anomaly(
                            cx.frame,
                            "http.bad-chunk-size",
                            format!("chunk-size line longer than {MAX_CHUNK_LINE} bytes"),
                        );
                        Step::Stop
                    }
                },
                Chunk::Data(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    self.sink(dir, &mut sink, input.get(..n).unwrap_or_default(), cx);
                    let left = left - n as u64;
                    *chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    Step::Consumed(n)
                }
                Chunk::DataEnd => {
                    if input.starts_with(b"\r\n") {
                        *chunk = Chunk::Size;
                        Step::Consumed(2)
                    } else if input.starts_with(b"\n") {
                        *chunk = Chunk::Size;
                        Step::Consumed(1)
                    } else if input == b"\r" {
                        Step::NeedMore
                    } else {
                        cx.posture.anomaly(
                            cx.frame,
                            "http.bad-chunk-end",
                            "chunk data not followed by CRLF",
                        );
                        Step::Stop
                    }
                }
                Chunk::Trailer => match self.chunk_lines[i].next(input) {
                    LineStep::NeedMore => Step::NeedMore,
                    LineStep::Line(line, n) => {
                        ended = line.is_empty();
                        Step::Consumed(n)
                    }
                    LineStep::Skip(n) => Step::Consumed(n),
                    LineStep::TooLong(n) => {
                        cx.posture.anomaly(
                            cx.frame,
                            "http.trailer-too-long",
                            format!("trailer line longer than {MAX_CHUNK_LINE} bytes skipped"),
                        );
                        Step::Consumed(n)
                    }
                },
            },
        };
        if ended {
            self.body_end(sink, cx);
        } else if step != Step::Stop {
            self.sides[i] = Side::Body(framing, sink);
        }
        step
    }

    fn sink(&mut self, dir: Direction, sink: &mut Sink, bytes: &[u8], cx: &mut Ctx) {
        match sink {
            Sink::Discard => {}
            Sink::Form { data, truncated } => {
                let room = MAX_FORM_BODY.saturating_sub(data.len());
                if bytes.len() > room {
                    *truncated = true;
                }
                data.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
            }
            Sink::Rpc => {
                if self.rpc_done || bytes.is_empty() {
                    return;
                }
                if let Some(n) = self.rpc_bytes.get_mut(dir.index()) {
                    *n += bytes.len() as u64;
                }
                let rpc = self.rpc.get_or_insert_with(DceRpcAnalyzer::new);
                if rpc.data(dir, bytes, cx) == Next::Done {
                    self.rpc_done = true;
                }
            }
        }
    }

    /// A body ended at `cx.frame`: an OWA forms login is parsed now, so its event names the
    /// frame that completed the body.
    fn body_end(&mut self, sink: Sink, cx: &mut Ctx) {
        let Sink::Form { data, truncated } = sink else {
            return;
        };
        let mut body = data.as_slice();
        if truncated {
            cx.posture.anomaly(
                cx.frame,
                "http.form-too-large",
                format!("forms-login body over {MAX_FORM_BODY} bytes; the rest ignored"),
            );
            // The last field may be cut: drop it.
            let keep = body.iter().rposition(|&b| b == b'&').unwrap_or(0);
            body = body.get(..keep).unwrap_or_default();
        }
        let user = form_value(body, b"username");
        let pass = form_value(body, b"password");
        if user.is_none() && pass.is_none() {
            return;
        }
        cx.posture.add_auth(AuthEvent {
            mechanism: Mechanism::Forms,
            user: user.as_deref().map(|u| printable(u).into_owned()),
            cleartext: pass.is_some(),
            secret: pass.map(|p| Secret(String::from_utf8_lossy(&p).into_owned())),
            frame: cx.frame,
            context: "OWA forms login".into(),
            after_tls: false,
        });
    }
}

/// `Authorization` / `Proxy-Authorization`: `scheme credentials` (RFC 9110 11.4).
fn authorization(value: &[u8], context: &str, cx: &mut Ctx) {
    let (scheme, cred) = split_ws(value.trim_ascii());
    let scheme_l = printable(scheme).to_ascii_lowercase();
    if !is_keyword(scheme) {
        cx.posture.anomaly(
            cx.frame,
            "http.bad-authorization",
            format!("no scheme in {context}"),
        );
        return;
    }
    cx.posture.fact("http.auth-scheme", scheme_l.clone());
    let frame = cx.frame;
    let event = |mechanism, user, secret: Option<String>| AuthEvent {
        mechanism,
        user,
        cleartext: secret.is_some(),
        secret: secret.map(Secret),
        frame,
        context: context.to_string(),
        after_tls: false,
    };
    let ev = match scheme_l.as_str() {
        "basic" => match b64(cred) {
            Some(raw) => match raw.iter().position(|&b| b == b':') {
                // RFC 7617 2: the user-id cannot contain a colon, the password can.
                Some(c) => {
                    let (user, pass) = raw.split_at(c);
                    let pass =
                        String::from_utf8_lossy(pass.get(1..).unwrap_or_default()).into_owned();
                    event(
                        Mechanism::Basic,
                        Some(printable(user).into_owned()),
                        Some(pass),
                    )
                }
                None => {
                    cx.posture.anomaly(
                        cx.frame,
                        "http.basic-without-colon",
                        "Basic credentials without user:password separator",
                    );
                    event(
                        Mechanism::Basic,
                        None,
                        Some(String::from_utf8_lossy(&raw).into_owned()),
                    )
                }
            },
            None => {
                // Still replayable as sent: the header itself is the secret.
                cx.posture.anomaly(
                    cx.frame,
                    "http.bad-base64",
                    format!("{context} Basic credentials are not base64"),
                );
                event(Mechanism::Basic, None, Some(printable(cred).into_owned()))
            }
        },
        "digest" => event(Mechanism::Digest, auth_param(cred, b"username"), None),
        "bearer" => event(
            Mechanism::Bearer,
            None,
            Some(String::from_utf8_lossy(cred).into_owned()),
        ),
        "ntlm" | "negotiate" => {
            match b64(cred) {
                Some(raw) if !raw.is_empty() => {
                    inspect_token(&raw, cx, context);
                }
                _ => cx.posture.anomaly(
                    cx.frame,
                    "http.bad-base64",
                    format!("{context} {scheme_l} token is not base64"),
                ),
            }
            return;
        }
        _ => return,
    };
    cx.posture.add_auth(ev);
}

/// `WWW-Authenticate` / `Proxy-Authenticate`: one or more challenges, each `scheme
/// [token68 | auth-params]`, separated by commas (RFC 9110 11.6.1).
fn challenges(value: &[u8], context: &str, cx: &mut Ctx) {
    let mut in_quotes = false;
    let pieces = value.split(|&b| {
        if b == b'"' {
            in_quotes = !in_quotes;
        }
        b == b',' && !in_quotes
    });
    for piece in pieces {
        let (word, rest) = split_ws(piece.trim_ascii());
        // `name=value` is an auth-param of the previous challenge, not a scheme.
        if !is_keyword(word) || rest.starts_with(b"=") {
            continue;
        }
        let scheme = printable(word).to_ascii_lowercase();
        if (scheme == "ntlm" || scheme == "negotiate") && !rest.is_empty() {
            match b64(rest) {
                Some(raw) => {
                    inspect_token(&raw, cx, context);
                }
                None => cx.posture.anomaly(
                    cx.frame,
                    "http.bad-base64",
                    format!("{context} {scheme} token is not base64"),
                ),
            }
        }
        cx.posture.fact("http.auth-offered", scheme);
    }
}

impl Analyzer for HttpAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        if !self.started {
            self.started = true;
            cx.posture.protocol = Some("http");
        }
        let mut next = self.feed(dir, data, cx);
        while next == Next::Continue && std::mem::take(&mut self.pump) {
            next = self.feed(dir.flip(), &[], cx);
        }
        next
    }

    fn finish(&mut self, cx: &mut Ctx) {
        if let Some(rpc) = self.rpc.as_mut() {
            rpc.finish(cx);
        }
        finish_auth(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Encryption, Posture};
    use crate::proto::testutil::{facts, kinds, ntlm_authenticate, run};
    use base64::Engine as _;
    use Direction::{ToClient as S, ToServer as C};

    fn make() -> Box<dyn Analyzer> {
        (REGISTRATION.make)()
    }

    fn leak(s: String) -> &'static [u8] {
        s.into_bytes().leak()
    }

    #[test]
    fn basic_with_extra_spaces_and_colon_in_password() {
        // "user:pa:ss" in base64, preceded and followed by extra spaces.
        let p = run(
            make,
            &[
                (C, b"GET /owa/ HTTP/1.1\r\nHost: mail.corp\r\nAuthorization: Basic   dXNlcjpwYTpzcw==  \r\n\r\n"),
                (S, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: Microsoft-IIS/6.0\r\n\r\nhello"),
            ],
        );
        assert_eq!(p.protocol, Some("http"));
        assert_eq!(p.encryption, Encryption::None);
        assert_eq!(p.auth.len(), 1);
        let ev = &p.auth[0];
        assert_eq!(ev.mechanism, Mechanism::Basic);
        assert_eq!(ev.user.as_deref(), Some("user"));
        assert_eq!(ev.secret.as_ref().map(|s| s.0.as_str()), Some("pa:ss"));
        assert!(ev.cleartext);
        assert_eq!((ev.frame, ev.context.as_str()), (1, "HTTP Authorization"));
        assert_eq!(facts(&p, "http.endpoint"), ["owa"]);
        assert_eq!(facts(&p, "http.host"), ["mail.corp"]);
        assert_eq!(facts(&p, "http.status"), ["200"]);
        assert_eq!(facts(&p, "http.server"), ["Microsoft-IIS/6.0"]);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn pipelined_requests_head_304_and_chunked_bodies_at_awkward_splits() {
        let p = run(
            make,
            &[
                (C, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /ews/exchange.asmx HTTP/1.1\r\n\r\n"),
                // Chunked: "4\r\nWiki\r\n" then a chunk whose data looks like a response,
                // split inside the chunk size, inside the data and between CR and LF.
                (S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi"),
                (S, b"ki\r"),
                (S, b"\n1"),
                (S, b"3;ext=1\r\nHTTP/1.1 500 Bad\r\n\r\n"),
                (S, b"0\r\nX-Trailer: 1\r\n\r\n"),
                // HEAD: a Content-Length but no body.
                (S, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
                (S, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"),
                (S, b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
            ],
        );
        assert_eq!(facts(&p, "http.status"), ["200", "304", "401"]);
        assert_eq!(facts(&p, "http.method"), ["GET", "HEAD"]);
        assert_eq!(facts(&p, "http.endpoint"), ["ews"]);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn interim_100_then_final_and_body_until_close() {
        let p = run(
            make,
            &[
                (
                    C,
                    b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
                ),
                (S, b"HTTP/1.1 100 Continue\r\n\r\n"),
                (C, b"abc"),
                (
                    S,
                    b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 999 looks like a response\r\n\r\n",
                ),
            ],
        );
        assert_eq!(facts(&p, "http.status"), ["100", "200"]);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn owa_forms_post_split_over_two_chunks() {
        let p = run(
            make,
            &[
                (
                    C,
                    b"POST /owa/auth/owaauth.dll HTTP/1.1\r\nHost: mail\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 98\r\n\r\ndestination=https%3A%2F%2Fmail%2Fowa%2F&flags=0&user",
                ),
                (C, b"name=CORP%5Cjohn&password=p%40ss+word&isUtf8=1"), // frame 2 completes the body
                (S, b"HTTP/1.1 302 Found\r\nLocation: /owa/\r\nContent-Length: 0\r\n\r\n"),
            ],
        );
        assert_eq!(p.auth.len(), 1);
        let ev = &p.auth[0];
        assert_eq!(ev.mechanism, Mechanism::Forms);
        assert_eq!(ev.user.as_deref(), Some("CORP\\john"));
        assert_eq!(ev.secret.as_ref().map(|s| s.0.as_str()), Some("p@ss word"));
        assert!(ev.cleartext);
        assert_eq!(ev.frame, 2);
        assert_eq!(facts(&p, "http.endpoint"), ["owa", "owa-forms-login"]);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn forms_body_over_the_cap_is_reported_and_still_read() {
        let filler = "x".repeat(MAX_FORM_BODY);
        let body = format!("username=bob&password=pw&pad={filler}");
        let req = format!(
            "POST /owa/auth/owaauth.dll HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        let p = run(make, &[(C, leak(req))]);
        assert_eq!(kinds(&p), ["http.form-too-large"]);
        assert_eq!(p.auth[0].user.as_deref(), Some("bob"));
        assert_eq!(p.auth[0].secret.as_ref().map(|s| s.0.as_str()), Some("pw"));
    }

    #[test]
    fn digest_bearer_and_ntlm_authorization() {
        let tok = base64::engine::general_purpose::STANDARD.encode(ntlm_authenticate());
        let ntlm = leak(format!(
            "GET /ews/ HTTP/1.1\r\nAuthorization: NTLM {tok}\r\n\r\n"
        ));
        let p = run(
            make,
            &[
                (C, b"GET /ews/ HTTP/1.1\r\n\r\n"),
                (
                    S,
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM\r\nWWW-Authenticate: Basic realm=\"mail, corp\", Digest realm=\"x\", nonce=\"n\"\r\nContent-Length: 0\r\n\r\n",
                ),
                (C, b"GET /a HTTP/1.1\r\nAuthorization: Digest username=\"CORP\\\\ann\", realm=\"x\", response=\"00\"\r\n\r\n"),
                (C, b"GET /b HTTP/1.1\r\nProxy-Authorization: Bearer eyJhbGciOi.x.y\r\n\r\n"),
                (C, ntlm),
            ],
        );
        assert_eq!(
            facts(&p, "http.auth-offered"),
            ["basic", "digest", "negotiate", "ntlm"]
        );
        let got: Vec<_> = p
            .auth
            .iter()
            .map(|e| {
                (
                    e.mechanism.clone(),
                    e.user.clone(),
                    e.cleartext,
                    e.context.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    Mechanism::Digest,
                    Some("CORP\\ann".into()),
                    false,
                    "HTTP Authorization"
                ),
                (Mechanism::Bearer, None, true, "HTTP Proxy-Authorization"),
                (
                    Mechanism::Ntlmv2,
                    Some("CORP\\alice".into()),
                    false,
                    "HTTP Authorization"
                ),
            ]
        );
        assert_eq!(
            p.auth[1].secret.as_ref().map(|s| s.0.as_str()),
            Some("eyJhbGciOi.x.y")
        );
        assert_eq!(facts(&p, "http.auth-scheme"), ["bearer", "digest", "ntlm"]);
    }

    #[test]
    fn exchange_endpoints_from_paths() {
        let cases = [
            ("/OWA/?ae=Folder", Some("owa")),
            ("/EWS/Exchange.asmx", Some("ews")),
            ("/Microsoft-Server-ActiveSync?Cmd=Sync", Some("activesync")),
            ("/autodiscover/autodiscover.xml", Some("autodiscover")),
            ("/rpc/rpcproxy.dll?mbx:6001", Some("outlook-anywhere")),
            ("/OAB/1234/oab.xml", Some("oab")),
            ("/UnifiedMessaging/Service.asmx", Some("um")),
            ("/Exchange/john/Inbox", Some("webdav-exchange")),
            ("/Public/folder", Some("webdav-public")),
            ("/ExAdmin/x", Some("exadmin")),
            ("/exchweb/bin/auth/owalogon.asp", Some("exchweb")),
            ("http://mail.corp/owa/", Some("owa")),
            ("/owascript/x", None),
            ("/", None),
        ];
        for (target, want) in cases {
            let (path, _) = path_and_query(target.as_bytes());
            assert_eq!(endpoint(&path), want, "{target}");
        }
    }

    #[test]
    fn activesync_user_from_the_query() {
        let p = run(
            make,
            &[(
                C,
                b"OPTIONS /Microsoft-Server-ActiveSync?Cmd=Sync&User=CORP%5Cjohn&DeviceId=1&DeviceType=PocketPC HTTP/1.1\r\nMS-ASProtocolVersion: 12.1\r\n\r\n",
            )],
        );
        assert_eq!(facts(&p, "http.activesync-user"), ["CORP\\john"]);
        assert_eq!(facts(&p, "http.activesync-device-type"), ["PocketPC"]);
        assert_eq!(facts(&p, "http.endpoint"), ["activesync"]);
    }

    /// An RTS PDU header (MS-RPCH 2.2.3.6): version 5.0, ptype 20, flags, data rep, frag 28.
    const RTS: &[u8] = &[
        5, 0, 20, 3, 0x10, 0, 0, 0, 28, 0, 0, 0, 0, 0, 0, 0, // common header
        0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, // RTS flags, command count, one command
    ];

    fn feed_concrete(a: &mut HttpAnalyzer, script: &[(Direction, &[u8])]) -> Posture {
        let mut posture = Posture::default();
        for (i, (dir, bytes)) in script.iter().enumerate() {
            let mut cx = Ctx {
                limits: &crate::limits::ProtoLimits::DEFAULT,
                frame: i as u64 + 1,
                ts_ns: 0,
                client_port: 40000,
                server_port: 80,
                posture: &mut posture,
            };
            a.data(*dir, bytes, &mut cx);
        }
        posture
    }

    #[test]
    fn rpc_over_http_bodies_go_to_dcerpc() {
        let script: &[(Direction, &[u8])] = &[
            (C, b"RPC_OUT_DATA /rpc/rpcproxy.dll?mbx01.corp:6001 HTTP/1.1\r\nContent-Length: 28\r\nUser-Agent: MSRPC\r\n\r\n"),
            (C, RTS),
            (S, b"HTTP/1.1 200 Success\r\nContent-Length: 1073741824\r\n\r\n"),
            (S, RTS),
            (S, RTS),
        ];
        let mut a = HttpAnalyzer::new();
        let p = feed_concrete(&mut a, script);
        assert_eq!(a.rpc_bytes, [28, 56]);
        assert_eq!(facts(&p, "http.rpc-proxy-target"), ["mbx01.corp:6001"]);
        assert_eq!(facts(&p, "http.endpoint"), ["outlook-anywhere"]);
        // The same, byte by byte.
        let mut b = HttpAnalyzer::new();
        for (dir, bytes) in script {
            for byte in bytes.chunks(1) {
                feed_concrete(&mut b, &[(*dir, byte)]);
            }
        }
        assert_eq!(b.rpc_bytes, [28, 56]);
        // A 401 body is HTML, not RPC.
        let mut c = HttpAnalyzer::new();
        feed_concrete(
            &mut c,
            &[
                (
                    C,
                    b"RPC_IN_DATA /rpc/rpcproxy.dll?mbx:6001 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                ),
                (
                    S,
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\n<h1>",
                ),
            ],
        );
        assert_eq!(c.rpc_bytes, [0, 0]);
    }

    #[test]
    fn connect_tunnel_stops_parsing() {
        let p = run(
            make,
            &[
                (C, b"CONNECT mail.corp:25 HTTP/1.1\r\nHost: mail.corp:25\r\n\r\n"),
                (S, b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 0\r\n\r\n"),
                (C, b"CONNECT mail.corp:25 HTTP/1.1\r\nProxy-Authorization: Basic am9objpwdw==\r\n\r\n"),
                (S, b"HTTP/1.1 200 Connection established\r\n\r\n220 mail ESMTP\r\n"),
                (C, b"EHLO x\r\nGET /owa/ HTTP/1.1\r\n\r\n"),
            ],
        );
        assert_eq!(facts(&p, "http.connect"), ["mail.corp:25"]);
        assert_eq!(facts(&p, "http.auth-offered"), ["basic"]);
        assert_eq!(p.auth[0].context, "HTTP Proxy-Authorization");
        assert_eq!(p.auth[0].user.as_deref(), Some("john"));
        assert!(facts(&p, "http.endpoint").is_empty());
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn malformed_messages_give_named_anomalies() {
        let p = run(
            make,
            &[
                (C, b"GET / HTTP/1.1\r\nAuthorization: Basic !!!bad\r\n\r\n"),
                (
                    S,
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                ),
            ],
        );
        assert_eq!(kinds(&p), ["http.bad-base64", "http.bad-chunk-size"]);
        // A Basic header is replayable as sent, decodable or not.
        assert!(p.auth[0].cleartext);
        assert_eq!(
            p.auth[0].secret.as_ref().map(|s| s.0.as_str()),
            Some("!!!bad")
        );

        let p = run(
            make,
            &[(C, b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n")],
        );
        assert_eq!(kinds(&p), ["http.bad-content-length"]);
        let p = run(
            make,
            &[(
                C,
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            )],
        );
        assert_eq!(kinds(&p), ["http.bad-content-length"]);
        let p = run(make, &[(C, b"GET /\r\n\r\n")]);
        assert_eq!(kinds(&p), ["http.bad-request-line"]);
        // From a capture of a spam tool abusing a proxy (zeek http_connect-with-smtp).
        let p = run(
            make,
            &[
                (
                    C,
                    b"CONNECT mx.example:25 / HTTP/1.0\r\nMozilla 4.0 (compatible)\r\n\r\n",
                ),
                (
                    S,
                    b"HTTP/1.0 200 Connection established\r\n\r\n220 mx ESMTP\r\n",
                ),
            ],
        );
        assert_eq!(kinds(&p), ["http.bad-header", "http.odd-request-line"]);
        assert_eq!(facts(&p, "http.connect"), ["mx.example:25"]);
        let p = run(
            make,
            &[
                (C, b"GET / HTTP/1.1\r\n\r\n"),
                (S, b"HTTP/1.1 2000 OK\r\n\r\n"),
            ],
        );
        assert_eq!(kinds(&p), ["http.bad-status-line"]);
        let p = run(
            make,
            &[(
                C,
                b"GET / HTTP/1.1\r\nAuthorization: Basic am9obg==\r\n\r\n",
            )],
        );
        assert_eq!(kinds(&p), ["http.basic-without-colon"]);
    }

    #[test]
    fn header_block_over_the_cap_stops() {
        let big = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(MAX_HEADER));
        let p = run(make, &[(C, leak(big)), (C, b"\r\n")]);
        assert_eq!(kinds(&p), ["http.header-too-large"]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut junk = Vec::new();
        for i in 0..4096u32 {
            junk.push((i.wrapping_mul(2_654_435_761) >> 11) as u8);
        }
        let junk: &'static [u8] = junk.leak();
        let _ = run(
            make,
            &[
                (C, b"GET / HTTP/1.1\r\n\r\n"),
                (S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                (S, junk),
                (C, junk),
            ],
        );
        let _ = run(make, &[(C, junk), (S, junk)]);
    }

    #[test]
    fn probe_recognises_request_and_status_lines() {
        assert_eq!(
            probe(C, b"GET / HTTP/1.1\r\nHost", 4000, 8080),
            Probe::Certain
        );
        assert_eq!(
            probe(
                C,
                b"RPC_IN_DATA /rpc/rpcproxy.dll?a:6001 HTTP/1.1\r\n",
                4000,
                443
            ),
            Probe::Certain
        );
        assert_eq!(
            probe(C, b"BPROPFIND /exchange/ HTTP/1.1\r\n", 4000, 8080),
            Probe::Certain
        );
        assert_eq!(probe(C, b"GET /very/long", 4000, 8080), Probe::Unsure);
        assert_eq!(probe(S, b"HTTP/1.1 200 OK", 4000, 8080), Probe::Certain);
        assert_eq!(probe(C, b"EHLO x\r\n", 4000, 8080), Probe::No);
        assert_eq!(probe(C, b"EHLO x\r\n", 4000, 80), Probe::Unsure);
    }

    proptest::proptest! {
        /// The header block's lines are the block cut at every LF (CR before it dropped),
        /// the last line being whatever follows the last LF; its end is just past the
        /// first empty line (CRLF or LF) at or after the search start.
        #[test]
        fn header_lines_and_end_follow_every_line_feed(
            block in proptest::collection::vec(
                proptest::sample::select(b"a:b \r\n\t".to_vec()), 0..80),
            from in 0usize..8,
        ) {
            let head = parse_head(&block);
            let mut lines = block.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
            proptest::prop_assert_eq!(head.start, lines.next().unwrap_or_default());
            let fields: Vec<_> = lines
                .filter(|l| !l.is_empty() && !l.starts_with(b" ") && !l.starts_with(b"\t"))
                .collect();
            proptest::prop_assert_eq!(head.fields.len() + head.malformed, fields.len());
            let want = (from..block.len()).find_map(|i| match block.get(i..) {
                Some([b'\n', b'\n', ..]) => Some(i + 2),
                Some([b'\n', b'\r', b'\n', ..]) => Some(i + 3),
                _ => None,
            });
            proptest::prop_assert_eq!(header_end(&block, from), want);
        }
    }
}
