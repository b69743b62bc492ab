//! The observed posture of a flow: what the protocol analyzers saw on the wire.
//!
//! Analyzers fill a [`Posture`]; the classifier and the finding rules read it. Nothing in
//! here knows about packets or files, so every stage can share these types.

use serde::{Serialize, Serializer};
use std::borrow::Cow;

/// Which way bytes travel relative to the flow's client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    ToServer,
    ToClient,
}

impl Direction {
    pub fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
    pub fn flip(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// How a flow's payload was protected. Serialised in kebab case (`rpc-privacy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// Payload readable: nothing protects it.
    None,
    /// TLS (implicit, or started by STARTTLS / STLS / X-ANONYMOUSTLS / LDAP StartTLS).
    Tls,
    /// DCE/RPC authentication level 6 (packet privacy).
    RpcPrivacy,
    /// SMB 3 transform header.
    Smb3,
    /// LDAP messages wrapped by a SASL security layer (Kerberos / NTLM sealing).
    SaslSeal,
    /// ESP / AH / UDP 4500 between the two hosts.
    Ipsec,
    /// Not enough of the flow was seen to tell.
    #[default]
    Unknown,
}

impl Encryption {
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::None => "none",
            Encryption::Tls => "tls",
            Encryption::RpcPrivacy => "rpc-privacy",
            Encryption::Smb3 => "smb3",
            Encryption::SaslSeal => "sasl-seal",
            Encryption::Ipsec => "ipsec",
            Encryption::Unknown => "unknown",
        }
    }
}

/// An authentication mechanism as the report names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Basic,
    Digest,
    /// OWA forms-based login (POST to owaauth.dll with username and password).
    Forms,
    Ntlmv1,
    Ntlmv2,
    /// NTLM whose version was not seen (no AUTHENTICATE message).
    Ntlm,
    Kerberos,
    /// SASL / SMTP AUTH PLAIN.
    Plain,
    /// SMTP AUTH LOGIN.
    Login,
    CramMd5,
    /// POP3 USER/PASS, IMAP LOGIN.
    UserPass,
    Apop,
    /// LDAP simple bind with a password.
    Simple,
    /// Another SASL mechanism, lower case (`sasl-scram-sha-512`).
    Sasl(String),
    /// HTTP bearer token (OAuth).
    Bearer,
    Anonymous,
    /// TLS client certificate (direct trust, certificate authentication).
    Certificate,
    /// Authentication by peer address (UM IP gateways); never seen on the wire.
    ByIp,
}

impl Mechanism {
    /// The mechanism's name as reports print it; borrowed except for SASL's own names.
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            Mechanism::Basic => Cow::Borrowed("basic"),
            Mechanism::Digest => Cow::Borrowed("digest"),
            Mechanism::Forms => Cow::Borrowed("forms"),
            Mechanism::Ntlmv1 => Cow::Borrowed("ntlmv1"),
            Mechanism::Ntlmv2 => Cow::Borrowed("ntlmv2"),
            Mechanism::Ntlm => Cow::Borrowed("ntlm"),
            Mechanism::Kerberos => Cow::Borrowed("kerberos"),
            Mechanism::Plain => Cow::Borrowed("plain"),
            Mechanism::Login => Cow::Borrowed("login"),
            Mechanism::CramMd5 => Cow::Borrowed("cram-md5"),
            Mechanism::UserPass => Cow::Borrowed("user-pass"),
            Mechanism::Apop => Cow::Borrowed("apop"),
            Mechanism::Simple => Cow::Borrowed("simple"),
            Mechanism::Sasl(m) => Cow::Owned(format!("sasl-{}", m.to_ascii_lowercase())),
            Mechanism::Bearer => Cow::Borrowed("bearer"),
            Mechanism::Anonymous => Cow::Borrowed("anonymous"),
            Mechanism::Certificate => Cow::Borrowed("certificate"),
            Mechanism::ByIp => Cow::Borrowed("by-ip"),
        }
    }

    /// True for the NTLM family, whatever the version.
    pub fn is_ntlm(&self) -> bool {
        matches!(
            self,
            Mechanism::Ntlm | Mechanism::Ntlmv1 | Mechanism::Ntlmv2
        )
    }
}

impl Serialize for Mechanism {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// A secret seen on the wire. Printed redacted (`j***`) unless the user asks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Secret(pub String);

impl Secret {
    /// First character, then `***`; an empty secret stays visibly empty.
    pub fn redacted(&self) -> String {
        match self.0.chars().next() {
            Some(c) => format!("{c}***"),
            None => "(empty)".to_string(),
        }
    }
    pub fn render(&self, show: bool) -> String {
        if show {
            self.0.clone()
        } else {
            self.redacted()
        }
    }
}

/// One authentication exchange seen on a flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthEvent {
    pub mechanism: Mechanism,
    /// `DOMAIN\user`, `user@realm` or plain user name, as the wire carried it.
    pub user: Option<String>,
    /// A password or reusable secret was readable on the wire.
    pub cleartext: bool,
    /// The secret itself, when one was seen (only shown with `--show-secrets`).
    pub secret: Option<Secret>,
    /// Frame that carried the credential (or the mechanism's first message).
    pub frame: u64,
    /// Where it was seen: `SMTP AUTH LOGIN`, `HTTP Authorization`, `LDAP bind`...
    pub context: String,
    /// Whether a TLS layer had begun on this flow before this event (STARTTLS then AUTH).
    /// Inside TLS the exchange is invisible, so this is true only for protocols that
    /// expose authentication after a security layer (never for a readable secret).
    pub after_tls: bool,
}

/// What the TLS analyzer learnt from a handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// Highest version the client offered (0x0303 = TLS 1.2, 0x0304 = TLS 1.3, 0x0002 = SSLv2).
    pub offered_version: Option<u16>,
    /// Version the server chose (supported_versions wins over the legacy field).
    pub version: Option<u16>,
    pub cipher: Option<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The server asked for a client certificate (CertificateRequest seen).
    pub cert_requested: bool,
    /// The client sent a non-empty Certificate message (visible up to TLS 1.2).
    pub client_cert: bool,
    /// Frame of the ClientHello.
    pub client_hello_frame: Option<u64>,
    /// Frame of the ServerHello.
    pub server_hello_frame: Option<u64>,
    /// How TLS began: `implicit`, `starttls`, `stls`, `x-anonymoustls`, `ldap-starttls`.
    pub started_by: String,
}

/// An oddity seen while parsing: named, with the frame, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Anomaly {
    pub frame: u64,
    /// Stable machine name, e.g. `ntlmssp.offset-out-of-range`.
    pub kind: &'static str,
    pub detail: String,
}

/// Most anomalies kept per flow; more are only counted.
pub const MAX_ANOMALIES_PER_FLOW: usize = 32;
/// Most distinct values kept per fact key; more are only counted.
pub const MAX_FACT_VALUES: usize = 64;
/// Most authentication events kept per flow (a busy keep-alive connection re-authenticates).
pub const MAX_AUTH_EVENTS: usize = 64;

/// Protocol facts: key -> distinct values. One flat vector in insertion order (a flow has
/// a few dozen facts at most; a map of sets cost kilobytes per flow in tree nodes and a
/// sorted vector paid string comparisons on every insert); sorted when read out. The
/// values share one string: a fact costs its key, an offset and its bytes, not a heap
/// string of its own (every live flow holds its facts, hundreds of thousands at once).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// (key, end of the value in `text`); a value starts where the one before it ends.
    items: Vec<(&'static str, u32)>,
    text: String,
}

impl PartialEq for Facts {
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}
impl Eq for Facts {}

/// The values of one fact key, in order.
#[derive(Clone, Debug)]
pub struct FactValues<'a>(Values<'a>);

/// Most keys hold one value: that one needs no allocation.
#[derive(Clone, Debug)]
enum Values<'a> {
    One([&'a str; 1]),
    Many(Vec<&'a str>),
}

impl<'a> FactValues<'a> {
    fn one(v: &'a str) -> Self {
        FactValues(Values::One([v]))
    }
    fn push(&mut self, v: &'a str) {
        match &mut self.0 {
            Values::One([first]) => self.0 = Values::Many(vec![*first, v]),
            Values::Many(all) => all.push(v),
        }
    }
    fn as_slice(&self) -> &[&'a str] {
        match &self.0 {
            Values::One(one) => one,
            Values::Many(all) => all,
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.as_slice().iter().copied()
    }
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
    pub fn contains(&self, value: &str) -> bool {
        self.as_slice().contains(&value)
    }
}

/// Same key: the same literal almost always, so compare the pointer before the bytes.
/// Different keys of one length mostly share a prefix (`smtp.helo`, `smtp.auth`) and
/// differ at the end: the last eight bytes are compared in place before all of them.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.as_ptr() == b.as_ptr() {
        return true;
    }
    if let (Some(x), Some(y)) = (a.last_chunk::<8>(), b.last_chunk::<8>()) {
        if x != y {
            return false;
        }
    }
    a == b
}

impl Facts {
    /// Each key with the byte range of its value in `text`, in insertion order.
    fn spans(&self) -> impl Iterator<Item = (&'static str, std::ops::Range<usize>)> + '_ {
        let mut start = 0usize;
        self.items.iter().map(move |&(k, end)| {
            let span = start..end as usize;
            start = span.end;
            (k, span)
        })
    }

    /// Each (key, value) in insertion order.
    fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.spans()
            .map(|(k, span)| (k, self.text.get(span).unwrap_or("")))
    }

    /// The key holds this value (bytes compared in place, no UTF-8 boundary checks).
    fn holds(&self, k: &str, span: std::ops::Range<usize>, key: &str, value: &str) -> bool {
        same_key(k, key) && self.text.as_bytes().get(span) == Some(value.as_bytes())
    }

    /// The stored form: (key, end of its value in the text) in insertion order, and the
    /// text (for writing a flow record out and reading it back, see [`Facts::from_raw`]).
    pub fn raw(&self) -> (&[(&'static str, u32)], &str) {
        (&self.items, &self.text)
    }

    /// Facts from their stored form; `None` unless every value ends after the one
    /// before it, on a character boundary, within the text.
    pub fn from_raw(items: Vec<(&'static str, u32)>, text: String) -> Option<Facts> {
        let mut start = 0usize;
        for &(_, end) in &items {
            let end = end as usize;
            if end < start || !text.is_char_boundary(end) {
                return None;
            }
            start = end;
        }
        (start == text.len()).then_some(Facts { items, text })
    }

    /// Add a value; false when the key already holds [`MAX_FACT_VALUES`] others (or
    /// the values of one flow would pass 4 GiB).
    pub fn insert(&mut self, key: &'static str, value: &str) -> bool {
        let mut n = 0;
        for (k, span) in self.spans() {
            if same_key(k, key) {
                if self.text.as_bytes().get(span) == Some(value.as_bytes()) {
                    return true;
                }
                n += 1;
            }
        }
        let Ok(end) = u32::try_from(self.text.len() + value.len()) else {
            return false;
        };
        if n >= MAX_FACT_VALUES {
            return false;
        }
        if self.items.is_empty() {
            // Half the flows hold 8 facts or more, in about 100 bytes: room for that
            // at once instead of doubling up to it.
            self.items.reserve(8);
            self.text.reserve(96);
        }
        self.text.push_str(value);
        self.items.push((key, end));
        true
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.items.iter().any(|(k, _)| same_key(k, key))
    }

    pub fn contains(&self, key: &str, value: &str) -> bool {
        self.spans()
            .any(|(k, span)| self.holds(k, span, key, value))
    }

    /// The values of `key`, sorted.
    pub fn get(&self, key: &str) -> Option<FactValues<'_>> {
        let mut found = self
            .spans()
            .filter(|(k, _)| same_key(k, key))
            .map(|(_, span)| self.text.get(span).unwrap_or(""));
        let first = found.next()?;
        let Some(second) = found.next() else {
            return Some(FactValues::one(first));
        };
        let mut all = vec![first, second];
        all.extend(found);
        all.sort_unstable();
        Some(FactValues(Values::Many(all)))
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn sorted(&self) -> Vec<(&'static str, &str)> {
        let mut v: Vec<(&'static str, &str)> = self.pairs().collect();
        v.sort_unstable();
        v
    }

    /// Each key with its values, keys and values sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, FactValues<'_>)> + '_ {
        let sorted = self.sorted();
        let mut out: Vec<(&'static str, FactValues<'_>)> = Vec::new();
        for (k, v) in sorted {
            match out.last_mut() {
                Some((lk, vals)) if *lk == k => vals.push(v),
                _ => out.push((k, FactValues::one(v))),
            }
        }
        out.into_iter()
    }
}

/// Keys and values sorted, as [`Facts::iter`] gives them, written from one sorted list.
impl Serialize for Facts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        /// The values of one key: a run of the sorted (key, value) list.
        struct Run<'a>(&'a [(&'static str, &'a str)]);
        impl Serialize for Run<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|(_, v)| v))
            }
        }
        let sorted = self.sorted();
        let mut m = s.serialize_map(None)?;
        for run in sorted.chunk_by(|a, b| a.0 == b.0) {
            if let Some((k, _)) = run.first() {
                m.serialize_entry(k, &Run(run))?;
            }
        }
        m.end()
    }
}

/// Everything the analyzers observed on one flow.
#[derive(Clone, Debug, Default)]
pub struct Posture {
    /// Application protocol recognised (`smtp`, `tls`, `http`, `dcerpc`, `ldap`...).
    pub protocol: Option<&'static str>,
    /// How the protocol was recognised: `handshake` (probe certain) or `port`.
    pub detected_by: Option<&'static str>,
    pub encryption: Encryption,
    /// Frame where encryption began (TLS ServerHello, RPC privacy bind, ...).
    pub encryption_frame: Option<u64>,
    /// Boxed: most flows are not TLS, and the record is held for every live flow.
    pub tls: Option<Box<TlsInfo>>,
    pub auth: Vec<AuthEvent>,
    /// Protocol facts, key -> distinct values (`smtp.ehlo.keyword` -> `STARTTLS`).
    pub facts: Facts,
    pub anomalies: Vec<Anomaly>,
    /// Anomalies past [`MAX_ANOMALIES_PER_FLOW`], counted only.
    pub anomalies_dropped: u64,
    /// Facts or auth events past their caps, counted only.
    pub facts_dropped: u64,
}

impl Posture {
    pub fn fact(&mut self, key: &'static str, value: impl AsRef<str>) {
        if !self.facts.insert(key, value.as_ref()) {
            self.facts_dropped += 1;
        }
    }

    pub fn has_fact(&self, key: &str, value: &str) -> bool {
        self.facts.contains(key, value)
    }

    pub fn anomaly(&mut self, frame: u64, kind: &'static str, detail: impl Into<String>) {
        if self.anomalies.len() >= MAX_ANOMALIES_PER_FLOW {
            self.anomalies_dropped += 1;
            return;
        }
        self.anomalies.push(Anomaly {
            frame,
            kind,
            detail: detail.into(),
        });
    }

    pub fn add_auth(&mut self, ev: AuthEvent) {
        if self.auth.len() >= MAX_AUTH_EVENTS {
            self.facts_dropped += 1;
            return;
        }
        if !self.auth.contains(&ev) {
            // Most flows that authenticate do it once: room for one event, not the four
            // a first push reserves (every live flow holds its events).
            if self.auth.capacity() == 0 {
                self.auth.reserve_exact(1);
            }
            self.auth.push(ev);
        }
    }

    /// Record that encryption began at `frame` (the first report wins).
    pub fn set_encryption(&mut self, enc: Encryption, frame: u64) {
        if self.encryption_frame.is_none()
            || matches!(self.encryption, Encryption::None | Encryption::Unknown)
        {
            self.encryption = enc;
            self.encryption_frame = Some(frame);
        }
    }

    /// Mark the flow as readable (no encryption) unless something already encrypted it.
    pub fn set_cleartext(&mut self) {
        if self.encryption == Encryption::Unknown {
            self.encryption = Encryption::None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_same_by_their_bytes_wherever_they_are_stored() {
        // Keys read back from a spill are copies, not the analyzers' literals.
        let copy = |k: &str| k.to_string();
        for k in ["dns", "smtp.auth", "smtp.command", "http.www-authenticate"] {
            assert!(same_key(k, &copy(k)), "{k}");
        }
        // One length, different bytes: at the end, at the start, in the middle.
        assert!(!same_key("smtp.helo", "smtp.auth"));
        assert!(!same_key("xmtp.helo", "smtp.helo"));
        assert!(!same_key("smtp.command-x-y", "smtp.commanX-x-y"));
        assert!(!same_key("imap", "pop3"));
        assert!(!same_key("smtp.helo", "smtp.hel"));
        let mut f = Facts::default();
        assert!(f.insert("smtp.command", "EHLO"));
        let key = copy("smtp.command");
        assert!(f.contains(&key, "EHLO"));
        assert_eq!(f.get(&key).map(|v| v.len()), Some(1));
    }

    #[test]
    fn facts_keep_distinct_values_per_key_and_count_what_passes_the_cap() {
        let mut p = Posture::default();
        p.fact("smtp.ehlo.keyword", "STARTTLS");
        p.fact("smtp.ehlo.keyword", "AUTH");
        p.fact("smtp.ehlo.keyword", "STARTTLS"); // again: kept once
        p.fact("http.host", "AUTH"); // the same text under another key is its own fact
        p.fact("http.host", ""); // an empty value is a value
        let ehlo: Vec<&str> = p.facts.get("smtp.ehlo.keyword").unwrap().iter().collect();
        assert_eq!(ehlo, ["AUTH", "STARTTLS"], "sorted, deduplicated");
        // A key compared by text, not only by the literal's address.
        let owned = String::from("http.host");
        assert!(p.facts.contains(&owned, "AUTH") && p.facts.contains("http.host", ""));
        assert!(!p.facts.contains("http.host", "STARTTLS"));
        assert!(!p.facts.contains("smtp.ehlo.keyword", "STARTTLSX"));
        assert!(!p.facts.contains("smtp.ehlo.keyword", "START"));
        for i in 0..MAX_FACT_VALUES + 5 {
            p.fact("dns.query", format!("host{i}.example"));
        }
        assert_eq!(p.facts.get("dns.query").unwrap().len(), MAX_FACT_VALUES);
        assert_eq!(p.facts_dropped, 5);
        assert!(p.facts.contains("dns.query", "host0.example"));
        // Serialised as key -> sorted values, keys sorted.
        let json = serde_json::to_value(&p.facts).unwrap();
        assert_eq!(json["http.host"], serde_json::json!(["", "AUTH"]));
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["dns.query", "http.host", "smtp.ehlo.keyword"]);
    }
}
