//! The client commands' sign-in as an ERP connector: an access token from
//! the identity provider's token endpoint by the OAuth 2.0
//! client-credentials grant (RFC 6749 §4.4), renewed in the background
//! before it expires, so that a long import or stream never presents an
//! expired token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use parking_lot::RwLock;
use serde_json::Value;
use tonic::metadata::{Ascii, MetadataValue};

use crate::transport::oidc::{discover, http_client};

/// A client's credentials at its provider.
#[derive(Clone)]
pub struct ClientCredentials {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Sent as `scope` when given (Entra ID: `api://<app>/.default`).
    pub scope: Option<String>,
    /// Sent as `resource` (RFC 8707) when given.
    pub resource: Option<String>,
}

/// An access token, and how long it is good for.
struct Issued {
    header: MetadataValue<Ascii>,
    lifetime: Duration,
}

/// The current `authorization` header, kept fresh by a background task.
pub type SharedHeader = Arc<RwLock<Option<MetadataValue<Ascii>>>>;

impl ClientCredentials {
    /// Obtains a first token (failing if the provider refuses) and starts
    /// renewing it: at four fifths of each token's lifetime, retrying with
    /// backoff while the old one is still good.
    pub async fn sign_in(self) -> anyhow::Result<SharedHeader> {
        let http = http_client()?;
        let document = discover(&http, &self.issuer).await?;
        let endpoint = document
            .get("token_endpoint")
            .and_then(Value::as_str)
            .context("the provider's discovery document names no token_endpoint")?
            .to_string();
        let first = self.request(&http, &endpoint).await?;
        let header: SharedHeader = Arc::new(RwLock::new(Some(first.header)));
        let shared = header.clone();
        tokio::spawn(async move {
            let mut lifetime = first.lifetime;
            loop {
                let mut wait = lifetime.mul_f64(0.8).max(Duration::from_secs(1));
                let expires = tokio::time::Instant::now() + lifetime;
                loop {
                    tokio::time::sleep(wait).await;
                    match self.request(&http, &endpoint).await {
                        Ok(issued) => {
                            *shared.write() = Some(issued.header);
                            lifetime = issued.lifetime;
                            break;
                        }
                        Err(e) => {
                            let left =
                                expires.saturating_duration_since(tokio::time::Instant::now());
                            tracing::warn!(
                                "cannot renew the access token ({e:#}); {} s left on it",
                                left.as_secs()
                            );
                            wait = (left / 4).max(Duration::from_secs(1));
                        }
                    }
                }
            }
        });
        Ok(header)
    }

    async fn request(&self, http: &reqwest::Client, endpoint: &str) -> anyhow::Result<Issued> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        let response = http
            .post(endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&form)
            .send()
            .await
            .with_context(|| format!("no answer from the token endpoint {endpoint}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("the token endpoint {endpoint} did not answer JSON"))?;
        if !status.is_success() {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("");
            let description = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            bail!(
                "the provider refused client {:?} ({status}): {error} {description}",
                self.client_id
            );
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .context("the token endpoint's answer has no access_token")?;
        // Without expires_in, assume the shortest common lifetime.
        let seconds = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        Ok(Issued {
            header: format!("Bearer {token}")
                .parse()
                .context("the access token is not valid header text")?,
            lifetime: Duration::from_secs(seconds.max(1)),
        })
    }
}
