//! Fuzz the backup_manifest parser and verifier (self-verification): `pg_backup_manifest::fuzzing::parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_backup_manifest::fuzzing::parse(data);
});
