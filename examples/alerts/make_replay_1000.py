#!/usr/bin/env python3
"""Builds examples/alerts/replay-1000.jsonl (deterministic) from the data.

1,200 alerts, one entity IP each plus the host that saw it:
- 600 IPs from the ipsum slice (examples/data/ipsum, stamparm/ipsum,
  Unlicense), cycling through it: listed by 1..10 block lists;
- 300 benign public addresses (well-known resolvers and the RFC 5737
  documentation ranges, which no feed lists);
- 150 addresses of our own assets (examples/inventory.json), e.g. a scan
  alert about the bastion host: the playbook must never block those;
- 150 alerts about internal 10.0.x.y workstations not in the inventory.
Titles, severities and ATT&CK ids rotate through realistic IDS/EDR values.
Run: python3 examples/alerts/make_replay_1000.py
"""
import json, os

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
ipsum = [l.split()[0] for l in open(os.path.join(root, "data/ipsum/ipsum.txt"))
         if l.strip() and not l.startswith("#")]
benign = ["8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "208.67.222.222"] + \
    [f"192.0.2.{i}" for i in range(1, 100)] + [f"198.51.100.{i}" for i in range(1, 100)] + \
    [f"203.0.113.{i}" for i in range(1, 100)]
inventory = json.load(open(os.path.join(root, "inventory.json")))["assets"]
kinds = [
    ("ids", "Outbound connection to a listed address", "medium", "T1071"),
    ("edr", "Beacon-like periodic connection", "high", "T1071.001"),
    ("ids", "Inbound SSH brute force", "medium", "T1110"),
    ("firewall", "Port scan from the Internet", "low", "T1046"),
    ("edr", "Download from a rare address", "high", "T1105"),
]
alerts = []
def add(ip, host):
    n = len(alerts)
    source, title, severity, technique = kinds[n % len(kinds)]
    alerts.append({"id": f"r1k-{n:04d}", "source": source, "title": title, "severity": severity,
                   "time": 1795756800000 + 60000 * n,
                   "entities": [{"kind": "ip", "value": ip}, {"kind": "hostname", "value": host}],
                   "techniques": [technique], "tags": [], "raw": {"n": n}})
for i in range(600):
    add(ipsum[i % len(ipsum)], "ws-042.corp.example")
for i in range(300):
    add(benign[i % len(benign)], "ws-042.corp.example")
for i in range(150):
    asset = inventory[i % len(inventory)]
    add(asset["ips"][0], "bastion-01.corp.example")
for i in range(150):
    add(f"10.0.{7 + i // 250}.{1 + i % 250}", "ws-042.corp.example")
with open(os.path.join(here, "replay-1000.jsonl"), "w") as out:
    for alert in alerts:
        out.write(json.dumps(alert) + "\n")
print(len(alerts), "alerts")
