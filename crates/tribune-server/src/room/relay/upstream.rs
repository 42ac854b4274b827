//! The connection to the node upstream: opening a pull of one room and reading its hello.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tribune_core::registry::NodeRegistry;
use tribune_core::{
    unix_micros, Claims, Keyring, Role, RoomId, RoomInfo, RosterRecord, Seq, TokenKind,
};

use super::Down;
use crate::error::ApiError;

/// Largest relay message accepted (a roster with its block lists).
const MAX_MESSAGE: usize = 4 << 20;

/// Why a pull could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// The upstream has no such room.
    #[error("no such room")]
    NotFound,
    /// The room has ended.
    #[error("the room has ended")]
    Ended,
    /// The upstream did not answer as it should.
    #[error("the node upstream is unavailable: {0}")]
    Unavailable(String),
}

impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        match e {
            PullError::NotFound => ApiError::RoomNotFound,
            PullError::Ended => ApiError::RoomEnded,
            PullError::Unavailable(_) => ApiError::UpstreamUnavailable(e.to_string()),
        }
    }
}

pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The node rooms are pulled from.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `ws://host:port`.
    base: String,
    keys: Keyring,
    timeout: Duration,
}

/// The room as the upstream's hello described it.
#[derive(Debug)]
pub struct Hello {
    /// Its info.
    pub info: RoomInfo,
    /// The sequence number of its next program frame.
    pub head: u64,
    /// Its latest event.
    pub event: String,
    /// Its roster.
    pub roster: RosterRecord,
    /// Its LL-HLS listing's discontinuity sequence where the program sent begins.
    pub discontinuity_sequence: u64,
}

/// An open pull: the connection and its hello.
pub struct Pull {
    pub(super) upstream: Upstream,
    /// Where the pull task asks for the node to connect to again (`None`: `upstream`).
    pub(super) source: Option<Arc<Source>>,
    pub(super) socket: Socket,
    /// What the upstream said first.
    pub hello: Hello,
}

impl Pull {
    /// The same pull, connecting again through `source` after a break.
    pub fn reopened_through(self, source: Arc<Source>) -> Pull {
        Pull {
            source: Some(source),
            ..self
        }
    }
}

/// Where an edge pulls a room from.
pub enum Source {
    /// Every room from one node (`--upstream`: an origin, or an edge above this one).
    Fixed(Upstream),
    /// Each room from the origin the cluster's registry names for it.
    Registry {
        /// The registry.
        registry: Arc<dyn NodeRegistry>,
        /// The cluster's keys (relay tokens).
        keys: Keyring,
        /// How long a pull may take to open.
        timeout: Duration,
    },
}

impl Source {
    /// The node to pull `room` from ([`PullError::NotFound`]: no origin holds it now).
    pub async fn resolve(&self, room: &RoomId) -> Result<Upstream, PullError> {
        let (registry, keys, timeout) = match self {
            Source::Fixed(u) => return Ok(u.clone()),
            Source::Registry {
                registry,
                keys,
                timeout,
            } => (registry.clone(), keys.clone(), *timeout),
        };
        let id = room.clone();
        let asked = tokio::task::spawn_blocking(move || registry.room_origin(&id));
        match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(Ok(Some(url)))) => Upstream::new(&url, keys, timeout)
                .map_err(|e| PullError::Unavailable(format!("the room's origin: {e}"))),
            Ok(Ok(Ok(None))) => Err(PullError::NotFound),
            Ok(Ok(Err(e))) => Err(PullError::Unavailable(format!("registry: {e}"))),
            _ => Err(PullError::Unavailable("registry: no answer".into())),
        }
    }
}

impl std::fmt::Debug for Pull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pull").field("hello", &self.hello).finish()
    }
}

impl Upstream {
    /// The node at `base` (`http://host:port`), trusted through the shared signing `keys`;
    /// each attempt to open a pull takes at most `timeout`.
    pub fn new(base: &str, keys: Keyring, timeout: Duration) -> Result<Upstream, String> {
        let base = base.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base:?}: the upstream must be an http:// URL"))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(format!(
                "{base:?}: the upstream is http://host:port, no path"
            ));
        }
        Ok(Upstream {
            base: format!("ws://{rest}"),
            keys,
            timeout,
        })
    }

    /// A relay token for `room` (a minute long): proves to the node upstream that this one is
    /// part of the cluster.
    pub fn relay_token(&self, room: &RoomId) -> String {
        self.keys.sign(&Claims {
            kid: String::new(),
            kind: TokenKind::Relay,
            room: room.clone(),
            role: Role::Listener,
            sub: 0,
            exp: unix_micros() / 1_000_000 + 60,
        })
    }

    /// The node's HTTP base URL (`http://host:port`).
    pub fn http_base(&self) -> String {
        self.base.replacen("ws://", "http://", 1)
    }

    /// Opens a pull of `room`, from sequence number `from` (its live edge if `None`).
    pub async fn open(&self, room: &RoomId, from: Option<Seq>) -> Result<Pull, PullError> {
        match tokio::time::timeout(self.timeout, self.connect(room, from)).await {
            Ok(r) => r,
            Err(_) => Err(PullError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    async fn connect(&self, room: &RoomId, from: Option<Seq>) -> Result<Pull, PullError> {
        let unavailable = |e: &dyn std::fmt::Display| PullError::Unavailable(e.to_string());
        let mut url = format!("{}/api/rooms/{}/relay", self.base, room);
        if let Some(Seq(n)) = from {
            url.push_str(&format!("?from={n}"));
        }
        let mut request = url.into_client_request().map_err(|e| unavailable(&e))?;
        let token = self.relay_token(room);
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|e| unavailable(&e))?;
        request
            .headers_mut()
            .insert(axum::http::header::AUTHORIZATION, auth);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                .await
                .map_err(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(r) => match r.status().as_u16() {
                        404 => PullError::NotFound,
                        410 => PullError::Ended,
                        s => PullError::Unavailable(format!("answered {s}")),
                    },
                    e => unavailable(&e),
                })?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(t))) => {
                    let Ok(Down::Hello {
                        info,
                        head,
                        event,
                        roster,
                        discontinuity_sequence,
                    }) = serde_json::from_str(&t)
                    else {
                        return Err(PullError::Unavailable("no hello".into()));
                    };
                    if info.id != *room {
                        return Err(PullError::Unavailable("hello for another room".into()));
                    }
                    let hello = Hello {
                        info,
                        head,
                        event,
                        roster,
                        discontinuity_sequence,
                    };
                    return Ok(Pull {
                        upstream: self.clone(),
                        source: None,
                        socket,
                        hello,
                    });
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => {
                    return Err(PullError::Unavailable("closed before its hello".into()))
                }
                Some(Ok(_)) => return Err(PullError::Unavailable("no hello".into())),
                Some(Err(e)) => return Err(unavailable(&e)),
            }
        }
    }
}
