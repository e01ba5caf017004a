//! Fuzz the reader of a custom-format archive's header and TOC: `pg_logical::fuzzing::archive`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_logical::fuzzing::archive(data);
});
