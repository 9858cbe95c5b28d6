//! Every webhook body a real Alertmanager sent (tests/fixtures/alertmanager) parses, with the group key,
//! statuses and fingerprints the fixture carries.

use aiops_model::alertmanager::{AlertStatus, compact_json, parse_webhook};

fn fixture(name: &str) -> aiops_model::WebhookPayload {
    let path = format!(
        "{}/../../tests/fixtures/alertmanager/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    parse_webhook(&body).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

#[test]
fn every_fixture_parses() {
    let dir = format!(
        "{}/../../tests/fixtures/alertmanager",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("fixture folder") {
        let path = entry.expect("entry").path();
        let body = std::fs::read(&path).expect("read");
        let payload = parse_webhook(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!payload.alerts.is_empty());
        // What the history stores: the same JSON without its indentation.
        let text = String::from_utf8(body).expect("UTF-8");
        let compact = compact_json(&text);
        assert!(
            compact.len() < text.len(),
            "{}: the fixture is indented",
            path.display()
        );
        let same = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("JSON");
        assert_eq!(same(&compact), same(&text), "{}", path.display());
        count += 1;
    }
    assert_eq!(count, 6, "expected the six fixtures");
}

#[test]
fn target_down_group_keeps_key_statuses_and_fingerprints() {
    let firing = fixture("target-down-group-firing.json");
    assert_eq!(
        firing.group_key,
        "{}:{alertname=\"TargetDown\", job=\"api\"}"
    );
    assert_eq!(firing.status, AlertStatus::Firing);
    let fingerprints: Vec<&str> = firing
        .alerts
        .iter()
        .map(|a| a.fingerprint.as_str())
        .collect();
    assert_eq!(fingerprints, ["5486e53bfc936eb8", "a705e64b6a95ebd7"]);
    assert!(
        firing.alerts.iter().all(|a| a.ended_at().is_none()),
        "firing alerts have no end"
    );

    let partly = fixture("target-down-group-one-resolved.json");
    assert_eq!(partly.group_key, firing.group_key);
    assert_eq!(partly.status, AlertStatus::Firing);
    let statuses: Vec<AlertStatus> = partly.alerts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [AlertStatus::Firing, AlertStatus::Resolved]);
    assert!(partly.alerts[1].ended_at().is_some());
    // A partial resolution is news, not a duplicate of the firing notification.
    assert_ne!(partly.dedup_key(), firing.dedup_key());

    let resolved = fixture("target-down-group-resolved.json");
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert!(
        resolved
            .alerts
            .iter()
            .all(|a| a.status == AlertStatus::Resolved)
    );
}

#[test]
fn single_and_k8s_alerts_carry_their_labels_and_rule() {
    let single = fixture("target-down-single.json");
    assert_eq!(single.alerts.len(), 1);
    assert_eq!(single.alertname(), "TargetDown");
    assert!(!single.alerts[0].fingerprint.is_empty());

    let load = fixture("high-load-warning.json");
    assert_eq!(load.label("severity"), Some("warning"));
    assert!(
        load.alerts[0]
            .rule_expr()
            .expect("rule")
            .contains("node_load1")
    );

    let k8s = fixture("high-error-rate-k8s.json");
    assert_eq!(k8s.label("namespace"), Some("shop"));
    assert_eq!(k8s.label("service"), Some("checkout"));
    assert_eq!(k8s.alerts[0].fingerprint, "5514dded5f379cac");
    assert_eq!(
        k8s.alerts[0].rule_expr().as_deref(),
        Some("vector(0.12) > 0.05")
    );
}

#[test]
fn grafana_contact_point_payload_is_accepted() {
    // Grafana's webhook contact point: the Alertmanager shape plus fields of its own.
    let body = br#"{
      "receiver": "aiops", "status": "firing", "orgId": 1, "state": "alerting",
      "title": "[FIRING:1] HighCPU", "message": "...", "version": "1",
      "groupKey": "{}/{}:{alertname=\"HighCPU\"}", "truncatedAlerts": 0,
      "groupLabels": {"alertname": "HighCPU"}, "commonLabels": {"alertname": "HighCPU"},
      "commonAnnotations": {}, "externalURL": "http://grafana:3000/",
      "alerts": [{
        "status": "firing", "labels": {"alertname": "HighCPU", "instance": "n1"},
        "annotations": {"summary": "CPU high"}, "startsAt": "2026-11-21T21:07:21Z",
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://grafana:3000/alerting/grafana/x/view",
        "fingerprint": "0f5d2b1c", "silenceURL": "http://grafana:3000/alerting/silence/new",
        "dashboardURL": "", "panelURL": "", "values": {"B": 97.5}, "valueString": "[ var='B' value=97.5 ]"
      }]
    }"#;
    let payload = parse_webhook(body).expect("Grafana payload parses");
    assert_eq!(payload.alertname(), "HighCPU");
    assert_eq!(payload.alerts[0].fingerprint, "0f5d2b1c");
}
