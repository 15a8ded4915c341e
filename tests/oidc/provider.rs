//! npm's `oidc-provider` run by `provider.mjs` on a free port: the tests'
//! identity provider. It is a real, OpenID Certified provider; the tests
//! get their tokens from its token endpoint, and sign tokens of their own
//! (expired, not yet valid, for another audience...) with its keys, which
//! the script leaves beside it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use crate::common;

/// The audience the provider's access tokens name.
pub const AUDIENCE: &str = "urn:lodestone:api";

/// Where oidc-provider is installed: `$LODESTONE_NODE_MODULES`, or where
/// `.ci/run` puts it.
fn node_modules() -> PathBuf {
    match std::env::var_os("LODESTONE_NODE_MODULES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/.tools/npm/node_modules"),
    }
}

/// A running provider; stopped on drop.
pub struct Provider {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    generation: u32,
    token_seconds: u64,
    http: reqwest::Client,
}

impl Provider {
    /// Starts a provider with `clients` (oidc-provider's client metadata),
    /// or `None` (the test skips) when Node or oidc-provider is missing
    /// outside CI.
    pub async fn start(clients: Value) -> Option<Provider> {
        Provider::start_with(clients, 300).await
    }

    /// `start`, its access tokens good for `token_seconds`.
    pub async fn start_with(clients: Value, token_seconds: u64) -> Option<Provider> {
        common::outside_tool("node", &["--version"], "Node.js")?;
        let package = node_modules().join("oidc-provider/package.json");
        if !package.exists() {
            let what = format!("npm's oidc-provider (in {})", node_modules().display());
            if std::env::var("LODESTONE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
                panic!("{what} is required (LODESTONE_REQUIRE_TOOLS=1)");
            }
            common::skips::skipped(&format!("{what} is missing (.ci/run installs it)"));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clients.json"), clients.to_string()).unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut provider = Provider {
            child: None,
            port: common::free_port(),
            dir,
            generation: 1,
            token_seconds,
            http: reqwest::Client::new(),
        };
        provider.launch().await;
        Some(provider)
    }

    async fn launch(&mut self) {
        let child = Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/oidc/provider.mjs"
            ))
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .arg(self.generation.to_string())
            .env("LODESTONE_NODE_MODULES", node_modules())
            .env("TOKEN_SECONDS", self.token_seconds.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        self.child = Some(child);
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        common::eventually(Duration::from_secs(60), || async {
            let answer = self.http.get(&url).send().await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the provider: it no longer answers.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the provider and starts it again on the same port with new
    /// keys: a key rotation.
    pub async fn rotate(&mut self) {
        self.stop();
        self.generation += 1;
        self.launch().await;
    }

    /// An access token for a client, by the client-credentials grant.
    pub async fn client_token(&self, id: &str, secret: &str) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/token", self.issuer()))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token for {id}: {answer}"))
            .to_string()
    }

    /// How many times the provider's keys have been fetched.
    pub async fn jwks_requests(&self) -> u64 {
        let text = self
            .http
            .get(format!("{}/test/jwks-requests", self.issuer()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.trim().parse().unwrap()
    }

    /// This generation's keys, private, as the script made them.
    fn keys(&self) -> Vec<Value> {
        let path = self
            .dir
            .path()
            .join(format!("keys-{}.json", self.generation));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The `kid` of this generation's key of `kind` ("rsa", "ec", "ed").
    pub fn kid(&self, kind: &str) -> String {
        self.keys()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .find(|kid| kid.starts_with(&format!("{kind}-")))
            .unwrap()
    }

    /// A token signed with this generation's key of `kind`, its kid in the
    /// header, carrying `claims`.
    pub fn sign(&self, kind: &str, claims: &Value) -> String {
        let pem = std::fs::read(
            self.dir
                .path()
                .join(format!("{kind}-{}.pem", self.generation)),
        )
        .unwrap();
        let (alg, key) = match kind {
            "rsa" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
            "ec" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
            "ed" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
            other => panic!("no key {other}"),
        };
        let mut header = Header::new(alg);
        header.kid = Some(self.kid(kind));
        jsonwebtoken::encode(&header, claims, &key.unwrap()).unwrap()
    }

    /// Claims a good token of this provider carries, `exp` in five minutes.
    pub fn claims(&self, subject: &str, roles: &[&str]) -> Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "iss": self.issuer(),
            "aud": AUDIENCE,
            "sub": subject,
            "client_id": subject,
            "iat": now,
            "exp": now + 300,
            "roles": roles,
        })
    }

    /// The public JWK of this generation's key of `kind`.
    pub fn public_jwk(&self, kind: &str) -> Value {
        let kid = self.kid(kind);
        let key = self.keys().into_iter().find(|k| k["kid"] == kid).unwrap();
        let mut public = serde_json::Map::new();
        for field in ["kty", "n", "e", "crv", "x", "y", "kid", "alg", "use"] {
            if let Some(v) = key.get(field) {
                public.insert(field.into(), v.clone());
            }
        }
        Value::Object(public)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}
