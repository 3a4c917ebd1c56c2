//! Compiles the gRPC API in `proto/` with a vendored `protoc`, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let include = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("iamd_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                PathBuf::from("proto/iamd/v1/authorizer.proto"),
                PathBuf::from("proto/iamd/v1/admin.proto"),
                PathBuf::from("proto/iamd/v1/sts.proto"),
                PathBuf::from("proto/iamd/v1/console.proto"),
            ],
            &[PathBuf::from("proto"), include],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
