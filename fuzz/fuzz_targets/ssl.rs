//! Fuzz the reply to SSLRequest, then plaintext startup after N: `pg_wire::fuzzing::ssl`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_wire::fuzzing::ssl(data);
});
