//! Criterion micro-benchmarks: frame codec, store appends (SQLite and
//! PostgreSQL, single and group-committed), and fan-out to local sessions.
//!
//! `cargo bench -p im-benches --bench micro` (PostgreSQL at
//! `IM_TEST_POSTGRES_URL` or 127.0.0.1:5432/test). Under `cargo test` each
//! benchmark runs once, as a smoke test.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use im_core::SharedEvent;
use im_core::model::{NewConversation, NewMessage};
use im_core::sessions::Except;
use im_core::sessions::Sessions;
use im_core::store::postgres::testing::TempSchema;
use im_core::store::{PostgresStore, PostgresStoreConfig, SqliteStore, SqliteStoreConfig, Store};
use im_protocol::{Format, codec, v1};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn message_event() -> v1::ServerFrame {
    v1::ServerFrame::event(v1::event::Kind::Message(v1::Message {
        id: 123_456,
        conversation_id: 42,
        seq: 1_000,
        version: 1_000,
        sender_id: 7,
        client_msg_id: "0123456789abcdef".into(),
        created_at: 1_767_225_600_000,
        content: Some(v1::Content::text("x".repeat(100))),
        ..Default::default()
    }))
}

fn codec_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let frame = message_event();
    for format in [Format::Binary, Format::Json] {
        let name = format!("{format:?}");
        g.bench_function(BenchmarkId::new("encode", &name), |b| {
            b.iter(|| codec::encode(&frame, format))
        });
        let bytes = codec::encode(&frame, format);
        g.bench_function(BenchmarkId::new("decode", &name), |b| {
            b.iter(|| codec::decode::<v1::ServerFrame>(&bytes, format, 1 << 16).unwrap())
        });
    }
    g.finish();
}

fn new_message(conv: u64, n: u64) -> NewMessage {
    NewMessage {
        conversation_id: conv,
        sender_id: 1,
        client_msg_id: Some(format!("bench-{n}")),
        content: v1::Content::text("x".repeat(100)),
        created_at: 1,
        membership: None,
        ..Default::default()
    }
}

async fn room(store: &Arc<dyn Store>) -> u64 {
    store
        .create_conversation(NewConversation {
            kind: v1::ConversationKind::Room,
            title: "bench".into(),
            ephemeral: false,
            created_by: 1,
            created_at: 1,
            members: vec![],
        })
        .await
        .unwrap()
        .id
}

fn store_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = TempSchema::create();
    let stores: Vec<(&str, Arc<dyn Store>)> = rt.block_on(async {
        vec![
            (
                "sqlite",
                Arc::new(
                    SqliteStore::open(SqliteStoreConfig::new(dir.path().join("bench.sqlite3")))
                        .await
                        .unwrap(),
                ) as Arc<dyn Store>,
            ),
            (
                "postgres",
                Arc::new(
                    PostgresStore::open(PostgresStoreConfig::new(schema.url()))
                        .await
                        .unwrap(),
                ) as Arc<dyn Store>,
            ),
        ]
    });
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("store_append");
    for (name, store) in &stores {
        let conv = rt.block_on(room(store));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("single", name), |b| {
            b.to_async(&rt).iter(|| {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let store = store.clone();
                async move { store.append_message(new_message(conv, n)).await.unwrap() }
            })
        });
        const BATCH: u64 = 64;
        g.throughput(Throughput::Elements(BATCH));
        g.bench_function(BenchmarkId::new("concurrent_64", name), |b| {
            b.to_async(&rt).iter(|| {
                let store = store.clone();
                let counter = counter.clone();
                async move {
                    let tasks: Vec<_> = (0..BATCH)
                        .map(|_| {
                            let store = store.clone();
                            let n = counter.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(
                                async move { store.append_message(new_message(conv, n)).await.unwrap() },
                            )
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
            })
        });
    }
    g.finish();
    drop(stores);
}

fn fanout_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for n in [1usize, 100, 10_000] {
        let sessions = Sessions::new(1024);
        let mut receivers: Vec<_> = (0..n as u64)
            .map(|user| sessions.register(user, im_core::model::DeviceId::default()))
            .collect();
        let recipients: Arc<[u64]> = (0..n as u64).collect::<Vec<_>>().into();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("deliver_and_drain", n), |b| {
            b.iter(|| {
                let event = SharedEvent::new(v1::event::Kind::Typing(v1::TypingEvent {
                    conversation_id: 1,
                    user_id: 1,
                    typing: true,
                }));
                sessions.deliver_to_users(&recipients, &Except::default(), &event);
                for r in &mut receivers {
                    if let Some(im_core::sessions::Outbound::Event(ev)) = r.try_recv() {
                        // Every recipient writes the shared bytes: encoded once.
                        std::hint::black_box(ev.encoded(Format::Binary));
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec_benches, store_benches, fanout_benches);
criterion_main!(benches);
