//! # rampart-nats
//!
//! The work queue of several Rampart nodes: [`NatsQueue`] puts NATS
//! JetStream behind `rampart-core`'s [`WorkQueue`] seam.
//!
//! - Every item is published to `<ns>.work.<tenant>` on one work-queue
//!   stream (`<ns>-work`) and acknowledged by the broker before `push`
//!   returns: accepted work survives the node that accepted it.
//! - Each node pulls each tenant's subject through that tenant's durable
//!   consumer (`<ns>-work-<tenant>`, shared by all nodes), never holding more
//!   of a tenant's items than the tenant's share; a [`LocalQueue`] then
//!   serves the tenants in turn. One tenant's backlog waits in the broker,
//!   not ahead of another tenant's items — on every node.
//! - A held item is kept alive with progress acks; it is acked once its
//!   work is committed. A node that dies stops sending them, and the broker
//!   delivers its items to another node after [`ACK_WAIT`].
//! - Completions go to `<ns>.done.<tenant>` (core NATS): a caller waiting on
//!   one node learns that another node finished its run.
//!
//! Delivery is at least once; the engine makes that exactly-once in effect
//! (run leases, the journal's intents, idempotency keys).
#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, message::Acker, stream};
use futures::StreamExt;
use futures::future::BoxFuture;
use rampart_core::queue::{Completion, Delivery, LocalQueue, QueueError, Work, WorkQueue};
use rampart_core::tenant::TenantId;

/// How long the broker waits for an ack (or a progress ack) before it
/// delivers a held item to another node: the longest a dead node's items
/// wait.
pub const ACK_WAIT: Duration = Duration::from_secs(10);

/// How often a node tells the broker it still works on what it holds.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// How long one pull waits for a tenant's items before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// Why the queue could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The queue URL is not one this queue reads.
    #[error("queue URL `{url}`: {problem}")]
    Url {
        /// The URL (without credentials).
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The broker could not be reached.
    #[error("cannot reach NATS at {url}: {source}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The work stream could not be created or opened (is JetStream on?
    /// `nats-server -js`).
    #[error(
        "cannot open the JetStream stream `{stream}` (is JetStream enabled: nats-server -js?): {source}"
    )]
    Stream {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: jetstream::context::CreateStreamError,
    },
    /// The completions subject could not be subscribed to.
    #[error("cannot subscribe to completions: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// Where a queue lives: the broker and the namespace its stream and
/// subjects are named in (so clusters, or test runs, can share a broker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAddress {
    /// `nats://host:port` (what the client connects to).
    pub server: String,
    /// The namespace: `rampart` unless the URL's path names one.
    pub namespace: String,
}

impl QueueAddress {
    /// Reads `nats://host:port[/namespace]`.
    pub fn parse(url: &str) -> Result<Self, NatsError> {
        let problem = |problem: &str| NatsError::Url {
            url: url.to_owned(),
            problem: problem.to_owned(),
        };
        let rest = url
            .strip_prefix("nats://")
            .ok_or_else(|| problem("a NATS queue URL starts with nats://"))?;
        let (host, namespace) = match rest.split_once('/') {
            Some((host, namespace)) => (host, namespace.trim_end_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(problem("no host"));
        }
        let namespace = if namespace.is_empty() {
            "rampart"
        } else {
            namespace
        };
        let valid = namespace.len() <= 32
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(problem(
                "the namespace (the URL's path) is at most 32 of a-z, 0-9, `-` and `_`",
            ));
        }
        Ok(QueueAddress {
            server: format!("nats://{host}"),
            namespace: namespace.to_owned(),
        })
    }

    fn stream(&self) -> String {
        format!("{}-work", self.namespace)
    }

    fn work_subject(&self, tenant: &TenantId) -> String {
        format!("{}.work.{tenant}", self.namespace)
    }

    fn done_subject(&self, tenant: &TenantId) -> String {
        format!("{}.done.{tenant}", self.namespace)
    }

    fn consumer(&self, tenant: &TenantId) -> String {
        format!("{}-work-{tenant}", self.namespace)
    }
}

/// The broker's handles on the items this node holds, by item: a
/// redelivered copy of an item already held joins it and is acked with it.
type Held = HashMap<Work, Vec<Arc<Acker>>>;

struct Shared {
    address: QueueAddress,
    node: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: stream::Stream,
    local: LocalQueue,
    held: Mutex<Held>,
    /// Tenants this node pulls for, with their pulling task.
    lanes: Mutex<HashMap<TenantId, tokio::task::JoinHandle<()>>>,
    completions: tokio::sync::broadcast::Sender<Completion>,
    runtime: tokio::runtime::Handle,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn broker<E: std::error::Error + Send + Sync + 'static>(err: E) -> QueueError {
    QueueError::Broker(Box::new(err))
}

/// The shared work queue on NATS JetStream (see the crate docs).
pub struct NatsQueue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("address", &self.shared.address)
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl NatsQueue {
    /// Connects to the broker at `url` (`nats://host:port[/namespace]`) as
    /// `node`, opens (or creates) the work stream and starts pulling for
    /// every tenant that has items waiting. A tenant without a share of its
    /// own may hold `default_share` items on this node.
    pub async fn connect(url: &str, node: &str, default_share: usize) -> Result<Self, NatsError> {
        let address = QueueAddress::parse(url)?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("rampart {node}"))
            .connect(address.server.as_str())
            .await
            .map_err(|source| NatsError::Connect {
                url: address.server.clone(),
                source,
            })?;
        let jetstream = jetstream::new(client.clone());
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: address.stream(),
                subjects: vec![format!("{}.work.>", address.namespace)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|source| NatsError::Stream {
                stream: address.stream(),
                source,
            })?;
        let mut done = client
            .subscribe(format!("{}.done.>", address.namespace))
            .await?;
        let (completions, _) = tokio::sync::broadcast::channel(4096);
        let shared = Arc::new(Shared {
            node: node.to_owned(),
            client,
            jetstream,
            stream,
            local: LocalQueue::new(default_share),
            held: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            completions,
            runtime: tokio::runtime::Handle::current(),
            background: Mutex::new(Vec::new()),
            address,
        });
        let weak = Arc::downgrade(&shared);
        let listener = tokio::spawn({
            let sender = shared.completions.clone();
            async move {
                while let Some(message) = done.next().await {
                    match serde_json::from_slice::<Completion>(&message.payload) {
                        Ok(completion) => {
                            let _ = sender.send(completion);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "a completion that does not decode")
                        }
                    }
                }
            }
        });
        let progress = tokio::spawn(keep_alive(weak));
        lock(&shared.background).extend([listener, progress]);
        // Items another node left (or queued for a tenant this node has not
        // seen yet) are pulled from the start.
        let mut names = shared.stream.consumer_names();
        let prefix = format!("{}-work-", shared.address.namespace);
        let mut tenants = Vec::new();
        while let Some(Ok(name)) = names.next().await {
            if let Some(tenant) = name
                .strip_prefix(&prefix)
                .and_then(|t| TenantId::new(t).ok())
            {
                tenants.push(tenant);
            }
        }
        let queue = NatsQueue { shared };
        for tenant in tenants {
            queue.pull_for(&tenant);
        }
        Ok(queue)
    }

    /// Starts pulling `tenant`'s items on this node (once).
    fn pull_for(&self, tenant: &TenantId) {
        let mut lanes = lock(&self.shared.lanes);
        if lanes.contains_key(tenant) {
            return;
        }
        let task = self
            .shared
            .runtime
            .spawn(pull_lane(Arc::downgrade(&self.shared), tenant.clone()));
        lanes.insert(tenant.clone(), task);
    }

    /// Blocks this worker thread on `future`: the seam's `push` is
    /// synchronous (as the storage seam is), and an item is pushed only
    /// once the broker has it.
    fn wait<T>(&self, future: impl std::future::Future<Output = T>) -> Result<T, QueueError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                Ok(tokio::task::block_in_place(|| handle.block_on(future)))
            }
            Ok(_) => Err(QueueError::Broker(
                "the NATS queue needs a multi-threaded tokio runtime".into(),
            )),
            Err(_) => Ok(self.shared.runtime.block_on(future)),
        }
    }
}

impl Drop for NatsQueue {
    fn drop(&mut self) {
        self.close();
    }
}

/// Pulls `tenant`'s items while this node has room for them.
async fn pull_lane(shared: Weak<Shared>, tenant: TenantId) {
    let mut consumer = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(queue) = shared.upgrade() else {
            return;
        };
        if consumer.is_none() {
            let name = queue.address.consumer(&tenant);
            match queue
                .stream
                .get_or_create_consumer(
                    &name,
                    pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: queue.address.work_subject(&tenant),
                        ack_wait: ACK_WAIT,
                        max_ack_pending: -1,
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(opened) => {
                    consumer = Some(opened);
                    backoff = Duration::from_millis(100);
                }
                Err(err) => {
                    tracing::warn!(%tenant, error = %err, "cannot open the tenant's consumer; retrying");
                    drop(queue);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(pulling) = consumer.as_ref() else {
            continue;
        };
        let room = queue
            .local
            .share_of(&tenant)
            .saturating_sub(queue.local.held(&tenant));
        if room == 0 {
            drop(queue);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let batch = pulling
            .batch()
            .max_messages(room)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut messages = match batch {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(%tenant, error = %err, "pulling the tenant's items failed; retrying");
                consumer = None;
                drop(queue);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        drop(queue);
        while let Some(message) = messages.next().await {
            let Some(queue) = shared.upgrade() else {
                return;
            };
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    tracing::debug!(%tenant, error = %err, "pull ended");
                    break;
                }
            };
            let (message, acker) = message.split();
            let work = match serde_json::from_slice::<Work>(&message.payload) {
                Ok(work) if work.tenant() == &tenant => work,
                _ => {
                    // Never ours to run: dropped, and said so.
                    tracing::error!(%tenant, subject = %message.subject, "an item that is not a work item of this tenant; dropped");
                    let _ = acker.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            queue.take_in(work, acker);
        }
    }
}

impl Shared {
    /// An item pulled from the broker joins the local lanes (a copy of an
    /// item already held joins that one).
    fn take_in(&self, work: Work, acker: Acker) {
        let mut held = lock(&self.held);
        let copies = held.entry(work.clone()).or_default();
        let first = copies.is_empty();
        copies.push(Arc::new(acker));
        drop(held);
        if first && !matches!(self.local.push(work.clone()), Ok(true)) {
            // Closed (or, impossibly, held without being recorded): the
            // broker delivers it again elsewhere.
            if let Some(copies) = lock(&self.held).remove(&work) {
                self.runtime.spawn(async move {
                    for acker in copies {
                        let _ = acker.ack_with(AckKind::Nak(None)).await;
                    }
                });
            }
        }
    }

    fn release(&self, work: &Work, kind: AckKind) {
        let copies = lock(&self.held).remove(work).unwrap_or_default();
        self.runtime.spawn(async move {
            for acker in copies {
                let acked = match kind {
                    AckKind::Ack => acker.double_ack().await,
                    other => acker.ack_with(other).await,
                };
                if let Err(err) = acked {
                    tracing::warn!(error = %err, "the broker did not take an ack; the item is delivered again (a no-op once done)");
                }
            }
        });
    }
}

/// Tells the broker, every few seconds, that this node still works on
/// everything it holds.
async fn keep_alive(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tick.tick().await;
        let Some(queue) = shared.upgrade() else {
            return;
        };
        let ackers: Vec<Arc<Acker>> = lock(&queue.held)
            .values()
            .flat_map(|copies| copies.iter().cloned())
            .collect();
        drop(queue);
        for acker in ackers {
            let _ = acker.ack_with(AckKind::Progress).await;
        }
    }
}

impl WorkQueue for NatsQueue {
    fn push(&self, work: Work) -> Result<bool, QueueError> {
        let payload = serde_json::to_vec(&work).map_err(broker)?;
        let subject = self.shared.address.work_subject(work.tenant());
        let jetstream = self.shared.jetstream.clone();
        self.pull_for(work.tenant());
        self.wait(async move {
            jetstream
                .publish(subject, payload.into())
                .await
                .map_err(broker)?
                .await
                .map_err(broker)
        })??;
        Ok(true)
    }

    fn next(&self) -> BoxFuture<'_, Option<Delivery>> {
        self.shared.local.next()
    }

    fn ack(&self, delivery: &Delivery, failure: Option<&str>) {
        self.shared.local.ack(delivery, failure);
        self.shared.release(&delivery.work, AckKind::Ack);
        let completion = Completion {
            work: delivery.work.clone(),
            failure: failure.map(str::to_owned),
            node: self.shared.node.clone(),
        };
        let subject = self.shared.address.done_subject(delivery.work.tenant());
        let client = self.shared.client.clone();
        match serde_json::to_vec(&completion) {
            Ok(payload) => {
                self.shared.runtime.spawn(async move {
                    if let Err(err) = client.publish(subject, payload.into()).await {
                        tracing::warn!(error = %err, "publishing a completion failed; its waiters time out");
                    }
                });
            }
            Err(err) => tracing::warn!(error = %err, "a completion that does not encode"),
        }
    }

    fn retry(&self, delivery: &Delivery, after: Duration) {
        self.shared.local.ack(delivery, None);
        self.shared
            .release(&delivery.work, AckKind::Nak(Some(after)));
    }

    fn set_share(&self, tenant: &TenantId, share: usize) {
        self.shared.local.set_share(tenant, share);
        self.pull_for(tenant);
    }

    fn depth(&self) -> usize {
        self.shared.local.depth()
    }

    fn close(&self) {
        self.shared.local.close();
        for (_, task) in lock(&self.shared.lanes).drain() {
            task.abort();
        }
        for task in lock(&self.shared.background).drain(..) {
            task.abort();
        }
    }

    fn shared(&self) -> bool {
        true
    }

    fn completions(&self) -> Option<tokio::sync::broadcast::Receiver<Completion>> {
        Some(self.shared.completions.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_name_a_server_and_a_namespace() {
        let plain = QueueAddress::parse("nats://127.0.0.1:4222").ok();
        assert_eq!(
            plain,
            Some(QueueAddress {
                server: "nats://127.0.0.1:4222".into(),
                namespace: "rampart".into()
            })
        );
        let named = QueueAddress::parse("nats://n:1/test-7").ok();
        assert_eq!(named.map(|a| a.namespace), Some("test-7".into()));
        for bad in ["http://x:1", "nats://", "nats://x:1/A.B", "nats://x:1/a>b"] {
            assert!(QueueAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
