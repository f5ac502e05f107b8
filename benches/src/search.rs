//! Store-level measurements of the messaging features: full-text search
//! latency over a large message store, and the cost of syncing a
//! conversation after many changes to old messages. Driven by the
//! `im-store-bench` binary against a SQLite file or a PostgreSQL schema.

use crate::stats::Latency;
use im_core::model::*;
use im_core::search::SearchQuery;
use im_core::store::Store;
use im_core::{Caller, Engine};
use im_protocol::v1;
use prost::Message as _;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// What was loaded and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// Messages stored.
    pub messages: usize,
    /// Conversations and users.
    pub conversations: usize,
    /// Users.
    pub users: usize,
    /// Seconds to store them.
    pub load_secs: f64,
}

/// Search latency by kind of query.
#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    /// The data.
    pub loaded: Loaded,
    /// An English word (whole, or a prefix as the last word is).
    pub english_word: Latency,
    /// Two CJK characters.
    pub cjk_two: Latency,
    /// One CJK character (a prefix).
    pub cjk_one: Latency,
    /// Mean hits per query (at most the page of 20).
    pub mean_hits: f64,
}

/// A made-up vocabulary: syllable words, so common and rare words follow a
/// Zipf-like curve when drawn with [`zipf`].
fn vocabulary(n: usize) -> Vec<String> {
    const SYL: [&str; 24] = [
        "ka", "lo", "mi", "ra", "te", "su", "po", "ne", "di", "ba", "ru", "ve", "zo", "fi", "gu", "ha", "jo",
        "ki", "ma", "nu", "pe", "sa", "to", "wi",
    ];
    (0..n)
        .map(|i| {
            let mut w = String::new();
            let mut x = i + 24;
            while x > 0 {
                w.push_str(SYL[x % 24]);
                x /= 24;
            }
            w
        })
        .collect()
}

/// An index in `0..n`, small ones far more often (about 1/rank).
fn zipf(rng: &mut impl Rng, n: usize) -> usize {
    let u: f64 = rng.random_range(0.0..1.0);
    (((n as f64).powf(u)) as usize).saturating_sub(1).min(n - 1)
}

fn cjk_char(rng: &mut impl Rng, japanese: bool) -> char {
    if japanese && rng.random_bool(0.5) {
        char::from_u32(0x3041 + rng.random_range(0..80)).unwrap_or('あ')
    } else {
        // The 2,500 most common Han characters sit low in the block.
        char::from_u32(0x4E00 + zipf(rng, 2_500) as u32 * 7).unwrap_or('中')
    }
}

/// A message text: 60 % English-like, 30 % Chinese-like, 10 % Japanese-like.
fn text(rng: &mut impl Rng, vocab: &[String]) -> String {
    match rng.random_range(0..10) {
        0..6 => (0..rng.random_range(4..14))
            .map(|_| vocab[zipf(rng, vocab.len())].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        6..9 => (0..rng.random_range(6..24))
            .map(|_| cjk_char(rng, false))
            .collect(),
        _ => (0..rng.random_range(6..24))
            .map(|_| cjk_char(rng, true))
            .collect(),
    }
}

/// Stores `messages` messages in `conversations` groups of 2 to 20 of
/// `users` users, from `writers` concurrent appenders (the store batches
/// them). Returns the members of each conversation.
pub async fn load(
    store: &Arc<dyn Store>,
    users: usize,
    conversations: usize,
    messages: usize,
    writers: usize,
) -> anyhow::Result<(Loaded, Vec<(ConversationId, Vec<UserId>)>)> {
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let u = store
            .create_user(NewUser {
                username: format!("u{i}"),
                display_name: format!("User {i}"),
                password_hash: String::new(),
                created_at: 1,
            })
            .await?;
        ids.push(u.id);
    }
    let mut rng = rand::rng();
    let mut convs = Vec::with_capacity(conversations);
    let mut members_of = Vec::with_capacity(conversations);
    for _ in 0..conversations {
        let size = rng.random_range(2..=20usize);
        let mut members: Vec<UserId> = (0..size).map(|_| ids[rng.random_range(0..users)]).collect();
        members.sort_unstable();
        members.dedup();
        let owner = members[0];
        let conv = store
            .create_conversation(NewConversation {
                kind: v1::ConversationKind::Group,
                title: "bench".into(),
                ephemeral: false,
                created_by: owner,
                created_at: 1,
                members: members[1..].to_vec(),
            })
            .await?;
        convs.push(conv.id);
        members_of.push((conv.id, members));
    }
    let convs = Arc::new(convs);
    let members: Arc<Vec<Vec<UserId>>> = Arc::new(members_of.iter().map(|(_, m)| m.clone()).collect());
    let vocab = Arc::new(vocabulary(5_000));
    let started = Instant::now();
    let per_writer = messages.div_ceil(writers.max(1));
    let mut tasks = Vec::new();
    for w in 0..writers.max(1) {
        let (store, convs, members, vocab) = (store.clone(), convs.clone(), members.clone(), vocab.clone());
        let count = per_writer.min(messages.saturating_sub(w * per_writer));
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
            for _ in 0..count {
                let i = rng.random_range(0..convs.len());
                let sender = members[i][rng.random_range(0..members[i].len())];
                let new = NewMessage {
                    conversation_id: convs[i],
                    sender_id: sender,
                    content: v1::Content::text(text(&mut rng, &vocab)),
                    created_at: 2,
                    ..Default::default()
                };
                store.append_message(new).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let loaded = Loaded {
        messages,
        conversations,
        users,
        load_secs: started.elapsed().as_secs_f64(),
    };
    Ok((loaded, members_of))
}

/// Times `queries` searches of each kind by random members, with terms
/// taken from messages of their own conversations (so most have hits).
pub async fn search(
    store: &Arc<dyn Store>,
    loaded: Loaded,
    members_of: &[(ConversationId, Vec<UserId>)],
    queries: usize,
) -> anyhow::Result<SearchReport> {
    let mut rng = rand::rng();
    let (mut english, mut two, mut one) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hits, mut asked) = (0usize, 0usize);
    while english.len() < queries || two.len() < queries || one.len() < queries {
        let (conv, members) = &members_of[rng.random_range(0..members_of.len())];
        let (conv, user) = (*conv, members[rng.random_range(0..members.len())]);
        let page = store.history(conv, user, Page::Before(0), 20).await?;
        let Some(m) = page.get(rng.random_range(0..page.len().max(1))) else {
            continue;
        };
        let Some(body) = m.content.as_ref().and_then(|c| c.as_text()) else {
            continue;
        };
        let chars: Vec<char> = body.chars().collect();
        let (term, bucket) = if body.is_ascii() {
            let words: Vec<&str> = body.split(' ').collect();
            (words[rng.random_range(0..words.len())].to_owned(), &mut english)
        } else if two.len() <= one.len() && chars.len() >= 2 {
            let at = rng.random_range(0..chars.len() - 1);
            (chars[at..at + 2].iter().collect(), &mut two)
        } else {
            (chars[rng.random_range(0..chars.len())].to_string(), &mut one)
        };
        if bucket.len() >= queries {
            continue;
        }
        let query = SearchQuery::parse(&term).expect("a term");
        let started = Instant::now();
        let found = store.search_messages(user, &query, None, None, 20).await?;
        bucket.push(started.elapsed().as_micros() as u64);
        hits += found.len();
        asked += 1;
    }
    Ok(SearchReport {
        loaded,
        english_word: Latency::of(english),
        cjk_two: Latency::of(two),
        cjk_one: Latency::of(one),
        mean_hits: hits as f64 / asked.max(1) as f64,
    })
}

/// What a client that missed many changes pays to catch up.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Changes made while it was away.
    pub changes: usize,
    /// GetChanges requests to catch up (pages of 200).
    pub requests: usize,
    /// Messages in the answers (each changed message once).
    pub messages: usize,
    /// Encoded bytes of the answers.
    pub bytes: usize,
    /// Wall time of the whole catch-up, ms.
    pub millis: f64,
}

/// A conversation of 2 with `changes` messages already synced by a
/// client; then `changes` changes (edits and reactions alternately, to
/// distinct messages), and the catch-up through the engine.
pub async fn sync_after_changes(store: Arc<dyn Store>, changes: usize) -> anyhow::Result<SyncReport> {
    let engine = Engine::builder().store(store.clone()).build();
    let a = engine
        .register("sync-a", "correct horse battery", "A")
        .await?
        .user
        .id;
    let b = engine
        .register("sync-b", "correct horse battery", "B")
        .await?
        .user
        .id;
    let conv = engine.create_group(Caller::user(a), "sync", &[b]).await?.id;
    let mut ids = Vec::with_capacity(changes);
    for i in 0..changes {
        let send = v1::SendMessage {
            target: Some(v1::send_message::Target::ConversationId(conv)),
            content: Some(v1::Content::text(format!("message {i}"))),
            ..Default::default()
        };
        ids.push(engine.send_message(Caller::user(a), send).await?.message_id);
    }
    let cursor = store.conversation(conv).await?.map_or(0, |c| c.last_version);
    for (i, &id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            let edit = v1::EditMessage {
                conversation_id: conv,
                message_id: id,
                content: Some(v1::Content::text(format!("message {i}, edited"))),
            };
            engine.edit_message(Caller::user(a), edit).await?;
        } else {
            let react = v1::React {
                conversation_id: conv,
                message_id: id,
                emoji: "👍".into(),
                remove: false,
            };
            engine.react(Caller::user(b), react).await?;
        }
    }
    let started = Instant::now();
    let (mut after, mut requests, mut messages, mut bytes) = (cursor, 0, 0, 0);
    loop {
        let page = engine
            .changes(
                Caller::user(b),
                v1::GetChanges {
                    conversation_id: conv,
                    after_version: after,
                    limit: 200,
                    ..Default::default()
                },
            )
            .await?;
        requests += 1;
        messages += page.messages.len();
        bytes += page.encoded_len();
        after = page.next_version;
        if !page.has_more {
            break;
        }
    }
    Ok(SyncReport {
        changes,
        requests,
        messages,
        bytes,
        millis: started.elapsed().as_secs_f64() * 1e3,
    })
}
