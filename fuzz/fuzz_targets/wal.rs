//! Fuzz the WAL reader: `pg_wal::fuzzing::reader` (first byte odd = raw segment bytes; even = a
//! valid WAL built from the input, then damaged by it: same verdict with the end known or not).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_wal::fuzzing::reader(data);
});
