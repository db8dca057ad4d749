//! Compiles the OpenMP shim (src/omp.c) and links it to the libgomp that
//! ships with libtorch, so that its parallel regions run on libtorch's own
//! threads (one OpenMP runtime in the process, not two).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/omp.c");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    cc::Build::new()
        .file("src/omp.c")
        .flag("-fopenmp")
        .opt_level(3)
        .compile("embedlab_omp");
    let bundled = std::env::var_os("LIBTORCH")
        .map(|l| PathBuf::from(l).join("lib"))
        .filter(|lib| lib.join("libgomp.so.1").is_file());
    match bundled {
        Some(lib) => {
            println!("cargo:rustc-link-search=native={}", lib.display());
            println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
        }
        // A libtorch without its own libgomp uses the system's.
        None => println!("cargo:rustc-link-lib=dylib=gomp"),
    }
}
