//! The finding rules: a flow's observed posture held against its data path's row.
//!
//! What this stage guarantees: [`evaluate`] is a pure function of one flow, its
//! [`Classification`] and the catalog; the same input gives the same findings in the same
//! order. Rule ids ([`rule`]) are public API and never renamed. Every finding names its
//! evidence (frames, the Wireshark filter of its flow, the row, expected against
//! observed, the user when one was seen) and never a secret: passwords appear only
//! redacted (`S***`). Its [`Finding::fingerprint`] is built from what survives a
//! re-capture (rule, row, the client's role or address, the server address and fixed
//! port, the mechanism or version at fault, the user), never from frame numbers or
//! ephemeral ports, so a baseline can match it.
//!
//! A flow the capture does not show well enough (no handshake, a reassembly gap before
//! the security layer, frames cut by the snapshot length, encryption unknown) gets
//! `unknown-visibility`: it is never silently clean.
//!
//! The row a flow is judged against is its best match; when several rows tie, the first
//! is used and the message names the others.

mod tls;

use crate::cat;
use crate::cat::{host, num};
use crate::catalog::{AuthKind, Catalog, DataPath, EncKind, Role, Vocabulary};
use crate::classify::infer::flow_filter;
use crate::classify::paths::{Classification, PortFit};
use crate::flow::{endpoint, Flow, Transport};
use crate::model::{AuthEvent, Encryption, Mechanism};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// How bad a finding is. Orders `Info < Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    /// Most severe first.
    pub const ALL: &'static [Severity] = &[
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    /// The lower-case name (`--fail-on high`).
    pub fn from_name(name: &str) -> Option<Severity> {
        Severity::ALL.iter().copied().find(|s| s.as_str() == name)
    }

    /// SARIF `security-severity` (GitHub code scanning bands: 9.0+ critical, 7.0+ high,
    /// 4.0+ medium, 0.1+ low).
    pub fn security_severity(self) -> &'static str {
        match self {
            Severity::Critical => "9.5",
            Severity::High => "8.0",
            Severity::Medium => "5.5",
            Severity::Low => "3.0",
            Severity::Info => "0.0",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Severity::Info => 0,
            Severity::Low => 1,
            Severity::Medium => 2,
            Severity::High => 3,
            Severity::Critical => 4,
        }
    }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Severity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of [`Severity::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{0}`, expected one of: critical, high, medium, low, info")]
pub struct SeverityError(pub String);

impl FromStr for Severity {
    type Err = SeverityError;
    fn from_str(s: &str) -> Result<Severity, SeverityError> {
        Severity::from_name(&s.to_ascii_lowercase()).ok_or_else(|| SeverityError(s.to_string()))
    }
}

/// The rule ids: public API (SARIF rule ids, baselines, `--fail-on`). Never renamed.
pub mod rule {
    pub const CLEARTEXT_CREDENTIAL: &str = "cleartext-credential";
    pub const UNENCRYPTED_PATH: &str = "unencrypted-path";
    pub const UNSUPPORTED_AUTH: &str = "unsupported-auth";
    pub const WEAK_AUTH: &str = "weak-auth";
    pub const WEAK_TLS: &str = "weak-tls";
    pub const STARTTLS_NOT_USED: &str = "starttls-not-used";
    pub const ENCRYPTION_AVAILABLE_UNUSED: &str = "encryption-available-unused";
    pub const NON_DEFAULT_AUTH: &str = "non-default-auth";
    pub const UNDOCUMENTED_PORT: &str = "undocumented-port";
    pub const UNKNOWN_VISIBILITY: &str = "unknown-visibility";
}

/// What a rule checks, for reports (SARIF rule metadata, README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub id: &'static str,
    pub title: &'static str,
    /// The severities the rule gives, most severe first.
    pub severities: &'static [Severity],
    pub help: &'static str,
}

/// Every rule, in report order.
pub const RULES: &[RuleInfo] = &[
    RuleInfo {
        id: rule::CLEARTEXT_CREDENTIAL,
        title: "Credential readable on the wire",
        severities: &[Severity::Critical],
        help: "A password or reusable secret travelled in clear: HTTP Basic or OWA forms over HTTP, SMTP AUTH LOGIN/PLAIN, IMAP LOGIN, POP3 USER/PASS, LDAP simple bind. Use TLS (HTTPS, STARTTLS, LDAPS) or Kerberos/NTLM.",
    },
    RuleInfo {
        id: rule::UNENCRYPTED_PATH,
        title: "Unencrypted where the path is encrypted by default",
        severities: &[Severity::High],
        help: "The reference says this data path is encrypted by default (TLS, HTTPS, LDAPS, RPC privacy, Kerberos sealing, SIP over TLS) and the flow is not.",
    },
    RuleInfo {
        id: rule::UNSUPPORTED_AUTH,
        title: "Authentication the path does not support",
        severities: &[Severity::High],
        help: "The mechanism seen is not in the row's supported authentication (for example Basic where only NTLM/Kerberos is documented, NTLMv1 where OWA allows NTLM v2 only, no client certificate on a direct-trust path).",
    },
    RuleInfo {
        id: rule::WEAK_AUTH,
        title: "Weak authentication",
        severities: &[Severity::High, Severity::Medium],
        help: "NTLMv1 or LM responses (crackable), Kerberos with DES (high when chosen) or RC4 chosen, or only weak encryption types offered.",
    },
    RuleInfo {
        id: rule::WEAK_TLS,
        title: "Weak TLS",
        severities: &[Severity::High, Severity::Medium],
        help: "SSL 3.0, TLS 1.0 or 1.1 negotiated (SSL 2.0: high), or a NULL, EXPORT, anonymous, RC4 or DES cipher suite.",
    },
    RuleInfo {
        id: rule::STARTTLS_NOT_USED,
        title: "STARTTLS offered but not used, or refused",
        severities: &[Severity::High, Severity::Medium],
        help: "The server offered STARTTLS (SMTP, IMAP, POP3 STLS) and the session went on in clear (medium), or the server refused it (high).",
    },
    RuleInfo {
        id: rule::ENCRYPTION_AVAILABLE_UNUSED,
        title: "Encryption supported but not in use",
        severities: &[Severity::Info],
        help: "The path supports encryption (often IPsec) that is not its default, and the flow does not use it.",
    },
    RuleInfo {
        id: rule::NON_DEFAULT_AUTH,
        title: "Supported but not the default authentication",
        severities: &[Severity::Info],
        help: "The mechanism is supported on the path but is not its documented default (for example Kerberos between two servers where NTLM is the default unless both roles share a server, NTLM where Negotiate tries Kerberos first).",
    },
    RuleInfo {
        id: rule::UNDOCUMENTED_PORT,
        title: "Traffic between Exchange roles on an undocumented port",
        severities: &[Severity::Info],
        help: "Both ends hold roles, at least one an Exchange server role, and the catalog documents no path between them on this port.",
    },
    RuleInfo {
        id: rule::UNKNOWN_VISIBILITY,
        title: "Verdict unknown: the capture does not show enough",
        severities: &[Severity::Low],
        help: "No handshake captured, a reassembly gap before the security layer, frames cut by the snapshot length, or encryption unknown: the flow's posture cannot be judged, so it is not reported clean.",
    },
];

/// One finding about one flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// One of [`rule`].
    pub rule: &'static str,
    pub severity: Severity,
    /// The catalog row judged against (the best match), if any.
    pub data_path: Option<String>,
    /// Wireshark's tcp.stream / udp.stream index.
    pub stream: Option<u64>,
    pub transport: String,
    /// `addr:port` (`addr` for transports without ports).
    pub client: String,
    pub server: String,
    /// Evidence frames, ascending.
    pub frames: Vec<u64>,
    /// Capture time of the flow's first frame, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub user: Option<String>,
    pub expected: String,
    pub observed: String,
    pub message: String,
    /// Wireshark display filter isolating the flow.
    pub filter: String,
    /// Stable across re-captures: see the module doc.
    pub fingerprint: String,
}

/// Findings of one flow, most severe first.
pub fn evaluate(flow: &Flow, class: &Classification, catalog: &Catalog) -> Vec<Finding> {
    let cx = Cx::new(flow, class, catalog);
    let mut out = Vec::new();
    cleartext_credential(&cx, &mut out);
    unencrypted_path(&cx, &mut out);
    unsupported_auth(&cx, &mut out);
    weak_auth(&cx, &mut out);
    weak_tls(&cx, &mut out);
    starttls_not_used(&cx, &mut out);
    encryption_available_unused(&cx, &mut out);
    non_default_auth(&cx, &mut out);
    undocumented_port(&cx, &mut out);
    unknown_visibility(&cx, &mut out);

    // One finding per fingerprint (the same user twice on a keep-alive connection).
    let mut merged: Vec<Finding> = Vec::with_capacity(out.len());
    for f in out {
        match merged.iter_mut().find(|m| m.fingerprint == f.fingerprint) {
            Some(m) => {
                m.frames.extend(f.frames);
                m.frames.sort_unstable();
                m.frames.dedup();
            }
            None => merged.push(f),
        }
    }
    sort_findings(&mut merged);
    merged
}

/// The report order: most severe first, then by stream, rule, first frame, fingerprint.
pub fn sort_findings(v: &mut [Finding]) {
    v.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.stream.cmp(&b.stream))
            .then_with(|| a.rule.cmp(b.rule))
            .then_with(|| a.frames.first().cmp(&b.frames.first()))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
}

/// How the flow's payload was protected, as the row sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Encrypted(Encryption),
    /// Readable; the text says how.
    Clear(String),
    /// Cannot tell; the text says why.
    Unknown(String),
}

/// What every rule needs.
struct Cx<'a> {
    flow: &'a Flow,
    row: Option<&'a DataPath>,
    /// How the flow's port fits `row`, as classification found it.
    fit: Option<PortFit>,
    /// " (also possible: M21b)" when rows tie.
    others: String,
    /// The rows tied with `row`: a rule that depends on the row only fires when it holds
    /// for every one of them (the capture cannot tell them apart).
    tied: Vec<&'a DataPath>,
    client_roles: &'a [Role],
    server_roles: &'a [Role],
    /// The identities and the filter a finding carries: put together when the flow's
    /// first finding needs them (most flows have none or one).
    idents: std::cell::OnceCell<Idents>,
    seen: Seen,
    proto: &'static str,
}

/// The ends as a baseline knows them ([`server_ident`]), and the flow's display filter.
struct Idents {
    client: String,
    server: String,
    filter: String,
}

impl<'a> Cx<'a> {
    fn new(flow: &'a Flow, class: &'a Classification, catalog: &'a Catalog) -> Cx<'a> {
        let row = class.best().and_then(|b| catalog.get(&b.id));
        let others: Vec<&str> = class.top().iter().skip(1).map(|p| p.id.as_str()).collect();
        let others = if others.is_empty() {
            String::new()
        } else {
            format!(" (also possible: {})", others.join(", "))
        };
        let tied = class
            .top()
            .iter()
            .skip(1)
            .filter_map(|p| catalog.get(&p.id))
            .collect();
        let fit = row.and(class.best().map(|b| b.port));
        Cx {
            flow,
            row,
            fit,
            others,
            tied,
            client_roles: &class.client_roles,
            server_roles: &class.server_roles,
            idents: std::cell::OnceCell::new(),
            seen: seen(flow, row),
            proto: flow.posture.protocol.unwrap_or("unknown"),
        }
    }

    fn idents(&self) -> &Idents {
        self.idents.get_or_init(|| {
            let flow = self.flow;
            let client = if self.client_roles.contains(&Role::Client) {
                "role:client".to_string()
            } else {
                crate::flow::host(flow.client.ip().to_canonical()).to_string()
            };
            Idents {
                client,
                server: server_ident(flow, self.fit),
                filter: flow_filter(flow),
            }
        })
    }

    /// `C2 (Availability service)`, or `no documented path`.
    fn path_text(&self) -> String {
        match self.row {
            Some(r) => cat!(r.id, " (", r.name, ")", self.others),
            None => "no documented path".into(),
        }
    }

    #[allow(clippy::too_many_arguments)] // one field each of a finding; a builder would only rename them
    fn emit(
        &self,
        out: &mut Vec<Finding>,
        rule: &'static str,
        severity: Severity,
        frames: impl IntoIterator<Item = u64>,
        user: Option<&str>,
        key: &str,
        expected: String,
        observed: String,
        message: String,
    ) {
        let f = self.flow;
        let mut frames: Vec<u64> = frames.into_iter().filter(|&n| n > 0).collect();
        if frames.is_empty() && f.first_frame > 0 {
            frames.push(f.first_frame);
        }
        frames.sort_unstable();
        frames.dedup();
        let data_path = self.row.map(|r| r.id.clone());
        let idents = self.idents();
        let fingerprint = fingerprint(&[
            rule,
            data_path.as_deref().unwrap_or("-"),
            &idents.client,
            &idents.server,
            key,
            user.unwrap_or("-"),
        ]);
        let ports = f.transport.has_ports();
        out.push(Finding {
            rule,
            severity,
            data_path,
            stream: f.stream,
            transport: f.transport.name().into_owned(),
            client: endpoint(&f.client, ports),
            server: endpoint(&f.server, ports),
            frames,
            ts_ns: f.first_ts_ns,
            user: user.map(str::to_string),
            expected,
            observed,
            message,
            filter: idents.filter.clone(),
            fingerprint,
        });
    }
}

/// The server as a baseline knows it: address and fixed port; a port handed out at run
/// time (endpoint mapper, dynamic ranges) is named by what it serves instead. `fit`:
/// how the port fits the flow's row, if it has one.
fn server_ident(flow: &Flow, fit: Option<PortFit>) -> String {
    let ip = host(flow.server.ip().to_canonical());
    if !flow.transport.has_ports() {
        return ip.as_ref().to_string();
    }
    let dynamic = fit.is_some_and(|p| matches!(p, PortFit::EndpointMapper | PortFit::Variable));
    if dynamic {
        let iface = crate::classify::infer::rpc_interfaces(flow)
            .into_iter()
            .find(|i| *i != "epm")
            .map(str::to_string);
        let what = iface.unwrap_or_else(|| flow.posture.protocol.unwrap_or("unknown").to_string());
        return cat!(ip, ":dynamic/", what);
    }
    cat!(ip, ":", num(flow.server.port()), "/", flow.transport.name())
}

/// FNV-1a 128 over the parts, each length-prefixed; 32 hex digits.
fn fingerprint(parts: &[&str]) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    let mut eat = |b: u8| {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    };
    for p in parts {
        for b in (p.len() as u64).to_le_bytes() {
            eat(b);
        }
        for b in p.bytes() {
            eat(b);
        }
    }
    let mut hex = String::with_capacity(32);
    for shift in (0..32).rev() {
        hex.push(char::from(
            b"0123456789abcdef"[(h >> (shift * 4)) as usize & 0xf],
        ));
    }
    hex
}

/// The row's encryption list as words (`tls`, `rpc-privacy`).
fn enc_list(row: &DataPath) -> String {
    if row.encryption.is_empty() {
        "none".into()
    } else {
        row.encryption
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn auth_list(kinds: &[AuthKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn facts_have(f: &Flow, key: &str, pred: impl Fn(&str) -> bool) -> bool {
    f.posture.facts.get(key).is_some_and(|v| v.iter().any(pred))
}

/// How the payload was protected, judged for `row`.
fn seen(f: &Flow, row: Option<&DataPath>) -> Seen {
    let p = &f.posture;
    if f.transport == Transport::Esp || p.protocol == Some("ipsec-nat-t") {
        return Seen::Encrypted(Encryption::Ipsec);
    }
    if p.protocol == Some("http") && p.encryption != Encryption::Tls {
        let inner = if p.encryption == Encryption::RpcPrivacy {
            " (the RPC inside is sealed at privacy level, the HTTP headers and credentials are not)"
        } else {
            ""
        };
        return Seen::Clear(cat!("HTTP in clear on port ", num(f.server.port()), inner));
    }
    match p.encryption {
        Encryption::None => Seen::Clear(clear_text(f)),
        Encryption::Unknown => {
            // A row protected only by IPsec: a flow whose ports and payload the capture
            // shows is not inside IPsec, whatever its analyzer could parse.
            let ipsec_only = row.is_some_and(|r| {
                !r.encryption.is_empty() && r.encryption.iter().all(|e| *e == EncKind::Ipsec)
            });
            if ipsec_only && f.transport.has_ports() && f.total_frames() > 0 {
                Seen::Clear(cat!(
                    f.transport.name(),
                    " flow visible on port ",
                    num(f.server.port()),
                    ": not inside IPsec"
                ))
            } else {
                Seen::Unknown(unknown_text(f))
            }
        }
        e => Seen::Encrypted(e),
    }
}

fn clear_text(f: &Flow) -> String {
    let p = &f.posture;
    let proto = p.protocol.unwrap_or("payload");
    match proto {
        "dcerpc" => match p.facts.get("dcerpc.auth-level") {
            Some(levels) => format!(
                "DCE/RPC at auth level {} (payload in clear); packet privacy (6) expected",
                levels.iter().collect::<Vec<_>>().join(", ")
            ),
            None => "DCE/RPC without authentication (payload in clear)".into(),
        },
        "smtp" if !p.facts.contains_key("smtp.starttls") => {
            "SMTP in clear; STARTTLS was not offered".into()
        }
        "ldap" => cat!(
            "LDAP in clear on port ",
            num(f.server.port()),
            " (no TLS, no SASL sealing)"
        ),
        _ => cat!(proto, " in clear on port ", num(f.server.port())),
    }
}

fn unknown_text(f: &Flow) -> String {
    if f.payload[0] + f.payload[1] == 0 {
        "no payload captured".into()
    } else if f.posture.protocol.is_none() {
        "no protocol recognised in the payload".into()
    } else {
        "the analyzer could not tell whether the payload is encrypted".into()
    }
}

/// Why an unencrypted flow on an encrypted-by-default row is still no violation.
fn clear_by_design(f: &Flow, row: &DataPath) -> Option<&'static str> {
    let p = &f.posture;
    match p.protocol {
        Some("kerberos") => {
            Some("Kerberos messages carry their own encryption (tickets, authenticators)")
        }
        Some("dns") => Some("DNS is not covered by Kerberos sealing"),
        Some("ldap") if f.transport == Transport::Udp => {
            Some("CLDAP (UDP) locator pings are never sealed")
        }
        Some("dcerpc") => {
            let ifaces = crate::classify::infer::rpc_interfaces(f);
            (!ifaces.is_empty() && ifaces.iter().all(|i| *i == "epm"))
                .then_some("endpoint-mapper lookups are unauthenticated by design")
        }
        _ if row.media_unencrypted && f.transport == Transport::Udp => {
            Some("the media stream is never encrypted on this path")
        }
        _ => None,
    }
}

/// Authentication of an inner layer: DCE/RPC binds carried inside HTTP (Outlook
/// Anywhere) or SMB named pipes authenticate to the RPC server behind the path, not on the
/// path itself.
fn inner_layer(f: &Flow, a: &AuthEvent) -> bool {
    a.context.starts_with("DCE/RPC") && f.posture.protocol != Some("dcerpc")
}

/// Distinct mechanisms of the flow's own layer, each with its first event.
fn mechanisms(f: &Flow) -> Vec<&AuthEvent> {
    let mut seen: Vec<&AuthEvent> = Vec::new();
    for a in f.posture.auth.iter().filter(|a| !inner_layer(f, a)) {
        if !seen.iter().any(|s| s.mechanism == a.mechanism) {
            seen.push(a);
        }
    }
    seen
}

fn user_of(a: &AuthEvent) -> Option<&str> {
    a.user.as_deref()
}

fn cleartext_credential(cx: &Cx, out: &mut Vec<Finding>) {
    for a in cx.flow.posture.auth.iter().filter(|a| a.cleartext) {
        let mech = a.mechanism.name();
        let who = a
            .user
            .as_deref()
            .map(|u| cat!(" for ", u))
            .unwrap_or_default();
        let secret = a
            .secret
            .as_ref()
            .map(|s| cat!(", secret ", s.redacted()))
            .unwrap_or_default();
        let expected = match cx.row {
            Some(r) => cat!(
                "no readable secret; ",
                r.id,
                " supports ",
                auth_list(&r.supported_auth),
                " with ",
                enc_list(r)
            ),
            None => "no readable secret on the wire".into(),
        };
        cx.emit(
            out,
            rule::CLEARTEXT_CREDENTIAL,
            Severity::Critical,
            [a.frame],
            user_of(a),
            &mech,
            expected,
            cat!(mech, " credential in clear (", a.context, ")", who, secret),
            cat!(
                "Cleartext ",
                mech,
                " credential",
                who,
                " on ",
                cx.path_text(),
                ": ",
                a.context,
                " in frame ",
                num(a.frame)
            ),
        );
    }
}

fn unencrypted_path(cx: &Cx, out: &mut Vec<Finding>) {
    let Some(row) = cx.row else {
        return;
    };
    let Seen::Clear(how) = &cx.seen else {
        return;
    };
    if !row.encrypted_by_default || clear_by_design(cx.flow, row).is_some() {
        return;
    }
    let frames =
        std::iter::once(cx.flow.first_frame).chain(cx.flow.posture.auth.iter().map(|a| a.frame));
    cx.emit(
        out,
        rule::UNENCRYPTED_PATH,
        Severity::High,
        frames,
        None,
        "",
        cat!("encrypted by default (", enc_list(row), ")"),
        how.clone(),
        cat!(
            "Unencrypted traffic on ",
            cx.path_text(),
            ", encrypted by default: ",
            how
        ),
    );
}

fn unsupported_auth(cx: &Cx, out: &mut Vec<Finding>) {
    let Some(row) = cx.row else {
        return;
    };
    let expected = || cat!("supported: ", auth_list(&row.supported_auth));
    for a in mechanisms(cx.flow) {
        let m = &a.mechanism;
        if matches!(m, Mechanism::ByIp)
            || row.auth_supported(m)
            || cx.tied.iter().any(|t| t.auth_supported(m))
        {
            continue;
        }
        // NTLM of unseen version on an NTLMv2-only row: the version decides, not seen.
        if *m == Mechanism::Ntlm && row.supported_auth.contains(&AuthKind::Ntlmv2) {
            continue;
        }
        let name = m.name();
        let why = if *m == Mechanism::Ntlmv1 && row.supported_auth.contains(&AuthKind::Ntlmv2) {
            " (NTLM version 2 only)".to_string()
        } else {
            String::new()
        };
        cx.emit(
            out,
            rule::UNSUPPORTED_AUTH,
            Severity::High,
            [a.frame],
            user_of(a),
            &name,
            cat!(expected(), why),
            cat!(name, " (", a.context, ")"),
            format!(
                "{name} authentication on {}, which supports {}{why}",
                cx.path_text(),
                auth_list(&row.supported_auth)
            ),
        );
    }
    // Direct trust / certificate authentication is mutual TLS: a visible handshake
    // (TLS 1.2 or older) without a client certificate does not authenticate the client.
    let cert_only = std::iter::once(row)
        .chain(cx.tied.iter().copied())
        .all(|r| {
            !r.supported_auth.is_empty()
                && r.supported_auth
                    .iter()
                    .all(|k| matches!(k, AuthKind::DirectTrust | AuthKind::Certificate))
        });
    if let (true, Some(t)) = (cert_only, cx.flow.posture.tls.as_ref()) {
        let visible = t.server_hello_frame.is_some() && t.version.is_some_and(|v| v <= 0x0303);
        if visible && !t.client_cert {
            cx.emit(
                out,
                rule::UNSUPPORTED_AUTH,
                Severity::High,
                [t.server_hello_frame.unwrap_or(0)],
                None,
                "no-client-certificate",
                cat!(expected(), " (mutual TLS)"),
                format!(
                    "TLS without a client certificate{}",
                    if t.cert_requested {
                        " although the server asked for one"
                    } else {
                        ""
                    }
                ),
                format!(
                    "No TLS client certificate on {}: direct trust needs mutual TLS",
                    cx.path_text()
                ),
            );
        }
    }
}

/// Kerberos encryption types by weakness: DES (`Some(true)`), RC4 (`Some(false)`).
fn krb_weak(etype: &str) -> Option<bool> {
    if etype.starts_with("des-") {
        Some(true)
    } else if etype.starts_with("rc4-") {
        Some(false)
    } else {
        None
    }
}

fn weak_auth(cx: &Cx, out: &mut Vec<Finding>) {
    let f = cx.flow;
    let p = &f.posture;
    for a in p.auth.iter().filter(|a| a.mechanism == Mechanism::Ntlmv1) {
        let lm = if p.has_fact("ntlmssp.lm-response", "present") {
            ", LM response present"
        } else {
            ""
        };
        let who = a
            .user
            .as_deref()
            .map(|u| format!(" for {u}"))
            .unwrap_or_default();
        cx.emit(
            out,
            rule::WEAK_AUTH,
            Severity::High,
            [a.frame],
            user_of(a),
            "ntlmv1",
            "NTLMv2 or Kerberos".into(),
            format!("NTLMv1 response ({}){lm}", a.context),
            format!(
                "NTLMv1{who} on {}: the response can be cracked to the password hash",
                cx.path_text()
            ),
        );
    }

    let list = |key: &str| -> Vec<String> {
        p.facts
            .get(key)
            .map(|v| v.iter().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let offered = list("krb5.etype-offered");
    let used = list("krb5.etype-used");
    let chosen_weak: Vec<&String> = used.iter().filter(|e| krb_weak(e).is_some()).collect();
    let offered_des: Vec<&String> = offered
        .iter()
        .filter(|e| krb_weak(e) == Some(true))
        .collect();
    let only_weak = !offered.is_empty() && offered.iter().all(|e| krb_weak(e).is_some());
    let mut severity = None;
    let mut why = Vec::new();
    if !chosen_weak.is_empty() {
        let des = chosen_weak.iter().any(|e| krb_weak(e) == Some(true));
        severity = Some(if des {
            Severity::High
        } else {
            Severity::Medium
        });
        why.push(format!(
            "chosen: {}",
            chosen_weak
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if only_weak || !offered_des.is_empty() {
        severity = severity.or(Some(Severity::Medium));
        why.push(if only_weak {
            format!("offered only weak types: {}", offered.join(", "))
        } else {
            format!(
                "DES offered: {}",
                offered_des
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    if let Some(sev) = severity {
        let krb: Vec<&AuthEvent> = p
            .auth
            .iter()
            .filter(|a| a.mechanism == Mechanism::Kerberos)
            .collect();
        let user = krb.iter().find_map(|a| a.user.clone()).or_else(|| {
            p.facts
                .get("krb5.client")
                .and_then(|v| v.iter().next().map(str::to_string))
        });
        let observed = format!("Kerberos encryption types {}", why.join("; "));
        cx.emit(
            out,
            rule::WEAK_AUTH,
            sev,
            krb.iter().map(|a| a.frame),
            user.as_deref(),
            "kerberos-etype",
            "AES encryption types (aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96)".into(),
            observed.clone(),
            format!("Weak Kerberos encryption on {}: {observed}", cx.path_text()),
        );
    }
}

fn weak_tls(cx: &Cx, out: &mut Vec<Finding>) {
    let Some(t) = cx.flow.posture.tls.as_ref() else {
        return;
    };
    let mut why = Vec::new();
    let mut severity = Severity::Medium;
    let mut key = Vec::new();
    match (t.version, t.offered_version) {
        (Some(v), _) if tls::version_is_weak(v) => {
            why.push(format!("{} negotiated", tls::version_name(v)));
            key.push(tls::version_name(v));
            if v == tls::SSL2 {
                severity = Severity::High;
            }
        }
        (None, Some(v)) if tls::version_is_weak(v) => {
            why.push(format!(
                "the client offers at most {}; the server's answer was not captured",
                tls::version_name(v)
            ));
            key.push(format!("offered {}", tls::version_name(v)));
        }
        _ => {}
    }
    if let Some(c) = t.cipher {
        if let Some(w) = tls::cipher_weakness(c) {
            why.push(format!("{w} cipher suite 0x{c:04x}"));
            key.push(format!("0x{c:04x}"));
        }
    }
    if why.is_empty() {
        return;
    }
    let frames = [t.server_hello_frame, t.client_hello_frame];
    let observed = why.join("; ");
    cx.emit(
        out,
        rule::WEAK_TLS,
        severity,
        frames.into_iter().flatten(),
        None,
        &key.join(" "),
        "TLS 1.2 or later with an authenticated, encrypting cipher suite".into(),
        observed.clone(),
        format!("Weak TLS on {}: {observed}", cx.path_text()),
    );
}

fn starttls_not_used(cx: &Cx, out: &mut Vec<Finding>) {
    let f = cx.flow;
    if f.posture.encryption == Encryption::Tls {
        return;
    }
    let checks: [(&str, &str); 5] = [
        ("smtp.starttls", "STARTTLS"),
        ("smtp.x-anonymoustls", "X-ANONYMOUSTLS"),
        ("imap.starttls", "STARTTLS"),
        ("pop3.stls", "STLS"),
        ("ldap.starttls", "StartTLS"),
    ];
    for (key, verb) in checks {
        let Some(vals) = f.posture.facts.get(key) else {
            continue;
        };
        let refused = vals
            .iter()
            .find(|v| v.starts_with("refused"))
            .map(str::to_string);
        let offered = vals.contains("offered");
        let requested = vals.contains("requested");
        let (severity, observed) = match refused {
            Some(r) => {
                let code = r
                    .strip_prefix("refused:")
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                (
                    Severity::High,
                    format!("{verb} refused by the server{code}; the session went on in clear"),
                )
            }
            None if offered && !requested => (
                Severity::Medium,
                format!("{verb} offered by the server, not used by the client"),
            ),
            None => continue,
        };
        let frames = std::iter::once(f.first_frame).chain(f.posture.auth.iter().map(|a| a.frame));
        cx.emit(
            out,
            rule::STARTTLS_NOT_USED,
            severity,
            frames,
            None,
            verb,
            format!("{verb} accepted and the session encrypted"),
            observed.clone(),
            format!("{observed} on {}", cx.path_text()),
        );
    }
}

fn encryption_available_unused(cx: &Cx, out: &mut Vec<Finding>) {
    let Some(row) = cx.row else {
        return;
    };
    let Seen::Clear(how) = &cx.seen else {
        return;
    };
    if row.encrypted_by_default || row.encryption.is_empty() {
        return;
    }
    cx.emit(
        out,
        rule::ENCRYPTION_AVAILABLE_UNUSED,
        Severity::Info,
        [cx.flow.first_frame],
        None,
        "",
        cat!(enc_list(row), " supported, not the default"),
        how.clone(),
        cat!(
            cx.path_text(),
            " supports ",
            enc_list(row),
            " but does not use it by default; this flow is not protected: ",
            how
        ),
    );
}

fn non_default_auth(cx: &Cx, out: &mut Vec<Finding>) {
    let Some(row) = cx.row else {
        return;
    };
    let f = cx.flow;
    let expected = || cat!("default: ", auth_list(&row.default_auth));
    for a in mechanisms(f) {
        let m = &a.mechanism;
        if !row.auth_supported(m) {
            continue;
        }
        let name = m.name();
        let mut note = None;
        if !row.auth_default(m) {
            note = Some(
                if row.same_server_kerberos
                    && *m == Mechanism::Kerberos
                    && f.client.ip() != f.server.ip()
                {
                    "Kerberos between two servers; the reference uses it only when both roles share one server".to_string()
                } else {
                    format!("{name} is supported but not the default")
                },
            );
        } else if row.negotiate_kerberos_first
            && m.is_ntlm()
            && facts_have(f, "http.auth-offered", |s| s == "negotiate")
        {
            note = Some(format!(
                "{name} where the server offered Negotiate, which tries Kerberos first"
            ));
        }
        let Some(note) = note else {
            continue;
        };
        cx.emit(
            out,
            rule::NON_DEFAULT_AUTH,
            Severity::Info,
            [a.frame],
            user_of(a),
            &name,
            expected(),
            cat!(name, " (", a.context, ")"),
            cat!(note, " on ", cx.path_text()),
        );
    }
}

const EXCHANGE_SERVERS: &[Role] = &[Role::Hub, Role::Edge, Role::Mailbox, Role::Cas, Role::Um];

fn undocumented_port(cx: &Cx, out: &mut Vec<Finding>) {
    let f = cx.flow;
    if !f.transport.has_ports() || f.posture.protocol == Some("ipsec-nat-t") {
        return;
    }
    let server_role = |r: &[Role]| r.iter().any(|x| *x != Role::Client);
    let exchange = |r: &[Role]| r.iter().any(|x| EXCHANGE_SERVERS.contains(x));
    let between_roles = server_role(cx.client_roles)
        && server_role(cx.server_roles)
        && (exchange(cx.client_roles) || exchange(cx.server_roles));
    if !between_roles {
        return;
    }
    let documented = cx.fit.is_some_and(|p| p != PortFit::Undocumented);
    if documented {
        return;
    }
    let names = |r: &[Role]| r.iter().map(|x| x.as_str()).collect::<Vec<_>>().join("/");
    let port = format!("{}/{}", f.server.port(), f.transport.name());
    let observed = format!(
        "{} ({}) to {} ({}) on {port}, protocol {}",
        f.client.ip(),
        names(cx.client_roles),
        f.server.ip(),
        names(cx.server_roles),
        cx.proto
    );
    let expected = match cx.row {
        Some(r) => format!(
            "{}'s ports: {}",
            r.id,
            r.ports
                .iter()
                .map(|p| format!("{}/{}", p.port, p.transport))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "a port the catalog documents between these roles".into(),
    };
    cx.emit(
        out,
        rule::UNDOCUMENTED_PORT,
        Severity::Info,
        [f.first_frame],
        None,
        &port,
        expected,
        observed.clone(),
        format!(
            "Traffic between Exchange roles on an undocumented port ({}): {observed}",
            cx.path_text()
        ),
    );
}

fn unknown_visibility(cx: &Cx, out: &mut Vec<Finding>) {
    let f = cx.flow;
    let Some(row) = cx.row else {
        return;
    };
    let p = &f.posture;
    let established = !matches!(p.encryption, Encryption::None | Encryption::Unknown);
    let mut why = Vec::new();
    if let Seen::Unknown(w) = &cx.seen {
        if !row.encryption.is_empty() || row.encrypted_by_default {
            why.push(format!("encryption unknown: {w}"));
        }
    }
    if f.transport == Transport::Tcp && !f.syn_seen && p.protocol.is_none() {
        why.push("the connection's start was not captured and no protocol was recognised".into());
    }
    if p.encryption == Encryption::Tls {
        if let Some(t) = &p.tls {
            if t.version.is_none() {
                why.push("TLS handshake not captured: version and cipher suite unknown".into());
            }
        }
    }
    let gaps = f.reassembly[0].gaps + f.reassembly[1].gaps;
    if gaps > 0 && !established {
        let bytes = f.reassembly[0].gap_bytes + f.reassembly[1].gap_bytes;
        why.push(format!(
            "{gaps} reassembly gap(s), {bytes} bytes missing, before any security layer: one may have started unseen"
        ));
    }
    if f.truncated_frames > 0 && !established {
        why.push(format!(
            "{} frame(s) cut by the snapshot length before any security layer",
            f.truncated_frames
        ));
    }
    if why.is_empty() {
        return;
    }
    let observed = why.join("; ");
    cx.emit(
        out,
        rule::UNKNOWN_VISIBILITY,
        Severity::Low,
        [f.first_frame],
        None,
        "",
        format!(
            "a capture that shows the handshake and security layer of {}",
            row.id
        ),
        observed.clone(),
        format!("Verdict unknown on {}: {observed}", cx.path_text()),
    );
}

#[cfg(test)]
mod tests;
