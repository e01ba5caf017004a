//! Fuzz the framer and every backend message parser: `pg_wire::fuzzing::frame` (first byte =
//! frame limit and chunk size).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_wire::fuzzing::frame(data);
});
