//! Compiles `proto/` with tonic-prost-build and writes the file
//! descriptor set the reflection service serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes vendored through cargo, so a fresh machine needs no apt
    // step; an explicit PROTOC (e.g. Debian's) still wins.
    if env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the
        // environment concurrently (set_var is unsafe in edition 2024).
        unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("greenwave_descriptor.bin"))
        .compile_protos(&["proto/greenwave/v1/greenwave.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
