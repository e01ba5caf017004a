//! Fuzz the startup / authentication state machine fed arbitrary server bytes: `pg_wire::fuzzing::startup`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_wire::fuzzing::startup(data);
});
