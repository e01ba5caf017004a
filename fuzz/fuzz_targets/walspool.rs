//! Fuzz placement of received WAL into segment files: `pg_physical::wal::fuzzing::walspool`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_physical::wal::fuzzing::walspool(data);
});
