//! Fuzz the BASE_BACKUP stream decoder, both generations, with chunk-split equivalence: `pg_basebackup::fuzzing::decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_basebackup::fuzzing::decode(data);
});
