//! Fuzz the BASE_BACKUP response decoder: `pg_basebackup::fuzzing::decode` (first byte =
//! server major / manifest / compression, second byte = chunking).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_basebackup::fuzzing::decode(data);
});
