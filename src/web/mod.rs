//! Everything on the serving port that is not gRPC: the contract as JSON
//! over HTTP/1.1 or HTTP/2, the OpenAPI description of it, and Prometheus
//! metrics. gRPC and gRPC-Web requests pass through to the services.
//!
//! A JSON call is turned into the gRPC call it stands for and sent down
//! the same stack (authentication, limits, read-your-writes, handlers), so
//! the two can never answer differently. The scheme is Envoy's
//! `grpc_json_transcoder` with automatic mapping: `POST
//! /lodestone.v1.RiskService/GetExposure` with the request message as
//! canonical JSON; errors are a JSON `google.rpc.Status` (AIP-193) under
//! the HTTP status of its code.

mod openapi;
mod transcode;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use tonic::body::Body;
use tower::{Layer, Service};

pub use openapi::{openapi, openapi_text};
pub use transcode::{http_status, Transcoder};

use crate::telemetry::prometheus::Metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The layer in front of the gRPC services.
#[derive(Clone)]
pub struct Front {
    shared: Arc<Shared>,
}

struct Shared {
    transcoder: Transcoder,
    metrics: Option<Metrics>,
    openapi: Bytes,
}

impl Front {
    /// `max_message` bounds a JSON request's body as it bounds a gRPC
    /// message; `metrics`, when given, is served at `GET /metrics`.
    pub fn new(max_message: usize, metrics: Option<Metrics>) -> Front {
        Front {
            shared: Arc::new(Shared {
                transcoder: Transcoder::new(max_message),
                metrics,
                openapi: Bytes::from(openapi_text()),
            }),
        }
    }
}

impl<S> Layer<S> for Front {
    type Service = Fronted<S>;

    fn layer(&self, inner: S) -> Fronted<S> {
        Fronted {
            shared: self.shared.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Fronted<S> {
    shared: Arc<Shared>,
    inner: S,
}

/// Whether a request is gRPC or gRPC-Web, which the services answer.
fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A small answer of the front itself.
pub(crate) fn plain(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

impl<S, ResBody> Service<Request<Body>> for Fronted<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if is_grpc(&request) {
            return Box::pin(async move { Ok(inner.call(request).await?.map(Body::new)) });
        }
        let shared = self.shared.clone();
        let path = request.uri().path();
        let get = request.method() == Method::GET || request.method() == Method::HEAD;
        match path {
            "/metrics" if get => {
                let answer = match &shared.metrics {
                    Some(metrics) => plain(
                        StatusCode::OK,
                        "text/plain; version=0.0.4; charset=utf-8",
                        Bytes::from(metrics.render()),
                    ),
                    None => transcode::refusal(tonic::Status::not_found(
                        "metrics are off on this server",
                    )),
                };
                Box::pin(async move { Ok(answer) })
            }
            "/openapi.json" if get => {
                let answer = plain(StatusCode::OK, "application/json", shared.openapi.clone());
                Box::pin(async move { Ok(answer) })
            }
            _ => Box::pin(async move { shared.transcoder.call(inner, request).await }),
        }
    }
}
