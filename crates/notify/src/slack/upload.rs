//! The graph into the incident's thread (bot mode), through Slack's external upload:
//! `files.getUploadURLExternal` (form: `filename`, `length`, `alt_txt`) answers an `upload_url` and a
//! `file_id`; the PNG's bytes are POSTed to that URL (Slack answers `200 OK - <length>`); then
//! `files.completeUploadExternal` (form: `files` as a JSON array of `{id, title}`, `channel_id`,
//! `thread_ts`) shares the file in the thread. Best effort: the message is the delivery, so a
//! failure here is logged and the notification stands.

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::bearer;

/// `files.getUploadURLExternal`'s answer.
#[derive(Deserialize)]
struct UploadUrl {
    upload_url: String,
    file_id: String,
}

/// Where the graph goes and what it is called.
#[derive(Debug)]
pub struct Upload<'a> {
    pub channel: &'a str,
    pub thread_ts: &'a str,
    pub title: &'a str,
    pub png: Vec<u8>,
}

/// Uploads `upload.png` into the thread; answers the file's id.
pub async fn upload(
    client: &reqwest::Client,
    api_url: &str,
    token: &SecretString,
    upload: Upload<'_>,
) -> Result<String, String> {
    let form = |pairs: &[(&str, &str)]| {
        serde_urlencoded::to_string(pairs).map_err(|e| format!("cannot encode a form: {e}"))
    };
    let length = upload.png.len().to_string();
    let body = form(&[
        ("filename", "graph.png"),
        ("length", &length),
        ("alt_txt", upload.title),
    ])?;
    let UploadUrl {
        upload_url,
        file_id,
    } = call(client, api_url, token, "files.getUploadURLExternal", body).await?;
    let sent = client
        .post(&upload_url)
        .header(CONTENT_TYPE, HeaderValue::from_static("image/png"))
        .body(upload.png)
        .send()
        .await
        .map_err(|e| format!("the upload failed: {}", e.without_url()))?;
    if !sent.status().is_success() {
        return Err(format!("the upload answered {}", sent.status()));
    }
    let files = json!([{"id": file_id, "title": upload.title}]).to_string();
    let body = form(&[
        ("files", &files),
        ("channel_id", upload.channel),
        ("thread_ts", upload.thread_ts),
    ])?;
    let _: Value = call(client, api_url, token, "files.completeUploadExternal", body).await?;
    Ok(file_id)
}

/// One form-encoded Web API call; an `ok: false` answer is an error with Slack's reason.
async fn call<T: for<'de> Deserialize<'de>>(
    client: &reqwest::Client,
    api_url: &str,
    token: &SecretString,
    method: &str,
    body: String,
) -> Result<T, String> {
    let response = client
        .post(format!("{api_url}/{method}"))
        .headers(bearer(token).map_err(|e| e.message)?)
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{method} failed: {}", e.without_url()))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{method} broke off: {}", e.without_url()))?;
    if !status.is_success() {
        return Err(format!("{method} answered {status}"));
    }
    let ok: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{method} answered something else than JSON: {e}"))?;
    if ok["ok"] != true {
        let error = ok["error"].as_str().unwrap_or("unknown_error");
        return Err(format!("{method} answered {error}"));
    }
    serde_json::from_value(ok).map_err(|e| format!("{method} answered an unexpected shape: {e}"))
}
