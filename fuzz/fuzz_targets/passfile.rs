//! Fuzz the passfile line reader and matcher, escape round trip: `pg_config::fuzzing::passfile`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_config::fuzzing::passfile(data);
});
