//! Cross-process measurements (work in progress).
