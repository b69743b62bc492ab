//! Roles from traffic: which host is a Hub, Edge, Client Access, Mailbox, Unified
//! Messaging server, domain controller, IP gateway or client, judged only by what the
//! flows show, each role with the evidence that decided it.
//!
//! What this stage guarantees: the result depends only on the flows, not on the order
//! they are observed in (evidence names the earliest flows in report order, and every
//! capped list keeps its smallest members: ports, peers, names, the hosts with names),
//! so the capture pass can feed it flows as they end; the one exception is which hosts
//! are tracked once [`MAX_HOSTS`] is reached, which follows observation order (the
//! order flows end in, itself the same for any thread count). Never does it depend on
//! hash order or the thread count. Every inferred role carries
//! at least one line of evidence; memory is bounded by [`MAX_HOSTS`] whatever the
//! capture size (hosts past the cap are counted in [`InferredRoles::hosts_dropped`],
//! never silently lost).
//!
//! The rules:
//! - an SMTP server advertising X-EXPS or X-ANONYMOUSTLS, or an SMTP client
//!   authenticating with X-EXPS, is an Exchange transport server: an Edge when it also
//!   serves ADAM on 50389/50636 or accepts SMTP from outside the private ranges, a Hub
//!   otherwise; an EdgeSync client (to 50389/50636) is a Hub;
//! - a server on 50389/50636 (ADAM, EdgeSync) is an Edge;
//! - a server of /owa, /ews, /Microsoft-Server-ActiveSync, /autodiscover, /rpc/rpcproxy.dll
//!   or /OAB, or of POP3/IMAP4 with the Exchange banner, is Client Access; so is a TLS
//!   server on 443 whose SNI names a host such a server answers for (one line of
//!   evidence per name, citing its earliest flow);
//! - a server accepting EMSMDB binds, named for EMSMDB by an endpoint mapper, accepting
//!   NSPI binds (unless it is a domain controller), or a cluster heartbeat peer on UDP 3343
//!   is a Mailbox server;
//! - a Kerberos KDC on 88, a DRSUAPI or NETLOGON RPC server, a CLDAP netlogon responder or
//!   a global catalog on 3268 is a domain controller (LDAP on 389 adds evidence);
//! - a SIP server on 5060-5062 (or a TLS server on 5061) is Unified Messaging and its SIP
//!   peer an IP gateway; a host seen on both sides takes the side of most of its flows;
//! - a host that only ever acts as a client, of at least one host given a role above, is
//!   a client.
//!
//! [`RoleMap`] joins these with the stated inventory ([`Roles`]): stated roles win, and an
//! inferred server role the inventory does not list for that address is a contradiction.

use crate::catalog::roles::Roles;
use crate::catalog::{Role, Vocabulary};
use crate::flow::hash::FlowHash;
use crate::flow::{Endpoint, FilterText, Flow, Transport};
use crate::proto::uuids::{lookup, Uuid};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Most hosts tracked (servers with evidence plus client-only hosts); more are counted.
pub const MAX_HOSTS: usize = 262_144;
/// Most distinct peers remembered per host and evidence kind.
pub const MAX_PEERS: usize = 8;
/// Most distinct server ports listed per host and evidence kind.
pub const MAX_PORTS: usize = 8;
/// Most hosts whose names are remembered for the SNI rule, and most (server, name)
/// pairs of TLS flows on 443 (the smallest are kept).
pub const MAX_NAMES: usize = 4096;
/// Most names (HTTP Host, TLS SNI) remembered per host, the smallest kept. A Client
/// Access server answering for more (host names, addresses, aliases) may lose the one
/// an SNI rule would match: 32 covers real deployments at 4096 x 32 names at most.
pub const MAX_HOST_NAMES: usize = 32;
/// Most evidence lines kept for a client (one per server it used).
pub const MAX_CLIENT_EVIDENCE: usize = 4;

/// One inferred role of one host, with why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoleEvidence {
    pub ip: IpAddr,
    pub role: Role,
    /// Human-readable lines, each naming the traffic (`tcp.stream eq N`) that showed it.
    pub evidence: Vec<String>,
}

/// Every role inferred from a set of flows, sorted by address then role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InferredRoles {
    entries: Vec<RoleEvidence>,
    /// Hosts seen after [`MAX_HOSTS`] was reached, not considered.
    pub hosts_dropped: u64,
}

impl InferredRoles {
    /// Every (host, role) with its evidence, by address then role.
    pub fn entries(&self) -> &[RoleEvidence] {
        &self.entries
    }

    /// The roles inferred for `ip`, sorted.
    pub fn roles_of(&self, ip: IpAddr) -> Vec<Role> {
        self.of(ip).iter().map(|e| e.role).collect()
    }

    /// The entries of `ip`.
    pub fn of(&self, ip: IpAddr) -> &[RoleEvidence] {
        let ip = ip.to_canonical();
        // One search, then the host's few entries (one a role) follow.
        let start = self.entries.partition_point(|e| e.ip < ip);
        let from = self.entries.get(start..).unwrap_or_default();
        let n = from.iter().take_while(|e| e.ip == ip).count();
        from.get(..n).unwrap_or_default()
    }

    /// The evidence for `role` on `ip`, if inferred.
    pub fn evidence(&self, ip: IpAddr, role: Role) -> Option<&[String]> {
        self.of(ip)
            .iter()
            .find(|e| e.role == role)
            .map(|e| e.evidence.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Infer roles from a set of flows (all in memory). For a stream of flows, feed a
/// [`RoleInference`] one flow at a time instead.
pub fn infer_roles(flows: &[Flow]) -> InferredRoles {
    let mut inf = RoleInference::default();
    for f in flows {
        inf.observe(f);
    }
    inf.finish()
}

/// A kind of evidence, and the role it points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    SmtpExpsOffered,
    SmtpAnonTlsOffered,
    SmtpExpsClient,
    SmtpClientCert,
    SmtpFromOutside,
    EdgeSyncServer,
    EdgeSyncClient,
    HttpEndpoint(&'static str),
    PopImapExchange,
    RpcMapi,
    RpcNspi,
    EpmMapi,
    ClusterPeer,
    Kdc,
    LdapDc,
    LdapGc,
    Cldap,
    Drsuapi,
    Netlogon,
    EpmDrsuapi,
    SipServer,
    SipTlsServer,
    SipClient,
    SipTlsClient,
}

impl Kind {
    fn describe(self) -> String {
        match self {
            Kind::SmtpExpsOffered => {
                "SMTP server advertising X-EXPS (Exchange server authentication)".into()
            }
            Kind::SmtpAnonTlsOffered => "SMTP server advertising X-ANONYMOUSTLS".into(),
            Kind::SmtpExpsClient => {
                "SMTP client using X-EXPS or X-ANONYMOUSTLS (Exchange server to server)".into()
            }
            Kind::SmtpClientCert => {
                "SMTP client presenting a TLS client certificate (direct trust, mutual TLS)".into()
            }
            Kind::SmtpFromOutside => {
                "accepts SMTP from addresses outside the private ranges".into()
            }
            Kind::EdgeSyncServer => "serves ADAM LDAP on 50389/50636 (EdgeSync)".into(),
            Kind::EdgeSyncClient => "EdgeSync client of ADAM on 50389/50636".into(),
            Kind::HttpEndpoint(ep) => format!("serves the Exchange web endpoint {ep}"),
            Kind::PopImapExchange => "serves POP3/IMAP4 with the Microsoft Exchange banner".into(),
            Kind::RpcMapi => "answers DCE/RPC binds to EMSMDB (MAPI)".into(),
            Kind::RpcNspi => "answers DCE/RPC binds to NSPI (address book)".into(),
            Kind::EpmMapi => "an endpoint mapper names EMSMDB (MAPI) on this host".into(),
            Kind::ClusterPeer => "exchanges cluster heartbeats on UDP 3343 (CCR node)".into(),
            Kind::Kdc => "answers Kerberos on 88 (KDC)".into(),
            Kind::LdapDc => "serves LDAP on 389".into(),
            Kind::LdapGc => "serves global catalog LDAP on 3268".into(),
            Kind::Cldap => "answers CLDAP netlogon pings".into(),
            Kind::Drsuapi => "answers DCE/RPC binds to DRSUAPI (directory replication)".into(),
            Kind::Netlogon => "answers DCE/RPC binds to NETLOGON".into(),
            Kind::EpmDrsuapi => "an endpoint mapper names DRSUAPI on this host".into(),
            Kind::SipServer => "SIP server on 5060-5062".into(),
            Kind::SipTlsServer => "TLS server on 5061 (SIP over TLS; port only)".into(),
            Kind::SipClient => "SIP client of a server on 5060-5062".into(),
            Kind::SipTlsClient => "TLS client of a server on 5061 (SIP over TLS; port only)".into(),
        }
    }
}

/// A flow's place in report order: its capture, then TCP before UDP, then the stream
/// index. Evidence only comes from TCP and UDP flows, whose stream index is unique in
/// their capture, so this is the report's order exactly (a flow without an index, made
/// by hand, sorts first, as the report sorts it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    file: u32,
    /// The transport's rank in the top two bits, the stream index (plus one) below.
    order: u64,
}

impl Place {
    /// Bits of [`Place::order`] below the transport's rank.
    const STREAM: u64 = (1 << 62) - 1;

    /// The place of a TCP or UDP flow of capture `file`.
    fn of(file: u32, f: &Flow) -> Place {
        let (rank, stream, _, _) = crate::flow::pipeline::order_key(f);
        let stream = stream.map_or(0, |s| s.saturating_add(1).min(Place::STREAM));
        Place {
            file,
            order: (u64::from(rank.min(3)) << 62) | stream,
        }
    }

    /// The display filter of the flow at this place between `client` and `server`: the
    /// flows report's text (TCP and UDP flows, the only ones placed, are named by stream).
    fn filter(self, client: IpAddr, server: IpAddr) -> FilterText {
        let transport = if self.order >> 62 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let stream = (self.order & Place::STREAM).checked_sub(1);
        crate::flow::filter_for(transport, stream, client, server)
    }
}

/// Insert `v` into a set that keeps only its `cap` smallest members: the same set
/// whatever order the values come in.
fn insert_smallest<T: Ord>(set: &mut BTreeSet<T>, v: T, cap: usize) {
    set.insert(v);
    if set.len() > cap {
        set.pop_last();
    }
}

/// What one host's evidence of one kind adds up to.
#[derive(Clone, Debug, Default)]
struct Acc {
    flows: u64,
    ports: BTreeSet<u16>,
    peers: BTreeSet<IpAddr>,
    /// The earliest flow's place and display filter.
    first: Option<(Place, String)>,
}

impl Acc {
    fn add(
        &mut self,
        at: Place,
        port: Option<u16>,
        peer: Option<IpAddr>,
        filter: impl FnOnce() -> String,
    ) {
        if self.first.as_ref().is_none_or(|(p, _)| at < *p) {
            self.first = Some((at, filter()));
        }
        self.flows += 1;
        if let Some(p) = port {
            insert_smallest(&mut self.ports, p, MAX_PORTS);
        }
        if let Some(p) = peer {
            insert_smallest(&mut self.peers, p, MAX_PEERS);
        }
    }

    fn line(&self, kind: Kind) -> String {
        let mut s = kind.describe();
        let mut parts = Vec::new();
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            parts.push(format!("port {}", ports.join(", ")));
        }
        parts.push(if self.flows == 1 {
            "1 flow".to_string()
        } else {
            format!("{} flows", self.flows)
        });
        if let Some((_, first)) = &self.first {
            parts.push(format!("first {first}"));
        }
        s.push_str(&format!(" ({})", parts.join("; ")));
        s
    }
}

/// A server a client-only candidate used, as its earliest flow to that server shows.
/// Up to [`MAX_PEERS`] are kept for every client host, hundreds of thousands of hosts in
/// a long capture, so a peer is 24 bytes: the server is its number in
/// [`RoleInference::server_ips`], and the flow's filter is made again from its [`Place`].
#[derive(Clone, Debug)]
struct Peer {
    at: Place,
    server: u32,
    port: u16,
}

/// Accumulates evidence flow by flow; [`RoleInference::finish`] decides.
#[derive(Debug, Default)]
pub struct RoleInference {
    ev: BTreeMap<(IpAddr, Kind), Acc>,
    /// Hosts seen answering as the server of a flow, each with its number.
    servers: HashMap<IpAddr, u32, FlowHash>,
    /// The hosts of `servers` by number.
    server_ips: Vec<IpAddr>,
    /// Hosts seen as clients, with the first servers they used (the [`MAX_PEERS`]
    /// servers whose earliest flow comes first).
    clients: HashMap<IpAddr, Vec<Peer>, FlowHash>,
    /// Host names (HTTP Host, TLS SNI) each server answered for.
    names: BTreeMap<IpAddr, BTreeSet<String>>,
    /// (server, SNI) of TLS flows on 443, with the earliest such flow (the
    /// [`MAX_NAMES`] smallest pairs).
    sni: BTreeMap<(IpAddr, String), (Place, String)>,
    /// SIP flows per host: [as server, as client].
    sip_sides: BTreeMap<IpAddr, [u64; 2]>,
    /// Every host tracked (at most [`MAX_HOSTS`]).
    known: HashSet<IpAddr, FlowHash>,
    hosts_dropped: u64,
}

fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                // RFC 6598 shared address space (carrier-grade NAT).
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link local.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Wireshark display filter of a flow (the same text as the flows report).
pub(crate) fn flow_filter(f: &Flow) -> String {
    f.display_filter()
}

/// The RPC interface names a flow's binds mention (bind, bind_ack, endpoint mapper label).
pub(crate) fn rpc_interfaces(f: &Flow) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    for key in [
        "dcerpc.interface",
        "dcerpc.accepted",
        "dcerpc.interface-from-epm",
    ] {
        if let Some(vals) = f.posture.facts.get(key) {
            for v in vals.iter() {
                out.insert(v);
            }
        }
    }
    out
}

/// Interfaces the server accepted (bind_ack), or, when the answer was not seen, asked for.
fn answered_interfaces(f: &Flow) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    if let Some(vals) = f.posture.facts.get("dcerpc.accepted") {
        out.extend(vals.iter());
    }
    if out.is_empty() && f.frames[1] > 0 {
        out = rpc_interfaces(f);
    }
    out
}

impl RoleInference {
    /// Take one flow's evidence, the flow being of the first capture.
    pub fn observe(&mut self, f: &Flow) {
        self.observe_in(0, f);
    }

    /// Take one flow's evidence, the flow being of capture `file` (captures are
    /// reported in that order). Flows may come in any order.
    pub fn observe_in(&mut self, file: u32, f: &Flow) {
        if !f.transport.has_ports() {
            return;
        }
        let at = Place::of(file, f);
        let client = f.client.ip().to_canonical();
        let server = f.server.ip().to_canonical();
        let sport = f.server.port();
        let answered = f.frames[1] > 0;
        let filter = || flow_filter(f);
        let p = &f.posture;
        let proto = p.protocol.unwrap_or("");
        let tcp = f.transport == Transport::Tcp;

        if answered && !self.track(server) {
            return;
        }
        let server_id = match self.servers.get(&server) {
            Some(id) => *id,
            None if answered => {
                let id = u32::try_from(self.server_ips.len()).unwrap_or(u32::MAX);
                self.servers.insert(server, id);
                self.server_ips.push(server);
                id
            }
            None => u32::MAX,
        };
        if !self.track(client) {
            return;
        }
        if answered {
            let peers = self.clients.entry(client).or_default();
            let peer = || Peer {
                at,
                server: server_id,
                port: sport,
            };
            // The MAX_PEERS servers whose earliest flow is earliest: a server pushed out
            // had MAX_PEERS others before it, and those only move earlier.
            if let Some(known) = peers.iter_mut().find(|x| x.server == server_id) {
                if at < known.at {
                    *known = peer();
                }
            } else if peers.len() < MAX_PEERS {
                // Most clients use one or two servers: no room reserved for more.
                peers.reserve_exact(1);
                peers.push(peer());
            } else if let Some(last) = peers.iter_mut().max_by_key(|x| x.at) {
                if at < last.at {
                    *last = peer();
                }
            }
        }

        // Transport servers.
        if proto == "smtp" {
            if p.facts.contains_key("smtp.exps-offered") {
                self.add(
                    server,
                    at,
                    Kind::SmtpExpsOffered,
                    Some(sport),
                    Some(client),
                    filter,
                );
            }
            if p.has_fact("smtp.x-anonymoustls", "offered") {
                self.add(
                    server,
                    at,
                    Kind::SmtpAnonTlsOffered,
                    Some(sport),
                    Some(client),
                    filter,
                );
            }
            let exps_auth = p.auth.iter().any(|a| a.context.contains("X-EXPS"));
            if exps_auth || p.has_fact("smtp.x-anonymoustls", "requested") {
                self.add(
                    client,
                    at,
                    Kind::SmtpExpsClient,
                    Some(sport),
                    Some(server),
                    filter,
                );
            }
            if p.tls.as_ref().is_some_and(|t| t.client_cert) {
                self.add(
                    client,
                    at,
                    Kind::SmtpClientCert,
                    Some(sport),
                    Some(server),
                    filter,
                );
            }
            if answered && !is_private(client) {
                self.add(
                    server,
                    at,
                    Kind::SmtpFromOutside,
                    Some(sport),
                    Some(client),
                    filter,
                );
            }
        }
        if tcp && (sport == 50389 || sport == 50636) && answered {
            self.add(
                server,
                at,
                Kind::EdgeSyncServer,
                Some(sport),
                Some(client),
                filter,
            );
            self.add(
                client,
                at,
                Kind::EdgeSyncClient,
                Some(sport),
                Some(server),
                filter,
            );
        }

        // Client Access.
        if proto == "http" && answered {
            if let Some(eps) = p.facts.get("http.endpoint") {
                for ep in eps.iter() {
                    if let Some(name) = cas_endpoint(ep) {
                        self.add(
                            server,
                            at,
                            Kind::HttpEndpoint(name),
                            Some(sport),
                            Some(client),
                            filter,
                        );
                    }
                }
            }
            if let Some(hosts) = p.facts.get("http.host") {
                for h in hosts.iter() {
                    self.name(server, h);
                }
            }
        }
        if (proto == "pop3" || proto == "imap") && answered {
            let key = if proto == "pop3" {
                "pop3.banner"
            } else {
                "imap.banner"
            };
            let exchange = p
                .facts
                .get(key)
                .is_some_and(|b| b.iter().any(|t| t.contains("Microsoft Exchange")));
            if exchange {
                self.add(
                    server,
                    at,
                    Kind::PopImapExchange,
                    Some(sport),
                    Some(client),
                    filter,
                );
            }
        }
        if let Some(sni) = p.tls.as_ref().and_then(|t| t.sni.as_ref()) {
            if answered {
                self.name(server, sni);
                if sport == 443 {
                    self.sni_flow(server, sni.to_ascii_lowercase(), at, filter);
                }
            }
        }

        // Mailbox and domain controller, by RPC interface.
        if proto == "dcerpc" && answered {
            let ifaces = answered_interfaces(f);
            if ifaces.contains("emsmdb") || ifaces.contains("asyncemsmdb") {
                self.add(server, at, Kind::RpcMapi, Some(sport), Some(client), filter);
            }
            if ifaces.contains("nspi") {
                self.add(server, at, Kind::RpcNspi, Some(sport), Some(client), filter);
            }
            if ifaces.contains("drsuapi") || ifaces.contains("dsaop") {
                self.add(server, at, Kind::Drsuapi, Some(sport), Some(client), filter);
            }
            if ifaces.contains("netlogon") {
                self.add(
                    server,
                    at,
                    Kind::Netlogon,
                    Some(sport),
                    Some(client),
                    filter,
                );
            }
        }
        if let Some(maps) = p.facts.get("epm.map") {
            for m in maps.iter() {
                let Some((uuid, mapped)) = m.split_once('@') else {
                    continue;
                };
                let Ok(mapped) = mapped.parse::<std::net::SocketAddr>() else {
                    continue;
                };
                let name = Uuid::from_text(uuid)
                    .and_then(|u| lookup(&u))
                    .map(|i| i.name);
                let kind = match name {
                    Some("emsmdb" | "asyncemsmdb") => Kind::EpmMapi,
                    Some("drsuapi") => Kind::EpmDrsuapi,
                    _ => continue,
                };
                let host = mapped.ip().to_canonical();
                if self.track(host) {
                    self.add(host, at, kind, Some(mapped.port()), None, filter);
                }
            }
        }
        if proto == "cluster" {
            self.add(
                server,
                at,
                Kind::ClusterPeer,
                Some(sport),
                Some(client),
                filter,
            );
            self.add(
                client,
                at,
                Kind::ClusterPeer,
                Some(f.client.port()),
                Some(server),
                filter,
            );
        }
        if proto == "kerberos" && sport == 88 && answered {
            self.add(server, at, Kind::Kdc, Some(sport), Some(client), filter);
        }
        if proto == "ldap" && answered {
            if !tcp && p.has_fact("ldap.cldap", "netlogon") {
                self.add(server, at, Kind::Cldap, Some(sport), Some(client), filter);
            } else if tcp && (sport == 3268 || sport == 3269) {
                self.add(server, at, Kind::LdapGc, Some(sport), Some(client), filter);
            } else if tcp && (sport == 389 || sport == 636) {
                self.add(server, at, Kind::LdapDc, Some(sport), Some(client), filter);
            }
        }
        if proto == "tls" && (sport == 3269) && answered {
            self.add(server, at, Kind::LdapGc, Some(sport), Some(client), filter);
        }

        // Unified Messaging and IP gateways.
        let sip = proto == "sip" && (5060..=5062).contains(&sport);
        let sip_tls = proto == "tls" && sport == 5061;
        if (sip || sip_tls) && answered {
            let (sk, ck) = if sip {
                (Kind::SipServer, Kind::SipClient)
            } else {
                (Kind::SipTlsServer, Kind::SipTlsClient)
            };
            self.add(server, at, sk, Some(sport), Some(client), filter);
            self.add(client, at, ck, Some(sport), Some(server), filter);
            for (host, side) in [(server, 0), (client, 1)] {
                if self.known.contains(&host) {
                    if let Some(n) = self.sip_sides.entry(host).or_default().get_mut(side) {
                        *n += 1;
                    }
                }
            }
        }
    }

    /// Whether `ip` may be tracked (already known, or room for one more).
    fn track(&mut self, ip: IpAddr) -> bool {
        if self.known.contains(&ip) {
            return true;
        }
        if self.known.len() >= MAX_HOSTS {
            self.hosts_dropped += 1;
            return false;
        }
        self.known.insert(ip);
        true
    }

    fn add(
        &mut self,
        ip: IpAddr,
        at: Place,
        kind: Kind,
        port: Option<u16>,
        peer: Option<IpAddr>,
        filter: impl FnOnce() -> String,
    ) {
        if !self.track(ip) {
            return;
        }
        self.ev
            .entry((ip, kind))
            .or_default()
            .add(at, port, peer, filter);
    }

    /// A TLS flow to `server` on 443 named `sni`: the pair keeps its earliest flow, and
    /// only the [`MAX_NAMES`] smallest pairs are kept.
    fn sni_flow(
        &mut self,
        server: IpAddr,
        sni: String,
        at: Place,
        filter: impl FnOnce() -> String,
    ) {
        let key = (server, sni);
        if let Some((first, text)) = self.sni.get_mut(&key) {
            if at < *first {
                *first = at;
                *text = filter();
            }
            return;
        }
        if self.sni.len() >= MAX_NAMES {
            match self.sni.last_key_value() {
                Some((last, _)) if key < *last => {
                    self.sni.pop_last();
                }
                _ => return,
            }
        }
        self.sni.insert(key, (at, filter()));
    }

    fn name(&mut self, ip: IpAddr, name: &str) {
        // The MAX_NAMES smallest addresses are kept, whatever order they come in: one
        // pushed out had MAX_NAMES smaller ones beside it, which stay.
        if self.names.len() >= MAX_NAMES && !self.names.contains_key(&ip) {
            match self.names.last_key_value() {
                Some((last, _)) if ip < *last => {
                    self.names.pop_last();
                }
                _ => return,
            }
        }
        // `Host: mail.contoso.com:80` names the same host as the SNI `mail.contoso.com`.
        let name = match name.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !host.contains(':')
                    && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            _ => name,
        };
        insert_smallest(
            self.names.entry(ip).or_default(),
            name.to_ascii_lowercase(),
            MAX_HOST_NAMES,
        );
    }

    fn has(&self, ip: IpAddr, kind: Kind) -> bool {
        self.ev.contains_key(&(ip, kind))
    }

    fn kinds_of(&self, ip: IpAddr) -> impl Iterator<Item = (Kind, &Acc)> + '_ {
        self.ev
            .range((ip, Kind::SmtpExpsOffered)..)
            .take_while(move |((h, _), _)| *h == ip)
            .map(|((_, k), a)| (*k, a))
    }

    /// Decide every host's roles.
    pub fn finish(mut self) -> InferredRoles {
        // Taken out so that each client's peers are freed once its evidence is written:
        // the peers and the evidence of every client host are not held at once.
        let clients = std::mem::take(&mut self.clients);
        let mut out: BTreeMap<(IpAddr, Role), Vec<String>> = BTreeMap::new();
        let hosts: BTreeSet<IpAddr> = self.ev.keys().map(|(ip, _)| *ip).collect();
        let lines = |ip: IpAddr, pick: &dyn Fn(Kind) -> bool| -> Vec<String> {
            self.kinds_of(ip)
                .filter(|(k, _)| pick(*k))
                .map(|(k, a)| a.line(k))
                .collect()
        };

        for &ip in &hosts {
            // Transport: Edge or Hub.
            let is_transport = self.kinds_of(ip).any(|(k, _)| transport(k));
            // Outside senders that are transport servers themselves (an Edge delivering
            // to a Hub) do not make the receiver an Edge.
            let from_outside = self.ev.get(&(ip, Kind::SmtpFromOutside)).is_some_and(|a| {
                a.peers.iter().any(|peer| {
                    !self.has(*peer, Kind::EdgeSyncServer)
                        && !self.kinds_of(*peer).any(|(k, _)| transport(k))
                })
            });
            let edge = self.has(ip, Kind::EdgeSyncServer) || (is_transport && from_outside);
            if edge {
                let ev = lines(ip, &|k| {
                    transport(k) || matches!(k, Kind::EdgeSyncServer | Kind::SmtpFromOutside)
                });
                out.insert((ip, Role::Edge), ev);
            } else if is_transport || self.has(ip, Kind::EdgeSyncClient) {
                let ev = lines(ip, &|k| transport(k) || k == Kind::EdgeSyncClient);
                out.insert((ip, Role::Hub), ev);
            }

            // Domain controller.
            let dc_strong = |k: Kind| {
                matches!(
                    k,
                    Kind::Kdc
                        | Kind::Drsuapi
                        | Kind::Netlogon
                        | Kind::Cldap
                        | Kind::LdapGc
                        | Kind::EpmDrsuapi
                )
            };
            let dc = self.kinds_of(ip).any(|(k, _)| dc_strong(k));
            if dc {
                let ev = lines(ip, &|k| dc_strong(k) || k == Kind::LdapDc);
                out.insert((ip, Role::Dc), ev);
            }

            // Client Access.
            let cas = |k: Kind| matches!(k, Kind::HttpEndpoint(_) | Kind::PopImapExchange);
            if self.kinds_of(ip).any(|(k, _)| cas(k)) {
                out.insert((ip, Role::Cas), lines(ip, &cas));
            }

            // Mailbox.
            let mbx = |k: Kind| {
                matches!(k, Kind::RpcMapi | Kind::EpmMapi | Kind::ClusterPeer)
                    || (k == Kind::RpcNspi && !dc)
            };
            if self.kinds_of(ip).any(|(k, _)| mbx(k)) {
                out.insert((ip, Role::Mailbox), lines(ip, &mbx));
            }
        }

        // TLS on 443 for a name a Client Access server answers for.
        let cas_hosts: BTreeSet<IpAddr> = out
            .keys()
            .filter(|(_, r)| *r == Role::Cas)
            .map(|(ip, _)| *ip)
            .collect();
        let mut cas_names: BTreeMap<&str, IpAddr> = BTreeMap::new();
        for ip in &cas_hosts {
            for n in self.names.get(ip).into_iter().flatten() {
                cas_names.entry(n.as_str()).or_insert(*ip);
            }
        }
        let mut sni_lines: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        // In report order of their earliest flow, as they would have been met.
        let mut sni: Vec<_> = self.sni.iter().collect();
        sni.sort_by_key(|(_, (at, _))| *at);
        for ((server, sni), (_, filter)) in sni {
            if cas_hosts.contains(server) {
                continue;
            }
            if let Some(cas) = cas_names.get(sni.as_str()) {
                let v = sni_lines.entry(*server).or_default();
                if v.len() < MAX_CLIENT_EVIDENCE {
                    v.push(format!(
                        "serves TLS on 443 for {sni}, a name Client Access server {cas} answers for (first {filter})"
                    ));
                }
            }
        }
        for (ip, v) in sni_lines {
            out.entry((ip, Role::Cas)).or_default().extend(v);
        }

        // Unified Messaging and IP gateways. A host that holds an Exchange server role
        // and talks SIP as a client is the Client Access server (C8), not a gateway.
        let exchange = |out: &BTreeMap<(IpAddr, Role), Vec<String>>, ip: IpAddr| {
            [Role::Hub, Role::Edge, Role::Cas, Role::Mailbox, Role::Dc]
                .iter()
                .any(|r| out.contains_key(&(ip, *r)))
        };
        for (&ip, &[as_server, as_client]) in &self.sip_sides {
            let um = as_server >= as_client;
            if um {
                let ev = lines(ip, &|k| matches!(k, Kind::SipServer | Kind::SipTlsServer));
                let mut ev = ev;
                if as_client > 0 {
                    ev.push(format!(
                        "SIP server in {as_server} flow(s), client in {as_client}: the server side decides"
                    ));
                }
                out.insert((ip, Role::Um), ev);
            } else if !exchange(&out, ip) {
                let mut ev = lines(ip, &|k| matches!(k, Kind::SipClient | Kind::SipTlsClient));
                if as_server > 0 {
                    ev.push(format!(
                        "SIP client in {as_client} flow(s), server in {as_server}: the client side decides"
                    ));
                }
                out.insert((ip, Role::IpGateway), ev);
            }
        }

        // Clients: hosts that never answered as a server, of servers with a role.
        let with_role: BTreeSet<IpAddr> = out.keys().map(|(ip, _)| *ip).collect();
        let mut client_hosts: Vec<(IpAddr, Vec<Peer>)> = clients.into_iter().collect();
        client_hosts.sort_unstable_by_key(|(ip, _)| *ip);
        // Each server's roles (`cas`, `hub/mailbox`), once: clients are many, servers few.
        let server_roles: Vec<String> = self
            .server_ips
            .iter()
            .map(|&server| {
                let roles: Vec<&str> = out
                    .range((server, Role::Hub)..)
                    .take_while(|((h, _), _)| *h == server)
                    .map(|((_, r), _)| r.as_str())
                    .collect();
                roles.join("/")
            })
            .collect();
        for (ip, mut peers) in client_hosts {
            if self.servers.contains_key(&ip) || with_role.contains(&ip) {
                continue;
            }
            peers.sort_by_key(|p| p.at);
            let mut ev = Vec::new();
            let mut more = 0usize;
            for p in peers {
                let i = p.server as usize;
                let (Some(&server), Some(roles)) = (self.server_ips.get(i), server_roles.get(i))
                else {
                    continue;
                };
                if roles.is_empty() {
                    continue;
                }
                if ev.len() < MAX_CLIENT_EVIDENCE {
                    let at = Endpoint(SocketAddr::new(server, p.port), true);
                    let filter = p.at.filter(ip, server);
                    ev.push(crate::cat!(
                        "client of ",
                        roles,
                        " ",
                        at.text(),
                        " (",
                        filter,
                        "); never a server"
                    ));
                } else {
                    more += 1;
                }
            }
            if more > 0 {
                ev.push(format!("and of {more} more server(s)"));
            }
            if !ev.is_empty() {
                out.insert((ip, Role::Client), ev);
            }
        }

        let entries = out
            .into_iter()
            .filter(|(_, ev)| !ev.is_empty())
            .map(|((ip, role), evidence)| RoleEvidence { ip, role, evidence })
            .collect();
        InferredRoles {
            entries,
            hosts_dropped: self.hosts_dropped,
        }
    }
}

/// Evidence that a host is an Exchange transport server (Hub or Edge).
fn transport(k: Kind) -> bool {
    matches!(
        k,
        Kind::SmtpExpsOffered
            | Kind::SmtpAnonTlsOffered
            | Kind::SmtpExpsClient
            | Kind::SmtpClientCert
    )
}

/// The `http.endpoint` values that only a Client Access server serves, named as the
/// evidence shows them.
fn cas_endpoint(ep: &str) -> Option<&'static str> {
    Some(match ep {
        "owa" | "owa-forms-login" => "/owa",
        "ews" => "/EWS",
        "activesync" => "/Microsoft-Server-ActiveSync",
        "autodiscover" => "/Autodiscover",
        "outlook-anywhere" => "/rpc/rpcproxy.dll",
        "oab" => "/OAB",
        _ => return None,
    })
}

/// Where a role of a host came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The roles inventory (`--roles FILE`) lists it.
    Stated,
    /// The traffic shows it.
    Inferred,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stated => "stated",
            Source::Inferred => "inferred",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stated roles joined with inferred ones. Stated roles win: for an address the inventory
/// covers, only its roles count; inferred roles decide the addresses it does not cover.
#[derive(Clone, Debug, Default)]
pub struct RoleMap {
    stated: Roles,
    inferred: InferredRoles,
    contradictions: Vec<String>,
}

impl RoleMap {
    /// Join an inventory (possibly empty) with inferred roles.
    pub fn new(stated: Roles, inferred: InferredRoles) -> RoleMap {
        let mut contradictions = Vec::new();
        for e in inferred.entries() {
            // "Only a client here" is no claim against a stated server role.
            if e.role == Role::Client {
                continue;
            }
            let said = stated.roles_of(e.ip);
            if said.is_empty() || said.contains(&e.role) {
                continue;
            }
            let said: Vec<&str> = said.iter().map(|r| r.as_str()).collect();
            contradictions.push(format!(
                "{} is stated as {} but the traffic shows {}: {}",
                e.ip,
                said.join("/"),
                e.role,
                e.evidence.join("; ")
            ));
        }
        RoleMap {
            stated,
            inferred,
            contradictions,
        }
    }

    /// Only stated roles.
    pub fn stated_only(stated: Roles) -> RoleMap {
        RoleMap::new(stated, InferredRoles::default())
    }

    /// Only inferred roles.
    pub fn inferred_only(inferred: InferredRoles) -> RoleMap {
        RoleMap::new(Roles::default(), inferred)
    }

    /// The roles that count for `ip`, sorted, without evidence (cheap: one per flow end).
    pub fn role_set(&self, ip: IpAddr) -> Vec<Role> {
        let stated = self.stated.roles_of(ip);
        if stated.is_empty() {
            self.inferred.roles_of(ip)
        } else {
            stated
        }
    }

    /// The roles that count for `ip`, each with where it came from and its evidence: the
    /// inventory blocks that list it (plus the traffic's agreement), or the traffic.
    pub fn roles_of(&self, ip: IpAddr) -> Vec<(Role, Source, Vec<String>)> {
        let stated = self.stated.roles_of(ip);
        if stated.is_empty() {
            return self
                .inferred
                .of(ip)
                .iter()
                .map(|e| (e.role, Source::Inferred, e.evidence.clone()))
                .collect();
        }
        let canon = ip.to_canonical();
        stated
            .into_iter()
            .map(|role| {
                let mut ev: Vec<String> = self
                    .stated
                    .entries()
                    .iter()
                    .filter(|(r, net)| *r == role && net.contains(canon))
                    .map(|(r, net)| format!("listed under `{r}` as {net} in the roles inventory"))
                    .collect();
                if let Some(inf) = self.inferred.evidence(ip, role) {
                    ev.extend(inf.iter().map(|l| format!("traffic agrees: {l}")));
                }
                (role, Source::Stated, ev)
            })
            .collect()
    }

    /// Inferred server roles that the inventory contradicts, one line each.
    pub fn contradictions(&self) -> Vec<String> {
        self.contradictions.clone()
    }

    pub fn stated(&self) -> &Roles {
        &self.stated
    }

    pub fn inferred(&self) -> &InferredRoles {
        &self.inferred
    }
}

/// The fixture's address plan as a roles inventory (tests of this and later stages).
#[cfg(test)]
pub(crate) const TEST_PLAN: &str = r#"[roles]
hub = ["10.1.0.10", "10.1.0.11"]
edge = ["192.0.2.25"]
cas = ["10.1.0.20"]
mailbox = ["10.1.0.30", "10.1.0.31"]
um = ["10.1.0.40"]
dc = ["10.1.0.5"]
ip_gateway = ["10.9.0.2"]
client = ["10.2.0.0/16", "2001:db8:2::/48"]
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Source as CaptureSource;
    use crate::model::{AuthEvent, Mechanism};
    use std::net::SocketAddr;
    use std::sync::OnceLock;

    fn fixture() -> &'static [Flow] {
        static FLOWS: OnceLock<Vec<Flow>> = OnceLock::new();
        FLOWS.get_or_init(|| {
            let src = CaptureSource::Path("fixtures/exchange-scenarios.pcapng".into());
            let (r, flows) = crate::flow::collect_file(&src, &Default::default(), 1);
            assert!(r.error.is_none(), "{:?}", r.error);
            flows
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const PLAN: &str = TEST_PLAN;

    fn flow(client: &str, server: &str, transport: Transport) -> Flow {
        Flow::sample(transport, client, server)
    }

    /// A client's peers keep only their flow's place and write the flows report's
    /// filter from it, for TCP and UDP, with a stream index or without (a flow made by
    /// hand).
    #[test]
    fn peer_filters_read_as_the_flow_filter() {
        let mut flows: Vec<Flow> = fixture().iter().take(40).cloned().collect();
        flows.push(flow("10.2.0.5:1000", "10.1.0.20:443", Transport::Tcp));
        flows.push(flow("10.2.0.5:1001", "10.1.0.30:53", Transport::Udp));
        flows.push(flow(
            "[2001:db8::5]:1002",
            "[2001:db8::7]:88",
            Transport::Udp,
        ));
        let mut bare = flow("10.2.0.5:1003", "10.1.0.30:389", Transport::Tcp);
        bare.stream = None;
        flows.push(bare);
        let (mut tcp, mut udp, mut bare) = (0, 0, 0);
        for f in flows.iter().filter(|f| f.transport.has_ports()) {
            let at = Place::of(3, f);
            let text = at.filter(f.client.ip(), f.server.ip()).to_string();
            assert_eq!(text, f.display_filter());
            match f.stream {
                None => bare += 1,
                Some(_) if f.transport == Transport::Tcp => tcp += 1,
                Some(_) => udp += 1,
            }
        }
        assert!(tcp > 0 && udp > 0 && bare > 0, "{tcp} {udp} {bare}");
    }

    /// Evidence names the earliest flows in report order and keeps the smallest ports,
    /// peers and names, whatever order the flows are observed in: the capture pass hands
    /// flows over as they end. Every capped list overflows here, over two captures.
    #[test]
    fn observation_order_does_not_change_the_roles() {
        let fx = fixture();
        let find = |what: &str, pick: &dyn Fn(&Flow) -> bool| {
            fx.iter()
                .find(|f| pick(f))
                .cloned()
                .unwrap_or_else(|| panic!("the fixture has {what}"))
        };
        let exps = find("an SMTP server offering X-EXPS", &|f| {
            f.posture.facts.contains_key("smtp.exps-offered")
        });
        let submission = find("a client of the Hub", &|f| f.client.ip() == ip("10.2.0.4"));
        let http = find("HTTP to Client Access", &|f| {
            f.posture.protocol == Some("http") && f.server.ip() == ip("10.1.0.20")
        });
        let sni = find("TLS with SNI on 443", &|f| {
            f.server.port() == 443 && f.posture.tls.as_ref().is_some_and(|t| t.sni.is_some())
        });
        // (capture, flow): the fixture in both captures, then flows that overflow caps.
        let mut flows: Vec<(u32, Flow)> = fx.iter().map(|f| (0, f.clone())).collect();
        flows.extend(fx.iter().take(12).map(|f| (1, f.clone())));
        let extra = MAX_PEERS.max(MAX_PORTS).max(MAX_HOST_NAMES) as u16 + 4;
        for i in 0..extra {
            let stream = |base: u64| Some(base + u64::from(i));
            let nth = |net: [u8; 3]| IpAddr::from([net[0], net[1], net[2], 1 + i as u8]);
            // A transport server on more ports than it lists (later flows, lower ports)
            // and with more outside senders than it keeps.
            let mut f = exps.clone();
            f.client = SocketAddr::new(nth([203, 0, 113]), 40000 + i);
            f.server = SocketAddr::new(ip("10.1.7.7"), 2600 - i);
            f.stream = stream(10_000);
            flows.push((0, f));
            // A client of more transport servers than it keeps.
            let mut f = exps.clone();
            f.client = SocketAddr::new(ip("10.2.9.8"), 40000 + i);
            f.server = SocketAddr::new(nth([10, 1, 8]), 25);
            f.stream = stream(20_000);
            flows.push((0, f));
            let mut f = submission.clone();
            f.client = SocketAddr::new(ip("10.2.9.6"), 40000 + i);
            f.server = SocketAddr::new(nth([10, 1, 8]), 587);
            f.stream = stream(30_000);
            flows.push((1, f));
            // Client Access answering for more names than it keeps.
            let mut f = http.clone();
            f.posture
                .facts
                .insert("http.host", &format!("x{i:02}.contoso.com"));
            f.stream = stream(40_000);
            flows.push((0, f));
            // A second TLS server named for Client Access, several flows per name.
            let mut f = sni.clone();
            f.server = SocketAddr::new(ip("2001:db8:1::99"), 443);
            f.stream = stream(50_000);
            flows.push((u32::from(i % 2), f));
        }
        // Report order: by capture, then as the report sorts flows.
        let mut sorted = flows.clone();
        sorted.sort_by_key(|(file, f)| (*file, crate::flow::pipeline::order_key(f)));
        let mut inf = RoleInference::default();
        for (file, f) in &sorted {
            inf.observe_in(*file, f);
        }
        let forward = inf.finish();
        let n = flows.len();
        let orders: [Vec<usize>; 3] = [
            (0..n).collect(),
            (0..n).rev().collect(),
            (0..n).map(|k| (k * 7919 + 13) % n).collect(),
        ];
        for order in orders {
            let distinct: HashSet<usize> = order.iter().copied().collect();
            assert_eq!(distinct.len(), n, "a permutation");
            let mut inf = RoleInference::default();
            for k in order {
                inf.observe_in(flows[k].0, &flows[k].1);
            }
            assert_eq!(inf.finish(), forward);
        }
        let hub = forward
            .evidence(ip("10.1.7.7"), Role::Hub)
            .or_else(|| forward.evidence(ip("10.1.7.7"), Role::Edge))
            .unwrap_or_else(|| panic!("{forward:?}"));
        let lowest: Vec<String> = (0..MAX_PORTS as u16)
            .map(|k| (2600 - extra + 1 + k).to_string())
            .collect();
        assert!(
            hub.iter()
                .any(|l| l.contains(&format!("port {};", lowest.join(", ")))
                    && l.contains("first tcp.stream eq 10000")),
            "{hub:?}"
        );
        let client = forward
            .evidence(ip("10.2.9.6"), Role::Client)
            .unwrap_or_else(|| panic!("{forward:?}"));
        assert!(
            client[0].contains("10.1.8.1:587 (tcp.stream eq 30000)")
                && client[MAX_CLIENT_EVIDENCE]
                    == format!("and of {} more server(s)", MAX_PEERS - MAX_CLIENT_EVIDENCE),
            "{client:?}"
        );
        // One line per (server, name), naming its earliest flow.
        let named = forward
            .evidence(ip("2001:db8:1::99"), Role::Cas)
            .unwrap_or_else(|| panic!("{forward:?}"));
        assert_eq!(named.len(), 1, "{named:?}");
        assert!(
            named[0].contains("(first tcp.stream eq 50000)"),
            "{named:?}"
        );
    }

    #[test]
    fn fixture_roles_match_the_address_plan() {
        let inf = infer_roles(fixture());
        let plan = match Roles::from_toml_str(PLAN, "plan.toml") {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert!(!inf.is_empty());
        for e in inf.entries() {
            assert!(!e.evidence.is_empty(), "{e:?}");
            let planned = plan.roles_of(e.ip);
            // The IPv6 CAS is outside the brief's plan; it is checked below.
            if e.ip == ip("2001:db8:1::20") {
                continue;
            }
            assert_eq!(
                planned,
                [e.role],
                "{} inferred {}: {:?}",
                e.ip,
                e.role,
                e.evidence
            );
        }
        let expect = [
            ("10.1.0.10", Role::Hub),
            ("10.1.0.11", Role::Hub),
            ("192.0.2.25", Role::Edge),
            ("10.1.0.20", Role::Cas),
            ("10.1.0.30", Role::Mailbox),
            ("10.1.0.31", Role::Mailbox),
            ("10.1.0.40", Role::Um),
            ("10.1.0.5", Role::Dc),
            ("10.9.0.2", Role::IpGateway),
            ("10.2.0.4", Role::Client),
            ("10.2.0.22", Role::Client),
            ("10.2.0.33", Role::Client),
            ("2001:db8:2::40", Role::Client),
            ("2001:db8:1::20", Role::Cas),
        ];
        for (a, role) in expect {
            assert_eq!(inf.roles_of(ip(a)), [role], "{a}: {:?}", inf.of(ip(a)));
        }
        // Every client address of the fixture is a client.
        let clients = fixture()
            .iter()
            .map(|f| f.client.ip())
            .filter(|a| plan.roles_of(*a) == [Role::Client]);
        for c in clients {
            assert_eq!(inf.roles_of(c), [Role::Client], "{c}");
        }
        assert_eq!(inf.hosts_dropped, 0);
    }

    #[test]
    fn fixture_evidence_names_the_traffic() {
        let inf = infer_roles(fixture());
        let hub = inf.evidence(ip("10.1.0.11"), Role::Hub).unwrap_or_default();
        assert!(
            hub.iter()
                .any(|l| l.contains("X-EXPS") && l.contains("tcp.stream eq")),
            "{hub:?}"
        );
        let edge = inf
            .evidence(ip("192.0.2.25"), Role::Edge)
            .unwrap_or_default();
        assert!(edge.iter().any(|l| l.contains("50389")), "{edge:?}");
        let dc = inf.evidence(ip("10.1.0.5"), Role::Dc).unwrap_or_default();
        for needle in ["KDC", "DRSUAPI", "CLDAP", "LDAP on 389"] {
            assert!(dc.iter().any(|l| l.contains(needle)), "{needle}: {dc:?}");
        }
        let mbx = inf
            .evidence(ip("10.1.0.30"), Role::Mailbox)
            .unwrap_or_default();
        assert!(mbx.iter().any(|l| l.contains("EMSMDB")), "{mbx:?}");
        let cas6 = inf
            .evidence(ip("2001:db8:1::20"), Role::Cas)
            .unwrap_or_default();
        assert!(
            cas6.iter().any(|l| l.contains("mail.contoso.com")),
            "{cas6:?}"
        );
    }

    #[test]
    fn stated_roles_win_and_contradictions_are_reported() {
        let inf = infer_roles(fixture());
        // An inventory that calls the CAS a mailbox and says nothing of the IPv6 hosts.
        let text = PLAN
            .replace("cas = [\"10.1.0.20\"]", "cas = []")
            .replace(
                "mailbox = [\"10.1.0.30\", \"10.1.0.31\"]",
                "mailbox = [\"10.1.0.30\", \"10.1.0.31\", \"10.1.0.20\"]",
            )
            .replace(", \"2001:db8:2::/48\"", "");
        let stated = match Roles::from_toml_str(&text, "roles.toml") {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let map = RoleMap::new(stated, inf);
        let r = map.roles_of(ip("10.1.0.20"));
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].0, r[0].1), (Role::Mailbox, Source::Stated));
        assert_eq!(map.role_set(ip("10.1.0.20")), [Role::Mailbox]);
        let c = map.contradictions();
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            c[0].starts_with("10.1.0.20 is stated as mailbox but the traffic shows cas"),
            "{}",
            c[0]
        );
        // Not in the inventory: the traffic decides.
        let v6 = map.roles_of(ip("2001:db8:2::40"));
        assert_eq!((v6[0].0, v6[0].1), (Role::Client, Source::Inferred));
        // Agreement adds the traffic's evidence to the stated role.
        let hub = map.roles_of(ip("10.1.0.11"));
        assert_eq!((hub[0].0, hub[0].1), (Role::Hub, Source::Stated));
        assert!(hub[0].2[0].contains("listed under `hub`"), "{:?}", hub[0].2);
        assert!(
            hub[0].2.iter().any(|l| l.starts_with("traffic agrees")),
            "{:?}",
            hub[0].2
        );
    }

    #[test]
    fn a_stated_client_seen_as_client_is_no_contradiction() {
        let inf = infer_roles(fixture());
        let stated = match Roles::from_toml_str(PLAN, "plan.toml") {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let map = RoleMap::new(stated, inf);
        assert_eq!(map.contradictions(), Vec::<String>::new());
        assert_eq!(
            map.role_set(ip("2001:db8:1::20")),
            [Role::Cas],
            "inferred fills the gap"
        );
    }

    #[test]
    fn x_exps_server_reached_from_outside_is_an_edge() {
        let mut f = flow("198.51.100.7:40000", "203.0.113.25:25", Transport::Tcp);
        f.posture.protocol = Some("smtp");
        f.posture.fact("smtp.x-anonymoustls", "offered");
        let inf = infer_roles(&[f]);
        assert_eq!(inf.roles_of(ip("203.0.113.25")), [Role::Edge]);
        // The outside sender only ever acts as a client of a host with a role.
        assert_eq!(inf.roles_of(ip("198.51.100.7")), [Role::Client]);
    }

    #[test]
    fn x_exps_client_is_a_hub_and_nspi_on_a_dc_is_no_mailbox() {
        let mut smtp = flow("10.1.0.12:40000", "10.1.0.11:25", Transport::Tcp);
        smtp.posture.protocol = Some("smtp");
        smtp.posture.add_auth(AuthEvent {
            mechanism: Mechanism::Kerberos,
            user: None,
            cleartext: false,
            secret: None,
            frame: 3,
            context: "SMTP X-EXPS".into(),
            after_tls: false,
        });
        let mut kdc = flow("10.2.0.9:40001", "10.1.0.5:88", Transport::Udp);
        kdc.posture.protocol = Some("kerberos");
        let mut nspi = flow("10.2.0.9:40002", "10.1.0.5:49200", Transport::Tcp);
        nspi.posture.protocol = Some("dcerpc");
        nspi.posture.fact("dcerpc.accepted", "nspi");
        let mut nspi_mbx = flow("10.2.0.9:40003", "10.1.0.30:49200", Transport::Tcp);
        nspi_mbx.posture.protocol = Some("dcerpc");
        nspi_mbx.posture.fact("dcerpc.accepted", "nspi");
        let inf = infer_roles(&[smtp, kdc, nspi, nspi_mbx]);
        assert_eq!(inf.roles_of(ip("10.1.0.12")), [Role::Hub]);
        assert_eq!(
            inf.roles_of(ip("10.1.0.11")),
            Vec::<Role>::new(),
            "no X-EXPS offer seen"
        );
        assert_eq!(inf.roles_of(ip("10.1.0.5")), [Role::Dc]);
        assert_eq!(inf.roles_of(ip("10.1.0.30")), [Role::Mailbox]);
        assert_eq!(inf.roles_of(ip("10.2.0.9")), [Role::Client]);
    }

    #[test]
    fn sip_both_ways_takes_the_majority_side() {
        let mk = |c: &str, s: &str| {
            let mut f = flow(c, s, Transport::Tcp);
            f.posture.protocol = Some("sip");
            f
        };
        let flows = [
            mk("10.9.0.2:40000", "10.1.0.40:5060"),
            mk("10.9.0.2:40001", "10.1.0.40:5060"),
            mk("10.1.0.40:40002", "10.9.0.2:5060"),
        ];
        let inf = infer_roles(&flows);
        assert_eq!(inf.roles_of(ip("10.1.0.40")), [Role::Um]);
        assert_eq!(inf.roles_of(ip("10.9.0.2")), [Role::IpGateway]);
        let gw = inf
            .evidence(ip("10.9.0.2"), Role::IpGateway)
            .unwrap_or_default();
        assert!(
            gw.iter().any(|l| l.contains("client side decides")),
            "{gw:?}"
        );
    }

    #[test]
    fn unanswered_flows_and_unknown_peers_give_no_role() {
        let mut f = flow("10.2.0.9:40000", "10.1.0.20:80", Transport::Tcp);
        f.frames = [1, 0];
        f.posture.protocol = Some("http");
        f.posture.fact("http.endpoint", "owa");
        let g = flow("10.2.0.9:40001", "93.184.216.34:80", Transport::Tcp);
        let inf = infer_roles(&[f, g]);
        assert!(inf.is_empty(), "{:?}", inf.entries());
    }

    #[test]
    fn the_host_cap_counts_what_it_drops() {
        let mut inf = RoleInference::default();
        let mut f = flow("10.2.0.1:40000", "10.1.0.20:80", Transport::Tcp);
        f.posture.protocol = Some("http");
        f.posture.fact("http.endpoint", "owa");
        for i in 0..(MAX_HOSTS as u32 + 9) {
            f.client = std::net::SocketAddr::new(IpAddr::V4((0x0a02_0000 + i).into()), 40000);
            inf.observe(&f);
        }
        assert_eq!(inf.known.len(), MAX_HOSTS);
        let out = inf.finish();
        assert_eq!(out.hosts_dropped, 10, "the CAS took one place");
        assert_eq!(out.roles_of(ip("10.1.0.20")), [Role::Cas]);
        assert_eq!(
            out.entries().len(),
            MAX_HOSTS,
            "the CAS and every tracked client"
        );
    }

    #[test]
    fn private_ranges() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip(a)), "{a}");
        }
        for a in ["192.0.2.25", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_private(ip(a)), "{a}");
        }
    }
}
