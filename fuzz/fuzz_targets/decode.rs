#![no_main]
//! The packet decoder (link, IP, defragmentation, tunnels, transport) over many frames.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpaudit::fuzz_api::decode(data);
});
