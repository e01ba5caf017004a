//! Fuzz the recording reader (plain and gzip), writer round trip, replay chunk-split equivalence: `pg_recording::fuzzing::recording`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pg_recording::fuzzing::recording(data);
});
