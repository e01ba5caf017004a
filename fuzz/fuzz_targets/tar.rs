//! Fuzz the sans-IO tar reader: `pg_tar::fuzzing::tar` (first byte = chunk size).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_tar::fuzzing::tar(data);
});
