//! Records the rustls version from Cargo.lock, for `stls --version`. A lock file without
//! rustls fails the build rather than print a made-up version.

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").expect("Cargo.lock is readable");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"rustls\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .expect("Cargo.lock names a version of rustls");
    println!("cargo:rustc-env=STLS_RUSTLS_VERSION={version}");
}
