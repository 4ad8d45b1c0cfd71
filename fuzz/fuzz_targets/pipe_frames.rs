#![no_main]
//! Thin shim: see `shmring::fuzzing::pipe_frames`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring::fuzzing::pipe_frames(data));
