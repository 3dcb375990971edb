//! Approvals under real concurrency: simultaneous requests over loopback,
//! each on its own connection, repeated many times, outcomes counted.

use std::sync::Arc;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::harness::Server;
use crate::{alert, audit_count, ingest, serial, supervised, tenant};

/// Trials per scenario (three scenarios: ≥ 200 trials in all).
const TRIALS: u32 = 70;

/// Sends every `(path, token, body)` at once; returns the statuses.
async fn at_once(server: &Arc<Server>, requests: Vec<(String, String, Value)>) -> Vec<u16> {
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks = requests.into_iter().map(|(path, token, body)| {
        let server = server.clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            server.json("POST", &path, &token, &body).await.0
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|status| status.expect("request task"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_on_one_approval_decide_it_once() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Arc::new(Server::start(dir.path(), None).await);
    let tokens = tenant(
        &server,
        "acme",
        &[("one", supervised("one", 1)), ("two", supervised("two", 2))],
        8,
    )
    .await;
    // Only one playbook at a time matches: `two` is enabled for scenario 3.
    let admin = server.admin.clone();
    let toggle = |name: &'static str, on: bool| {
        let server = server.clone();
        let admin = admin.clone();
        async move {
            let verb = if on { "enable" } else { "disable" };
            let (status, body) = server
                .call(
                    "POST",
                    &format!("/v1/tenants/acme/playbooks/{name}/{verb}"),
                    Some(&admin),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    toggle("two", false).await;
    let approve = |id: &str| format!("/v1/tenants/acme/approvals/{id}/approve");
    let deny = |id: &str| format!("/v1/tenants/acme/approvals/{id}/deny");
    let (mut double_wins, mut double_executions, mut denied_but_ran) = (0, 0, 0);
    let mut trial = 0u32;

    // 1. Eight approvals by one analyst at once: one wins, seven get 409.
    for _ in 0..TRIALS {
        trial += 1;
        let run = ingest(
            &server,
            "acme",
            &tokens["ingest"],
            &alert(&format!("same-{trial}"), trial),
        )
        .await;
        let id = format!("{run}.act");
        let statuses = at_once(
            &server,
            (0..8)
                .map(|_| {
                    (
                        approve(&id),
                        tokens["analyst-1"].clone(),
                        json!({"reason": "seen it"}),
                    )
                })
                .collect(),
        )
        .await;
        let wins = statuses.iter().filter(|s| **s == 200).count();
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );
        let executed =
            audit_count(&server, "acme", &tokens["viewer"], &run, "action_executed").await;
        let granted =
            audit_count(&server, "acme", &tokens["viewer"], &run, "approval_granted").await;
        double_wins += usize::from(wins != 1);
        double_executions += usize::from(executed > 1);
        assert_eq!(
            (wins, granted, executed),
            (1, 1, 1),
            "trial {trial}: {statuses:?}"
        );
    }

    // 2. Approve and deny at the same moment: exactly one decision wins, and
    // a denied action never runs.
    for _ in 0..TRIALS {
        trial += 1;
        let run = ingest(
            &server,
            "acme",
            &tokens["ingest"],
            &alert(&format!("split-{trial}"), trial),
        )
        .await;
        let id = format!("{run}.act");
        let mut requests = Vec::new();
        for i in 1..=4 {
            requests.push((
                approve(&id),
                tokens[&format!("analyst-{i}")].clone(),
                json!({"reason": "block it"}),
            ));
            requests.push((
                deny(&id),
                tokens[&format!("analyst-{}", i + 4)].clone(),
                json!({"reason": "our scanner"}),
            ));
        }
        let statuses = at_once(&server, requests).await;
        let wins: Vec<usize> = (0..statuses.len())
            .filter(|i| statuses[*i] == 200)
            .collect();
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );
        let executed =
            audit_count(&server, "acme", &tokens["viewer"], &run, "action_executed").await;
        let denials =
            audit_count(&server, "acme", &tokens["viewer"], &run, "approval_denied").await;
        double_wins += usize::from(wins.len() != 1);
        double_executions += usize::from(executed > 1);
        let approve_won = wins.first().is_some_and(|i| i % 2 == 0);
        denied_but_ran += usize::from(!approve_won && executed > 0);
        assert_eq!(wins.len(), 1, "trial {trial}: {statuses:?}");
        if approve_won {
            assert_eq!((executed, denials), (1, 0), "trial {trial}");
        } else {
            assert_eq!((executed, denials), (0, 1), "trial {trial}");
        }
    }

    // 3. A quorum of two with one vote cast, then seven distinct votes at
    // once: one meets the quorum, the rest get 409; two grants, one action.
    toggle("one", false).await;
    toggle("two", true).await;
    for _ in 0..TRIALS {
        trial += 1;
        let run = ingest(
            &server,
            "acme",
            &tokens["ingest"],
            &alert(&format!("quorum-{trial}"), trial),
        )
        .await;
        let id = format!("{run}.act");
        let (status, body) = server
            .json(
                "POST",
                &approve(&id),
                &tokens["analyst-1"],
                &json!({"reason": "first"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "pending");
        let statuses = at_once(
            &server,
            (2..=8)
                .map(|i| {
                    (
                        approve(&id),
                        tokens[&format!("analyst-{i}")].clone(),
                        json!({"reason": "second"}),
                    )
                })
                .collect(),
        )
        .await;
        let wins = statuses.iter().filter(|s| **s == 200).count();
        let executed =
            audit_count(&server, "acme", &tokens["viewer"], &run, "action_executed").await;
        let granted =
            audit_count(&server, "acme", &tokens["viewer"], &run, "approval_granted").await;
        double_wins += usize::from(wins != 1);
        double_executions += usize::from(executed > 1);
        assert_eq!(
            (wins, granted, executed),
            (1, 2, 1),
            "trial {trial}: {statuses:?}"
        );
    }
    println!(
        "[approval races] {trial} trials: {double_wins} with other than one winner, {double_executions} double executions, {denied_but_ran} denied actions run"
    );
    Arc::into_inner(server).expect("one owner").stop().await;
}
