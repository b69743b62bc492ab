#![no_main]
//! One NTLMSSP message (NEGOTIATE, CHALLENGE, AUTHENTICATE).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dpaudit::fuzz_api::ntlmssp(data);
});
