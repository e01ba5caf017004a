//! Fuzz the backup_manifest parser and verifier: `pg_backup_manifest::fuzzing::parse` (first
//! byte odd = append a valid Manifest-Checksum line, so inputs reach the JSON parser).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_backup_manifest::fuzzing::parse(data);
});
