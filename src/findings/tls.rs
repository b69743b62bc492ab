//! What makes a TLS session weak: protocol versions and cipher suites.
//!
//! Cipher suite values are the IANA TLS Cipher Suites registry's; only suites whose
//! weakness is in their name are listed (NULL encryption, EXPORT key sizes, anonymous key
//! exchange, RC4, single DES).

/// Version numbers as the wire carries them.
pub const SSL2: u16 = 0x0002;
pub const SSL3: u16 = 0x0300;
pub const TLS10: u16 = 0x0301;
pub const TLS11: u16 = 0x0302;

/// `SSL 3.0` style name of a version.
pub fn version_name(v: u16) -> String {
    match v {
        SSL2 => "SSL 2.0".into(),
        SSL3 => "SSL 3.0".into(),
        TLS10 => "TLS 1.0".into(),
        TLS11 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        v => format!("0x{v:04x}"),
    }
}

/// A version older than TLS 1.2 (RFC 8996 deprecates TLS 1.0 and 1.1; RFC 7568 SSL 3.0;
/// RFC 6176 SSL 2.0).
pub fn version_is_weak(v: u16) -> bool {
    matches!(v, SSL2 | SSL3 | TLS10 | TLS11)
}

/// RFC 5246 A.5 and later registrations: no encryption at all.
const NULL: &[u16] = &[
    0x0000, 0x0001, 0x0002, 0x002c, 0x002d, 0x002e, 0x003b, 0x00b0, 0x00b1, 0x00b4, 0x00b5, 0x00b8,
    0x00b9, 0xc001, 0xc006, 0xc00b, 0xc010, 0xc015, 0xc039, 0xc03a, 0xc03b,
];
/// RFC 2246 A.5, RFC 2712: 40- and 56-bit export suites.
const EXPORT: &[u16] = &[
    0x0003, 0x0006, 0x0008, 0x000b, 0x000e, 0x0011, 0x0014, 0x0017, 0x0019, 0x0026, 0x0027, 0x0028,
    0x0029, 0x002a, 0x002b, 0x0060, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065,
];
/// Anonymous (unauthenticated) Diffie-Hellman: open to a man in the middle.
const ANON: &[u16] = &[
    0x0018, 0x001a, 0x001b, 0x0034, 0x003a, 0x0046, 0x006c, 0x006d, 0x0089, 0x009b, 0x00a6, 0x00a7,
    0x00bf, 0x00c5, 0xc016, 0xc017, 0xc018, 0xc019,
];
/// RC4 (RFC 7465 forbids it).
const RC4: &[u16] = &[
    0x0004, 0x0005, 0x0020, 0x0024, 0x008a, 0x008e, 0x0092, 0xc002, 0xc007, 0xc00c, 0xc011, 0xc033,
];
/// Single DES (RFC 5469 removes it).
const DES: &[u16] = &[0x0009, 0x000c, 0x000f, 0x0012, 0x0015, 0x001e, 0x0022];

/// Why a cipher suite is weak, if it is: `NULL`, `EXPORT`, `anonymous`, `RC4`, `DES`.
pub fn cipher_weakness(suite: u16) -> Option<&'static str> {
    [
        (NULL, "NULL"),
        (EXPORT, "EXPORT"),
        (ANON, "anonymous"),
        (RC4, "RC4"),
        (DES, "DES"),
    ]
    .iter()
    .find(|(list, _)| list.contains(&suite))
    .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_versions_and_suites() {
        assert!(version_is_weak(TLS10) && version_is_weak(SSL3) && version_is_weak(SSL2));
        assert!(!version_is_weak(0x0303) && !version_is_weak(0x0304));
        // TLS_RSA_WITH_NULL_SHA, TLS_RSA_EXPORT_WITH_RC4_40_MD5, TLS_DH_anon_WITH_AES_128_CBC_SHA,
        // TLS_RSA_WITH_RC4_128_SHA, TLS_RSA_WITH_DES_CBC_SHA.
        assert_eq!(cipher_weakness(0x0002), Some("NULL"));
        assert_eq!(cipher_weakness(0x0003), Some("EXPORT"));
        assert_eq!(cipher_weakness(0x0034), Some("anonymous"));
        assert_eq!(cipher_weakness(0x0005), Some("RC4"));
        assert_eq!(cipher_weakness(0x0009), Some("DES"));
        // TLS_RSA_WITH_AES_128_CBC_SHA, TLS_AES_128_GCM_SHA256.
        assert_eq!(cipher_weakness(0x002f), None);
        assert_eq!(cipher_weakness(0x1301), None);
        assert_eq!(version_name(0x0301), "TLS 1.0");
        assert_eq!(version_name(0x7f1c), "0x7f1c");
    }
}
