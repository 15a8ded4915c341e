//! The gate every gRPC request passes before its service: it authenticates
//! the caller and checks its role, admits the request or sheds it when the
//! server is at its limit of concurrent requests, and counts it for the
//! metrics. Health and reflection pass freely, so that probes and grpcurl
//! work whatever the load and whoever asks.

use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::api::status;
use crate::transport::auth::{Client, PlantRefusal, Role, Tokens};
use crate::transport::oidc::{Refusal, Verifier};

/// What a method needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Health and reflection: anyone, always.
    Open,
    Read,
    Write,
    /// The audit trail: the admin role, for every plant.
    Admin,
    /// The licence stream: read access, limited by its own count of streams
    /// rather than by request admission (it lasts as long as its client).
    Stream,
}

const WRITES: &[&str] = &[
    "/lodestone.v1.RecordService/UpsertRecords",
    "/lodestone.v1.RecordService/DeleteRecords",
    "/lodestone.v1.RecordService/ImportRecords",
    "/lodestone.v1.RecordService/UpdateLicenseStatus",
];

const ADMINISTRATION: &[&str] = &["/lodestone.v1.RecordService/ListAuditEntries"];

fn access(path: &str) -> Access {
    if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
        Access::Open
    } else if WRITES.contains(&path) {
        Access::Write
    } else if ADMINISTRATION.contains(&path) {
        Access::Admin
    } else if path == "/lodestone.v1.RiskService/StreamLicenseUpdates" {
        Access::Stream
    } else {
        Access::Read
    }
}

/// `/pkg.Service/Method` as (service, method), for metric labels.
fn service_and_method(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

struct Shared {
    tokens: Option<Tokens>,
    oidc: Option<Arc<Verifier>>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
}

/// The gate as a tower layer for tonic's server.
#[derive(Clone)]
pub(crate) struct Gate {
    shared: Arc<Shared>,
}

impl Gate {
    /// `tokens` (a token file) and `oidc` (an identity provider's tokens):
    /// with neither, the server serves without authentication.
    /// `max_concurrent`: requests served at once (streams aside); more are
    /// refused with RESOURCE_EXHAUSTED / OVERLOADED rather than queued.
    pub(crate) fn new(
        tokens: Option<Tokens>,
        oidc: Option<Arc<Verifier>>,
        max_concurrent: usize,
    ) -> Gate {
        let max_concurrent = max_concurrent.max(1);
        Gate {
            shared: Arc::new(Shared {
                tokens,
                oidc,
                permits: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
            }),
        }
    }

    /// Who is calling, or the status that refuses the call. A token that
    /// has a JWT's shape goes to the identity provider's verifier when there
    /// is one; any other to the token file.
    async fn authenticate(
        &self,
        header: Option<String>,
        path: &str,
        access: Access,
    ) -> Result<Option<Client>, Status> {
        let shared = &self.shared;
        if access == Access::Open || (shared.tokens.is_none() && shared.oidc.is_none()) {
            return Ok(None);
        }
        let Some(token) = header.as_deref().and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        }) else {
            return Err(refused(
                "no_token",
                status::unauthenticated(
                    "this server requires a bearer token: send the metadata `authorization: Bearer <token>`",
                ),
            ));
        };
        let token = token.trim();
        let client = match &shared.oidc {
            Some(oidc) if looks_like_jwt(token) => match oidc.verify(token).await {
                Ok(client) => client,
                Err(refusal) => {
                    let label = refusal.label();
                    return Err(refused(label, refusal_status(&refusal, oidc.issuer())));
                }
            },
            _ => match shared.tokens.as_ref().and_then(|t| t.authenticate(token)) {
                Some(client) => client.clone(),
                None => {
                    return Err(refused(
                        "unknown_token",
                        status::unauthenticated("the bearer token is not one this server knows"),
                    ))
                }
            },
        };
        let role_permits = match access {
            Access::Write => client.role.may_write(),
            Access::Admin => client.role == Role::Admin,
            Access::Open | Access::Read | Access::Stream => true,
        };
        if !role_permits {
            let (service, method) = service_and_method(path);
            return Err(refused(
                "role",
                status::permission_denied(
                    &client.name,
                    client.role,
                    &format!("{service}/{method}"),
                ),
            ));
        }
        if access == Access::Admin && client.plants.is_some() {
            return Err(refused(
                "plant",
                status::plant_refused(&client, &PlantRefusal::Everything),
            ));
        }
        if access == Access::Write && client.plants.is_some() {
            let (service, method) = service_and_method(path);
            return Err(refused(
                "plant_scoped_write",
                status::plant_scoped_write(&client.name, &format!("{service}/{method}")),
            ));
        }
        Ok(Some(client))
    }
}

/// Three base64url parts, the first a JSON object's start (`{"` is `eyJ`).
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The status of a refused provider token.
fn refusal_status(refusal: &Refusal, issuer: &str) -> Status {
    let message = refusal.to_string();
    if refusal.is_permission() {
        status::permission_denied_because(&message)
    } else if matches!(refusal, Refusal::ProviderUnavailable(_)) {
        status::identity_provider_unavailable(issuer, &message)
    } else {
        status::unauthenticated(&message)
    }
}

/// Counts a refusal by its reason, and passes it on.
fn refused(reason: &'static str, status: Status) -> Status {
    metrics::counter!("lodestone_auth_refusals_total", "reason" => reason).increment(1);
    status
}

impl<S> Layer<S> for Gate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            gate: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Gated<S> {
    gate: Gate,
    inner: S,
}

impl<S, B> Service<Request<B>> for Gated<S>
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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was made ready serves this call; the fresh clone
        // waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        let path = request.uri().path().to_string();
        let access = access(&path);
        let started = Instant::now();
        let refuse = |status: Status| -> Self::Future {
            record(&path, started, Some(status.code()));
            Box::pin(async move { Ok(status.into_http()) })
        };

        // Shed before any token is checked: an overloaded server does not
        // spend its time on signatures, nor wait on the identity provider.
        let permit = match access {
            Access::Read | Access::Write | Access::Admin => {
                match gate.shared.permits.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        metrics::counter!("lodestone_requests_shed_total").increment(1);
                        return refuse(status::overloaded(gate.shared.max_concurrent));
                    }
                }
            }
            Access::Open | Access::Stream => None,
        };
        let header = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let span = tracing::Span::current();
        Box::pin(async move {
            let client = match gate.authenticate(header, &path, access).await {
                Ok(client) => client,
                Err(status) => {
                    tracing::info!(code = ?status.code(), "refused: {}", status.message());
                    record(&path, started, Some(status.code()));
                    return Ok(status.into_http());
                }
            };
            if let Some(client) = client {
                span.record("client", client.name.as_str());
                request.extensions_mut().insert(client);
            }
            let response = inner.call(request).await;
            drop(permit);
            if let Ok(response) = &response {
                // A handler's error travels in the headers (trailers-only);
                // a success, or a stream that has started, has no status yet.
                let code = Status::from_header_map(response.headers()).map(|s| s.code());
                record(&path, started, code.or(Some(tonic::Code::Ok)));
            }
            response
        })
    }
}

/// Counts a finished (or started, for a stream) request.
fn record(path: &str, started: Instant, code: Option<tonic::Code>) {
    let (service, method) = service_and_method(path);
    let code = format!("{:?}", code.unwrap_or(tonic::Code::Unknown));
    metrics::counter!(
        "lodestone_requests_total",
        "service" => service.to_string(),
        "method" => method.to_string(),
        "code" => code,
    )
    .increment(1);
    metrics::histogram!(
        "lodestone_request_duration_seconds",
        "service" => service.to_string(),
        "method" => method.to_string(),
    )
    .record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_need_the_access_their_kind_needs() {
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(
            access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Access::Open
        );
        assert_eq!(
            access("/lodestone.v1.RecordService/UpdateLicenseStatus"),
            Access::Write
        );
        assert_eq!(
            access("/lodestone.v1.RecordService/ImportRecords"),
            Access::Write
        );
        assert_eq!(
            access("/lodestone.v1.RecordService/ExportRecords"),
            Access::Read
        );
        assert_eq!(
            access("/lodestone.v1.RecordService/ListAuditEntries"),
            Access::Admin
        );
        assert_eq!(
            access("/lodestone.v1.RiskService/GetExposure"),
            Access::Read
        );
        assert_eq!(
            access("/lodestone.v1.RiskService/StreamLicenseUpdates"),
            Access::Stream
        );
        assert_eq!(
            service_and_method("/lodestone.v1.RiskService/GetExposure"),
            ("lodestone.v1.RiskService", "GetExposure")
        );
    }
}
