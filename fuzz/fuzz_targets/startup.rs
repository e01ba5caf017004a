//! Fuzz the startup / authentication state machine with arbitrary server bytes:
//! `pg_wire::fuzzing::startup` (byte 0 = client options, byte 1 = chunk size).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_wire::fuzzing::startup(data);
});
