//! Fuzz the logical backup's record-name mapping and line parsers: `pg_logical::fuzzing::names`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_logical::fuzzing::names(data);
});
