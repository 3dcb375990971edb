//! A tenant flooding past its ingest rate costs another tenant at most a
//! fifth of its throughput: refused work is refused before it costs CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Server, upload};
use crate::serial;

const CHEAP: &str =
    "name: cheap\ntrigger: { alert: 'true' }\nsteps:\n  - id: risk\n    score: risk-scorer\n";

async fn tenant(server: &Server, name: &str, rate: u32) -> String {
    let admin = server.admin.clone();
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants",
            &admin,
            &json!({"id": name, "ingest_per_second": rate, "grants": {"default": {"capabilities": ["log", "kv", "memory", "config"]}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/{name}/plugins"),
            &admin,
            &upload("risk-scorer"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .call(
            "PUT",
            &format!("/v1/tenants/{name}/playbooks/cheap"),
            Some(&admin),
            Some(CHEAP.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/{name}/tokens"),
            &admin,
            &json!({"principal": format!("feeder@{name}"), "role": "ingest"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

/// `calm` sends `n` alerts from 4 clients; its alerts per second.
async fn calm_rate(server: &Arc<Server>, token: &str, round: &str, n: usize) -> f64 {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (server, token, next, round) = (server.clone(), token.to_owned(), next.clone(), round.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let alert = json!({"id": format!("{round}-{i}"), "source": "edr", "title": "t", "severity": "low", "entities": [{"kind": "ip", "value": "203.0.113.7"}]});
                    let (status, body) = server.json("POST", "/v1/tenants/calm/alerts", &token, &alert).await;
                    assert_eq!(status, 200, "{body}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_tenant_costs_another_at_most_a_fifth_of_its_throughput() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Arc::new(Server::start(dir.path(), None).await);
    let flood_token = tenant(&server, "flood", 20).await;
    let calm_token = tenant(&server, "calm", 100_000).await;
    calm_rate(&server, &calm_token, "warm", 50).await;
    let idle = calm_rate(&server, &calm_token, "idle", 300).await;
    // 64 clients of `flood`, far past its 20 alerts/s.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (accepted, refused) = (
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    let flooders: Vec<_> = (0..64)
        .map(|c| {
            let (server, token, stop, accepted, refused) =
                (server.clone(), flood_token.clone(), stop.clone(), accepted.clone(), refused.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let alert = json!({"id": format!("f{c}-{i}"), "source": "edr", "title": "t", "severity": "low", "entities": []});
                    match server.json("POST", "/v1/tenants/flood/alerts", &token, &alert).await.0 {
                        200 => accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        _ => refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flooded = calm_rate(&server, &calm_token, "flooded", 300).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for flooder in flooders {
        flooder.await.expect("flooder");
    }
    let share = flooded / idle;
    println!(
        "[flood] calm {idle:.0} alerts/s idle, {flooded:.0} alerts/s while flood sent {} accepted / {} refused: {:.0} %",
        accepted.load(std::sync::atomic::Ordering::Relaxed),
        refused.load(std::sync::atomic::Ordering::Relaxed),
        share * 100.0
    );
    assert!(
        share >= 0.8,
        "the flood took {:.0} % of calm's throughput",
        (1.0 - share) * 100.0
    );
    Arc::into_inner(server).expect("one owner").stop().await;
}
