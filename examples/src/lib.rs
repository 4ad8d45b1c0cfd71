//! Runnable examples of shmring; see the binaries in `examples/`.
