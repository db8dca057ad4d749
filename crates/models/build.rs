//! Compiles the ATen shim (src/ops.cpp) against libtorch's headers: the
//! libtorch of LIBTORCH (.cargo/config.toml points it at the torch wheel in
//! .venv), the same one tch links.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ops.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch = PathBuf::from(
        std::env::var_os("LIBTORCH").expect("LIBTORCH names libtorch (see .cargo/config.toml)"),
    );
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/ops.cpp")
        .include(libtorch.join("include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag_if_supported("-Wno-unused-parameter")
        .opt_level(2)
        .compile("embedlab_ops");
    println!(
        "cargo:rustc-link-search=native={}",
        libtorch.join("lib").display()
    );
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
