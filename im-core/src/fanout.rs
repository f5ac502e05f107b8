//! The `FanOut` trait: carries events from the node that produced them to
//! every node's local sessions.
//!
//! # Guarantees
//! * **Carrier, not store**: fan-out is best effort (at most once). Whatever
//!   it drops, clients recover from the [`Store`](crate::store::Store) on sync.
//! * **Order**: deliveries published for one conversation reach each
//!   subscriber in the order they were published.
//! * **Every subscriber** (one per node) gets every delivery once.

use crate::error::Result;
use crate::event::SharedEvent;
use crate::model::UserId;
use async_trait::async_trait;
use parking_lot::RwLock;
use std::sync::Arc;

/// One event and the users it is for.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Users whose sessions get the event.
    pub recipients: Arc<[UserId]>,
    /// A user among the recipients who must not get it (e.g. the typist).
    pub exclude_user: Option<UserId>,
    /// The event, encoded once.
    pub event: Arc<SharedEvent>,
}

/// Receives the deliveries of a fan-out (the session registry of a node).
pub trait FanOutHandler: Send + Sync + 'static {
    /// Hands a delivery to local sessions. Must not block.
    fn deliver(&self, delivery: &Delivery);
}

/// Carries deliveries between nodes. See the module docs for guarantees.
#[async_trait]
pub trait FanOut: Send + Sync + 'static {
    /// Publishes a delivery to every subscriber.
    async fn publish(&self, delivery: Delivery) -> Result<()>;
    /// Adds a subscriber; it gets every delivery published afterwards.
    fn subscribe(&self, handler: Arc<dyn FanOutHandler>);
    /// Stops delivering; called at shutdown.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// In-process fan-out: a publish calls every subscriber directly, on the
/// publishing task, so order per conversation is the publish order.
#[derive(Default)]
pub struct LocalFanOut {
    subscribers: RwLock<Vec<Arc<dyn FanOutHandler>>>,
}

impl LocalFanOut {
    /// A fan-out with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl FanOut for LocalFanOut {
    async fn publish(&self, delivery: Delivery) -> Result<()> {
        for handler in self.subscribers.read().iter() {
            handler.deliver(&delivery);
        }
        Ok(())
    }

    fn subscribe(&self, handler: Arc<dyn FanOutHandler>) {
        self.subscribers.write().push(handler);
    }

    async fn close(&self) -> Result<()> {
        self.subscribers.write().clear();
        Ok(())
    }
}

/// The fan-out conformance suite, run against every backend.
#[allow(missing_docs, clippy::unwrap_used)]
pub mod conformance {
    use super::*;
    use im_protocol::v1;
    use parking_lot::Mutex;
    use std::time::Duration;

    /// Generates one `#[tokio::test]` per conformance check; `$make` is an async
    /// expression returning `(Arc<dyn FanOut>, Arc<dyn FanOut>, guard)`: two
    /// handles (nodes) on the same fan-out.
    #[macro_export]
    macro_rules! fanout_conformance_tests {
        ($make:expr) => {
            $crate::fanout_conformance_tests!(@tests $make; every_subscriber_gets_each_delivery_once,
                order_is_kept_per_conversation, delivery_fields_survive);
        };
        (@tests $make:expr; $($name:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (a, b, _guard) = $make.await;
                    $crate::fanout::conformance::$name(a, b).await;
                }
            )*
        };
    }

    #[derive(Default)]
    pub struct Recorder(Mutex<Vec<Delivery>>);

    impl FanOutHandler for Recorder {
        fn deliver(&self, delivery: &Delivery) {
            self.0.lock().push(delivery.clone());
        }
    }

    impl Recorder {
        async fn wait_for(&self, n: usize) -> Vec<Delivery> {
            for _ in 0..500 {
                if self.0.lock().len() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Give stray duplicates a moment to show up.
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.0.lock().clone()
        }
    }

    fn delivery(conv: u64, seq: u64) -> Delivery {
        Delivery {
            recipients: Arc::from(vec![1, 2, 3]),
            exclude_user: Some(2),
            event: SharedEvent::new(v1::event::Kind::Message(v1::Message {
                conversation_id: conv,
                seq,
                ..Default::default()
            })),
        }
    }

    fn seq_of(d: &Delivery) -> (u64, u64) {
        match d.event.kind() {
            Some(v1::event::Kind::Message(m)) => (m.conversation_id, m.seq),
            _ => (0, 0),
        }
    }

    pub async fn every_subscriber_gets_each_delivery_once(a: Arc<dyn FanOut>, b: Arc<dyn FanOut>) {
        let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        a.subscribe(ra.clone());
        b.subscribe(rb.clone());
        for seq in 1..=20 {
            let node = if seq % 2 == 0 { &a } else { &b };
            node.publish(delivery(1, seq)).await.unwrap();
        }
        for r in [ra, rb] {
            let got = r.wait_for(20).await;
            let mut seqs: Vec<_> = got.iter().map(|d| seq_of(d).1).collect();
            seqs.sort_unstable();
            assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        }
    }

    pub async fn order_is_kept_per_conversation(a: Arc<dyn FanOut>, b: Arc<dyn FanOut>) {
        let r = Arc::new(Recorder::default());
        b.subscribe(r.clone());
        for seq in 1..=50 {
            for conv in [7, 8] {
                a.publish(delivery(conv, seq)).await.unwrap();
            }
        }
        let got = r.wait_for(100).await;
        for conv in [7, 8] {
            let seqs: Vec<_> = got
                .iter()
                .map(seq_of)
                .filter(|(c, _)| *c == conv)
                .map(|(_, s)| s)
                .collect();
            assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        }
    }

    pub async fn delivery_fields_survive(a: Arc<dyn FanOut>, b: Arc<dyn FanOut>) {
        let r = Arc::new(Recorder::default());
        b.subscribe(r.clone());
        a.publish(delivery(3, 9)).await.unwrap();
        let got = r.wait_for(1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].recipients[..], &[1, 2, 3]);
        assert_eq!(got[0].exclude_user, Some(2));
        assert_eq!(seq_of(&got[0]), (3, 9));
    }
}
