#![no_main]
//! Capture bytes to flows, classification, findings and every report format.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dpaudit::fuzz_api::pipeline(data);
});
