//! Finds the static MKL libraries under `$MKLROOT/lib` and tells cargo to link them.

use std::path::PathBuf;
use std::process::exit;

/// The LP64 interface, Intel threading, the core and Intel OpenMP, in link order.
const LIBS: [&str; 4] = ["mkl_intel_lp64", "mkl_intel_thread", "mkl_core", "iomp5"];

fn main() {
    println!("cargo:rerun-if-env-changed=MKLROOT");
    let Some(root) = std::env::var_os("MKLROOT").map(PathBuf::from) else {
        eprintln!(
            "error: the `mkl` feature needs MKLROOT, the directory scripts/setup-mkl.sh prints \
             (it installs Intel MKL from PyPI):\n  export MKLROOT=$(bash scripts/setup-mkl.sh)"
        );
        exit(1);
    };
    let lib = root.join("lib");
    for name in LIBS {
        let file = lib.join(format!("lib{name}.a"));
        println!("cargo:rerun-if-changed={}", file.display());
        if !file.is_file() {
            eprintln!(
                "error: MKLROOT={} lacks {}; run scripts/setup-mkl.sh and export the directory \
                 it prints",
                root.display(),
                file.display()
            );
            exit(1);
        }
    }
    println!("cargo:rustc-link-search=native={}", lib.display());
    // Not bundled into this crate's rlib: the archives are hundreds of MB and only the final
    // link needs them. They call each other in a cycle, which rust-lld (the default linker on
    // x86_64 Linux since Rust 1.90) resolves; GNU ld would need them in a --start-group.
    for name in LIBS {
        println!("cargo:rustc-link-lib=static:-bundle={name}");
    }
    // What the static MKL and Intel OpenMP archives call into.
    for name in ["pthread", "m", "dl"] {
        println!("cargo:rustc-link-lib=dylib={name}");
    }
}
