#![no_main]
//! The SIP (TCP and UDP) analyzer fed a stream script (see dpaudit::fuzz_api).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dpaudit::fuzz_api::analyzer("sip", data);
});
