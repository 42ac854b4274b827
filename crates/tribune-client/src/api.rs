//! The room API over HTTP: create rooms, mint speaker tokens, join as a listener.

use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not usable.
    #[error("bad server URL: {0}")]
    Url(String),
    /// The HTTP request failed before an answer.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error.
    #[error("server answered {status}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Audio could not be read or coded.
    #[error("audio: {0}")]
    Media(String),
}

/// Answer of `POST /api/rooms`.
#[derive(Debug, Clone, Deserialize)]
pub struct RoomCreated {
    /// Room id.
    pub id: String,
    /// The host's stage token.
    pub host_token: String,
}

/// Answer of `POST /api/rooms/{id}/join`.
#[derive(Debug, Clone, Deserialize)]
pub struct JoinTicket {
    /// The signed listen ticket.
    pub ticket: String,
    /// Where to open the listen WebSocket.
    pub listen_url: String,
    /// The same on other nodes of a cluster, to move to if that one goes away.
    #[serde(default)]
    pub alternates: Vec<String>,
}

/// How long an idle pooled connection is kept for reuse.
pub const IDLE_POOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A Tribune server's HTTP API.
#[derive(Clone, Debug)]
pub struct Api {
    base: Url,
    http: reqwest::Client,
    /// The operator key sent when creating rooms.
    api_key: Option<String>,
}

impl Api {
    /// An API client for `server` (`http://host:port`).
    pub fn new(server: &str) -> Result<Api, ClientError> {
        let base = Url::parse(server).map_err(|e| ClientError::Url(format!("{server}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Url(format!(
                "{server}: use http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            // Under the server's idle keep-alive timeout (5 s by default), so a pooled
            // connection is not reused just as the server closes it.
            .pool_idle_timeout(IDLE_POOL_TIMEOUT)
            .build()?;
        Ok(Api {
            base,
            http,
            api_key: None,
        })
    }

    /// The same client, creating rooms with this operator API key.
    pub fn with_api_key(mut self, key: Option<String>) -> Api {
        self.api_key = key.filter(|k| !k.is_empty());
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path)
            .map_err(|e| ClientError::Url(format!("{path}: {e}")))
    }

    /// A WebSocket URL for `path` on this server (`ws://` or `wss://`).
    pub fn ws_url(&self, path_and_query: &str) -> Result<Url, ClientError> {
        let mut u = self.url(path_and_query)?;
        let scheme = if u.scheme() == "https" { "wss" } else { "ws" };
        u.set_scheme(scheme)
            .map_err(|()| ClientError::Url("cannot make a WebSocket URL".into()))?;
        Ok(u)
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Value, ClientError> {
        let mut req = self.http.post(self.url(path)?).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await?).await
    }

    /// Creates a room (with the operator key, if this client has one).
    pub async fn create_room(&self, title: &str) -> Result<RoomCreated, ClientError> {
        let v = self
            .post(
                "/api/rooms",
                self.api_key.as_deref(),
                json!({ "title": title }),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Mints a speaker token (needs a host or co-host token).
    pub async fn add_speaker(&self, room: &str, host_token: &str) -> Result<String, ClientError> {
        let v = self
            .post(
                &format!("/api/rooms/{room}/speakers"),
                Some(host_token),
                json!({}),
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Protocol("no token in answer".into()))
    }

    /// Ends a room.
    pub async fn end_room(&self, room: &str, host_token: &str) -> Result<Value, ClientError> {
        self.post(
            &format!("/api/rooms/{room}/end"),
            Some(host_token),
            json!({}),
        )
        .await
    }

    /// Joins a room as a listener, waiting in the queue or solving a proof of work if the
    /// server asks (see [`Api::join_with`]).
    pub async fn join(&self, room: &str) -> Result<JoinTicket, ClientError> {
        self.join_with(room, &crate::join::JoinPolicy::default(), |_| {})
            .await
    }

    /// A POST whose answer the caller reads whatever its status.
    pub(crate) async fn post_raw(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<reqwest::Response, ClientError> {
        Ok(self.http.post(self.url(path)?).json(body).send().await?)
    }

    /// A room's public state.
    pub async fn room(&self, room: &str) -> Result<Value, ClientError> {
        let resp = self
            .http
            .get(self.url(&format!("/api/rooms/{room}"))?)
            .send()
            .await?;
        answer(resp).await
    }
}

async fn answer(resp: reqwest::Response) -> Result<Value, ClientError> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["message"]
            .as_str()
            .unwrap_or("(no message)")
            .to_owned();
        return Err(ClientError::Status {
            status: status.as_u16(),
            message,
        });
    }
    Ok(body)
}
