//! Compiles `proto/im/v1/*.proto` with the pure-Rust `protox` compiler (no system
//! `protoc`), then generates prost types and canonical proto3 JSON (pbjson) impls,
//! and with the `grpc` feature the tonic services of `grpc.proto`.
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
    #[cfg(feature = "grpc")]
    grpc::generate(config, fds)?;
    #[cfg(not(feature = "grpc"))]
    config.compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        // proto3 rules: fields and requests a newer peer knows are ignored.
        .ignore_unknown_fields()
        .build(&[".im.v1"])?;
    Ok(())
}

#[cfg(feature = "grpc")]
mod grpc {
    /// The messages, plus tonic code for every service except `Chat`, whose
    /// one method passes frames through as bytes (the session driver decodes
    /// them with its size check, and encodes each event once for all its
    /// recipients): that one is generated from a manual definition matching
    /// `grpc.proto`.
    pub(super) fn generate(
        config: prost_build::Config,
        mut fds: prost_types::FileDescriptorSet,
    ) -> Result<(), Box<dyn std::error::Error>> {
        for file in &mut fds.file {
            if let Some(at) = file.service.iter().position(|s| s.name() == "Chat") {
                // Source locations name services by index: only the last one
                // can go without shifting the others' documentation.
                assert_eq!(
                    at + 1,
                    file.service.len(),
                    "Chat must be the last service of its file"
                );
                file.service.pop();
            }
        }
        tonic_prost_build::configure()
            .build_transport(false)
            .compile_fds_with_config(fds, config)?;
        let connect = tonic_build::manual::Method::builder()
            .name("connect")
            .route_name("Connect")
            .input_type("::bytes::Bytes")
            .output_type("::bytes::Bytes")
            .codec_path("crate::grpc::FrameCodec")
            .client_streaming()
            .server_streaming()
            .comment("One session: encoded `ClientFrame`s in, encoded `ServerFrame`s out.")
            .build();
        let chat = tonic_build::manual::Service::builder()
            .name("Chat")
            .package("im.v1")
            .comment("The whole protocol over one bidirectional stream (see `grpc.proto`).")
            .method(connect)
            .build();
        tonic_build::manual::Builder::new()
            .build_transport(false)
            .compile(&[chat]);
        Ok(())
    }
}
