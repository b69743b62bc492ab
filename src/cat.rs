//! Report text joined from pieces without the formatting machinery.
//!
//! Classification reasons and finding texts are made for every flow a report judges,
//! several per flow: `format!` spends most of its instructions walking its template and
//! calling each argument's `Display` through a vtable, which made it a tenth of an
//! audit's instructions. [`cat!`](crate::cat!) sizes the string once and copies the
//! pieces; numbers and addresses become pieces through [`num`] and [`host`].

use std::fmt::Write as _;
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

/// Short text held on the stack (a number's digits, an address), or on the heap when
/// longer than the stack buffer.
pub struct Piece {
    bytes: [u8; 48],
    len: usize,
    long: Option<String>,
}

impl Piece {
    fn new() -> Piece {
        Piece {
            bytes: [0; 48],
            len: 0,
            long: None,
        }
    }
}

impl AsRef<str> for Piece {
    fn as_ref(&self) -> &str {
        if let Some(long) = &self.long {
            return long;
        }
        // Only whole `str`s are copied in.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Write for Piece {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if let Some(long) = &mut self.long {
            long.push_str(s);
            return Ok(());
        }
        let end = self.len + s.len();
        match self.bytes.get_mut(self.len..end) {
            Some(slot) => {
                slot.copy_from_slice(s.as_bytes());
                self.len = end;
            }
            None => {
                let mut long = String::with_capacity(end.max(64));
                long.push_str(self.as_ref());
                long.push_str(s);
                self.long = Some(long);
            }
        }
        Ok(())
    }
}

/// Anything `Display` as a piece (its `Display` still runs: for the types whose text
/// only it knows).
fn shown(v: impl std::fmt::Display) -> Piece {
    let mut p = Piece::new();
    let _ = write!(p, "{v}");
    p
}

/// A number in decimal, as `{}` writes it.
pub fn num(n: impl itoa::Integer) -> Piece {
    let mut p = Piece::new();
    let _ = p.write_str(itoa::Buffer::new().format(n));
    p
}

/// An address as `{}` writes it.
pub fn host(ip: IpAddr) -> Piece {
    shown(crate::flow::host(ip))
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

    #[test]
    fn text_longer_than_the_stack_buffer_is_kept_whole() {
        let long = "x".repeat(47) + "yz" + &"w".repeat(100);
        assert_eq!(shown(&long).as_ref(), long);
        // Crossing the buffer's end between two writes.
        let mut p = Piece::new();
        for _ in 0..30 {
            let _ = p.write_str("abc");
        }
        assert_eq!(p.as_ref(), "abc".repeat(30));
    }
}
