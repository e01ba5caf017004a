//! Fuzz typed results of IDENTIFY_SYSTEM, SHOW, TIMELINE_HISTORY, CREATE_REPLICATION_SLOT, READ_REPLICATION_SLOT: `pg_wire::fuzzing::replication`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_wire::fuzzing::replication(data);
});
