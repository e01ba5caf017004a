//! Fuzz the framer (chunk-split equivalence, capacity bound) and every backend message parser; replication messages round-trip: `pg_wire::fuzzing::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_wire::fuzzing::frame(data);
});
