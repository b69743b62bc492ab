//! Classification: which documented data path(s) a flow is, and why.
//!
//! What this stage guarantees: a pure function of one flow, the catalog and the role map
//! ([`classify`]); every match says why (port, handshake, URL, RPC interface, SMTP verbs,
//! roles) and how sure it is; several equally good rows are all listed (best first, ties
//! in catalog order); a flow that fits no row says why in `unmatched_reason` instead of
//! being dropped.
//!
//! How a row is scored against a flow (higher is better):
//! - port: the server port is one the row lists (2); a DCE/RPC flow on a port the endpoint
//!   mapper handed out, for a row reached through 135 or with dynamic ports (2); RPC over
//!   an SMB named pipe (1); a row with `dynamic`/`random` ports and a protocol that fits
//!   (1); ESP or NAT-T between the hosts, for a row whose encryption is IPsec (1); a port
//!   the row does not list (0: kept only when the roles or the content fit);
//! - protocol recognised by its handshake (2) or by its port (1), and in the row's list; a
//!   protocol the row does not expect rules the row out;
//! - content: an HTTP endpoint among the row's URL prefixes or an RPC interface the row
//!   uses (3; a URL or interface the row does not use rules it out); SMTP verbs that say
//!   server-to-server (X-EXPS, X-ANONYMOUSTLS, a TLS client certificate) or client
//!   submission (AUTH LOGIN / PLAIN); SIP media that says fax (image) or voice (audio);
//! - roles: both ends' roles joined by the row, either way round when it is
//!   bidirectional (3); only one end known and fitting (1); none known (0); a known role
//!   the row does not join rules it out.
//!
//! Score 7 or more is [`Confidence::High`], 4 to 6 `Medium`, less `Low`. Rows below the
//! best are at least one level lower; ties at the top without any content evidence (an
//! HTTPS flow whose URL is encrypted) are at most `Medium`.

use super::infer::{rpc_interfaces, RoleMap};
use crate::cat;
use crate::cat::{host, num};
use crate::catalog::{
    role_bits, AuthKind, Catalog, DataPath, Protocol, Role, RowFacts, Vocabulary,
};
use crate::flow::{Flow, Transport};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// Most paths listed for one flow.
pub const MAX_CANDIDATES: usize = 12;
/// Rows scoring more than this below the best are not listed.
const MAX_SCORE_GAP: i32 = 4;

/// How sure a match is. Orders `Low < Medium < High`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    High,
    Medium,
    Low,
}

impl Confidence {
    fn rank(self) -> u8 {
        match self {
            Confidence::Low => 0,
            Confidence::Medium => 1,
            Confidence::High => 2,
        }
    }

    fn from_rank(r: u8) -> Confidence {
        match r {
            0 => Confidence::Low,
            1 => Confidence::Medium,
            _ => Confidence::High,
        }
    }

    fn from_score(score: i32) -> Confidence {
        if score >= 7 {
            Confidence::High
        } else if score >= 4 {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
        }
    }
}

impl PartialOrd for Confidence {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Confidence {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One catalog row a flow fits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathMatch {
    /// The catalog row id (`T1`, `M21b`...).
    pub id: String,
    pub confidence: Confidence,
    /// Why, one line per kind of evidence (port, protocol, content, roles).
    pub reasons: Vec<String>,
    /// How the flow's port fits the row ([`port_fit`]), for the finding rules.
    #[serde(skip)]
    pub port: PortFit,
}

/// The data paths of one flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// Best first; rows tied with the best share its confidence.
    pub paths: Vec<PathMatch>,
    /// Why no row fits, when `paths` is empty.
    pub unmatched_reason: Option<String>,
    /// Roles of the flow's client and server as the role map gave them.
    pub client_roles: Vec<Role>,
    pub server_roles: Vec<Role>,
}

impl Classification {
    /// The best match.
    pub fn best(&self) -> Option<&PathMatch> {
        self.paths.first()
    }

    /// The best match and the candidates tied with it.
    pub fn top(&self) -> &[PathMatch] {
        let Some(best) = self.best() else {
            return &[];
        };
        let n = self
            .paths
            .iter()
            .take_while(|p| p.confidence == best.confidence)
            .count();
        self.paths.get(..n).unwrap_or_default()
    }

    /// More than one row ties for best.
    pub fn is_ambiguous(&self) -> bool {
        self.top().len() > 1
    }

    /// Row ids, best first.
    pub fn ids(&self) -> Vec<&str> {
        self.paths.iter().map(|p| p.id.as_str()).collect()
    }
}

/// How a flow's port relates to a row's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortFit {
    /// The server port is one the row lists.
    Documented,
    /// DCE/RPC on a port the endpoint mapper (135) hands out, or a row's dynamic RPC port.
    EndpointMapper,
    /// DCE/RPC over an SMB named pipe.
    NamedPipe,
    /// The row gives `dynamic` or `random` ports.
    Variable,
    /// ESP / NAT-T between the hosts: the ports are hidden by IPsec.
    Ipsec,
    /// A port the row does not list.
    Undocumented,
}

impl PortFit {
    fn score(self) -> i32 {
        match self {
            PortFit::Documented | PortFit::EndpointMapper => 2,
            PortFit::NamedPipe | PortFit::Variable | PortFit::Ipsec => 1,
            PortFit::Undocumented => 0,
        }
    }
}

/// RPC interfaces that identify rows, by reference row id (rows not listed accept any
/// interface). A catalog with other ids simply gets no interface evidence.
const MAPI: &[&str] = &["emsmdb", "asyncemsmdb", "nspi", "rfr"];
const DIRECTORY: &[&str] = &["drsuapi", "dsaop", "netlogon", "lsarpc", "samr", "nspi"];
const SYSTEM_ATTENDANT: &[&str] = &[
    "exchange-sysatt-public",
    "exchange-sysatt-private",
    "exchange-sysatt-cluster",
];
const ROW_INTERFACES: &[(&str, &[&str])] = &[
    ("T6", MAPI),
    ("M6", MAPI),
    ("M7", MAPI),
    ("M8", MAPI),
    ("M10", MAPI),
    ("M17", MAPI),
    ("M21b", MAPI),
    ("C10", MAPI),
    ("U5", MAPI),
    ("T10", DIRECTORY),
    ("M9", DIRECTORY),
    ("M16", DIRECTORY),
    ("M18", DIRECTORY),
    ("M19", DIRECTORY),
    ("M20", DIRECTORY),
    ("M11", &["winreg"]),
    ("M15", SYSTEM_ATTENDANT),
];

fn row_interfaces(row: &DataPath) -> Option<&'static [&'static str]> {
    ROW_INTERFACES
        .iter()
        .find(|(id, _)| *id == row.id)
        .map(|(_, l)| *l)
}

/// URL path (lower case, no trailing slash) of an `http.endpoint` value.
fn endpoint_prefix(ep: &str) -> Option<&'static str> {
    Some(match ep {
        "owa" | "owa-forms-login" => "/owa",
        "ews" => "/ews",
        "activesync" => "/microsoft-server-activesync",
        "autodiscover" => "/autodiscover",
        "outlook-anywhere" => "/rpc",
        "oab" => "/oab",
        "um" => "/unifiedmessaging",
        "webdav-exchange" => "/exchange",
        "webdav-public" => "/public",
        "exadmin" => "/exadmin",
        "exchweb" => "/exchweb",
        _ => return None,
    })
}

/// What the classifier reads of a flow.
struct Observed<'a> {
    transport: Option<crate::catalog::Transport>,
    port: u16,
    protocol: Option<Protocol>,
    protocol_name: &'static str,
    handshake: bool,
    ipsec_carrier: bool,
    /// (endpoint fact, URL prefix).
    endpoints: Vec<(&'a str, &'static str)>,
    /// RPC interfaces other than the endpoint mapper.
    interfaces: BTreeSet<&'a str>,
    epm_only: bool,
    smtp_s2s_used: bool,
    smtp_s2s_offered: bool,
    smtp_client_auth: bool,
    client_cert: bool,
    sip_fax: bool,
    sip_voice: bool,
}

impl<'a> Observed<'a> {
    fn of(f: &'a Flow) -> Observed<'a> {
        let p = &f.posture;
        let transport = match f.transport {
            Transport::Tcp => Some(crate::catalog::Transport::Tcp),
            Transport::Udp => Some(crate::catalog::Transport::Udp),
            _ => None,
        };
        let protocol_name = p.protocol.unwrap_or("");
        let protocol = Protocol::from_name(protocol_name);
        let handshake = matches!(p.detected_by, Some("handshake" | "epm"));
        let mut endpoints = Vec::new();
        if let Some(eps) = p.facts.get("http.endpoint") {
            for ep in eps.iter() {
                if let Some(prefix) = endpoint_prefix(ep) {
                    endpoints.push((ep, prefix));
                }
            }
        }
        let all = rpc_interfaces(f);
        let epm_only = !all.is_empty() && all.iter().all(|i| *i == "epm");
        let interfaces: BTreeSet<&str> = all.into_iter().filter(|i| *i != "epm").collect();
        let smtp = protocol == Some(Protocol::Smtp);
        let media = p.facts.get("sip.media");
        let media_is = |kind: &str| {
            media
                .as_ref()
                .is_some_and(|m| m.iter().any(|v| v.starts_with(kind)))
        };
        Observed {
            transport,
            port: f.server.port(),
            protocol,
            protocol_name,
            handshake,
            ipsec_carrier: f.transport == Transport::Esp || protocol_name == "ipsec-nat-t",
            endpoints,
            interfaces,
            epm_only,
            smtp_s2s_used: smtp
                && (p.auth.iter().any(|a| a.context.contains("X-EXPS"))
                    || p.has_fact("smtp.x-anonymoustls", "requested")),
            smtp_s2s_offered: smtp
                && (p.facts.contains_key("smtp.exps-offered")
                    || p.has_fact("smtp.x-anonymoustls", "offered")),
            smtp_client_auth: smtp && p.auth.iter().any(|a| a.context.starts_with("SMTP AUTH")),
            client_cert: p.tls.as_ref().is_some_and(|t| t.client_cert),
            sip_fax: media_is("image"),
            sip_voice: media_is("audio"),
        }
    }

    fn port_text(&self) -> String {
        match self.transport {
            Some(t) => cat!(num(self.port), "/", t.as_str()),
            None => "no ports".into(),
        }
    }
}

/// How the flow's port fits a row, if at all.
fn fit_port(row: &DataPath, rf: &RowFacts, o: &Observed) -> Option<PortFit> {
    if o.ipsec_carrier {
        return rf.ipsec().then_some(PortFit::Ipsec);
    }
    let t = o.transport?;
    if rf.has_port(o.port, t) {
        return Some(PortFit::Documented);
    }
    let dcerpc = o.protocol == Some(Protocol::Dcerpc) && rf.speaks(Protocol::Dcerpc);
    let tcp = t == crate::catalog::Transport::Tcp;
    if dcerpc && tcp && ((rf.has_port(135, t) && o.port != 135) || rf.has_variable_port(t)) {
        return Some(PortFit::EndpointMapper);
    }
    if o.protocol == Some(Protocol::Smb)
        && rf.speaks(Protocol::Dcerpc)
        && row_interfaces(row).is_some_and(|l| o.interfaces.iter().any(|i| l.contains(i)))
    {
        return Some(PortFit::NamedPipe);
    }
    let proto_fits = o.protocol.is_some_and(|p| rf.no_protocol() || rf.speaks(p));
    if rf.has_variable_port(t) && proto_fits && o.handshake {
        return Some(PortFit::Variable);
    }
    if proto_fits && o.handshake && !rf.no_protocol() {
        return Some(PortFit::Undocumented);
    }
    None
}

/// How a flow's port fits a catalog row (`None`: it does not). The finding rules use it
/// to tell documented ports from undocumented ones.
pub fn port_fit(row: &DataPath, flow: &Flow) -> Option<PortFit> {
    fit_port(row, &RowFacts::of(row), &Observed::of(flow))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RoleFit {
    Both,
    Half,
    Unknown,
    Differ,
}

/// How the roles of the two ends (bit sets, see [`role_bits`]) fit the row.
fn fit_roles(bidirectional: bool, rf: &RowFacts, cr: u32, sr: u32) -> RoleFit {
    let (client, server) = (rf.client(), rf.server());
    let both_ways = |a: u32, b: u32| if bidirectional { a | b } else { a };
    // Some pair of the ends' roles connects (DataPath::connects): a client role the row
    // opens from and a server role it reaches, either way round when bidirectional.
    let connects = (cr & client != 0 && sr & server != 0)
        || (bidirectional && sr & client != 0 && cr & server != 0);
    match (cr == 0, sr == 0) {
        (false, false) if connects => RoleFit::Both,
        (false, false) => RoleFit::Differ,
        (false, true) if cr & both_ways(client, server) != 0 => RoleFit::Half,
        (true, false) if sr & both_ways(server, client) != 0 => RoleFit::Half,
        (true, true) => RoleFit::Unknown,
        _ => RoleFit::Differ,
    }
}

fn role_names(roles: &[Role]) -> Cow<'static, str> {
    match roles {
        [] => Cow::Borrowed("unknown"),
        [one] => Cow::Borrowed(one.as_str()),
        _ => Cow::Owned(
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join("/"),
        ),
    }
}

/// Why a row was left out.
enum Miss {
    Roles,
    Protocol,
    Content,
    Port,
}

/// What made a row fit; turned into reason lines only for the rows listed.
#[derive(Clone, Copy)]
struct Scored<'o> {
    index: usize,
    port: PortFit,
    /// The protocol is in the row's list (recognised by handshake or by port).
    protocol: bool,
    /// The URL prefix and endpoint fact that are the row's.
    url: Option<(&'o str, &'static str)>,
    /// The RPC interface the row uses.
    interface: Option<&'o str>,
    smtp_s2s: bool,
    smtp_submission: bool,
    client_cert: bool,
    sip_fax: bool,
    sip_voice: bool,
    roles: RoleFit,
    content: bool,
    score: i32,
}

/// Score one row without allocating (the catalog has dozens of rows per flow).
fn score_row<'o>(
    index: usize,
    (row, rf): (&DataPath, &RowFacts),
    o: &Observed<'o>,
    cr: u32,
    sr: u32,
) -> Result<Scored<'o>, Miss> {
    let Some(port) = fit_port(row, rf, o) else {
        let port_listed = o.transport.is_some_and(|t| rf.has_port(o.port, t));
        return Err(if port_listed {
            Miss::Protocol
        } else {
            Miss::Port
        });
    };
    let mut s = Scored {
        index,
        port,
        protocol: false,
        url: None,
        interface: None,
        smtp_s2s: false,
        smtp_submission: false,
        client_cert: false,
        sip_fax: false,
        sip_voice: false,
        roles: RoleFit::Unknown,
        content: false,
        score: port.score(),
    };

    // Protocol.
    match o.protocol {
        _ if matches!(port, PortFit::NamedPipe | PortFit::Ipsec) => {}
        Some(p) if rf.speaks(p) => {
            s.protocol = true;
            s.score += if o.handshake { 2 } else { 1 };
        }
        Some(_) if !rf.no_protocol() => return Err(Miss::Protocol),
        _ => {}
    }

    let mut content = 0;
    // Content: URL.
    if !o.endpoints.is_empty() && rf.speaks(Protocol::Http) && !row.http_paths.is_empty() {
        let hit = o
            .endpoints
            .iter()
            .find(|(_, pre)| row.http_paths.iter().any(|rp| same_path(rp, pre)));
        match hit {
            Some(h) => {
                content += 3;
                s.url = Some(*h);
            }
            None => return Err(Miss::Content),
        }
    }
    // Content: RPC interface.
    if !o.interfaces.is_empty() {
        if let Some(list) = row_interfaces(row) {
            match o.interfaces.iter().find(|i| list.contains(i)) {
                Some(i) => {
                    content += 3;
                    s.interface = Some(i);
                }
                None => return Err(Miss::Content),
            }
        }
    }
    // Content: SMTP verbs.
    if rf.speaks(Protocol::Smtp) {
        let server_to_server = rf.client() & role_bits(&[Role::Client]) == 0;
        if o.smtp_s2s_used || o.smtp_s2s_offered {
            let w = if o.smtp_s2s_used { 2 } else { 1 };
            if server_to_server {
                content += w;
                s.smtp_s2s = true;
            } else {
                content -= w;
            }
        }
        if o.smtp_client_auth {
            if server_to_server {
                content -= 1;
            } else {
                content += 1;
                s.smtp_submission = true;
            }
        }
        let trusts_certs = row
            .supported_auth
            .iter()
            .any(|a| matches!(a, AuthKind::DirectTrust | AuthKind::Certificate));
        if o.client_cert && trusts_certs {
            content += 1;
            s.client_cert = true;
        }
    }
    // Content: SIP media.
    if rf.speaks(Protocol::Sip) && (o.sip_fax || o.sip_voice) {
        let name = row.name.to_ascii_lowercase();
        if o.sip_fax && name.contains("fax") {
            content += 2;
            s.sip_fax = true;
        } else if o.sip_voice && !o.sip_fax && (name.contains("phone") || name.contains("pbx")) {
            content += 1;
            s.sip_voice = true;
        }
    }
    s.score += content;
    s.content = content > 0;

    // Roles.
    s.roles = fit_roles(row.bidirectional, rf, cr, sr);
    // A port the row does not list, or a row that names neither port nor protocol, is
    // only placed by the roles of both ends or by what the content says.
    let loose = port == PortFit::Undocumented || (port == PortFit::Variable && rf.no_protocol());
    if loose && s.roles != RoleFit::Both && content <= 0 {
        return Err(Miss::Port);
    }
    match s.roles {
        RoleFit::Both => s.score += 3,
        RoleFit::Half => s.score += 1,
        RoleFit::Unknown => {}
        RoleFit::Differ => return Err(Miss::Roles),
    }
    Ok(s)
}

fn same_path(row_path: &str, prefix: &str) -> bool {
    row_path.trim_end_matches('/').eq_ignore_ascii_case(prefix)
}

/// The reason lines of a listed row.
fn reasons(
    s: &Scored,
    row: &DataPath,
    f: &Flow,
    o: &Observed,
    cr: &[Role],
    sr: &[Role],
) -> Vec<String> {
    // The port, the protocol and the roles, and room for a content line.
    let mut v = Vec::with_capacity(4);
    v.push(match s.port {
        PortFit::Documented => cat!("port ", o.port_text(), " is documented"),
        PortFit::EndpointMapper if row.has_variable_port(crate::catalog::Transport::Tcp) => cat!(
            "DCE/RPC on port ",
            num(o.port),
            ", one of the row's dynamic RPC ports"
        ),
        PortFit::EndpointMapper => cat!(
            "DCE/RPC on port ",
            num(o.port),
            ", a port the endpoint mapper on 135 hands out"
        ),
        PortFit::NamedPipe => "DCE/RPC over an SMB named pipe".into(),
        PortFit::Variable => cat!(
            "the row's ports are dynamic or random; ",
            o.port_text(),
            " seen"
        ),
        PortFit::Ipsec => {
            "IPsec between the hosts hides the ports; the row's encryption is IPsec".into()
        }
        PortFit::Undocumented => cat!("port ", o.port_text(), " is not documented for this row"),
    });
    if s.protocol {
        let by = if o.handshake {
            "its handshake"
        } else {
            "its port"
        };
        v.push(cat!("protocol ", o.protocol_name, " recognised by ", by));
    }
    if let Some((ep, pre)) = s.url {
        v.push(cat!("URL ", pre, " (http.endpoint ", ep, ") is the row's"));
    }
    if let Some(i) = s.interface {
        v.push(cat!("RPC interface ", i, " is one the row uses"));
    }
    if o.epm_only && row.protocols.contains(&Protocol::Dcerpc) {
        v.push("endpoint-mapper lookup only: the calls continue on the port it names".into());
    }
    if s.smtp_s2s {
        v.push(if o.smtp_s2s_used {
            "X-EXPS / X-ANONYMOUSTLS in use: Exchange server to server".into()
        } else {
            "the server offers X-EXPS / X-ANONYMOUSTLS (Exchange transport)".into()
        });
    }
    if s.smtp_submission {
        v.push("SMTP AUTH from the client: message submission".into());
    }
    if s.client_cert {
        v.push("TLS client certificate: mutual TLS as the row documents".into());
    }
    if s.sip_fax {
        v.push("SDP offers image media (T.38 fax)".into());
    }
    if s.sip_voice {
        v.push("SDP offers audio media (a call)".into());
    }
    let (client_ip, server_ip) = (host(f.client.ip()), host(f.server.ip()));
    let either = if row.bidirectional {
        ", either way"
    } else {
        ""
    };
    let fit = match s.roles {
        RoleFit::Both => " fit the row's ",
        RoleFit::Half => ": the known end fits the row's ",
        _ => {
            v.push(cat!("roles of ", client_ip, " and ", server_ip, " unknown"));
            return v;
        }
    };
    v.push(cat!(
        "roles ",
        client_ip,
        " (",
        role_names(cr),
        ") to ",
        server_ip,
        " (",
        role_names(sr),
        ")",
        fit,
        role_names(&row.client),
        " to ",
        role_names(&row.server),
        either
    ));
    v
}

/// The data paths `flow` may be, best first, from its ports, handshake, content and the
/// roles of its two ends.
pub fn classify(flow: &Flow, catalog: &Catalog, roles: &RoleMap) -> Classification {
    let client_roles = roles.role_set(flow.client.ip());
    let server_roles = roles.role_set(flow.server.ip());
    let o = Observed::of(flow);
    let mut scored = Vec::with_capacity(catalog.paths.len());
    let (mut by_roles, mut by_protocol, mut by_content) = (Vec::new(), Vec::new(), Vec::new());
    let (cr, sr) = (role_bits(&client_roles), role_bits(&server_roles));
    for (i, (row, rf)) in catalog.rows().enumerate() {
        match score_row(i, (row, rf), &o, cr, sr) {
            Ok(s) => scored.push(s),
            Err(Miss::Roles) => by_roles.push(row.id.as_str()),
            Err(Miss::Protocol) => by_protocol.push(row.id.as_str()),
            Err(Miss::Content) => by_content.push(row.id.as_str()),
            Err(Miss::Port) => {}
        }
    }
    // A row whose port fits outranks any guess from a port no row lists.
    if scored.iter().any(|s| s.port != PortFit::Undocumented) {
        scored.retain(|s| s.port != PortFit::Undocumented);
    }
    // Best score first; then the row with fewer server roles (more specific); then
    // catalog order.
    let width = |i: usize| catalog.paths.get(i).map_or(0, |r| r.server.len());
    scored.sort_by_key(|s| (std::cmp::Reverse(s.score), width(s.index), s.index));

    let mut paths = Vec::with_capacity(scored.len().min(MAX_CANDIDATES));
    if let Some(top) = scored.first() {
        let top_score = top.score;
        let tied = scored.iter().filter(|s| s.score == top_score).count();
        let any_content = scored
            .iter()
            .filter(|s| s.score == top_score)
            .any(|s| s.content);
        let mut top_conf = Confidence::from_score(top_score);
        if tied > 1 && !any_content && top_conf == Confidence::High {
            top_conf = Confidence::Medium;
        }
        for s in &scored {
            let Some(row) = catalog.paths.get(s.index) else {
                continue;
            };
            let conf = if s.score == top_score {
                top_conf
            } else {
                if top_conf == Confidence::Low || top_score - s.score > MAX_SCORE_GAP {
                    continue;
                }
                let own = Confidence::from_score(s.score);
                Confidence::from_rank(own.rank().min(top_conf.rank() - 1))
            };
            if paths.len() >= MAX_CANDIDATES {
                break;
            }
            paths.push(PathMatch {
                port: s.port,
                id: row.id.clone(),
                confidence: conf,
                reasons: reasons(s, row, flow, &o, &client_roles, &server_roles),
            });
        }
    }

    let unmatched_reason = paths.is_empty().then(|| {
        let port = o.port_text();
        let proto = if o.protocol_name.is_empty() {
            "no recognised protocol".to_string()
        } else {
            format!("protocol {}", o.protocol_name)
        };
        if !flow.transport.has_ports() && !o.ipsec_carrier {
            return format!(
                "{} carries no ports; no documented path fits it",
                flow.transport.name()
            );
        }
        let mut why = Vec::new();
        if !by_roles.is_empty() {
            why.push(format!(
                "{port} and {proto} fit {} but no documented path joins {} to {}",
                by_roles.join(", "),
                role_names(&client_roles),
                role_names(&server_roles)
            ));
        }
        if !by_content.is_empty() {
            why.push(format!(
                "{port} fits {} but the URL or RPC interface seen ({}) is none of theirs",
                by_content.join(", "),
                content_seen(&o)
            ));
        }
        if !by_protocol.is_empty() {
            why.push(format!(
                "{port} is documented for {}, but the flow shows {proto}",
                by_protocol.join(", ")
            ));
        }
        if why.is_empty() {
            why.push(if o.ipsec_carrier {
                format!(
                    "IPsec between {} ({}) and {} ({}), but no IPsec path joins these roles",
                    flow.client.ip(),
                    role_names(&client_roles),
                    flow.server.ip(),
                    role_names(&server_roles)
                )
            } else {
                format!("no documented path uses {port} with {proto}")
            });
        }
        why.join("; ")
    });

    Classification {
        paths,
        unmatched_reason,
        client_roles,
        server_roles,
    }
}

fn content_seen(o: &Observed) -> String {
    let mut v: Vec<String> = o
        .endpoints
        .iter()
        .map(|(ep, pre)| format!("{pre} ({ep})"))
        .collect();
    v.extend(o.interfaces.iter().map(|i| format!("interface {i}")));
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthEvent, Mechanism};

    use crate::classify::fixture::fix;

    /// The roles fit as the row's lists define it, pair by pair: what the bit sets of
    /// [`fit_roles`] must agree with.
    fn fit_roles_by_lists(row: &DataPath, cr: &[Role], sr: &[Role]) -> RoleFit {
        let as_client =
            |r: &Role| row.client.contains(r) || (row.bidirectional && row.server.contains(r));
        let as_server =
            |r: &Role| row.server.contains(r) || (row.bidirectional && row.client.contains(r));
        match (cr.is_empty(), sr.is_empty()) {
            (false, false) if cr.iter().any(|c| sr.iter().any(|s| row.connects(*c, *s))) => {
                RoleFit::Both
            }
            (false, false) => RoleFit::Differ,
            (false, true) if cr.iter().any(as_client) => RoleFit::Half,
            (true, false) if sr.iter().any(as_server) => RoleFit::Half,
            (true, true) => RoleFit::Unknown,
            _ => RoleFit::Differ,
        }
    }

    proptest::proptest! {
        /// For every row of the catalog (each direction flag), any role sets of the two
        /// ends fit the same through the bit sets as through the lists.
        #[test]
        fn role_bits_fit_as_the_lists_do(c in 0u32..512, s in 0u32..512, flip: bool) {
            let set = |m: u32| -> Vec<Role> {
                Role::ALL.iter().copied().filter(|r| m & (1 << (*r as u32)) != 0).collect()
            };
            let (cr, sr) = (set(c), set(s));
            for (row, rf) in fix().catalog.rows() {
                let mut row = row.clone();
                row.bidirectional ^= flip;
                let want = fit_roles_by_lists(&row, &cr, &sr);
                let got = fit_roles(row.bidirectional, rf, role_bits(&cr), role_bits(&sr));
                proptest::prop_assert_eq!(got, want, "{}", row.id);
            }
        }
    }

    /// A row's facts answer as its lists do: every port of every row (and its
    /// neighbours, both transports), every protocol, IPsec.
    #[test]
    fn row_facts_answer_as_the_row_does() {
        use crate::catalog::{EncKind, Port, Transport as T};
        let cat = &fix().catalog;
        let mut ports: Vec<u16> = vec![0, 1, 135, 65535];
        for row in &cat.paths {
            for p in &row.ports {
                if let Port::Number(n) = p.port {
                    ports.extend([n.saturating_sub(1), n, n.saturating_add(1)]);
                }
            }
        }
        for (row, rf) in cat.rows() {
            for &n in &ports {
                for t in [T::Tcp, T::Udp] {
                    assert_eq!(rf.has_port(n, t), row.has_port(n, t), "{} {n}", row.id);
                    assert_eq!(
                        rf.has_variable_port(t),
                        row.has_variable_port(t),
                        "{}",
                        row.id
                    );
                }
            }
            for p in Protocol::ALL {
                assert_eq!(rf.speaks(*p), row.protocols.contains(p), "{}", row.id);
            }
            assert_eq!(rf.no_protocol(), row.protocols.is_empty());
            assert_eq!(rf.ipsec(), row.encryption.contains(&EncKind::Ipsec));
            assert_eq!(rf.client(), role_bits(&row.client));
        }
    }

    /// The one fixture flow from `client` to server port `port`.
    fn the(client: &str, port: u16) -> &'static Flow {
        let ip: std::net::IpAddr = client.parse().unwrap_or_else(|e| panic!("{client}: {e}"));
        let v: Vec<&Flow> = fix()
            .flows
            .iter()
            .filter(|f| f.client.ip() == ip && f.server.port() == port)
            .collect();
        assert_eq!(v.len(), 1, "{client} -> :{port}");
        v[0]
    }

    fn class(f: &Flow) -> Classification {
        let x = fix();
        let a = classify(f, &x.catalog, &x.inferred);
        let b = classify(f, &x.catalog, &x.stated);
        assert_eq!(
            a.ids(),
            b.ids(),
            "inferred and stated roles agree on {:?}",
            f.server
        );
        a
    }

    fn best(f: &Flow) -> (String, Confidence) {
        let c = class(f);
        let b = c
            .best()
            .unwrap_or_else(|| panic!("{:?} unmatched: {:?}", f.server, c.unmatched_reason));
        (b.id.clone(), b.confidence)
    }

    #[test]
    fn smtp_rows_by_roles_and_verbs() {
        // smtp-hub-hub-anonymoustls, smtp-hub-hub-cleartext
        let hub_hub: Vec<&Flow> = fix()
            .flows
            .iter()
            .filter(|f| f.client.ip().to_string() == "10.1.0.10" && f.server.port() == 25)
            .collect();
        assert_eq!(hub_hub.len(), 2);
        for f in hub_hub {
            assert_eq!(best(f), ("T1".into(), Confidence::High));
        }
        // smtp-edge-hub-mutualtls and smtp-edge-hub-no-client-cert: both T3 (the Edge
        // role comes from the first), only the first with the certificate reason
        let edge: Vec<&Flow> = fix()
            .flows
            .iter()
            .filter(|f| f.client.ip().to_string() == "192.0.2.25" && f.server.port() == 25)
            .collect();
        assert_eq!(edge.len(), 2);
        for f in edge {
            let c = class(f);
            assert_eq!(c.ids(), ["T3"]);
            let cert = f.posture.tls.as_ref().is_some_and(|t| t.client_cert);
            let reason = c.paths[0]
                .reasons
                .iter()
                .any(|r| r.contains("client certificate"));
            assert_eq!(cert, reason, "{:?}", c.paths[0].reasons);
        }
        // smtp-client-auth-login-clear (587), smtp-starttls-refused (25)
        assert_eq!(best(the("10.2.0.4", 587)), ("T11".into(), Confidence::High));
        assert_eq!(best(the("10.2.0.6", 25)), ("T11".into(), Confidence::High));
    }

    #[test]
    fn http_rows_by_url() {
        let cases = [
            ("10.2.0.9", "C3"),   // http-owa-forms-clear
            ("10.2.0.10", "C2"),  // http-ews-basic-clear
            ("10.2.0.11", "C7"),  // http-activesync-basic-clear
            ("10.2.0.12", "C1"),  // http-autodiscover-ntlmv2
            ("10.2.0.13", "C3"),  // http-owa-ntlmv1
            ("10.2.0.14", "C2"),  // http-ews-negotiate-kerberos
            ("10.2.0.17", "C13"), // http-webdav
        ];
        for (client, id) in cases {
            let c = class(the(client, 80));
            assert_eq!(c.ids(), [id], "{client}: {:?}", c.paths);
            assert_eq!(c.paths[0].confidence, Confidence::High, "{client}");
            assert!(
                c.paths[0].reasons.iter().any(|r| r.contains("URL")),
                "{client}"
            );
        }
        // http-oab: C14 and the English edition's M21a, both High, C14 first.
        let c = class(the("10.2.0.16", 80));
        assert_eq!(c.ids(), ["C14", "M21a"]);
        assert_eq!(c.top().len(), 2);
        // http-outlook-anywhere: both channels.
        for f in fix()
            .flows
            .iter()
            .filter(|f| f.client.ip().to_string() == "10.2.0.15")
        {
            assert_eq!(class(f).ids(), ["C6"]);
        }
    }

    #[test]
    fn https_without_url_lists_every_client_access_web_row() {
        let c = class(the("10.2.0.7", 443));
        let ids = c.ids();
        for id in ["C1", "C2", "C3", "C6", "C7", "C13", "C14"] {
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
        assert!(c.is_ambiguous());
        assert_eq!(
            c.paths[0].confidence,
            Confidence::Medium,
            "ties without content"
        );
        // ipv6-https: the IPv6 CAS is inferred from its SNI; same rows.
        let v6 = fix()
            .flows
            .iter()
            .find(|f| f.server.is_ipv6())
            .unwrap_or_else(|| panic!("no IPv6 flow"));
        let c6 = classify(v6, &fix().catalog, &fix().inferred);
        assert!(c6.ids().contains(&"C3"), "{:?}", c6.paths);
    }

    #[test]
    fn rpc_rows_by_interface_and_endpoint_mapper() {
        // mapi-rpc-privacy: EMSMDB on the dynamic port.
        let c = class(the("10.2.0.22", 59532));
        assert_eq!(c.ids(), ["M6", "M21b"]);
        assert_eq!(c.paths[0].confidence, Confidence::High);
        assert!(c.paths[0]
            .reasons
            .iter()
            .any(|r| r.contains("endpoint mapper")));
        assert!(c.paths[0].reasons.iter().any(|r| r.contains("emsmdb")));
        // The endpoint-mapper flow itself: client-to-mailbox rows on 135.
        let epm = class(the("10.2.0.22", 135));
        assert!(epm.ids().contains(&"M6"), "{:?}", epm.paths);
        // drsuapi-kerberos-privacy: the Hub's AD access.
        let c = class(the("10.1.0.10", 49158));
        assert_eq!(c.ids(), ["T10"]);
        assert_eq!(c.paths[0].confidence, Confidence::High);
        // smb2-ntlm: admin SMB, and Remote Registry through the winreg pipe.
        let c = class(the("10.2.0.25", 445));
        assert_eq!(c.ids(), ["M11", "M12"]);
        assert_eq!(c.top().len(), 2, "a tie: {:?}", c.paths);
        assert!(c.paths[0].reasons.iter().any(|r| r.contains("named pipe")));
        // smb3-encrypted: no pipe seen, only the SMB row.
        assert_eq!(class(the("10.2.0.27", 445)).ids(), ["M12"]);
    }

    #[test]
    fn directory_transport_and_um_rows() {
        // ldap-simple-bind-clear, ldaps-edgesync: EdgeSync, not the Edge's own ADAM (T9).
        assert_eq!(
            best(the("10.1.0.10", 50389)),
            ("T8".into(), Confidence::High)
        );
        assert_eq!(
            best(the("10.1.0.10", 50636)),
            ("T8".into(), Confidence::High)
        );
        // ldap-sasl-sealed: Hub to DC.
        let sealed = fix()
            .flows
            .iter()
            .find(|f| {
                f.server.port() == 389
                    && f.transport == Transport::Tcp
                    && f.client.ip().to_string() == "10.1.0.10"
            })
            .unwrap_or_else(|| panic!("no LDAP flow"));
        assert_eq!(class(sealed).ids(), ["T10"]);
        // sip-clear: a call (audio) is the PBX row; sip-tls.
        let c = class(the("10.9.0.2", 5060));
        assert_eq!(c.ids().first(), Some(&"U2"));
        assert_eq!(c.paths[0].confidence, Confidence::High);
        assert!(class(the("10.9.0.2", 5061)).ids().contains(&"U2"));
        // cluster-heartbeat and esp.
        assert_eq!(class(the("10.1.0.30", 3343)).ids(), ["M5"]);
        let esp = fix()
            .flows
            .iter()
            .find(|f| f.transport == Transport::Esp)
            .unwrap_or_else(|| panic!("no ESP flow"));
        let c = class(esp);
        for id in ["M1", "M2", "M5"] {
            assert!(c.ids().contains(&id), "{id}: {:?}", c.paths);
        }
    }

    #[test]
    fn client_to_dc_is_unmatched_with_the_reason() {
        // ldap-starttls, kerberos-as-tgs, dns: workstation to DC, no documented path.
        for port in [389, 88, 53] {
            let f = fix()
                .flows
                .iter()
                .find(|f| f.server.port() == port && f.client.ip().to_string().starts_with("10.2."))
                .unwrap_or_else(|| panic!("no client flow to {port}"));
            let c = class(f);
            assert!(c.paths.is_empty(), "{port}: {:?}", c.paths);
            let why = c.unmatched_reason.unwrap_or_default();
            assert!(why.contains("T10") && why.contains("client to dc"), "{why}");
        }
    }

    #[test]
    fn every_fixture_flow_is_classified_or_explained() {
        let x = fix();
        for f in &x.flows {
            let c = classify(f, &x.catalog, &x.inferred);
            assert_eq!(
                c.paths.is_empty(),
                c.unmatched_reason.is_some(),
                "{:?}",
                f.server
            );
            assert!(c.paths.len() <= MAX_CANDIDATES);
            for p in &c.paths {
                assert!(x.catalog.get(&p.id).is_some());
                assert!(!p.reasons.is_empty());
            }
            let conf: Vec<Confidence> = c.paths.iter().map(|p| p.confidence).collect();
            let mut sorted = conf.clone();
            sorted.sort_by(|a, b| b.cmp(a));
            assert_eq!(conf, sorted, "best first");
        }
    }

    fn flow(client: &str, server: &str) -> Flow {
        let mut f = Flow::sample(Transport::Tcp, client, server);
        f.stream = Some(7);
        f.last_frame = 9;
        f.frames = [5, 4];
        f.bytes = [500, 400];
        f.payload = [300, 200];
        f
    }

    #[test]
    fn smtp_on_an_undocumented_port_between_hubs_is_t1_low() {
        let mut f = flow("10.1.0.10:40000", "10.1.0.11:2525");
        f.posture.protocol = Some("smtp");
        f.posture.detected_by = Some("handshake");
        f.posture.fact("smtp.x-anonymoustls", "offered");
        let c = classify(&f, &fix().catalog, &fix().stated);
        assert_eq!(c.ids(), ["T1"]);
        assert!(
            c.paths[0].reasons[0].contains("not documented"),
            "{:?}",
            c.paths
        );
        assert_eq!(
            port_fit(&fix().catalog.paths[0], &f),
            Some(PortFit::Undocumented)
        );
        // Unknown roles and no content: not placed.
        let g = flow("198.51.100.1:40000", "198.51.100.2:2525");
        let mut g = g;
        g.posture.protocol = Some("smtp");
        g.posture.detected_by = Some("handshake");
        let c = classify(&g, &fix().catalog, &RoleMap::default());
        assert!(c.paths.is_empty());
        assert!(c.unmatched_reason.unwrap_or_default().contains("2525/tcp"));
    }

    #[test]
    fn owa_url_on_8080_with_unknown_roles_still_places_the_flow() {
        let mut f = flow("198.51.100.1:40000", "198.51.100.2:8080");
        f.posture.protocol = Some("http");
        f.posture.detected_by = Some("handshake");
        f.posture.fact("http.endpoint", "owa");
        let c = classify(&f, &fix().catalog, &RoleMap::default());
        // C3 and C12 differ only by roles, which are unknown.
        assert_eq!(c.ids(), ["C3", "C12"]);
        assert_eq!(c.top().len(), 2);
    }

    #[test]
    fn a_protocol_the_row_does_not_expect_rules_it_out() {
        let mut f = flow("10.2.0.9:40000", "10.1.0.20:80");
        f.posture.protocol = Some("smtp");
        f.posture.detected_by = Some("handshake");
        let c = classify(&f, &fix().catalog, &fix().stated);
        assert!(c.paths.is_empty());
        let why = c.unmatched_reason.unwrap_or_default();
        assert!(
            why.contains("80/tcp is documented for") && why.contains("smtp"),
            "{why}"
        );
    }

    #[test]
    fn kerberos_x_exps_on_a_same_host_pair_and_no_roles() {
        // No roles at all: port and handshake only, several candidates, none High.
        let mut f = flow("10.1.0.10:40000", "10.1.0.11:25");
        f.posture.protocol = Some("smtp");
        f.posture.detected_by = Some("handshake");
        f.posture.add_auth(AuthEvent {
            mechanism: Mechanism::Kerberos,
            user: None,
            cleartext: false,
            secret: None,
            frame: 4,
            context: "SMTP X-EXPS".into(),
            after_tls: false,
        });
        let c = classify(&f, &fix().catalog, &RoleMap::default());
        assert!(c.paths.len() > 1);
        assert!(c.paths.iter().all(|p| p.confidence != Confidence::High));
        assert_ne!(c.paths[0].id, "T11", "X-EXPS says server to server");
    }
}
