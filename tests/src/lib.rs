//! End-to-end tests live in `tests/`; this crate's only code is the `fake-kubelet` binary.
