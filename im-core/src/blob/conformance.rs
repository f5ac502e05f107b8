//! The blob store conformance suite: written once, run against every backend.
//!
//! A backend proves itself by invoking [`blob_conformance_tests!`](crate::blob_conformance_tests)
//! with an async constructor returning `(Arc<dyn BlobStore>, guard)`, where
//! `guard` is kept alive for the test (a temporary directory).

#![allow(missing_docs, clippy::unwrap_used)]

use super::{BlobError, BlobId, BlobStore};
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;

/// Generates one `#[tokio::test]` per conformance check.
///
/// ```ignore
/// im_core::blob_conformance_tests!(async { (Arc::new(MemoryBlobStore::new()) as Arc<dyn BlobStore>, ()) });
/// ```
#[macro_export]
macro_rules! blob_conformance_tests {
    ($make:expr) => {
        $crate::blob_conformance_tests!(@tests $make;
            blob_append_read_and_len, blob_append_needs_the_stored_offset,
            blob_flushed_bytes_survive_a_dropped_writer, blob_ranged_reads,
            blob_delete_is_idempotent, blob_list_names_every_blob, blob_ids_are_safe);
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (blobs, _guard) = $make.await;
                $crate::blob::conformance::$name(blobs).await;
            }
        )*
    };
}

/// `n` deterministic pseudo-random bytes.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ seed)
        .collect()
}

async fn read_all(blobs: &Arc<dyn BlobStore>, id: BlobId, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut stream = blobs.read(id, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 1024 * 1024, "reads come in bounded chunks");
        out.extend_from_slice(&chunk);
    }
    out
}

pub async fn blob_append_read_and_len(blobs: Arc<dyn BlobStore>) {
    let id = BlobId::random();
    assert_eq!(blobs.len(id).await.unwrap(), None);
    let data = pattern(300_000, 1);
    let mut w = blobs.writer(id, 0).await.unwrap();
    for part in data.chunks(7_000) {
        w.write(Bytes::copy_from_slice(part)).await.unwrap();
    }
    w.finish().await.unwrap();
    assert_eq!(blobs.len(id).await.unwrap(), Some(300_000));
    assert_eq!(read_all(&blobs, id, 0..300_000).await, data);
    // An empty blob.
    let empty = BlobId::random();
    blobs.writer(empty, 0).await.unwrap().finish().await.unwrap();
    assert_eq!(blobs.len(empty).await.unwrap(), Some(0));
    assert!(read_all(&blobs, empty, 0..0).await.is_empty());
}

pub async fn blob_append_needs_the_stored_offset(blobs: Arc<dyn BlobStore>) {
    let id = BlobId::random();
    assert!(matches!(
        blobs.writer(id, 5).await.err(),
        Some(BlobError::NotFound(_))
    ));
    let mut w = blobs.writer(id, 0).await.unwrap();
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    w.finish().await.unwrap();
    match blobs.writer(id, 3).await.err() {
        Some(BlobError::OffsetMismatch { given: 3, stored: 6 }) => {}
        other => panic!("expected an offset mismatch, got {other:?}"),
    }
    let mut w = blobs.writer(id, 6).await.unwrap();
    w.write(Bytes::from_static(b"world")).await.unwrap();
    w.finish().await.unwrap();
    assert_eq!(read_all(&blobs, id, 0..11).await, b"hello world");
}

pub async fn blob_flushed_bytes_survive_a_dropped_writer(blobs: Arc<dyn BlobStore>) {
    let id = BlobId::random();
    let data = pattern(100_000, 2);
    let mut w = blobs.writer(id, 0).await.unwrap();
    w.write(Bytes::copy_from_slice(&data[..40_000])).await.unwrap();
    w.flush().await.unwrap();
    drop(w);
    assert_eq!(blobs.len(id).await.unwrap(), Some(40_000));
    let mut w = blobs.writer(id, 40_000).await.unwrap();
    w.write(Bytes::copy_from_slice(&data[40_000..])).await.unwrap();
    w.finish().await.unwrap();
    assert_eq!(read_all(&blobs, id, 0..100_000).await, data);
}

pub async fn blob_ranged_reads(blobs: Arc<dyn BlobStore>) {
    let id = BlobId::random();
    let data = pattern(200_000, 3);
    let mut w = blobs.writer(id, 0).await.unwrap();
    for part in data.chunks(65_536) {
        w.write(Bytes::copy_from_slice(part)).await.unwrap();
    }
    w.finish().await.unwrap();
    for (a, b) in [
        (0, 1),
        (65_535, 65_537),
        (1_000, 150_000),
        (199_999, 200_000),
        (7, 7),
    ] {
        assert_eq!(
            read_all(&blobs, id, a..b).await,
            &data[a as usize..b as usize],
            "{a}..{b}"
        );
    }
    assert!(matches!(
        blobs.read(id, 100..200_001).await.err(),
        Some(BlobError::BadRange { len: 200_000, .. })
    ));
    assert!(matches!(
        blobs.read(BlobId::random(), 0..0).await.err(),
        Some(BlobError::NotFound(_))
    ));
}

pub async fn blob_delete_is_idempotent(blobs: Arc<dyn BlobStore>) {
    let id = BlobId::random();
    let mut w = blobs.writer(id, 0).await.unwrap();
    w.write(Bytes::from_static(b"x")).await.unwrap();
    w.finish().await.unwrap();
    assert!(blobs.delete(id).await.unwrap());
    assert!(!blobs.delete(id).await.unwrap());
    assert_eq!(blobs.len(id).await.unwrap(), None);
}

pub async fn blob_list_names_every_blob(blobs: Arc<dyn BlobStore>) {
    let mut ids: Vec<BlobId> = (0..5).map(|_| BlobId::random()).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut w = blobs.writer(*id, 0).await.unwrap();
        w.write(Bytes::from(vec![0u8; i * 10])).await.unwrap();
        w.finish().await.unwrap();
    }
    let mut listed = blobs.list().await.unwrap();
    listed.sort_by_key(|b| b.id);
    ids.sort();
    assert_eq!(listed.iter().map(|b| b.id).collect::<Vec<_>>(), ids);
    for b in &listed {
        assert!(b.modified_ms > 0);
    }
}

pub async fn blob_ids_are_safe(_blobs: Arc<dyn BlobStore>) {
    let id = BlobId::random();
    assert_eq!(BlobId::parse(&id.to_string()), Some(id));
    for bad in [
        "",
        "../../etc/passwd",
        "ABCDEF0123456789ABCDEF0123456789",
        &format!("{id}/"),
        "0123456789abcdef0123456789abcdeg",
    ] {
        assert_eq!(BlobId::parse(bad), None, "{bad}");
    }
}
