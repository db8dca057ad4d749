//! Compiles the OpenMP shim (src/omp.c) and links it to the libgomp that
//! ships with libtorch, so that its parallel regions run on libtorch's own
//! threads (one OpenMP runtime in the process, not two); and the precision
//! shim (src/precision.cpp) against libtorch's headers (LIBTORCH, which
//! .cargo/config.toml points at the torch wheel in .venv, the one tch links).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/omp.c");
    println!("cargo:rerun-if-changed=src/precision.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch = PathBuf::from(
        std::env::var_os("LIBTORCH").expect("LIBTORCH names libtorch (see .cargo/config.toml)"),
    );
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/precision.cpp")
        .include(libtorch.join("include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag_if_supported("-Wno-unused-parameter")
        .opt_level(2)
        .compile("embedlab_precision");
    println!(
        "cargo:rustc-link-search=native={}",
        libtorch.join("lib").display()
    );
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    cc::Build::new()
        .file("src/omp.c")
        .flag("-fopenmp")
        .opt_level(3)
        .compile("embedlab_omp");
    let bundled = Some(libtorch.join("lib")).filter(|lib| lib.join("libgomp.so.1").is_file());
    match bundled {
        Some(lib) => {
            println!("cargo:rustc-link-search=native={}", lib.display());
            println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
        }
        // A libtorch without its own libgomp uses the system's.
        None => println!("cargo:rustc-link-lib=dylib=gomp"),
    }
}
