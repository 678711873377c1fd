// SPDX-License-Identifier: GPL-2.0

//! Generates the ABI from the uapi header, exactly as the module's Kbuild does.

use std::{env, path::PathBuf};

/// Strips the `PINDIO_CONST_` prefix that `uapi_helper.h` gives command numbers.
#[derive(Debug)]
struct StripConstPrefix;

impl bindgen::callbacks::ParseCallbacks for StripConstPrefix {
    fn item_name(&self, name: &str) -> Option<String> {
        name.strip_prefix("PINDIO_CONST_")
            .map(|rest| format!("PINDIO_{rest}"))
    }
}

fn main() {
    let top = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("..");
    let helper = top.join("rust-bindings/uapi_helper.h");
    let header = top.join("include/uapi/linux/pindio.h");
    println!("cargo:rerun-if-changed={}", helper.display());
    println!("cargo:rerun-if-changed={}", header.display());
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("uapi.rs");
    bindgen::Builder::default()
        .header(helper.display().to_string())
        .allowlist_type("pindio_.*")
        .allowlist_var("PINDIO_.*")
        .derive_default(true)
        .parse_callbacks(Box::new(StripConstPrefix))
        .generate()
        .expect("bindgen failed on rust-bindings/uapi_helper.h")
        .write_to_file(&out)
        .expect("cannot write the generated ABI");
}
