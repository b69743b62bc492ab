//! DCE/RPC interface and transfer-syntax identifiers, and the [`Uuid`] type that carries
//! them.
//!
//! Guarantees: [`Uuid::from_ndr`] never reads past its input; the table holds each UUID
//! once (a unit test checks it); every entry names its source. Entries from Microsoft
//! protocol specifications say which one; the legacy Exchange 2003-era interfaces are
//! only documented by public endpoint-mapper listings (marked "not in a spec").

use std::fmt;

/// A UUID in its canonical (string) byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

/// Length of a UUID on the wire.
pub const UUID_LEN: usize = 16;

impl Uuid {
    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` at compile time (table literals only;
    /// a malformed literal is a build error).
    pub const fn parse(s: &str) -> Uuid {
        let b = s.as_bytes();
        assert!(b.len() == 36, "UUID literal must be 36 characters");
        let mut out = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < b.len() {
            if b[i] == b'-' {
                i += 1;
                continue;
            }
            assert!(i + 1 < b.len(), "odd number of hex digits");
            out[n] = (hex_val(b[i]) << 4) | hex_val(b[i + 1]);
            n += 1;
            i += 2;
        }
        assert!(n == 16, "UUID literal must hold 16 bytes");
        Uuid(out)
    }

    /// Read a UUID as NDR carries it: the first three fields follow the data
    /// representation's integer order (`little_endian` from drep), the last 8 bytes as is.
    pub fn from_ndr(b: &[u8], little_endian: bool) -> Option<Uuid> {
        let raw: &[u8; UUID_LEN] = b.get(..UUID_LEN)?.try_into().ok()?;
        let mut out = *raw;
        if little_endian {
            out[0..4].reverse();
            out[4..6].reverse();
            out[6..8].reverse();
        }
        Some(Uuid(out))
    }

    /// Read a UUID as [`Display`](fmt::Display) writes it (lower-case hex, dashes after
    /// the 4th, 6th, 8th and 10th bytes); `None` for any other text.
    pub fn from_text(s: &str) -> Option<Uuid> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; UUID_LEN];
        let mut at = 0;
        for (n, byte) in out.iter_mut().enumerate() {
            if matches!(n, 4 | 6 | 8 | 10) {
                (b.get(at) == Some(&b'-')).then_some(())?;
                at += 1;
            }
            *byte = (digit(*b.get(at)?)? << 4) | digit(*b.get(at + 1)?)?;
            at += 2;
        }
        Some(Uuid(out))
    }

    /// True when the first `n` bytes (canonical order) equal `prefix`'s.
    pub fn starts_with(&self, prefix: &Uuid, n: usize) -> bool {
        n <= UUID_LEN && self.0.get(..n) == prefix.0.get(..n)
    }
}

const fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit in UUID literal"),
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A known RPC interface.
#[derive(Debug)]
pub struct Interface {
    pub uuid: Uuid,
    /// Short lower-case name used in facts (`emsmdb`, `nspi`, `winreg`).
    pub name: &'static str,
}

const fn iface(uuid: &str, name: &'static str) -> Interface {
    Interface {
        uuid: Uuid::parse(uuid),
        name,
    }
}

/// Interfaces named in facts. Versions in the comments are the ones the source gives.
pub static INTERFACES: &[Interface] = &[
    // MS-OXCRPC 1.9: EMSMDB v0.81 (MAPI store, Outlook and Exchange-internal MAPI).
    iface("a4f1db00-ca47-1067-b31f-00dd010662da", "emsmdb"),
    // MS-OXCRPC 1.9: AsyncEMSMDB v0.01 (notification long poll).
    iface("5261574a-4572-206e-b268-6b199213b4e4", "asyncemsmdb"),
    // MS-OXNSPI / MS-NSPI 1.9: NSPI v56.0 (address book).
    iface("f5cc5a18-4264-101a-8c59-08002b2f8426", "nspi"),
    // MS-OXABREF 1.9: referral (RFR) v1.0.
    iface("1544f5e0-613c-11d1-93df-00c04fd7bd09", "rfr"),
    // MS-DRSR 1.9: drsuapi v4.0 and dsaop v1.0.
    iface("e3514235-4b06-11d1-ab04-00c04fc2dcd2", "drsuapi"),
    iface("7c44d7d4-31d5-424c-bd5e-2b3e1f323d22", "dsaop"),
    // C706 / MS-RPCE 2.2.1.2: endpoint mapper v3.0.
    iface("e1af8308-5d1f-11c9-91a4-08002b14a0fa", "epm"),
    // MS-NRPC 1.9: netlogon v1.0.
    iface("12345678-1234-abcd-ef00-01234567cffb", "netlogon"),
    // MS-LSAD 1.9: lsarpc v0.0.
    iface("12345778-1234-abcd-ef00-0123456789ab", "lsarpc"),
    // MS-SAMR 1.9: samr v1.0.
    iface("12345778-1234-abcd-ef00-0123456789ac", "samr"),
    // MS-RRP 1.9: winreg v1.0 (remote registry).
    iface("338cd001-2244-31f1-aaaa-900038001003", "winreg"),
    // MS-SRVS 1.9: srvsvc v3.0.
    iface("4b324fc8-1670-01d3-1278-5a47bf6ee188", "srvsvc"),
    // MS-WKST 1.9: wkssvc v1.0.
    iface("6bffd098-a112-3610-9833-46c3f87e345a", "wkssvc"),
    // MS-SCMR 1.9: svcctl v2.0.
    iface("367abb81-9844-35f1-ad32-98f038001003", "svcctl"),
    // MS-TSCH 1.9: atsvc v1.0, ITaskSchedulerService v1.0.
    iface("1ff70682-0a51-30e8-076d-740be8cee98b", "atsvc"),
    iface(
        "86d35949-83c9-4044-b424-db363231fd0c",
        "itaskschedulerservice",
    ),
    // MS-DSSP 1.9: dssetup v0.0.
    iface("3919286a-b10c-11d0-9ba8-00c04fd92ef5", "dssetup"),
    // MS-RPRN 1.9: spoolss (winspool) v1.0.
    iface("12345678-1234-abcd-ef00-0123456789ab", "spoolss"),
    // MS-DCOM 1.9: IRemUnknown2, ISystemActivator, IObjectExporter (IOXIDResolver).
    iface("00000143-0000-0000-c000-000000000046", "iremunknown2"),
    iface("000001a0-0000-0000-c000-000000000046", "isystemactivator"),
    iface("99fcfec4-5260-101b-bbcb-00aa0021347a", "iobjectexporter"),
    // Legacy Exchange interfaces (not in a spec; public endpoint-mapper listings agree).
    // Store admin (store.exe) v1.0 / v3.0.
    iface(
        "a4f1db00-ca47-1067-b31e-00dd010662da",
        "exchange-store-admin1",
    ),
    iface(
        "89742ace-a9ed-11cf-9c0c-08002be7ae86",
        "exchange-store-admin2",
    ),
    iface(
        "99e64010-b032-11d0-97a4-00c04fd6551d",
        "exchange-store-admin3",
    ),
    // System Attendant (mad.exe): public v16.0, private, cluster.
    iface(
        "469d6ec0-0d87-11ce-b13f-00aa003bac6c",
        "exchange-sysatt-public",
    ),
    iface(
        "83d72bf0-0d89-11ce-b13f-00aa003bac6c",
        "exchange-sysatt-private",
    ),
    iface(
        "f930c514-1215-11d3-99a5-00a0c9b61b04",
        "exchange-sysatt-cluster",
    ),
    // MTA (emsmta.exe) v2.0.
    iface("9e8ee830-4459-11ce-979b-00aa005ffebe", "exchange-mta"),
    // Exchange directory XDS and DRS (Exchange 5.5-era directory).
    iface("f5cc5a7c-4264-101a-8c59-08002b2f8426", "exchange-xds"),
    iface("f5cc59b4-4264-101a-8c59-08002b2f8426", "exchange-drs"),
];

/// The interface known under `uuid`, if any.
pub fn lookup(uuid: &Uuid) -> Option<&'static Interface> {
    INTERFACES.iter().find(|i| i.uuid == *uuid)
}

/// The fact name of an interface: its short name, or the UUID string when unknown.
pub fn interface_label(uuid: &Uuid) -> String {
    match lookup(uuid) {
        Some(i) => i.name.to_string(),
        None => uuid.to_string(),
    }
}

/// MS-RPCE 2.2.4.12: NDR transfer syntax v2.0.
pub const NDR: Uuid = Uuid::parse("8a885d04-1ceb-11c9-9fe8-08002b104860");
/// MS-RPCE 2.2.4.13: NDR64 transfer syntax v1.0.
pub const NDR64: Uuid = Uuid::parse("71710533-beba-4937-8319-b5dbef9ccc36");
/// MS-RPCE 3.3.1.5.3: bind time feature negotiation; only the first 8 bytes are fixed
/// (`6CB71C2C-9812-4540`), the last 8 are the feature bitmask.
pub const BIND_TIME_FEATURE_PREFIX: Uuid = Uuid::parse("6cb71c2c-9812-4540-0000-000000000000");
/// Bytes of [`BIND_TIME_FEATURE_PREFIX`] that are fixed.
pub const BIND_TIME_FEATURE_PREFIX_LEN: usize = 8;

/// Name of a transfer syntax for facts; the UUID string when unknown.
pub fn transfer_syntax_label(uuid: &Uuid) -> String {
    if *uuid == NDR {
        "ndr".into()
    } else if *uuid == NDR64 {
        "ndr64".into()
    } else if is_bind_time_feature(uuid) {
        "bind-time-feature-negotiation".into()
    } else {
        uuid.to_string()
    }
}

/// True for the MS-RPCE bind time feature negotiation pseudo transfer syntax.
pub fn is_bind_time_feature(uuid: &Uuid) -> bool {
    uuid.starts_with(&BIND_TIME_FEATURE_PREFIX, BIND_TIME_FEATURE_PREFIX_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_uuids_read_back_as_display_writes_them() {
        for i in INTERFACES {
            let text = i.uuid.to_string();
            assert_eq!(Uuid::from_text(&text), Some(i.uuid), "{text}");
            assert_eq!(
                lookup(&Uuid::from_text(&text).unwrap_or(Uuid([0; 16]))).map(|f| f.name),
                Some(i.name)
            );
        }
        let emsmdb = "a4f1db00-ca47-1067-b31f-00dd010662da";
        assert!(Uuid::from_text(emsmdb).is_some());
        for bad in [
            "A4F1DB00-CA47-1067-B31F-00DD010662DA",
            "a4f1db00ca47-1067-b31f-00dd010662da-",
            "a4f1db00-ca47-1067-b31f-00dd010662d",
            "a4f1db00-ca47-1067-b31f-00dd010662dz",
            "",
        ] {
            assert_eq!(Uuid::from_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn emsmdb_wire_bytes_read_little_endian() {
        // EMSMDB as a little-endian bind carries it (wire-signatures.md).
        let wire = [
            0x00, 0xdb, 0xf1, 0xa4, 0x47, 0xca, 0x67, 0x10, 0xb3, 0x1f, 0x00, 0xdd, 0x01, 0x06,
            0x62, 0xda,
        ];
        let u = Uuid::from_ndr(&wire, true).expect("16 bytes");
        assert_eq!(u.to_string(), "a4f1db00-ca47-1067-b31f-00dd010662da");
        assert_eq!(interface_label(&u), "emsmdb");
        // Big-endian data representation: the same bytes are already canonical.
        let be = Uuid::from_ndr(&u.0, false).expect("16 bytes");
        assert_eq!(be, u);
    }

    #[test]
    fn short_input_is_none() {
        assert!(Uuid::from_ndr(&[0u8; 15], true).is_none());
    }

    #[test]
    fn table_has_no_duplicates() {
        for (i, a) in INTERFACES.iter().enumerate() {
            for b in INTERFACES.iter().skip(i + 1) {
                assert_ne!(a.uuid, b.uuid, "{} and {}", a.name, b.name);
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn unknown_interface_is_its_uuid_and_transfer_syntaxes_are_named() {
        let u = Uuid::parse("01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(interface_label(&u), "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(transfer_syntax_label(&NDR), "ndr");
        let btfn = Uuid::parse("6cb71c2c-9812-4540-0300-000000000000");
        assert_eq!(
            transfer_syntax_label(&btfn),
            "bind-time-feature-negotiation"
        );
    }
}
