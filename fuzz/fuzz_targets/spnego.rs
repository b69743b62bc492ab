#![no_main]
//! One security token: SPNEGO, GSS-API Kerberos, raw Kerberos AP-REQ/AP-REP, NTLMSSP.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dpaudit::fuzz_api::token(data);
});
