//! Report text joined from pieces without the formatting machinery.
//!
//! Classification reasons and finding texts are made for every flow a report judges,
//! several per flow: `format!` spends most of its instructions walking its template and
//! calling each argument's `Display` through a vtable, which made it a tenth of an
//! audit's instructions. [`cat!`](crate::cat!) sizes the string once and copies the
//! pieces; numbers and addresses become pieces on the stack through [`num`] and [`host`]
//! ([`ShortText`]).

use crate::flow::ShortText;
use std::net::IpAddr;

/// Joins the pieces (anything that is `AsRef<str>`) into one `String` of the exact size.
///
/// ```
/// let port = 25u16;
/// let s = dpaudit::cat!("port ", dpaudit::cat::num(port), "/tcp");
/// assert_eq!(s, "port 25/tcp");
/// ```
#[macro_export]
macro_rules! cat {
    ($($piece:expr),+ $(,)?) => {
        $crate::cat::join(&[$(::core::convert::AsRef::<str>::as_ref(&$piece)),+])
    };
}

/// The pieces one after the other, in a string allocated once.
pub fn join(pieces: &[&str]) -> String {
    let mut s = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for p in pieces {
        s.push_str(p);
    }
    s
}

/// A number in decimal, as `{}` writes it.
pub fn num(n: impl itoa::Integer) -> ShortText {
    let mut t = ShortText::default();
    // At most 40 digits and a sign: always fits.
    t.push_str(itoa::Buffer::new().format(n));
    t
}

/// An address as `{}` writes it (IPv6 text is at most 45 bytes: always fits).
pub fn host(ip: IpAddr) -> ShortText {
    crate::flow::host(ip).text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn pieces_join_as_format_writes_them() {
        let owned = String::from("owned");
        assert_eq!(
            crate::cat!(
                "a ",
                owned,
                " ",
                num(0u16),
                " ",
                num(-42i64),
                " ",
                num(u64::MAX)
            ),
            format!("a {owned} 0 -42 {}", u64::MAX)
        );
        assert_eq!(crate::cat!(""), "");
        // The longest integer text.
        assert_eq!(num(i128::MIN).as_ref(), i128::MIN.to_string());
    }

    #[test]
    fn addresses_as_display_writes_them() {
        let longest = IpAddr::V6(Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ));
        let mapped = "::ffff:255.255.255.255".parse::<IpAddr>().unwrap();
        for ip in [
            IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            longest,
            mapped,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            assert_eq!(host(ip).as_ref(), ip.to_string());
        }
    }
}
