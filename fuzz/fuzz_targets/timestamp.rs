//! Fuzz the server timestamp normaliser of the metadata collector: `cluster_manifest::fuzzing::timestamp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cluster_manifest::fuzzing::timestamp(data);
});
