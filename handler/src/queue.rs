//! A read-only look at the poison queue (`cmk-rotations-poison`) through the
//! Storage queue REST API, for the status report. The queue service comes
//! from the Functions storage setting `AzureWebJobsStorage__queueServiceUri`;
//! without it the report says the queue is not configured.

use base64::{Engine, prelude::BASE64_STANDARD};
use reqwest::{Method, Url};
use serde::Serialize;

use crate::{
    config::Config,
    http::{Budget, Http, Request, Service},
    rotate::RotationMessage,
};

/// The queue the host moves a message to after `maxDequeueCount` failures.
pub const POISON_QUEUE: &str = "cmk-rotations-poison";
/// Storage REST version sent with the peek.
const STORAGE_VERSION: &str = "2021-12-02";
/// Storage returns at most 32 messages per peek.
const PEEK_COUNT: &str = "32";

/// A message waiting in the poison queue.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoisonMessage {
    pub id: String,
    pub insertion_time: String,
    /// The server and key, when the message text is one of ours.
    pub server_id: Option<String>,
    pub key_id: Option<String>,
}

impl PoisonMessage {
    pub fn summary(&self) -> String {
        match (&self.server_id, &self.key_id) {
            (Some(s), Some(k)) => format!("{s} ({k}), since {}", self.insertion_time),
            _ => format!("message {} since {}", self.id, self.insertion_time),
        }
    }
}

/// Peeks at up to 32 poison messages. `Ok(None)` when no queue service is
/// configured; `Err` carries a one-line reason for the report.
pub async fn peek_poison(
    http: &Http,
    config: &Config,
    budget: &Budget,
) -> Result<Option<Vec<PoisonMessage>>, String> {
    let Some(service) = &config.queue_service else {
        return Ok(None);
    };
    let mut url =
        Url::parse(&format!("{service}/{POISON_QUEUE}/messages")).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("peekonly", "true")
        .append_pair("numofmessages", PEEK_COUNT);
    let request = Request {
        service: Service::Storage,
        scope: "https://storage.azure.com/.default",
        method: Method::GET,
        url,
        body: None,
        headers: &[("x-ms-version", STORAGE_VERSION)],
    };
    match http.send(request, budget).await {
        Ok(response) => Ok(Some(parse_messages(
            response.body.as_str().unwrap_or_default(),
        ))),
        // No failure has been poisoned yet: the queue does not exist.
        Err(e) if e.is_not_found() => Ok(Some(Vec::new())),
        Err(e) => Err(format!("poison queue: {e}")),
    }
}

/// Reads `<QueueMessage>` elements of a Storage peek answer.
fn parse_messages(xml: &str) -> Vec<PoisonMessage> {
    xml.split("<QueueMessage>")
        .skip(1)
        .map(|item| {
            let text = element(item, "MessageText").unwrap_or_default();
            let message = decode_text(&text);
            PoisonMessage {
                id: element(item, "MessageId").unwrap_or_default(),
                insertion_time: element(item, "InsertionTime").unwrap_or_default(),
                server_id: message.as_ref().map(|m| m.server_id.clone()),
                key_id: message.map(|m| m.key_id),
            }
        })
        .collect()
}

fn element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(unescape(&xml[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Message text is base64 on the wire (host.json `messageEncoding`), or
/// plain JSON when the encoding is `none`.
fn decode_text(text: &str) -> Option<RotationMessage> {
    let plain = serde_json::from_str(text).ok();
    plain.or_else(|| {
        let bytes = BASE64_STANDARD.decode(text.trim()).ok()?;
        serde_json::from_slice(&bytes).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_answers_are_read_with_base64_or_plain_text() {
        let text =
            r#"{"serverId":"/subscriptions/x/s","keyId":"https://v.vault.azure.net/keys/k"}"#;
        let encoded = "eyJzZXJ2ZXJJZCI6Ii9zdWJzY3JpcHRpb25zL3gvcyIsImtleUlkIjoiaHR0cHM6Ly92LnZhdWx0LmF6dXJlLm5ldC9rZXlzL2sifQ==";
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><QueueMessagesList><QueueMessage><MessageId>m1</MessageId><InsertionTime>Thu, 03 Dec 2026 18:00:00 GMT</InsertionTime><MessageText>{encoded}</MessageText></QueueMessage><QueueMessage><MessageId>m2</MessageId><MessageText>{}</MessageText></QueueMessage></QueueMessagesList>",
            text.replace('"', "&quot;")
        );
        let messages = parse_messages(&xml);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].server_id.as_deref(), Some("/subscriptions/x/s"));
        assert_eq!(
            messages[1].key_id.as_deref(),
            Some("https://v.vault.azure.net/keys/k")
        );
        assert_eq!(messages[0].insertion_time, "Thu, 03 Dec 2026 18:00:00 GMT");
    }
}
