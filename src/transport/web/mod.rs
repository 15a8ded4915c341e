//! Everything on the serving port that is not gRPC: the web view, the
//! contract as JSON over HTTP/1.1 or HTTP/2, the OpenAPI description of it,
//! and Prometheus metrics. gRPC and gRPC-Web requests pass through to the
//! services.
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

use futures_util::future::BoxFuture;
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

/// The layer in front of the gRPC services.
#[derive(Clone)]
pub struct Front {
    shared: Arc<Shared>,
}

/// The web view, when it is on.
pub struct WebView {
    /// The day the page asks about when its address names none (the
    /// demonstration network's date); today when `None`.
    pub opens_on: Option<String>,
    /// Where people sign in, when they do at the identity provider.
    pub sign_in: Option<crate::transport::oidc::WebSignIn>,
}

/// `text` safe inside an HTML attribute's double quotes.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The page's meta tags for signing in at the provider.
fn sign_in_meta(sign_in: &crate::transport::oidc::WebSignIn) -> String {
    let mut tags = vec![
        ("lodestone-oidc-issuer", sign_in.issuer.as_str()),
        ("lodestone-oidc-client-id", sign_in.client_id.as_str()),
        ("lodestone-oidc-scope", sign_in.scope.as_str()),
    ];
    if let Some(resource) = &sign_in.resource {
        tags.push(("lodestone-oidc-resource", resource));
    }
    tags.iter()
        .map(|(name, value)| {
            format!(
                "<meta name=\"{name}\" content=\"{}\">\n  ",
                attribute(value)
            )
        })
        .collect()
}

/// The page's policy: nothing but this server's own files and calls, and
/// the identity provider's endpoints when people sign in there.
fn content_security_policy(provider: Option<&str>) -> header::HeaderValue {
    let connect = match provider {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".into(),
    };
    header::HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect}; \
         img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ))
    .expect("origins are header text")
}

struct Shared {
    /// The page, with the day it opens on, when the web view is on.
    index: Option<Bytes>,
    /// The page's Content-Security-Policy.
    policy: header::HeaderValue,
    transcoder: Transcoder,
    metrics: Option<Metrics>,
    openapi: Bytes,
}

impl Front {
    /// `max_message` bounds a JSON request's body as it bounds a gRPC
    /// message; `metrics`, when given, is served at `GET /metrics`; the web
    /// view at `/` when `web_view` is given.
    pub fn new(max_message: usize, metrics: Option<Metrics>, web_view: Option<WebView>) -> Front {
        let provider = web_view
            .as_ref()
            .and_then(|view| view.sign_in.as_ref())
            .and_then(|s| s.origin());
        let index = web_view.map(|view| {
            let opens_on = view
                .opens_on
                .filter(|day| crate::domain::date::parse_date(day).is_some())
                .map(|day| format!("<meta name=\"lodestone-opens-on\" content=\"{day}\">\n  "))
                .unwrap_or_default();
            let sign_in = view.sign_in.as_ref().map(sign_in_meta).unwrap_or_default();
            Bytes::from(INDEX.replacen("<title>", &format!("{opens_on}{sign_in}<title>"), 1))
        });
        Front {
            shared: Arc::new(Shared {
                index,
                policy: content_security_policy(provider.as_deref()),
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

/// The web view's files, built into the binary: it loads nothing else,
/// and calls only this server.
const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// One file of the web view; `index` is the page.
fn page(path: &str, index: &Bytes, policy: &header::HeaderValue) -> Response<Body> {
    let (content_type, body) = match path {
        "/web/app.js" => (
            "text/javascript; charset=utf-8",
            Bytes::from_static(SCRIPT.as_bytes()),
        ),
        "/web/style.css" => (
            "text/css; charset=utf-8",
            Bytes::from_static(STYLE.as_bytes()),
        ),
        _ => ("text/html; charset=utf-8", index.clone()),
    };
    let mut answer = plain(StatusCode::OK, content_type, body);
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    answer
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
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

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
            "/" | "/web/app.js" | "/web/style.css" if get && shared.index.is_some() => {
                let answer = page(
                    path,
                    shared.index.as_ref().expect("checked"),
                    &shared.policy,
                );
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
