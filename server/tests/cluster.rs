//! Several `rampart serve` processes as one cluster: one PostgreSQL
//! database (`RAMPART_TEST_PG_URL`) and one NATS JetStream queue
//! (`RAMPART_TEST_NATS_URL`; `cargo xtask test` starts both). Alerts sent
//! round-robin while a node is `kill -9`ed are all worked on by the
//! survivors, each action reaches the counting API once, the audit chain
//! verifies, the killed node rejoins; an approval asked on one node and
//! granted through another executes once. Needs `cargo xtask plugins`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn service(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs {what}. `cargo xtask test` starts one; or set it \
             to a server you run"
        )
    })
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    )
}

/// One database, one queue namespace, the keys every node shares and the
/// counting API the responder acts on.
struct Cluster {
    dir: tempfile::TempDir,
    store: String,
    queue: String,
    config: PathBuf,
    admin: String,
    posts: Posts,
}

struct Node {
    name: String,
    child: Child,
    addr: String,
}

impl Cluster {
    fn new(mode: &str) -> Cluster {
        let pg = service("RAMPART_TEST_PG_URL", "PostgreSQL");
        let nats = service(
            "RAMPART_TEST_NATS_URL",
            "NATS with JetStream (nats-server -js)",
        );
        let store = rampart_postgres::create_database(&pg, &unique("rampart_cluster_"))
            .unwrap_or_else(|err| panic!("PostgreSQL at RAMPART_TEST_PG_URL: {err}"));
        let queue = format!("{}/{}", nats.trim_end_matches('/'), unique("c"));
        let dir = tempfile::tempdir().unwrap();
        let (port, posts) = counting_api();
        let config = dir.path().join("rampart.yaml");
        std::fs::write(
            &config,
            format!(
                "tenants:\n  - id: acme\n    quotas: {{ max_concurrent_runs: 16 }}\n    ingest_per_second: 100000\n    grants:\n      default: {{ capabilities: [log, kv, memory, config], kv_quota_bytes: 1048576 }}\n      plugins:\n        webhook-responder: {{ capabilities: [config, http], http_hosts: [\"127.0.0.1:{port}\"], allow_private: [127.0.0.0/8], settings: {{ url: \"http://127.0.0.1:{port}\" }} }}\n"
            ),
        )
        .unwrap();
        let admin = admin_token_with(dir.path(), &["--store", &store]);
        let cluster = Cluster {
            dir,
            store,
            queue,
            config,
            admin,
            posts,
        };
        let first = cluster.start("node-a");
        for plugin in ["risk-scorer", "fixtures/webhook-responder"] {
            let (folder, name) = plugin.rsplit_once('/').unwrap_or(("", plugin));
            let base = fixtures().join("..").join(folder);
            let (status, reply) = json_call(
                &first.addr,
                "POST",
                "/v1/tenants/acme/plugins",
                &cluster.admin,
                &upload_body(&base, name),
            );
            assert_eq!(status, 201, "{name}: {reply}");
        }
        let playbook = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/playbooks/webhook.yaml"),
        )
        .unwrap()
        .replace("mode: autonomous", &format!("mode: {mode}"));
        let (status, reply) = call(
            &first.addr,
            "PUT",
            "/v1/tenants/acme/playbooks/webhook",
            &cluster.admin,
            Some(playbook.as_bytes()),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        first.stop();
        cluster
    }

    // Each node is waited for in `stop` or `kill`.
    #[allow(clippy::zombie_processes)]
    fn start(&self, name: &str) -> Node {
        let d = self.dir.path();
        let log = d.join(format!("{name}.log"));
        let child = rampart()
            .args(["serve", "--listen", "127.0.0.1:0", "--node-id", name])
            .args(["--store", &self.store, "--queue", &self.queue, "--config"])
            .arg(&self.config)
            .arg("--data")
            .arg(d.join(name))
            .arg("--audit-key")
            .arg(d.join("audit.key"))
            .arg("--master-key-file")
            .arg(d.join("master.key"))
            .env("RUST_LOG", "warn")
            .env_remove("RAMPART_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut node = Node {
            name: name.to_owned(),
            child,
            addr: String::new(),
        };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("listening on http://").nth(1) {
                node.addr = rest.split_whitespace().next().unwrap().to_owned();
                assert!(
                    text.contains(&format!("node {name}")) && text.contains("queue nats://"),
                    "the start line names the node and the queue: {text}"
                );
                return node;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("{name} exited with {status}: {text}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of every node's log, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("\n--- {}:\n", path.display()));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    fn get(&self, node: &Node, path: &str) -> Value {
        let (status, body) = json_call(&node.addr, "GET", path, &self.admin, &Value::Null);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Runs by status, listed from the shared store (any node answers the
    /// same; `/metrics` counts are each node's own).
    fn runs_by_status(&self, node: &Node) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        let mut path = "/v1/tenants/acme/runs?limit=1000".to_owned();
        loop {
            let page = self.get(node, &path);
            for run in page["runs"].as_array().into_iter().flatten() {
                *counts
                    .entry(run["status"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            match page["next"].as_str() {
                Some(next) => path = format!("/v1/tenants/acme/runs?limit=1000&before={next}"),
                None => return counts,
            }
        }
    }

    fn audit(&self, node: &Node) -> Vec<Value> {
        let (status, body) = call(
            &node.addr,
            "GET",
            "/v1/tenants/acme/audit/export",
            &self.admin,
            None,
        );
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Node {
    // A node of a failed test does not outlive it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("{} did not stop", self.name);
    }

    fn kill9(self) {
        // Drop sends SIGKILL.
        drop(self);
    }
}

fn alert(i: usize) -> Value {
    json!({"id": format!("c-{i:05}"), "source": "edr", "title": format!("beacon {i}"),
        "severity": "high", "time": 1_795_756_800_000_i64,
        "entities": [{"kind": "ip", "value": format!("203.0.{}.{}", 113 + i / 250, 1 + i % 250)}]})
}

/// Sends `alerts` in batches to the nodes in turn (`addrs` is read before
/// each batch: a node may be swapped), from `clients` threads; a batch whose
/// node failed goes to the next one (a repeat of an accepted alert is
/// answered from the first). Returns the number of retried batches.
fn send_all(
    addrs: &std::sync::RwLock<Vec<String>>,
    token: &str,
    alerts: &[Value],
    clients: usize,
    sent: &AtomicUsize,
) -> usize {
    const BATCH: usize = 10;
    let batches: Vec<&[Value]> = alerts.chunks(BATCH).collect();
    let next = AtomicUsize::new(0);
    let retries = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for client in 0..clients {
            let (batches, next, retries) = (&batches, &next, &retries);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(batch) = batches.get(index) else {
                        break;
                    };
                    let body = Value::Array(batch.to_vec()).to_string();
                    let mut attempt = index + client;
                    let started = Instant::now();
                    loop {
                        let addr = {
                            let addrs = addrs.read().unwrap();
                            addrs[attempt % addrs.len()].clone()
                        };
                        match try_call(
                            &addr,
                            "POST",
                            "/v1/tenants/acme/alerts",
                            token,
                            Some(body.as_bytes()),
                            &[("prefer", "wait=30")],
                        ) {
                            Ok((200 | 202, _)) => break,
                            Ok((status, body)) => panic!(
                                "batch {index} on {addr}: {status} {}",
                                String::from_utf8_lossy(&body)
                            ),
                            Err(_) => {
                                retries.fetch_add(1, Ordering::SeqCst);
                                attempt += 1;
                                assert!(
                                    started.elapsed() < Duration::from_secs(120),
                                    "batch {index} found no node for 2 minutes"
                                );
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                    }
                    sent.fetch_add(batch.len(), Ordering::SeqCst);
                }
            });
        }
    });
    retries.load(Ordering::SeqCst)
}

/// How many alerts the kill test sends (`RAMPART_CLUSTER_ALERTS`; 1,500 by
/// default so the suite stays short; the README's figure is from 10,000).
fn alert_count() -> usize {
    std::env::var("RAMPART_CLUSTER_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500)
}

#[test]
fn three_nodes_finish_all_work_when_one_is_killed_and_it_rejoins() {
    let cluster = Cluster::new("autonomous");
    let a = cluster.start("node-a");
    let b = cluster.start("node-b");
    let c = cluster.start("node-c");
    let addrs = std::sync::RwLock::new(vec![a.addr.clone(), b.addr.clone(), c.addr.clone()]);
    let count = alert_count();
    let alerts: Vec<Value> = (0..count).map(alert).collect();
    let sent = AtomicUsize::new(0);
    let killed_at = std::sync::Mutex::new(None);
    let retries = std::thread::scope(|scope| {
        let sending = scope.spawn(|| send_all(&addrs, &cluster.admin, &alerts, 6, &sent));
        // Killed in the middle, while its workers hold runs.
        while sent.load(Ordering::SeqCst) < count / 3 {
            std::thread::sleep(Duration::from_millis(20));
        }
        b.kill9();
        *killed_at.lock().unwrap() = Some(Instant::now());
        sending.join().unwrap()
    });
    let killed_at = killed_at.lock().unwrap().unwrap();
    // The survivors finish everything, the killed node's runs too.
    let started = Instant::now();
    let by_status = loop {
        let by_status = cluster.runs_by_status(&a);
        let total: u64 = by_status.values().sum();
        if total >= count as u64 && by_status.get("running").copied().unwrap_or(0) == 0 {
            break by_status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "runs still unfinished after 5 minutes: {by_status:?}{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let recovered = killed_at.elapsed();
    eprintln!(
        "{count} alerts on 3 nodes, one killed: {by_status:?}, {retries} batches sent again, all finished {:.1} s after the kill",
        recovered.as_secs_f64()
    );
    // Every accepted alert has exactly one run, and it succeeded.
    let mut runs = std::collections::HashSet::new();
    for (i, alert) in alerts.iter().enumerate() {
        let id = alert["id"].as_str().unwrap();
        let node = if i % 2 == 0 { &a } else { &c };
        let shown = cluster.get(node, &format!("/v1/tenants/acme/alerts/{id}"));
        let listed = shown["runs"].as_array().cloned().unwrap_or_default();
        assert_eq!(listed.len(), 1, "alert {id}: {shown}");
        runs.insert(listed[0].as_str().unwrap().to_owned());
    }
    assert_eq!(runs.len(), count, "one run per alert");
    assert_eq!(
        by_status.get("succeeded").copied(),
        Some(count as u64),
        "every run succeeded: {by_status:?}"
    );
    // One effect per action.
    let posts = cluster.posts.lock().unwrap().clone();
    let twice: Vec<_> = posts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "keys POSTed more than once: {twice:?}");
    assert_eq!(posts.len(), count, "one POST per alert");
    // One chain across the nodes, and it verifies.
    let verified = cluster.get(&c, "/v1/tenants/acme/audit/verify");
    assert_eq!(verified["ok"], true, "{verified}");
    let records = cluster.audit(&a);
    let executed = records
        .iter()
        .filter(|r| r["kind"] == "action_executed")
        .count();
    assert_eq!(executed, count, "one action_executed record per alert");
    let writers: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r["node"].as_str()).collect();
    assert!(
        writers.contains("node-a") && writers.contains("node-c"),
        "records name the node that wrote them: {writers:?}"
    );

    // The killed node rejoins and takes work: records after this point
    // that name it are its new life's.
    let last_seq = records
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .max()
        .unwrap_or(0);
    let b = cluster.start("node-b");
    let more: Vec<Value> = (count..count + 60).map(alert).collect();
    let only_b = std::sync::RwLock::new(vec![b.addr.clone()]);
    let sent = AtomicUsize::new(0);
    send_all(&only_b, &cluster.admin, &more, 4, &sent);
    let started = Instant::now();
    loop {
        let by_status = cluster.runs_by_status(&b);
        if by_status.get("succeeded").copied() == Some((count + 60) as u64) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the last alerts did not finish: {by_status:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = cluster.audit(&b);
    let rejoined = records
        .iter()
        .filter(|r| {
            r["seq"].as_u64().unwrap_or(0) > last_seq
                && r["node"] == "node-b"
                && r["kind"] == "run_finished"
        })
        .count();
    assert!(
        rejoined > 0,
        "the restarted node finished none of the last 60 runs"
    );
    eprintln!("the restarted node finished {rejoined} of the last 60 runs");
    for node in [a, b, c] {
        node.stop();
    }
}

#[test]
fn an_approval_asked_on_one_node_and_granted_on_another_executes_once() {
    let cluster = Cluster::new("supervised");
    let a = cluster.start("node-a");
    let b = cluster.start("node-b");
    let (status, minted) = json_call(
        &a.addr,
        "POST",
        "/v1/tenants/acme/tokens",
        &cluster.admin,
        &json!({"principal": "analyst@acme", "role": "analyst"}),
    );
    assert_eq!(status, 201, "{minted}");
    let analyst = minted["token"].as_str().unwrap().to_owned();
    for round in 0..5 {
        let id = 90_000 + round;
        let (status, reply) = json_call(
            &a.addr,
            "POST",
            "/v1/tenants/acme/alerts",
            &cluster.admin,
            &alert(id),
        );
        assert!(
            status == 200 || status == 202,
            "alert {id} through node a: {status} {reply}"
        );
        let run = reply["results"][0]["runs"][0].as_str().unwrap().to_owned();
        // Pending, seen through the other node.
        let started = Instant::now();
        let approval = loop {
            let listed = cluster.get(&b, "/v1/tenants/acme/approvals");
            let found = listed["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["run_id"] == run.as_str())
                .and_then(|x| x["id"].as_str())
                .map(str::to_owned);
            if let Some(found) = found {
                break found;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no approval for {run}: {listed}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // A dozen analysts' clicks at once, half on each node: one wins.
        let path = format!("/v1/tenants/acme/approvals/{approval}/approve");
        let body = json!({"reason": "confirmed C2"}).to_string();
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..12)
                .map(|i| {
                    let addr = if i % 2 == 0 { &b.addr } else { &a.addr };
                    let (path, body, analyst) = (&path, &body, &analyst);
                    scope.spawn(move || {
                        try_call(addr, "POST", path, analyst, Some(body.as_bytes()), &[])
                            .map(|(status, _)| status)
                            .unwrap_or(0)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = statuses.iter().filter(|s| **s == 200 || **s == 202).count();
        assert_eq!(won, 1, "round {round}: one vote wins: {statuses:?}");
        assert!(
            statuses.iter().all(|s| matches!(s, 200 | 202 | 409)),
            "round {round}: the others are told it was decided: {statuses:?}"
        );
        let started = Instant::now();
        loop {
            let shown = cluster.get(&a, &format!("/v1/tenants/acme/runs/{run}"));
            if shown["status"] == "succeeded" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "run {run} not finished: {shown}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let posts = cluster.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 5, "{posts:?}");
    assert!(posts.values().all(|n| *n == 1), "{posts:?}");
    let records = cluster.audit(&b);
    for kind in ["approval_granted", "action_executed"] {
        assert_eq!(
            records.iter().filter(|r| r["kind"] == kind).count(),
            5,
            "{kind}"
        );
    }
    let verified = cluster.get(&b, "/v1/tenants/acme/audit/verify");
    assert_eq!(verified["ok"], true, "{verified}");
    a.stop();
    b.stop();
}

#[test]
fn a_node_refuses_a_shared_queue_on_a_store_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve_output(
        dir.path(),
        &dir.path().join("data"),
        &["--queue", "nats://127.0.0.1:1"],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--store postgres://"), "{said}");
    assert!(
        !Path::new(&dir.path().join("data")).exists(),
        "nothing written: {said}"
    );
}
