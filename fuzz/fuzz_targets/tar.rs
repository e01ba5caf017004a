//! Fuzz the ustar reader: chunk-split equivalence, clean relative paths, sizes adding up: `pg_tar::fuzzing::tar`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_tar::fuzzing::tar(data);
});
