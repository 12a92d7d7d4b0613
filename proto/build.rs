//! Compiles every `.proto` under `ordermesh/` with protox (pure Rust, no system protoc) and
//! writes the encoded descriptor set next to the generated code for gRPC reflection, with that of
//! the google.rpc error details our statuses carry.

use std::path::{Path, PathBuf};

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    proto_files(&root.join("ordermesh"), &mut files)?;
    files.sort();
    // protox does not print these itself.
    println!("cargo:rerun-if-changed=ordermesh");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    let descriptor_bytes = compiler.encode_file_descriptor_set();
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // `compile_fds` ignores `file_descriptor_set_path`, so the set for reflection is written here.
    std::fs::write(out_dir.join("ordermesh_descriptor.bin"), descriptor_bytes)?;

    // The error details our statuses carry (google.rpc.BadRequest, ErrorInfo, ...), for reflection
    // only (tonic-types has their Rust types): without their descriptors grpcurl prints each
    // detail as an unrecognised blob. Vendored from googleapis (see vendor/google/rpc).
    let mut google_rpc = protox::Compiler::new([root.join("vendor")])?;
    google_rpc.include_imports(true).include_source_info(false);
    google_rpc.open_file("google/rpc/error_details.proto")?;
    std::fs::write(
        out_dir.join("google_rpc_descriptor.bin"),
        google_rpc.encode_file_descriptor_set(),
    )?;
    println!("cargo:rerun-if-changed=vendor");

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
