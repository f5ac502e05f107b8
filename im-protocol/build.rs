//! Compiles `proto/im/v1/*.proto` with the pure-Rust `protox` compiler (no system
//! `protoc`), then generates prost types and canonical proto3 JSON (pbjson) impls.
use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new("proto");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(proto_dir.join("im/v1"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    files.sort();
    let fds: prost_types::FileDescriptorSet = protox::compile(&files, [proto_dir])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = fds.encode_to_vec();
    std::fs::write(out_dir.join("im_descriptor.bin"), &descriptor_bytes)?;

    let mut config = prost_build::Config::new();
    config.bytes([".im.v1"]);
    config.compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        // proto3 rules: fields and requests a newer peer knows are ignored.
        .ignore_unknown_fields()
        .build(&[".im.v1"])?;
    Ok(())
}
