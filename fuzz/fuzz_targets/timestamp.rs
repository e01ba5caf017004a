//! Fuzz the server timestamp normaliser of the metadata collector: `pg_catalog::fuzzing::timestamp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_catalog::fuzzing::timestamp(data);
});
