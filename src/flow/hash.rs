//! A fast keyed hasher for the flow tables. SipHash (the standard library's default)
//! showed up at several percent of the whole pipeline; flow keys are short and fixed, so a
//! folded multiply per word is enough. The key is drawn from the standard library's
//! random source once per table, so a hostile capture cannot aim collisions at it.
//! Output never depends on hash order: flows are sorted before anything is printed.

use std::hash::{BuildHasher, Hasher};

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Builds [`FlowHasher`]s sharing one random key.
#[derive(Clone, Copy, Debug)]
pub struct FlowHash {
    key: u64,
}

impl Default for FlowHash {
    fn default() -> Self {
        let key = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        FlowHash { key: key | 1 }
    }
}

impl BuildHasher for FlowHash {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher { h: self.key }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FlowHasher {
    h: u64,
}

impl FlowHasher {
    fn mix(&mut self, v: u64) {
        self.h = fold(self.h ^ v, MUL);
    }
}

impl Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        fold(self.h, MUL ^ 0x5851_f42d_4c95_7f2d)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
}

/// A `HashMap` keyed with [`FlowHash`].
pub type FlowMap<K, V> = std::collections::HashMap<K, V, FlowHash>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_near_keys_differ() {
        let b = FlowHash::default();
        let h = |v: &(u32, u16)| b.hash_one(v);
        assert_eq!(h(&(1, 2)), h(&(1, 2)));
        let mut seen = std::collections::HashSet::new();
        for port in 0..1000u16 {
            seen.insert(h(&(0x0a00_0001, port)) >> 52);
        }
        // the top 12 bits spread over at least half of their 4096 values for 1000 ports
        assert!(seen.len() > 500, "{}", seen.len());
    }
}
