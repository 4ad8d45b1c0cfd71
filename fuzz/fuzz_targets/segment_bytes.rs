#![no_main]
//! Thin shim: see `shmring_fuzz_support::segment_bytes`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmring_fuzz_support::segment_bytes(data));
