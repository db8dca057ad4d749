//! The declared `rust-version` is true: no dependency needs a newer Rust.
//! (Our own code's use of newer standard-library items is checked by
//! clippy's `incompatible_msrv` lint, which `make test` runs.) The
//! dependencies are those of this platform: the crates a build here
//! downloads (scripts.rs checks that against an empty CARGO_HOME).

fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[test]
fn no_dependency_needs_a_newer_rust_than_declared() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = embedlab_testkit::cargo_metadata(&root, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ours = env!("CARGO_PKG_RUST_VERSION");
    assert!(!ours.is_empty(), "the workspace declares no rust-version");
    let mut worst = ("".to_string(), "0".to_string());
    for p in m["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if let Some(rv) = p["rust_version"].as_str() {
            if !name.starts_with("embedlab") && version(rv) > version(&worst.1) {
                worst = (
                    format!("{name} {}", p["version"].as_str().unwrap()),
                    rv.to_string(),
                );
            }
        }
    }
    assert!(
        version(&worst.1) <= version(ours),
        "{} needs Rust {}, but the workspace declares rust-version {ours}",
        worst.0,
        worst.1
    );
    eprintln!(
        "rust-version {ours}; the most demanding dependency: {} ({})",
        worst.0, worst.1
    );
}
