//! The `shmring` command (work in progress).
fn main() {}
