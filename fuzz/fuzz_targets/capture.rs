#![no_main]
//! The capture reader on in-memory bytes: pcap, pcapng, gzip, zstd.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dpaudit::fuzz_api::capture(data);
});
