//! nodeproof-agent: finds the kubelet that is actually running, computes its effective
//! settings exactly as the kubelet does (flags over drop-ins over the config file over
//! defaults), checks them against the CIS Kubernetes Benchmark and builds a signed report.
//!
//! The core is pure: `cmdline`, `config`, `effective` and `checks` take values and return
//! values. Only `process` (reading /proc and the kubelet's files) and the binary touch the
//! system.
#![forbid(unsafe_code)]

pub mod checks;
pub mod cmdline;
pub mod config;
pub mod daemon;
pub mod effective;
pub mod exe_version;
pub mod fakeproc;
pub mod kube_apiserver;
pub mod kubeconfig;
pub mod node_files;
pub mod probe;
pub mod process;
pub mod render;
pub mod scan;
pub mod schema;
pub mod sources;
pub mod validate;
pub mod yaml;
