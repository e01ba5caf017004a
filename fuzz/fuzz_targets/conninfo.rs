//! Fuzz libpq connection strings and URIs, round trip through both writers: `pg_config::fuzzing::conninfo`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_config::fuzzing::conninfo(data);
});
