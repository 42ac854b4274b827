//! Request bodies must arrive within a deadline. The accept loop bounds the time to send a
//! request's head; this bounds the body: a client that sends complete headers and then
//! trickles (or stalls) its body is answered `408` when the deadline passes and its connection
//! closes, instead of holding a connection and a task for as long as it likes.
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Sleep;

use crate::metrics::Metrics;

pub use crate::error::BodyTimedOut;

/// A body that fails once `limit` has passed since the request arrived, however its bytes
/// trickle in.
struct DeadlineBody {
    inner: Body,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: gives every request body `limit` to arrive (late ones are counted).
pub async fn limit_body_time(
    State((limit, metrics)): State<(Duration, Arc<Metrics>)>,
    req: Request,
    next: Next,
) -> Response {
    let req = req.map(|inner| {
        if inner.is_end_stream() {
            return inner;
        }
        Body::new(DeadlineBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        })
    });
    let resp = next.run(req).await;
    if resp.status() == StatusCode::REQUEST_TIMEOUT {
        metrics.body_timeouts.inc();
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::is_body_timeout;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn a_body_that_stalls_fails_at_the_deadline_and_a_prompt_one_passes() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let stalled = Body::from_stream(tokio_stream_of(rx));
        tx.send(Ok(Bytes::from_static(b"{\"ti"))).await.unwrap();
        let body = Body::new(DeadlineBody {
            inner: stalled,
            limit: Duration::from_millis(50),
            deadline: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
        });
        let e = to_bytes(body, 1024).await.unwrap_err();
        assert!(is_body_timeout(&e), "{e}");
        drop(tx);

        let prompt = Body::new(DeadlineBody {
            inner: Body::from("{\"title\":\"x\"}"),
            limit: Duration::from_millis(50),
            deadline: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
        });
        assert_eq!(to_bytes(prompt, 1024).await.unwrap(), "{\"title\":\"x\"}");
    }

    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
