//! The bundled rules on every event shape the hunt reads: a real
//! winlogbeat 6 capture and EVTX JSON whose event data is unnamed
//! (`tests/fixtures/events/SOURCE.md` says which events are synthetic).

use std::collections::BTreeSet;
use std::path::Path;

use crate::engine::{Engine, Selection};
use serde_json::Value;

fn events(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/events")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
        .collect()
}

/// Rule ids that fire on each event.
fn fired(engine: &Engine, events: &[Value]) -> Vec<BTreeSet<String>> {
    events
        .iter()
        .map(|event| {
            engine
                .matches(event)
                .into_iter()
                .map(|i| engine.rules()[i].id.clone())
                .collect()
        })
        .collect()
}

fn bundle() -> Engine {
    Engine::build(
        crate::bundled_rules().expect("bundle"),
        &Selection::default(),
    )
}

#[test]
fn rules_on_data_fire_on_unnamed_evtx_event_data() {
    let engine = bundle();
    let fired = fired(&engine, &events("evtx-unnamed-data.jsonl"));
    for (event, (rule, title)) in [
        (
            "6331d09b-4785-4c13-980f-f96661356249",
            "PowerShell 400: downgrade to engine 2 ({\"#text\": [..]})",
        ),
        (
            "5594e67a-7f92-4a04-b65d-1a42fd824a60",
            "MsiInstaller 1040: MSI from the web (a plain list)",
        ),
        (
            "08200f85-2678-463e-9c32-88dce2f073d1",
            "MSSQL 33205: account added to sysadmin (one string)",
        ),
    ]
    .iter()
    .enumerate()
    {
        assert!(
            fired[event].contains(*rule),
            "{title}: rule {rule} did not fire; fired {:?}",
            fired[event]
        );
    }
}

/// Title of every rule that fired on some event.
fn titles(engine: &Engine, fired: &[BTreeSet<String>]) -> BTreeSet<String> {
    fired
        .iter()
        .flatten()
        .filter_map(|id| engine.rules().iter().find(|r| &r.id == id))
        .map(|rule| rule.title.clone())
        .collect()
}

#[test]
fn a_winlogbeat_6_capture_is_read() {
    let engine = bundle();
    let events = events("winlogbeat6-empire-wdigest-downgrade.jsonl");
    let fired = fired(&engine, &events);
    let sysmon_3 = events
        .iter()
        .position(|e| e["event_id"] == 3)
        .expect("the Sysmon 3 event");
    assert_eq!(
        titles(&engine, &fired[sysmon_3..=sysmon_3]),
        BTreeSet::from(["Network Connection Initiated Via Notepad.EXE".to_owned()]),
        "Empire's notepad beacon"
    );
    let logoff = events
        .iter()
        .position(|e| e["event_id"] == 4634)
        .expect("the Security 4634 event");
    assert!(
        titles(&engine, &fired[logoff..=logoff]).contains("User Logoff Event"),
        "{:?}",
        fired[logoff]
    );
    // The Sysmon 13 that enables WDigest is read (the rule for it wants
    // Sysmon's later `DWORD (0x00000001)` rendering of the value, so it
    // stays silent on this 2019 capture's `1`).
    let wdigest = flat_of(&events, 13);
    assert!(
        wdigest.fields["TargetObject"]
            .as_str()
            .is_some_and(|t| t.ends_with("WDigest\\UseLogonCredential"))
    );
    // Windows PowerShell 800: winlogbeat's param1..3 are the `Data` rules read.
    let flat = flat_of(&events, 800);
    let data = flat.fields["Data"].as_str().expect("Data");
    assert!(
        data.contains("HostApplication=")
            && data.starts_with(events[0]["event_data"]["param1"].as_str().expect("param1"))
    );
}

fn flat_of(events: &[Value], id: u32) -> crate::shape::Flat {
    let event = events
        .iter()
        .find(|e| e["event_id"] == id)
        .expect("an event with that id");
    let flat = crate::shape::flatten(event);
    assert_eq!(flat.event_id, Some(id));
    flat
}
