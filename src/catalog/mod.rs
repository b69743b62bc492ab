//! The documented Exchange Server 2007 data paths, loaded from a TOML data file.
//!
//! What this stage guarantees: a [`Catalog`] that loaded is valid. Its ids are unique and
//! non-empty; every role, section, protocol, authentication and encryption name is one
//! of the known vocabularies; ports are 1..=65535 or `dynamic` / `random`; each
//! path's default authentication is a subset of its supported authentication; the
//! verdict-changing flags agree with the lists they qualify. A file that is not valid
//! gives a [`CatalogError`] naming the file, the line and the field, never a panic.
//! The schema is documented at the top of `catalog/exchange2007.toml`, which is built in.
//!
//! Nothing here sees packets: the classifier and the finding rules read the catalog.

pub mod roles;

use crate::model::{Encryption, Mechanism};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// The catalog shipped with dpaudit (checked by the tests at build time of the suite).
pub const BUILTIN_TOML: &str = include_str!("../../catalog/exchange2007.toml");
/// The name errors and reports give the built-in catalog.
pub const BUILTIN_NAME: &str = "catalog/exchange2007.toml (built in)";

/// A closed vocabulary read from the data files by name.
pub trait Vocabulary: Sized + Copy + 'static {
    /// Every name, in declaration order (for "expected one of" messages).
    const NAMES: &'static [&'static str];
    /// What the vocabulary is called in error messages ("role", "authentication").
    const WHAT: &'static str;
    fn from_name(name: &str) -> Option<Self>;
    fn as_str(self) -> &'static str;
}

/// Declares a fieldless enum whose values are read and written by name.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $var:ident = $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty {
            $( $(#[$vmeta])* $var, )+
        }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$var,)+];
        }

        impl Vocabulary for $ty {
            const NAMES: &'static [&'static str] = &[$($name,)+];
            const WHAT: &'static str = $what;
            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $name => Some($ty::$var), )+
                    _ => None,
                }
            }
            fn as_str(self) -> &'static str {
                match self {
                    $( $ty::$var => $name, )+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = String::deserialize(d)?;
                <$ty as Vocabulary>::from_name(&name)
                    .ok_or_else(|| de::Error::unknown_variant(&name, <$ty as Vocabulary>::NAMES))
            }
        }
    };
}

vocabulary! {
    /// A part a host plays in an Exchange 2007 organisation (the roles inventory's keys).
    pub enum Role ("role") {
        Hub = "hub",
        Edge = "edge",
        Mailbox = "mailbox",
        /// Client Access server.
        Cas = "cas",
        /// Unified Messaging server.
        Um = "um",
        /// Domain controller / global catalog (Active Directory).
        Dc = "dc",
        /// VoIP gateway or IP PBX talking SIP to Unified Messaging.
        IpGateway = "ip_gateway",
        /// End-user or administrator workstation.
        Client = "client",
        /// Backup server (VSS or legacy streaming backup of a Mailbox server).
        Backup = "backup",
    }
}

vocabulary! {
    /// The table of the reference a path comes from.
    pub enum Section ("section") {
        Transport = "transport",
        Mailbox = "mailbox",
        ClientAccess = "client-access",
        UnifiedMessaging = "unified-messaging",
    }
}

vocabulary! {
    /// Transport protocol of a port.
    pub enum Transport ("transport") {
        Tcp = "tcp",
        Udp = "udp",
    }
}

vocabulary! {
    /// An application protocol expected on a path's wire.
    pub enum Protocol ("protocol") {
        Smtp = "smtp",
        Tls = "tls",
        Http = "http",
        Dcerpc = "dcerpc",
        Ldap = "ldap",
        Kerberos = "kerberos",
        Dns = "dns",
        Smb = "smb",
        Sip = "sip",
        Rtp = "rtp",
        /// Windows cluster service traffic (UDP 3343 heartbeats).
        Cluster = "cluster",
        Pop3 = "pop3",
        Imap = "imap",
    }
}

vocabulary! {
    /// An authentication mechanism as the reference names it.
    pub enum AuthKind ("authentication") {
        Kerberos = "kerberos",
        /// NTLM, any version.
        Ntlm = "ntlm",
        /// NTLM version 2 only.
        Ntlmv2 = "ntlmv2",
        /// HTTP Basic; LDAP simple bind; POP3/IMAP4 plain login.
        Basic = "basic",
        Digest = "digest",
        /// OWA forms-based authentication.
        Forms = "forms",
        /// SPNEGO: Kerberos or NTLM inside it.
        Negotiate = "negotiate",
        Certificate = "certificate",
        /// TLS certificate trusted because it is in AD / ADAM.
        DirectTrust = "direct-trust",
        Anonymous = "anonymous",
        /// The peer's IP address is the credential.
        ByIp = "by-ip",
        /// POP/IMAP plain-text login.
        PlainText = "plain-text",
    }
}

vocabulary! {
    /// An encryption a path supports.
    pub enum EncKind ("encryption") {
        Tls = "tls",
        Https = "https",
        Ldaps = "ldaps",
        /// DCE/RPC authentication level 6 (packet privacy).
        RpcPrivacy = "rpc-privacy",
        /// Payload sealed by the Kerberos session (LDAP SASL sealing, RPC privacy).
        KerberosSeal = "kerberos-seal",
        Ipsec = "ipsec",
        SipTls = "sip-tls",
    }
}

vocabulary! {
    /// Where a path's "encrypted by default" cell was read.
    pub enum ByDefaultSource ("by-default source") {
        /// Read in the seed documents.
        Seed = "seed",
        /// The Chinese edition lost the cell; filled from the English edition (`*`).
        EnglishEdition = "english-edition",
    }
}

impl AuthKind {
    /// Whether a mechanism seen on the wire is an instance of this documented kind.
    /// `ntlmv2` does not accept NTLM of unknown version: the caller decides about that.
    pub fn accepts(self, seen: &Mechanism) -> bool {
        match self {
            AuthKind::Kerberos => matches!(seen, Mechanism::Kerberos),
            AuthKind::Ntlm => seen.is_ntlm(),
            AuthKind::Ntlmv2 => matches!(seen, Mechanism::Ntlmv2),
            AuthKind::Basic => matches!(
                seen,
                Mechanism::Basic
                    | Mechanism::Simple
                    | Mechanism::Plain
                    | Mechanism::Login
                    | Mechanism::UserPass
            ),
            AuthKind::Digest => matches!(seen, Mechanism::Digest),
            AuthKind::Forms => matches!(seen, Mechanism::Forms),
            AuthKind::Negotiate => matches!(seen, Mechanism::Kerberos) || seen.is_ntlm(),
            AuthKind::Certificate | AuthKind::DirectTrust => {
                matches!(seen, Mechanism::Certificate)
            }
            AuthKind::Anonymous => matches!(seen, Mechanism::Anonymous),
            AuthKind::ByIp => matches!(seen, Mechanism::ByIp),
            AuthKind::PlainText => matches!(
                seen,
                Mechanism::UserPass | Mechanism::Plain | Mechanism::Login
            ),
        }
    }
}

impl EncKind {
    /// Whether an encryption observed on a flow is what this documented kind means.
    pub fn accepts(self, seen: Encryption) -> bool {
        match self {
            EncKind::Tls | EncKind::Https | EncKind::Ldaps | EncKind::SipTls => {
                seen == Encryption::Tls
            }
            EncKind::RpcPrivacy => seen == Encryption::RpcPrivacy,
            EncKind::KerberosSeal => {
                matches!(seen, Encryption::SaslSeal | Encryption::RpcPrivacy)
            }
            EncKind::Ipsec => seen == Encryption::Ipsec,
        }
    }
}

/// A port of a data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// A fixed port, 1..=65535.
    Number(u16),
    /// Assigned at run time (RPC endpoint mapper, SDP); written `"dynamic"`.
    Dynamic,
    /// The source says "random port"; written `"random"`.
    Random,
}

impl Port {
    /// True for `dynamic` and `random`: only the wire content can place such a flow.
    pub fn is_variable(self) -> bool {
        !matches!(self, Port::Number(_))
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Number(n) => write!(f, "{n}"),
            Port::Dynamic => f.write_str("dynamic"),
            Port::Random => f.write_str("random"),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Number(n) => s.serialize_u16(*n),
            Port::Dynamic => s.serialize_str("dynamic"),
            Port::Random => s.serialize_str("random"),
        }
    }
}

/// One `{ port, transport, note }` entry of a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    pub port: Port,
    pub transport: Transport,
    /// Words the source attaches to the port ("TLS", "LDAP GC").
    pub note: Option<String>,
}

/// One documented data path. Serialised in declaration order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataPath {
    pub id: String,
    pub section: Section,
    pub name: String,
    /// Roles that open the connection.
    pub client: Vec<Role>,
    /// Roles that accept it.
    pub server: Vec<Role>,
    /// Either end may open the connection.
    pub bidirectional: bool,
    pub ports: Vec<PortSpec>,
    pub protocols: Vec<Protocol>,
    pub default_auth: Vec<AuthKind>,
    pub supported_auth: Vec<AuthKind>,
    /// Encryption supported; empty when the path has none.
    pub encryption: Vec<EncKind>,
    pub encrypted_by_default: bool,
    pub by_default_source: ByDefaultSource,
    /// Kerberos only when both roles share a server; NTLM between two servers.
    pub same_server_kerberos: bool,
    /// HTTP Negotiate tries Kerberos first, then NTLM.
    pub negotiate_kerberos_first: bool,
    /// The peer's address is the credential (roles inventory decides).
    pub auth_by_ip: bool,
    /// Signalling may be encrypted; the media never is.
    pub media_unencrypted: bool,
    /// URL path prefixes that identify the path on plain HTTP.
    pub http_paths: Vec<String>,
    pub notes: Vec<String>,
}

impl DataPath {
    /// The path uses this fixed port with this transport.
    pub fn has_port(&self, port: u16, transport: Transport) -> bool {
        self.ports
            .iter()
            .any(|p| p.port == Port::Number(port) && p.transport == transport)
    }

    /// The path has a `dynamic` or `random` port with this transport.
    pub fn has_variable_port(&self, transport: Transport) -> bool {
        self.ports
            .iter()
            .any(|p| p.port.is_variable() && p.transport == transport)
    }

    /// A host of role `client` opening a connection to a host of role `server` fits
    /// this path (both ways round when the path is bidirectional).
    pub fn connects(&self, client: Role, server: Role) -> bool {
        let forward = self.client.contains(&client) && self.server.contains(&server);
        let backward =
            self.bidirectional && self.client.contains(&server) && self.server.contains(&client);
        forward || backward
    }

    /// A mechanism seen on the wire is one the path supports.
    pub fn auth_supported(&self, seen: &Mechanism) -> bool {
        self.supported_auth.iter().any(|k| k.accepts(seen))
    }

    /// A mechanism seen on the wire is one the path uses by default.
    pub fn auth_default(&self, seen: &Mechanism) -> bool {
        self.default_auth.iter().any(|k| k.accepts(seen))
    }

    /// An encryption observed on a flow is one the path documents.
    pub fn encryption_documented(&self, seen: Encryption) -> bool {
        self.encryption.iter().any(|k| k.accepts(seen))
    }
}

/// What classifying a flow asks of a row, worked out once when the catalog loads:
/// each flow is scored against every row, and scanning the rows' lists of ports,
/// protocols and roles for each was a tenth of an audit's instructions. Lists become
/// bit sets (a bit per [`Protocol`] or [`Role`]) and the fixed ports one flat list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowFacts {
    fixed: Vec<(u16, Transport)>,
    variable: [bool; 2],
    protocols: u32,
    client: u32,
    server: u32,
    ipsec: bool,
}

const _: () = assert!(<Protocol as Vocabulary>::NAMES.len() <= 32);
const _: () = assert!(<Role as Vocabulary>::NAMES.len() <= 32);

/// `p`'s bit in [`RowFacts`]' protocol sets.
pub fn protocol_bit(p: Protocol) -> u32 {
    1 << (p as u32)
}

/// The bit set of `roles`.
pub fn role_bits(roles: &[Role]) -> u32 {
    roles.iter().fold(0, |m, r| m | 1 << (*r as u32))
}

impl RowFacts {
    pub fn of(row: &DataPath) -> RowFacts {
        let mut f = RowFacts {
            protocols: row.protocols.iter().fold(0, |m, p| m | protocol_bit(*p)),
            client: role_bits(&row.client),
            server: role_bits(&row.server),
            ipsec: row.encryption.contains(&EncKind::Ipsec),
            ..RowFacts::default()
        };
        for p in &row.ports {
            match p.port {
                Port::Number(n) => f.fixed.push((n, p.transport)),
                _ => f.variable[p.transport as usize] = true,
            }
        }
        f
    }

    /// [`DataPath::has_port`].
    pub fn has_port(&self, port: u16, transport: Transport) -> bool {
        self.fixed.iter().any(|&(n, t)| n == port && t == transport)
    }

    /// [`DataPath::has_variable_port`].
    pub fn has_variable_port(&self, transport: Transport) -> bool {
        self.variable[transport as usize]
    }

    /// `p` is in the row's protocols.
    pub fn speaks(&self, p: Protocol) -> bool {
        self.protocols & protocol_bit(p) != 0
    }

    /// The row names no protocol.
    pub fn no_protocol(&self) -> bool {
        self.protocols == 0
    }

    /// The row's client roles (bit set).
    pub fn client(&self) -> u32 {
        self.client
    }

    /// The row's server roles (bit set).
    pub fn server(&self) -> u32 {
        self.server
    }

    /// IPsec is among the row's encryption.
    pub fn ipsec(&self) -> bool {
        self.ipsec
    }
}

/// The whole catalog. Serialised in declaration order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Catalog {
    pub title: String,
    /// The reference document the rows come from.
    pub reference: String,
    /// Where this catalog was loaded from (a path, or [`BUILTIN_NAME`]).
    pub source: String,
    /// Read only once loaded: [`Catalog::rows`] pairs each with facts drawn from it.
    pub paths: Vec<DataPath>,
    #[serde(skip)]
    facts: Vec<RowFacts>,
}

impl Catalog {
    /// The catalog built into the binary. The test suite proves it loads.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::from_toml_str(BUILTIN_TOML, BUILTIN_NAME)
    }

    /// Read and validate a catalog file.
    pub fn load(path: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            file: file.clone(),
            source,
        })?;
        Catalog::from_toml_str(&text, &file)
    }

    /// Parse and validate catalog text; `source_name` names it in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog =
            toml::from_str(text).map_err(|e| toml_error(&e, text, source_name))?;
        let cx = Checker {
            text,
            file: source_name,
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut paths = Vec::with_capacity(raw.path.len());
        for row in &raw.path {
            let path = cx.path(row)?;
            let line = line_of(text, row.id.span().start);
            if let Some(first) = seen.insert(path.id.clone(), line) {
                return Err(cx.invalid(
                    row.id.span(),
                    "id",
                    format!("duplicate id `{}` (first used at line {first})", path.id),
                ));
            }
            paths.push(path);
        }
        if paths.is_empty() {
            return Err(cx.invalid(0..0, "path", "the catalog has no [[path]] entries".into()));
        }
        Ok(Catalog {
            title: raw.catalog.title,
            reference: raw.catalog.reference,
            source: source_name.to_string(),
            facts: paths.iter().map(RowFacts::of).collect(),
            paths,
        })
    }

    /// Every path with its [`RowFacts`], in catalog order.
    pub fn rows(&self) -> impl Iterator<Item = (&DataPath, &RowFacts)> {
        self.paths.iter().zip(&self.facts)
    }

    /// The path with this id.
    pub fn get(&self, id: &str) -> Option<&DataPath> {
        self.paths.iter().find(|p| p.id == id)
    }

    /// Paths that list this fixed port and transport, in catalog order.
    pub fn paths_for_port(&self, port: u16, transport: Transport) -> Vec<&DataPath> {
        self.paths
            .iter()
            .filter(|p| p.has_port(port, transport))
            .collect()
    }

    /// Paths with a `dynamic` or `random` port of this transport, in catalog order.
    pub fn paths_with_variable_ports(&self, transport: Transport) -> Vec<&DataPath> {
        self.paths
            .iter()
            .filter(|p| p.has_variable_port(transport))
            .collect()
    }
}

/// Where in a data file something went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    /// 1-based line, when the parser gave a position.
    pub line: Option<usize>,
    /// The key at fault (`default_auth`, `ports.port`, `roles.hub`), when known.
    pub field: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        Ok(())
    }
}

/// Why a catalog or roles file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or TOML of the wrong shape (missing key, wrong type, unknown key).
    #[error("{at}: {message}")]
    Toml { at: Location, message: String },
    /// Well-formed TOML whose content breaks a rule (unknown name, duplicate id...).
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
}

impl CatalogError {
    /// The location, for the errors that have one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            CatalogError::Io { .. } => None,
            CatalogError::Toml { at, .. } | CatalogError::Invalid { at, .. } => Some(at),
        }
    }
}

/// 1-based line of a byte offset (clamped to the text).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    let newlines = text
        .as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
    newlines + 1
}

/// The last `key =` on the line of `offset`, before `offset`, outside strings.
fn key_before(text: &str, offset: usize) -> Option<String> {
    let end = offset.min(text.len());
    let before = text.get(..end)?;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.get(start..)?;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut last = None;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => break,
            None if c == '=' => {
                let head = line.get(..i).unwrap_or("").trim_end();
                let key_start = head
                    .rfind(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
                    .map_or(0, |j| j + 1);
                let key = head.get(key_start..).unwrap_or("");
                if !key.is_empty() {
                    last = Some(key.to_string());
                }
            }
            None => {}
        }
    }
    last
}

/// The field a toml error is about: named in its message, or the key on its line.
fn toml_error_field(message: &str, text: &str, span: Option<Range<usize>>) -> Option<String> {
    for prefix in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(end) = rest.find('`') {
                return rest.get(..end).map(str::to_string);
            }
        }
    }
    span.and_then(|s| key_before(text, s.start))
}

/// Turn a toml error into one that names file, line and field.
pub(crate) fn toml_error(e: &toml::de::Error, text: &str, file: &str) -> CatalogError {
    let span = e.span();
    CatalogError::Toml {
        at: Location {
            file: file.to_string(),
            line: span.clone().map(|s| line_of(text, s.start)),
            field: toml_error_field(e.message(), text, span),
        },
        message: e.message().trim_end().to_string(),
    }
}

/// Builds located errors and checks names against the vocabularies.
pub(crate) struct Checker<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a str,
}

impl Checker<'_> {
    pub(crate) fn invalid(&self, span: Range<usize>, field: &str, message: String) -> CatalogError {
        CatalogError::Invalid {
            at: Location {
                file: self.file.to_string(),
                line: Some(line_of(self.text, span.start)),
                field: Some(field.to_string()),
            },
            message,
        }
    }

    fn name<T: Vocabulary>(&self, item: &Spanned<String>, field: &str) -> Result<T, CatalogError> {
        T::from_name(item.get_ref()).ok_or_else(|| {
            self.invalid(
                item.span(),
                field,
                format!(
                    "unknown {} `{}`, expected one of: {}",
                    T::WHAT,
                    item.get_ref(),
                    T::NAMES.join(", ")
                ),
            )
        })
    }

    fn names<T: Vocabulary>(
        &self,
        items: &[Spanned<String>],
        field: &str,
    ) -> Result<Vec<T>, CatalogError> {
        items.iter().map(|i| self.name(i, field)).collect()
    }

    fn non_empty<T>(
        &self,
        list: &Spanned<Vec<T>>,
        field: &str,
        id: &str,
    ) -> Result<(), CatalogError> {
        if list.get_ref().is_empty() {
            return Err(self.invalid(
                list.span(),
                field,
                format!("path `{id}`: the list must not be empty"),
            ));
        }
        Ok(())
    }

    fn port(&self, raw: &RawPort) -> Result<PortSpec, CatalogError> {
        let port = match raw.port.get_ref() {
            RawPortValue::Int(n) => match u16::try_from(*n) {
                Ok(p) if p != 0 => Port::Number(p),
                _ => {
                    return Err(self.invalid(
                        raw.port.span(),
                        "port",
                        format!("port {n} is outside 1..=65535"),
                    ))
                }
            },
            RawPortValue::Word(w) if w == "dynamic" => Port::Dynamic,
            RawPortValue::Word(w) if w == "random" => Port::Random,
            RawPortValue::Word(w) => {
                return Err(self.invalid(
                    raw.port.span(),
                    "port",
                    format!("port `{w}` is neither a number nor \"dynamic\" / \"random\""),
                ))
            }
        };
        Ok(PortSpec {
            port,
            transport: self.name(&raw.transport, "transport")?,
            note: raw.note.clone(),
        })
    }

    /// A flag that is set needs `ok`, or the row contradicts itself.
    fn flag(
        &self,
        flag: &Option<Spanned<bool>>,
        field: &str,
        ok: bool,
        needs: &str,
    ) -> Result<bool, CatalogError> {
        match flag {
            Some(f) if *f.get_ref() && !ok => {
                Err(self.invalid(f.span(), field, format!("`{field} = true` needs {needs}")))
            }
            Some(f) => Ok(*f.get_ref()),
            None => Ok(false),
        }
    }

    fn path(&self, row: &RawPath) -> Result<DataPath, CatalogError> {
        let id = row.id.get_ref().trim().to_string();
        if id.is_empty() {
            return Err(self.invalid(row.id.span(), "id", "the id is empty".into()));
        }
        if row.name.get_ref().trim().is_empty() {
            return Err(self.invalid(
                row.name.span(),
                "name",
                format!("path `{id}`: the name is empty"),
            ));
        }
        self.non_empty(&row.client, "client", &id)?;
        self.non_empty(&row.server, "server", &id)?;
        self.non_empty(&row.ports, "ports", &id)?;
        self.non_empty(&row.default_auth, "default_auth", &id)?;
        self.non_empty(&row.supported_auth, "supported_auth", &id)?;

        let default_auth: Vec<AuthKind> = self.names(row.default_auth.get_ref(), "default_auth")?;
        let supported_auth: Vec<AuthKind> =
            self.names(row.supported_auth.get_ref(), "supported_auth")?;
        for (kind, raw) in default_auth.iter().zip(row.default_auth.get_ref()) {
            if !supported_auth.contains(kind) {
                return Err(self.invalid(
                    raw.span(),
                    "default_auth",
                    format!("path `{id}`: default `{kind}` is not in supported_auth"),
                ));
            }
        }
        let protocols: Vec<Protocol> = self.names(&row.protocols, "protocols")?;
        let encryption: Vec<EncKind> = self.names(&row.encryption, "encryption")?;
        if *row.encrypted_by_default.get_ref() && encryption.is_empty() {
            return Err(self.invalid(
                row.encrypted_by_default.span(),
                "encrypted_by_default",
                format!("path `{id}`: encrypted by default but `encryption` is empty"),
            ));
        }
        let ports = row
            .ports
            .get_ref()
            .iter()
            .map(|p| self.port(p))
            .collect::<Result<Vec<_>, _>>()?;
        for p in &row.http_paths {
            if !p.get_ref().starts_with('/') {
                return Err(self.invalid(
                    p.span(),
                    "http_paths",
                    format!("path `{id}`: `{}` does not start with `/`", p.get_ref()),
                ));
            }
        }
        let supports = |k: AuthKind| supported_auth.contains(&k);
        Ok(DataPath {
            section: self.name(&row.section, "section")?,
            name: row.name.get_ref().trim().to_string(),
            client: self.names(row.client.get_ref(), "client")?,
            server: self.names(row.server.get_ref(), "server")?,
            bidirectional: row.bidirectional,
            ports,
            same_server_kerberos: self.flag(
                &row.same_server_kerberos,
                "same_server_kerberos",
                supports(AuthKind::Kerberos),
                "`kerberos` in supported_auth",
            )?,
            negotiate_kerberos_first: self.flag(
                &row.negotiate_kerberos_first,
                "negotiate_kerberos_first",
                supports(AuthKind::Negotiate),
                "`negotiate` in supported_auth",
            )?,
            auth_by_ip: self.flag(
                &row.auth_by_ip,
                "auth_by_ip",
                supports(AuthKind::ByIp),
                "`by-ip` in supported_auth",
            )?,
            media_unencrypted: self.flag(
                &row.media_unencrypted,
                "media_unencrypted",
                protocols.contains(&Protocol::Rtp),
                "`rtp` in protocols",
            )?,
            protocols,
            default_auth,
            supported_auth,
            encryption,
            encrypted_by_default: *row.encrypted_by_default.get_ref(),
            by_default_source: self.name(&row.by_default_source, "by_default_source")?,
            http_paths: row.http_paths.iter().map(|p| p.get_ref().clone()).collect(),
            notes: row.notes.clone(),
            id,
        })
    }
}

/// The file as written, before names are checked (spans kept for error lines).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    catalog: RawMeta,
    #[serde(default)]
    path: Vec<RawPath>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    title: String,
    #[serde(default)]
    reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPath {
    id: Spanned<String>,
    section: Spanned<String>,
    name: Spanned<String>,
    client: Spanned<Vec<Spanned<String>>>,
    server: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    bidirectional: bool,
    ports: Spanned<Vec<RawPort>>,
    protocols: Vec<Spanned<String>>,
    default_auth: Spanned<Vec<Spanned<String>>>,
    supported_auth: Spanned<Vec<Spanned<String>>>,
    encryption: Vec<Spanned<String>>,
    encrypted_by_default: Spanned<bool>,
    by_default_source: Spanned<String>,
    #[serde(default)]
    same_server_kerberos: Option<Spanned<bool>>,
    #[serde(default)]
    negotiate_kerberos_first: Option<Spanned<bool>>,
    #[serde(default)]
    auth_by_ip: Option<Spanned<bool>>,
    #[serde(default)]
    media_unencrypted: Option<Spanned<bool>>,
    #[serde(default)]
    http_paths: Vec<Spanned<String>>,
    #[serde(default)]
    notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    port: Spanned<RawPortValue>,
    transport: Spanned<String>,
    #[serde(default)]
    note: Option<String>,
}

/// A port as written: a number (range checked later, with its line) or a word.
enum RawPortValue {
    Int(i64),
    Word(String),
}

impl<'de> Deserialize<'de> for RawPortValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPortValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or \"dynamic\" / \"random\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPortValue, E> {
                Ok(RawPortValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPortValue, E> {
                Ok(RawPortValue::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPortValue, E> {
                Ok(RawPortValue::Word(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An aligned plain-text table of the catalog, one row per path.
pub fn render_table(catalog: &Catalog) -> String {
    const HEADER: [&str; 7] = [
        "ID",
        "SECTION",
        "CLIENT -> SERVER",
        "PORTS",
        "DEFAULT AUTH",
        "ENCRYPTION",
        "BY DEFAULT",
    ];
    let mut rows: Vec<[String; 7]> = vec![HEADER.map(str::to_string)];
    for p in &catalog.paths {
        let arrow = if p.bidirectional { "<->" } else { "->" };
        rows.push([
            p.id.clone(),
            p.section.to_string(),
            format!("{} {arrow} {}", join(&p.client), join(&p.server)),
            render_ports(&p.ports),
            join(&p.default_auth),
            if p.encryption.is_empty() {
                "-".to_string()
            } else {
                join(&p.encryption)
            },
            format!(
                "{}{}",
                if p.encrypted_by_default { "yes" } else { "no" },
                if p.by_default_source == ByDefaultSource::EnglishEdition {
                    "*"
                } else {
                    ""
                }
            ),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("* encrypted-by-default cell filled from the English edition\n");
    out
}

/// The catalog as pretty JSON (fields in declaration order).
pub fn render_json(catalog: &Catalog) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(catalog)
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `25/tcp,389/tcp+udp,dynamic/tcp`: one entry per port, transports merged.
fn render_ports(ports: &[PortSpec]) -> String {
    let mut merged: Vec<(Port, Vec<Transport>)> = Vec::new();
    for p in ports {
        match merged.iter_mut().find(|(port, _)| *port == p.port) {
            Some((_, ts)) if !ts.contains(&p.transport) => ts.push(p.transport),
            Some(_) => {}
            None => merged.push((p.port, vec![p.transport])),
        }
    }
    merged
        .iter()
        .map(|(port, ts)| {
            let ts: Vec<&str> = ts.iter().map(|t| t.as_str()).collect();
            format!("{port}/{}", ts.join("+"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
