//! The roles inventory (`--roles FILE`): which hosts play which Exchange roles.
//!
//! ```toml
//! [roles]
//! hub = ["10.1.0.10", "10.1.0.11"]
//! client = ["10.2.0.0/16", "2001:db8:2::/48"]
//! ```
//!
//! What this module guarantees: every key is a known [`Role`], every entry an IPv4 or
//! IPv6 address or CIDR block whose prefix fits its family; anything else is a
//! [`CatalogError`] naming the file, the line and the field (`roles.<role>`). Host bits
//! under a prefix are ignored (`10.2.0.1/16` means `10.2.0.0/16`). A host may hold several
//! roles (Hub Transport and Mailbox on one server is common in Exchange 2007), so
//! [`Roles::roles_of`] answers with a list. IPv4-mapped IPv6 addresses match their IPv4
//! entries.

use super::{toml_error, CatalogError, Checker, Role, Vocabulary};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;
use toml::Spanned;

/// An address block: a network address (host bits cleared) and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not an address or CIDR block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    Address(String),
    #[error("prefix `/{0}` is not a number")]
    Prefix(String),
    #[error("prefix /{prefix} is longer than the {max} bits of an {family} address")]
    PrefixTooLong {
        prefix: u32,
        max: u8,
        family: &'static str,
    },
}

impl IpNet {
    /// The block of `addr` under `prefix` bits; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNet, NetError> {
        let (max, family) = match addr {
            IpAddr::V4(_) => (32, "IPv4"),
            IpAddr::V6(_) => (128, "IPv6"),
        };
        if prefix > max {
            return Err(NetError::PrefixTooLong {
                prefix: u32::from(prefix),
                max,
                family,
            });
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(a), prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_v6(u128::from(a), prefix))),
        };
        Ok(IpNet { addr, prefix })
    }

    /// One host (/32 or /128).
    pub fn host(addr: IpAddr) -> IpNet {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, prefix }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// `ip` lies in this block (same family only; callers canonicalise mapped addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                mask_v4(u32::from(a), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                mask_v6(u128::from(a), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// Keep the top `prefix` bits (a prefix of 0 keeps none: the shift by 32 is refused).
fn mask_v4(bits: u32, prefix: u8) -> u32 {
    let keep = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0);
    bits & keep
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    let keep = u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0);
    bits & keep
}

impl FromStr for IpNet {
    type Err = NetError;

    fn from_str(s: &str) -> Result<IpNet, NetError> {
        let s = s.trim();
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| NetError::Address(addr_text.to_string()))?;
        let Some(p) = prefix_text else {
            return Ok(IpNet::host(addr));
        };
        // Digits only: `u32::from_str` would also take a leading `+`.
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NetError::Prefix(p.to_string()));
        }
        let prefix: u32 = p.parse().map_err(|_| NetError::Prefix(p.to_string()))?;
        match u8::try_from(prefix) {
            Ok(prefix) => IpNet::new(addr, prefix),
            Err(_) => Err(NetError::PrefixTooLong {
                prefix,
                max: if addr.is_ipv4() { 32 } else { 128 },
                family: if addr.is_ipv4() { "IPv4" } else { "IPv6" },
            }),
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The roles inventory: (role, block) entries in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    entries: Vec<(Role, IpNet)>,
}

impl Roles {
    /// Read and validate a roles file.
    pub fn load(path: impl AsRef<Path>) -> Result<Roles, CatalogError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            file: file.clone(),
            source,
        })?;
        Roles::from_toml_str(&text, &file)
    }

    /// Parse and validate roles text; `source_name` names it in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Roles, CatalogError> {
        let raw: RawRolesFile =
            toml::from_str(text).map_err(|e| toml_error(&e, text, source_name))?;
        let cx = Checker {
            text,
            file: source_name,
        };
        let mut entries = Vec::new();
        // Spans order the keys as written, so entries keep file order.
        let mut keys: Vec<(&Spanned<String>, &Vec<Spanned<String>>)> = raw.roles.iter().collect();
        keys.sort_by_key(|(k, _)| k.span().start);
        for (key, addrs) in keys {
            let Some(role) = Role::from_name(key.get_ref()) else {
                return Err(cx.invalid(
                    key.span(),
                    &format!("roles.{}", key.get_ref()),
                    format!(
                        "unknown role `{}`, expected one of: {}",
                        key.get_ref(),
                        Role::NAMES.join(", ")
                    ),
                ));
            };
            for a in addrs {
                let net: IpNet = a.get_ref().parse().map_err(|e: NetError| {
                    cx.invalid(a.span(), &format!("roles.{}", key.get_ref()), e.to_string())
                })?;
                entries.push((role, net));
            }
        }
        Ok(Roles { entries })
    }

    /// Every role whose blocks hold `ip`, sorted, each once.
    pub fn roles_of(&self, ip: IpAddr) -> Vec<Role> {
        let ip = ip.to_canonical();
        let mut out: Vec<Role> = self
            .entries
            .iter()
            .filter(|(_, net)| net.contains(ip))
            .map(|(role, _)| *role)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The (role, block) entries in file order.
    pub fn entries(&self) -> &[(Role, IpNet)] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRolesFile {
    #[serde(default)]
    roles: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        match s.parse() {
            Ok(a) => a,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn roles(text: &str) -> Roles {
        match Roles::from_toml_str(text, "roles.toml") {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(text: &str) -> CatalogError {
        match Roles::from_toml_str(text, "roles.toml") {
            Ok(r) => panic!("should fail, got {r:?}"),
            Err(e) => e,
        }
    }

    fn assert_at(e: &CatalogError, line: usize, field: &str) {
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("roles.toml:{line}: field `{field}`")),
            "expected line {line} field {field}: {msg}"
        );
    }

    const INVENTORY: &str = r#"[roles]
hub = ["10.1.0.10", "10.1.0.11"]
edge = ["192.0.2.25"]
cas = ["10.1.0.20"]
mailbox = ["10.1.0.30", "10.1.0.10"]
um = ["10.1.0.40"]
dc = ["10.1.0.5"]
ip_gateway = ["10.9.0.2"]
client = ["10.2.0.0/16", "2001:db8:2::/48"]
"#;

    #[test]
    fn inventory_from_the_brief_matches_hosts() {
        let r = roles(INVENTORY);
        assert_eq!(r.roles_of(ip("10.1.0.11")), [Role::Hub]);
        assert_eq!(r.roles_of(ip("192.0.2.25")), [Role::Edge]);
        assert_eq!(r.roles_of(ip("10.9.0.2")), [Role::IpGateway]);
        assert_eq!(r.roles_of(ip("10.1.0.5")), [Role::Dc]);
        assert_eq!(r.roles_of(ip("10.2.255.7")), [Role::Client]);
        assert_eq!(r.roles_of(ip("10.3.0.1")), []);
        assert_eq!(r.roles_of(ip("2001:db8:2:ffff::1")), [Role::Client]);
        assert_eq!(r.roles_of(ip("2001:db8:3::1")), []);
        assert_eq!(r.entries().len(), 11);
        assert_eq!(r.entries()[0], (Role::Hub, IpNet::host(ip("10.1.0.10"))));
    }

    #[test]
    fn one_host_can_hold_several_roles() {
        let r = roles(INVENTORY);
        assert_eq!(r.roles_of(ip("10.1.0.10")), [Role::Hub, Role::Mailbox]);
        let r = roles("[roles]\nclient = [\"10.0.0.0/8\", \"10.1.0.0/16\"]\n");
        assert_eq!(r.roles_of(ip("10.1.2.3")), [Role::Client], "listed once");
    }

    #[test]
    fn ipv4_mapped_ipv6_matches_the_ipv4_entry() {
        let r = roles(INVENTORY);
        assert_eq!(r.roles_of(ip("::ffff:10.1.0.20")), [Role::Cas]);
    }

    #[test]
    fn cidr_edges_and_host_bits() {
        let net: IpNet = match "10.2.0.1/16".parse() {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(net.to_string(), "10.2.0.0/16", "host bits cleared");
        assert!(net.contains(ip("10.2.0.0")));
        assert!(net.contains(ip("10.2.255.255")));
        assert!(!net.contains(ip("10.3.0.0")));
        assert!(!net.contains(ip("10.1.255.255")));
        assert!(!net.contains(ip("::a02:1")), "families never mix");
        let all4: IpNet = "0.0.0.0/0".parse().unwrap_or(IpNet::host(ip("1.1.1.1")));
        assert!(all4.contains(ip("255.255.255.255")) && all4.contains(ip("0.0.0.0")));
        let all6: IpNet = "::/0".parse().unwrap_or(IpNet::host(ip("::1")));
        assert!(all6.contains(ip("ffff::1")));
        let one6: IpNet = "2001:db8::1/128".parse().unwrap_or(IpNet::host(ip("::1")));
        assert!(one6.contains(ip("2001:db8::1")) && !one6.contains(ip("2001:db8::2")));
        let odd6: IpNet = "2001:db8:ffff::/33"
            .parse()
            .unwrap_or(IpNet::host(ip("::1")));
        assert!(odd6.contains(ip("2001:db8:8000::1")) && !odd6.contains(ip("2001:db9::")));
    }

    #[test]
    fn address_parse_errors() {
        assert_eq!(
            "10.1.0.300".parse::<IpNet>(),
            Err(NetError::Address("10.1.0.300".into()))
        );
        assert_eq!(
            "10.0.0.0/".parse::<IpNet>(),
            Err(NetError::Prefix(String::new()))
        );
        assert_eq!(
            "10.0.0.0/+8".parse::<IpNet>(),
            Err(NetError::Prefix("+8".into()))
        );
        assert_eq!(
            "10.0.0.0/8/9".parse::<IpNet>(),
            Err(NetError::Prefix("8/9".into()))
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err(NetError::PrefixTooLong {
                prefix: 33,
                max: 32,
                ..
            })
        ));
        assert!(matches!(
            "::/129".parse::<IpNet>(),
            Err(NetError::PrefixTooLong {
                prefix: 129,
                max: 128,
                ..
            })
        ));
        assert!(matches!(
            "::/999".parse::<IpNet>(),
            Err(NetError::PrefixTooLong { prefix: 999, .. })
        ));
    }

    #[test]
    fn unknown_role_names_line_and_field() {
        let e = err("[roles]\nhub = [\"10.1.0.10\"]\nexchange = [\"10.1.0.11\"]\n");
        assert_at(&e, 3, "roles.exchange");
        assert!(e.to_string().contains("unknown role `exchange`"), "{e}");
    }

    #[test]
    fn bad_address_names_line_and_field() {
        let e = err(
            "[roles]\nhub = [\"10.1.0.10\"]\ncas = [\n  \"10.1.0.20\",\n  \"10.1.0.300\",\n]\n",
        );
        assert_at(&e, 5, "roles.cas");
        assert!(e
            .to_string()
            .contains("`10.1.0.300` is not an IPv4 or IPv6 address"));
    }

    #[test]
    fn prefix_too_long_names_line_and_field() {
        let e = err("[roles]\nclient = [\"10.2.0.0/16\", \"2001:db8::/130\"]\n");
        assert_at(&e, 2, "roles.client");
        assert!(
            e.to_string()
                .contains("longer than the 128 bits of an IPv6"),
            "{e}"
        );
        let e = err("[roles]\n\nclient = [\"10.2.0.0/33\"]\n");
        assert_at(&e, 3, "roles.client");
    }

    #[test]
    fn wrong_shapes_name_line_and_field() {
        // Not a list.
        let e = err("[roles]\nhub = \"10.1.0.10\"\n");
        assert_at(&e, 2, "hub");
        // A list of numbers.
        let e = err("[roles]\nhub = [10]\n");
        assert_at(&e, 2, "hub");
        // An unknown top-level table.
        let e = err("[role]\nhub = []\n");
        assert_at(&e, 1, "role");
        // Broken syntax.
        let e = err("[roles]\nedge = [\"192.0.2.25\"\n");
        assert!(e.to_string().starts_with("roles.toml:2"), "{e}");
    }

    #[test]
    fn empty_inventory_is_valid_and_matches_nothing() {
        let r = roles("");
        assert!(r.is_empty());
        assert_eq!(r.roles_of(ip("10.1.0.10")), []);
        assert!(roles("[roles]\nhub = []\n").is_empty());
    }

    #[test]
    fn every_role_name_is_accepted_as_a_key() {
        for name in Role::NAMES {
            let r = roles(&format!("[roles]\n{name} = [\"192.0.2.1\"]\n"));
            assert_eq!(r.roles_of(ip("192.0.2.1")).len(), 1, "{name}");
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = match Roles::load("/nonexistent/roles.toml") {
            Ok(_) => panic!("loaded a missing file"),
            Err(e) => e,
        };
        assert!(matches!(e, CatalogError::Io { .. }));
    }
}
