#![no_main]
//! TCP reassembly of one direction under any order, overlap, acknowledgement and FIN.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dpaudit::fuzz_api::reassembly(data);
});
