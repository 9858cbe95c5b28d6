//! Shared by the aiops benchmarks (included with `#[path]`; not an example of its own): a fake Loki's
//! label endpoints as Loki answers them.

use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Mounts `/loki/api/v1/labels` answering `names`, and `/label/<name>/values` answering no value, so
/// the context stage matches no stream by value and maps the alert's labels by name.
pub async fn mount_labels_without_values(loki: &MockServer, names: &[&str]) {
    Mock::given(method("GET"))
        .and(path("/loki/api/v1/labels"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": names})),
        )
        .mount(loki)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/loki/api/v1/label/[^/]+/values$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": []})),
        )
        .mount(loki)
        .await;
}
