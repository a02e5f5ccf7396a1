//! Stands in for a kubelet binary (none can be installed here): the tests copy it to a
//! file named `kubelet`, so the kernel's `comm` is `kubelet`, and start it with a real
//! kubelet command line. It ignores its arguments and exits when its stdin closes, so a
//! test controls its lifetime without sleeping.
use std::io::Read;

fn main() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
