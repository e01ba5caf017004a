//! Fuzz the WAL receiver machine of physical streaming: `pg_wire::fuzzing::walreceiver` (byte 0
//! = chunk size, byte 1 = slot and end LSN).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_wire::fuzzing::walreceiver(data);
});
