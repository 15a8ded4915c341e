//! Read-your-writes across replicas. Each replica answers from its own
//! view, which follows the database a little behind the replica that
//! wrote. A client that wrote through one replica and reads through another
//! sends the revision its write returned as the request metadata
//! `x-lodestone-min-revision`; this layer holds the call until the replica
//! has applied that revision, bounded by the call's deadline (three
//! quarters of its `grpc-timeout`, at most [`MAX_WAIT`]), and otherwise
//! refuses it with `UNAVAILABLE` / `REVISION_NOT_APPLIED`, so that the
//! client retries or asks another replica. A replica acknowledges its own writes only once
//! it has applied them, so a client reading where it wrote needs nothing.

use futures_util::future::BoxFuture;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

use crate::api::status;

/// The request metadata naming the revision a call must see.
pub(crate) const MIN_REVISION: &str = "x-lodestone-min-revision";

/// The longest a call waits for its revision when it sets no deadline.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// The layer, over the revision this replica has applied.
#[derive(Clone)]
pub(crate) struct Consistency {
    applied: watch::Receiver<u64>,
}

impl Consistency {
    pub(crate) fn new(applied: watch::Receiver<u64>) -> Consistency {
        Consistency { applied }
    }
}

impl<S> Layer<S> for Consistency {
    type Service = Consistent<S>;

    fn layer(&self, inner: S) -> Consistent<S> {
        Consistent {
            applied: self.applied.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Consistent<S> {
    applied: watch::Receiver<u64>,
    inner: S,
}

/// The call's deadline, from its `grpc-timeout` header (`<digits><unit>`).
fn deadline(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S, B> Service<Request<B>> for Consistent<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(value) = request.headers().get(MIN_REVISION) else {
            return Box::pin(inner.call(request));
        };
        let text = value.to_str().unwrap_or_default().trim().to_string();
        let Ok(wanted) = text.parse::<u64>() else {
            let refused = status::bad_min_revision(&text);
            return Box::pin(async move { Ok(refused.into_http()) });
        };
        // Three quarters of the deadline, so that the refusal reaches the
        // client before it gives up, and says why.
        let wait = deadline(request.headers())
            .map_or(MAX_WAIT, |d| d * 3 / 4)
            .min(MAX_WAIT);
        let mut applied = self.applied.clone();
        Box::pin(async move {
            let reached = tokio::time::timeout(wait, applied.wait_for(|&r| r >= wanted))
                .await
                .is_ok_and(|seen| seen.is_ok());
            if reached {
                inner.call(request).await
            } else {
                let now = *applied.borrow();
                Ok(status::revision_not_applied(wanted, now).into_http())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            deadline(&h)
        };
        assert_eq!(with("2S"), Some(Duration::from_secs(2)));
        assert_eq!(with("250m"), Some(Duration::from_millis(250)));
        assert_eq!(with("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(with("5u"), Some(Duration::from_micros(5)));
        assert_eq!(with("x"), None);
        assert_eq!(with("10"), None);
    }
}
