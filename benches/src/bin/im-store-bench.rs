//! Store-level measurements of the messaging features: full-text search
//! latency over many stored messages, and the cost of a sync after many
//! changes to old messages. Prints one JSON report.
//!
//! ```text
//! im-store-bench --store sqlite --messages 1000000 search
//! im-store-bench --store postgres sync --changes 10000
//! ```

use clap::{Parser, Subcommand, ValueEnum};
use im_benches::search;
use im_core::store::{PostgresStore, PostgresStoreConfig, SqliteStore, SqliteStoreConfig, Store};
use std::sync::Arc;

#[derive(Parser)]
struct Cli {
    /// Which store: a SQLite file in a temporary directory, or a fresh
    /// schema in the PostgreSQL at IM_TEST_POSTGRES_URL (default
    /// 127.0.0.1:5432, database `test`).
    #[arg(long, value_enum, default_value = "sqlite")]
    store: Backend,
    #[command(subcommand)]
    what: What,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Subcommand)]
enum What {
    /// Load messages, then time searches of each kind.
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 20_000)]
        conversations: usize,
        #[arg(long, default_value_t = 5_000)]
        users: usize,
        /// Searches of each kind.
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// Concurrent appenders while loading.
        #[arg(long, default_value_t = 64)]
        writers: usize,
    },
    /// Change old messages while a client is away, then time its catch-up.
    Sync {
        #[arg(long, default_value_t = 10_000)]
        changes: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let dir = tempfile_dir()?;
        let _schema;
        let store: Arc<dyn Store> = match cli.store {
            Backend::Sqlite => {
                let mut config = SqliteStoreConfig::new(dir.join("bench.sqlite3"));
                config.synchronous_full = false;
                Arc::new(SqliteStore::open(config).await?)
            }
            Backend::Postgres => {
                let schema = im_core::store::postgres::testing::TempSchema::create();
                let store = PostgresStore::open(PostgresStoreConfig::new(schema.url())).await?;
                _schema = schema;
                Arc::new(store)
            }
        };
        let report = match cli.what {
            What::Search {
                messages,
                conversations,
                users,
                queries,
                writers,
            } => {
                let (loaded, members) = search::load(&store, users, conversations, messages, writers).await?;
                eprintln!("loaded {messages} messages in {:.1} s", loaded.load_secs);
                serde_json::to_string_pretty(&search::search(&store, loaded, &members, queries).await?)?
            }
            What::Sync { changes } => {
                serde_json::to_string_pretty(&search::sync_after_changes(store.clone(), changes).await?)?
            }
        };
        println!("{report}");
        store.close().await?;
        let _ = std::fs::remove_dir_all(&dir);
        anyhow::Ok(())
    })
}

/// A fresh temporary directory (removed at the end).
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("im-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
