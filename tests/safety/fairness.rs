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
    calm_rate(&server, &calm_token, "warm", 100).await;
    // Idle and flooded rounds in pairs, each flooded round compared with the
    // idle one beside it; the pairs alternate their order (idle first, then
    // flooded first), so the server's own slow drift as its store grows
    // counts against neither side, and the median of the ratios is bounded,
    // so a burst of the VM's own noise in one round (its steal time moves a
    // 1 s round by 20 % on its own) decides nothing.
    const PAIRS: usize = 7;
    const PER_ROUND: usize = 600;
    let mut ratios = Vec::new();
    let (mut idle, mut flooded) = (0.0, 0.0);
    let (accepted, refused) = (
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    for pair in 0..PAIRS {
        let idle_first = pair % 2 == 0;
        let mut idle_rate = 0.0;
        if idle_first {
            idle_rate = calm_rate(&server, &calm_token, &format!("idle-{pair}"), PER_ROUND).await;
        }
        // 64 clients of `flood`, far past its 20 alerts/s.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flooders: Vec<_> = (0..64)
            .map(|c| {
                let (server, token, stop, accepted, refused) =
                    (server.clone(), flood_token.clone(), stop.clone(), accepted.clone(), refused.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        i += 1;
                        let alert = json!({"id": format!("f{pair}-{c}-{i}"), "source": "edr", "title": "t", "severity": "low", "entities": []});
                        match server.json("POST", "/v1/tenants/flood/alerts", &token, &alert).await.0 {
                            200 => accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                            _ => refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        // The flood's burst allowance is spent before calm is measured.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let flooded_rate =
            calm_rate(&server, &calm_token, &format!("flooded-{pair}"), PER_ROUND).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for flooder in flooders {
            flooder.await.expect("flooder");
        }
        if !idle_first {
            idle_rate = calm_rate(&server, &calm_token, &format!("idle-{pair}"), PER_ROUND).await;
        }
        idle += idle_rate / PAIRS as f64;
        flooded += flooded_rate / PAIRS as f64;
        ratios.push(flooded_rate / idle_rate);
    }
    ratios.sort_by(f64::total_cmp);
    let share = ratios[PAIRS / 2];
    println!(
        "[flood] calm {idle:.0} alerts/s idle, {flooded:.0} alerts/s while flood sent {} accepted / {} refused; per-round shares {:?}, median {:.0} %",
        accepted.load(std::sync::atomic::Ordering::Relaxed),
        refused.load(std::sync::atomic::Ordering::Relaxed),
        ratios
            .iter()
            .map(|r| (r * 100.0).round())
            .collect::<Vec<_>>(),
        share * 100.0
    );
    assert!(
        share >= 0.8,
        "the flood took {:.0} % of calm's throughput",
        (1.0 - share) * 100.0
    );
    Arc::into_inner(server).expect("one owner").stop().await;
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// `calm`'s latency over `n` sequential alerts.
async fn calm_latencies(server: &Server, token: &str, round: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..n {
        let alert = json!({"id": format!("{round}-{i}"), "source": "edr", "title": "t", "severity": "low", "entities": [{"kind": "ip", "value": "203.0.113.7"}]});
        let started = Instant::now();
        let (status, body) = server
            .json("POST", "/v1/tenants/calm/alerts", token, &alert)
            .await;
        assert_eq!(status, 200, "{body}");
        out.push(started.elapsed());
    }
    out
}

/// Entities per attacking alert: the nested-trigger attack used 150.
const ENTITIES: usize = 150;

/// Puts `heavy`'s playbook with `trigger`, then 8 clients of `heavy` send
/// alerts of [`ENTITIES`] entities while `calm` sends 100 alerts one by one;
/// returns calm's p99, the worst `/healthz` and how many alerts heavy sent.
async fn attack(
    server: &Arc<Server>,
    heavy: &str,
    calm: &str,
    trigger: &str,
    round: &str,
) -> (Duration, Duration, u64) {
    let yaml = format!(
        "name: heavy\ntrigger: {{ alert: \"{trigger}\" }}\nsteps:\n  - id: risk\n    score: risk-scorer\n"
    );
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/heavy/playbooks/heavy",
            Some(&server.admin),
            Some(yaml.into_bytes()),
        )
        .await;
    assert_eq!(status, 200, "the trigger is within the bounds: {body}");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let entities: Vec<serde_json::Value> = (0..ENTITIES)
        .map(|i| json!({"kind": "ip", "value": format!("198.18.{}.{}", i / 250, i % 250 + 1)}))
        .collect();
    let attackers: Vec<_> = (0..8)
        .map(|c| {
            let (server, token, stop, sent, entities, round) = (
                server.clone(),
                heavy.to_owned(),
                stop.clone(),
                sent.clone(),
                entities.clone(),
                round.to_owned(),
            );
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let alert = json!({"id": format!("{round}-h{c}-{i}"), "source": "edr", "title": "t", "severity": "low", "entities": entities});
                    let (status, body) = server.json("POST", "/v1/tenants/heavy/alerts", &token, &alert).await;
                    assert_eq!(status, 200, "{body}");
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attacked = p99(calm_latencies(server, calm, round, 100).await);
    let mut health = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(server.call("GET", "/healthz", None, None).await.0, 200);
        health.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for attacker in attackers {
        attacker.await.expect("attacker");
    }
    (
        attacked,
        health.iter().max().copied().unwrap_or_default(),
        sent.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// The costliest trigger the bounds accept, on alerts with 150 entities
/// from 8 clients at once, runs off the async workers under the tenant's
/// CPU share: `/healthz` stays under 50 ms, and the other tenant's p99 is
/// within twice (or 10 ms of) what the same flood of alerts costs it with
/// a trivial trigger — the expression adds no stall of its own. (What the
/// flood of 6 KB alerts itself costs the other tenant — intake and the
/// shared store — is measured and reported, not bounded here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_costliest_accepted_trigger_does_not_stall_other_tenants() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Arc::new(Server::start(dir.path(), None).await);
    let heavy_token = tenant(&server, "heavy", 100_000).await;
    let calm_token = tenant(&server, "calm", 100_000).await;
    calm_latencies(&server, &calm_token, "warm", 20).await;
    let idle = p99(calm_latencies(&server, &calm_token, "idle", 100).await);
    let terms: Vec<String> = (0..27).map(|i| format!("e.value == 'no-{i}'")).collect();
    let costly = format!("alert.entity_list.exists(e, {})", terms.join(" || "));
    let (cheap_p99, cheap_health, cheap_sent) = attack(
        &server,
        &heavy_token,
        &calm_token,
        "alert.severity == 'nope'",
        "cheap",
    )
    .await;
    let (costly_p99, costly_health, costly_sent) =
        attack(&server, &heavy_token, &calm_token, &costly, "costly").await;
    println!(
        "[costly trigger] calm p99: idle {idle:?}; {cheap_p99:?} while heavy sent {cheap_sent} alerts of {ENTITIES} entities with a trivial trigger; {costly_p99:?} while it sent {costly_sent} with the costliest accepted one; worst /healthz {cheap_health:?} / {costly_health:?}"
    );
    // The bound is on the expression's attack; the baseline flood's own
    // /healthz is reported above.
    assert!(
        costly_health < Duration::from_millis(50),
        "/healthz took {costly_health:?}"
    );
    let bound = (cheap_p99 * 2).max(cheap_p99 + Duration::from_millis(10));
    assert!(
        costly_p99 <= bound,
        "the costly trigger: calm p99 {costly_p99:?} > {bound:?}"
    );
    Arc::into_inner(server).expect("one owner").stop().await;
}
