#![no_main]
//! Thin shim: see `shmring_core::fuzzing::ring_ops`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring_core::fuzzing::ring_ops(data));
