#![no_main]
//! Thin shim: see `shmring::fuzzing::segment_bytes`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring::fuzzing::segment_bytes(data));
