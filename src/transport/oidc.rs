//! Bearer tokens signed by the company's identity provider (OpenID
//! Connect): the provider's metadata from its discovery document, its keys
//! (JWKS) fetched and kept, fetched again when a token names a key not yet
//! seen, and every token checked for its signature, issuer, audience and
//! validity period before its claims say who calls and what it may do.
//!
//! Signatures are checked by `jsonwebtoken` (its RustCrypto backend, pure
//! Rust like the rest of the stack). Before it is asked, the token's header
//! is read here, so that `alg: none`, an HMAC algorithm, or an algorithm
//! the operator did not allow is refused by name, and a key is only ever
//! used with an algorithm of its own family (an RSA public key is never an
//! HMAC secret).
//!
//! Fetching is bounded: one fetch at a time, and at most one per
//! `min_refetch` (a flood of tokens with invented `kid`s costs the provider
//! one request per interval, not one per token). A provider that does not
//! answer leaves the keys already fetched in use.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use parking_lot::RwLock;
use serde_json::Value;

use crate::transport::auth::{Client, Role};

/// The algorithms accepted unless the operator says otherwise.
pub const DEFAULT_ALGORITHMS: &str = "RS256,ES256,EdDSA";

/// How the provider's tokens are read: `lodestone serve`'s OIDC flags.
#[derive(Clone, Debug, clap::Args)]
pub struct OidcArgs {
    /// Accept bearer tokens (JWTs) signed by this OpenID provider: its
    /// issuer URL, as its tokens' `iss` claim names it. Its metadata is read
    /// from `<issuer>/.well-known/openid-configuration`.
    #[arg(long, env = "LODESTONE_OIDC_ISSUER", requires = "oidc_audience")]
    pub oidc_issuer: Option<String>,

    /// The audience (`aud`) the provider's tokens must name for this
    /// service.
    #[arg(long, env = "LODESTONE_OIDC_AUDIENCE", requires = "oidc_issuer")]
    pub oidc_audience: Option<String>,

    /// The claim whose values give a token its role: `roles`, `groups`,
    /// `scope` (space-separated), or any other of the provider's.
    #[arg(long, env = "LODESTONE_OIDC_ROLES_CLAIM", default_value = "roles")]
    pub oidc_roles_claim: String,

    /// Values of the roles claim that make a reader (comma-separated).
    #[arg(
        long,
        env = "LODESTONE_OIDC_READER_VALUES",
        value_delimiter = ',',
        default_value = "lodestone.reader"
    )]
    pub oidc_reader_values: Vec<String>,

    /// Values of the roles claim that make a writer (comma-separated).
    #[arg(
        long,
        env = "LODESTONE_OIDC_WRITER_VALUES",
        value_delimiter = ',',
        default_value = "lodestone.writer"
    )]
    pub oidc_writer_values: Vec<String>,

    /// Values of the roles claim that make an admin (comma-separated).
    #[arg(
        long,
        env = "LODESTONE_OIDC_ADMIN_VALUES",
        value_delimiter = ',',
        default_value = "lodestone.admin"
    )]
    pub oidc_admin_values: Vec<String>,

    /// A claim that names plants: a token that carries it is answered about
    /// those plants only, and may not write.
    #[arg(long, env = "LODESTONE_OIDC_PLANTS_CLAIM")]
    pub oidc_plants_claim: Option<String>,

    /// The signature algorithms accepted (comma-separated). HMAC
    /// algorithms and `none` are never accepted.
    #[arg(
        long,
        env = "LODESTONE_OIDC_ALGORITHMS",
        value_delimiter = ',',
        default_value = DEFAULT_ALGORITHMS
    )]
    pub oidc_algorithms: Vec<String>,

    /// Seconds of clock difference allowed around `exp` and `nbf`.
    #[arg(long, env = "LODESTONE_OIDC_CLOCK_SKEW_SECONDS", default_value_t = 30)]
    pub oidc_clock_skew_seconds: u64,

    /// The fewest seconds between two fetches of the provider's keys.
    #[arg(
        long,
        env = "LODESTONE_OIDC_JWKS_MIN_REFETCH_SECONDS",
        default_value_t = 30
    )]
    pub oidc_jwks_min_refetch_seconds: u64,

    /// Seconds after which the provider's keys are fetched again, in the
    /// background, when a token is checked.
    #[arg(
        long,
        env = "LODESTONE_OIDC_JWKS_REFRESH_SECONDS",
        default_value_t = 600
    )]
    pub oidc_jwks_refresh_seconds: u64,

    /// The web view's client id at the provider (a public client): with it,
    /// people sign in to the web view there (authorization code with PKCE).
    #[arg(long, env = "LODESTONE_OIDC_WEB_CLIENT_ID", requires = "oidc_issuer")]
    pub oidc_web_client_id: Option<String>,

    /// The scopes the web view asks for (space-separated).
    #[arg(long, env = "LODESTONE_OIDC_WEB_SCOPE", default_value = "openid")]
    pub oidc_web_scope: String,

    /// The resource indicator (RFC 8707) the web view asks for, where the
    /// provider needs one to issue tokens for this service's audience.
    #[arg(long, env = "LODESTONE_OIDC_WEB_RESOURCE")]
    pub oidc_web_resource: Option<String>,
}

impl Default for OidcArgs {
    /// No provider; every other flag at its default.
    fn default() -> Self {
        let values = |v: &str| vec![v.to_string()];
        OidcArgs {
            oidc_issuer: None,
            oidc_audience: None,
            oidc_roles_claim: "roles".into(),
            oidc_reader_values: values("lodestone.reader"),
            oidc_writer_values: values("lodestone.writer"),
            oidc_admin_values: values("lodestone.admin"),
            oidc_plants_claim: None,
            oidc_algorithms: DEFAULT_ALGORITHMS.split(',').map(String::from).collect(),
            oidc_clock_skew_seconds: 30,
            oidc_jwks_min_refetch_seconds: 30,
            oidc_jwks_refresh_seconds: 600,
            oidc_web_client_id: None,
            oidc_web_scope: "openid".into(),
            oidc_web_resource: None,
        }
    }
}

impl OidcArgs {
    pub fn is_set(&self) -> bool {
        self.oidc_issuer.is_some()
    }

    /// What the web view needs to sign people in, when it should.
    pub fn web_sign_in(&self) -> Option<WebSignIn> {
        Some(WebSignIn {
            issuer: self.oidc_issuer.clone()?,
            client_id: self.oidc_web_client_id.clone()?,
            scope: self.oidc_web_scope.clone(),
            resource: self.oidc_web_resource.clone(),
        })
    }
}

/// The web view's sign-in at the provider, as the page is told it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSignIn {
    pub issuer: String,
    pub client_id: String,
    pub scope: String,
    pub resource: Option<String>,
}

impl WebSignIn {
    /// The issuer's origin (scheme, host, port), which the page's
    /// Content-Security-Policy lets it call.
    pub fn origin(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.issuer).ok()?;
        Some(url.origin().ascii_serialization())
    }
}

/// Why a token was refused. The message says which check failed and never
/// repeats the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the bearer token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm {alg:?} is not accepted (this server accepts {accepted})")]
    Algorithm { alg: String, accepted: String },
    #[error("the token's header names no key (kid)")]
    NoKeyId,
    #[error("the token's key {0:?} is not among the identity provider's keys")]
    UnknownKey(String),
    #[error("the token's key {kid:?} is a {family} key and cannot check {alg}")]
    KeyMismatch {
        kid: String,
        family: String,
        alg: String,
    },
    #[error("the identity provider's keys could not be fetched: {0}")]
    ProviderUnavailable(String),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired (exp)")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was issued by another issuer (iss)")]
    Issuer,
    #[error("the token is for another audience (aud)")]
    Audience,
    #[error("the token lacks the claim {0:?}")]
    MissingClaim(String),
    #[error("the token's claim {0:?} has the wrong type")]
    ClaimType(String),
    #[error("the token gives no role of this service in its claim {claim:?}")]
    NoRole { claim: String },
}

impl Refusal {
    /// The reason as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::Algorithm { .. } => "algorithm",
            Refusal::NoKeyId => "no_kid",
            Refusal::UnknownKey(_) => "unknown_kid",
            Refusal::KeyMismatch { .. } => "key_mismatch",
            Refusal::ProviderUnavailable(_) => "provider_unavailable",
            Refusal::Signature => "signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Issuer => "issuer",
            Refusal::Audience => "audience",
            Refusal::MissingClaim(_) => "missing_claim",
            Refusal::ClaimType(_) => "claim_type",
            Refusal::NoRole { .. } => "no_role",
        }
    }

    /// Whether the caller is known but may not call (PERMISSION_DENIED)
    /// rather than not known (UNAUTHENTICATED).
    pub fn is_permission(&self) -> bool {
        matches!(self, Refusal::NoRole { .. })
    }
}

/// A value a token chose, bounded and printable, for a refusal's message.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

/// What the operator configured, checked.
#[derive(Clone, Debug)]
struct Settings {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    accepted: String,
    leeway: u64,
    roles_claim: String,
    readers: Vec<String>,
    writers: Vec<String>,
    admins: Vec<String>,
    plants_claim: Option<String>,
    min_refetch: Duration,
    refresh_after: Duration,
}

/// Whether an issuer's address may be plain HTTP: only on this machine.
fn loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl Settings {
    fn from_args(args: &OidcArgs) -> anyhow::Result<Settings> {
        let Some(issuer) = args.oidc_issuer.clone() else {
            bail!("--oidc-issuer is not set");
        };
        let url = reqwest::Url::parse(&issuer)
            .with_context(|| format!("--oidc-issuer {issuer:?} is not a URL"))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback(&url)) {
            bail!("--oidc-issuer {issuer:?} must be https (plain http only on loopback)");
        }
        let audience = args.oidc_audience.clone().unwrap_or_default();
        if audience.is_empty() {
            bail!("--oidc-audience is required with --oidc-issuer");
        }
        let mut algorithms = Vec::new();
        for name in args.oidc_algorithms.iter().map(|a| a.trim()) {
            let alg = Algorithm::from_str(name).map_err(|_| {
                anyhow::anyhow!("--oidc-algorithms: {name:?} is not a JWS algorithm")
            })?;
            if alg.family() == AlgorithmFamily::Hmac {
                bail!(
                    "--oidc-algorithms: {name} is an HMAC algorithm, keyed by a shared secret; \
                     a provider's tokens are checked with its public keys"
                );
            }
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            bail!("--oidc-algorithms names no algorithm");
        }
        let values = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        };
        Ok(Settings {
            issuer,
            audience,
            accepted: algorithms
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            algorithms,
            leeway: args.oidc_clock_skew_seconds,
            roles_claim: args.oidc_roles_claim.clone(),
            readers: values(&args.oidc_reader_values),
            writers: values(&args.oidc_writer_values),
            admins: values(&args.oidc_admin_values),
            plants_claim: args.oidc_plants_claim.clone().filter(|c| !c.is_empty()),
            min_refetch: Duration::from_secs(args.oidc_jwks_min_refetch_seconds),
            refresh_after: Duration::from_secs(args.oidc_jwks_refresh_seconds.max(1)),
        })
    }
}

/// A key of the provider's set.
struct Key {
    decoding: DecodingKey,
    family: AlgorithmFamily,
    /// The algorithm the provider published it for, if it said.
    alg: Option<Algorithm>,
}

/// The provider's keys as last fetched.
struct KeySet {
    keys: HashMap<String, Key>,
    fetched: Instant,
}

/// What the single fetcher remembers.
#[derive(Default)]
struct Fetcher {
    jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
}

/// Checks the provider's tokens. Cheap to share: clone the `Arc`.
pub struct Verifier {
    settings: Settings,
    http: reqwest::Client,
    keys: RwLock<Option<Arc<KeySet>>>,
    fetcher: tokio::sync::Mutex<Fetcher>,
    /// A background refresh is under way: tokens checked meanwhile start
    /// no other.
    refreshing: AtomicBool,
}

/// The HTTP client for the provider: the process's TLS provider (ring),
/// the system's trusted roots, bounded waits.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    // Ours is ring, as for every TLS connection this program makes; a
    // provider installed first (by a host program) stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("lodestone/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client for the identity provider")
}

/// The provider's discovery document, read and checked: it must name the
/// issuer it was fetched for.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> anyhow::Result<Value> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let document: Value = get_json(http, &url).await?;
    let named = document.get("issuer").and_then(Value::as_str);
    if named != Some(issuer) {
        bail!("the discovery document at {url} names the issuer {named:?}, not {issuer:?}");
    }
    Ok(document)
}

async fn get_json(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    let body = response
        .bytes()
        .await
        .with_context(|| format!("cannot read the answer of {url}"))?;
    serde_json::from_slice(&body).with_context(|| format!("{url} did not answer JSON"))
}

/// The keys of a JWKS document that can check signatures, by `kid`.
fn parse_keys(document: Value) -> anyhow::Result<HashMap<String, Key>> {
    let set: JwkSet = serde_json::from_value(document).context("not a JWK set")?;
    let mut keys = HashMap::new();
    for jwk in set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        // Keys of types this build cannot use are skipped, not fatal.
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let family = decoding.family();
        if family == AlgorithmFamily::Hmac {
            continue;
        }
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok());
        keys.insert(
            kid,
            Key {
                decoding,
                family,
                alg,
            },
        );
    }
    Ok(keys)
}

/// A token's header, read before any key is looked for.
struct Header {
    alg: String,
    kid: Option<String>,
}

fn read_header(token: &str) -> Result<Header, Refusal> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed(
            "it is not three dot-separated parts".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Refusal::Malformed("its header is not base64url".into()))?;
    let header: Value = serde_json::from_slice(&bytes)
        .map_err(|_| Refusal::Malformed("its header is not JSON".into()))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::Malformed("its header names no algorithm".into()))?;
    Ok(Header {
        alg: shown(alg),
        kid: header.get("kid").and_then(Value::as_str).map(shown),
    })
}

/// The strings of a claim: an array of strings, or one string of
/// space-separated values (as `scope` is).
fn strings(claims: &Value, claim: &str) -> Result<Option<Vec<String>>, Refusal> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.split_whitespace().map(String::from).collect())),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| Refusal::ClaimType(claim.to_string())),
        Some(_) => Err(Refusal::ClaimType(claim.to_string())),
    }
}

impl Verifier {
    /// A verifier for the configured provider. Nothing is fetched yet: see
    /// [`Verifier::prefetch`].
    pub fn new(args: &OidcArgs) -> anyhow::Result<Arc<Verifier>> {
        Ok(Arc::new(Verifier {
            settings: Settings::from_args(args)?,
            http: http_client()?,
            keys: RwLock::new(None),
            fetcher: tokio::sync::Mutex::new(Fetcher::default()),
            refreshing: AtomicBool::new(false),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Fetches the provider's metadata and keys once, so that the first
    /// token need not wait; a provider that does not answer yet is retried
    /// when a token needs it.
    pub async fn prefetch(&self) {
        match self.fetch(None).await {
            Ok(count) => tracing::info!(
                issuer = %self.settings.issuer,
                keys = count,
                "identity provider's keys fetched"
            ),
            Err(e) => tracing::warn!(
                issuer = %self.settings.issuer,
                "the identity provider's keys cannot be fetched yet ({e}); tokens will wait for them"
            ),
        }
    }

    /// Fetches the keys again unless the last attempt was less than
    /// `min_refetch` ago, or `kid` (when given) has arrived meanwhile.
    /// Returns how many keys there are.
    async fn fetch(&self, kid: Option<&str>) -> Result<usize, Refusal> {
        let mut fetcher = self.fetcher.lock().await;
        if let Some(set) = self.keys.read().clone() {
            if kid.is_some_and(|k| set.keys.contains_key(k)) {
                return Ok(set.keys.len());
            }
        }
        if let Some(last) = fetcher.last_attempt {
            if last.elapsed() < self.settings.min_refetch {
                let count = self.keys.read().as_ref().map_or(0, |s| s.keys.len());
                return match kid {
                    Some(kid) if count > 0 => Err(Refusal::UnknownKey(kid.to_string())),
                    _ if count > 0 => Ok(count),
                    _ => Err(Refusal::ProviderUnavailable(
                        "the last attempt failed; the next is due shortly".into(),
                    )),
                };
            }
        }
        fetcher.last_attempt = Some(Instant::now());
        let fetched = self.fetch_now(&mut fetcher).await;
        metrics::counter!(
            "lodestone_oidc_jwks_fetches_total",
            "outcome" => if fetched.is_ok() { "ok" } else { "failed" },
        )
        .increment(1);
        match fetched {
            Ok(keys) => {
                let count = keys.len();
                *self.keys.write() = Some(Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                }));
                Ok(count)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.settings.issuer, "cannot fetch the identity provider's keys: {e:#}");
                Err(Refusal::ProviderUnavailable(format!("{e:#}")))
            }
        }
    }

    async fn fetch_now(&self, fetcher: &mut Fetcher) -> anyhow::Result<HashMap<String, Key>> {
        let uri = match &fetcher.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let document = discover(&self.http, &self.settings.issuer).await?;
                let uri = document
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .context("the discovery document names no jwks_uri")?
                    .to_string();
                fetcher.jwks_uri = Some(uri.clone());
                uri
            }
        };
        parse_keys(get_json(&self.http, &uri).await?)
    }

    /// The key `kid` names, fetching the set again if it is not known.
    async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<KeySet>, Refusal> {
        let cached = self.keys.read().clone();
        if let Some(set) = cached {
            if set.keys.contains_key(kid) {
                let stale = set.fetched.elapsed() > self.settings.refresh_after;
                if stale && !self.refreshing.swap(true, Ordering::AcqRel) {
                    // Old keys still check tokens while new ones are fetched.
                    let verifier = self.clone();
                    tokio::spawn(async move {
                        let _ = verifier.fetch(None).await;
                        verifier.refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok(set);
            }
        }
        self.fetch(Some(kid)).await?;
        let set = self.keys.read().clone();
        match set {
            Some(set) if set.keys.contains_key(kid) => Ok(set),
            _ => Err(Refusal::UnknownKey(kid.to_string())),
        }
    }

    /// The caller a token names, or why it is refused.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<Client, Refusal> {
        let settings = &self.settings;
        let header = read_header(token)?;
        let refused_alg = || Refusal::Algorithm {
            alg: header.alg.clone(),
            accepted: settings.accepted.clone(),
        };
        let alg = Algorithm::from_str(&header.alg).map_err(|_| refused_alg())?;
        if !settings.algorithms.contains(&alg) {
            return Err(refused_alg());
        }
        let kid = header.kid.clone().ok_or(Refusal::NoKeyId)?;
        let set = self.key(&kid).await?;
        let key = &set.keys[&kid];
        if key.family != alg.family() || key.alg.is_some_and(|a| a != alg) {
            return Err(Refusal::KeyMismatch {
                kid,
                family: match key.alg {
                    Some(a) => format!("{a:?}"),
                    None => format!("{:?}", key.family),
                },
                alg: header.alg,
            });
        }
        let mut validation = Validation::new(alg);
        validation.leeway = settings.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
            .map_err(|e| refusal_of(e.into_kind()))?
            .claims;
        self.client(&claims)
    }

    /// Who the verified `claims` name and what they may do.
    fn client(&self, claims: &Value) -> Result<Client, Refusal> {
        let settings = &self.settings;
        let text = |claim: &str| claims.get(claim).and_then(Value::as_str).map(String::from);
        let subject = text("sub").ok_or_else(|| Refusal::MissingClaim("sub".into()))?;
        let client_id = text("client_id").or_else(|| text("azp"));
        let values = strings(claims, &settings.roles_claim)?.unwrap_or_default();
        let has = |granting: &[String]| values.iter().any(|v| granting.contains(v));
        let role = if has(&settings.admins) {
            Role::Admin
        } else if has(&settings.writers) {
            Role::Writer
        } else if has(&settings.readers) {
            Role::Reader
        } else {
            return Err(Refusal::NoRole {
                claim: settings.roles_claim.clone(),
            });
        };
        let plants = match &settings.plants_claim {
            Some(claim) => strings(claims, claim)?,
            None => None,
        };
        Ok(Client {
            name: subject.clone(),
            role,
            subject: Some(subject),
            client_id,
            plants,
        })
    }
}

/// What a failed `jsonwebtoken::decode` means for the caller.
fn refusal_of(kind: jsonwebtoken::errors::ErrorKind) -> Refusal {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => Refusal::Signature,
        K::ExpiredSignature => Refusal::Expired,
        K::ImmatureSignature => Refusal::NotYetValid,
        K::InvalidIssuer => Refusal::Issuer,
        K::InvalidAudience => Refusal::Audience,
        K::MissingRequiredClaim(claim) => Refusal::MissingClaim(claim),
        K::InvalidClaimFormat(claim) => Refusal::ClaimType(claim),
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
            Refusal::Malformed("its algorithm does not fit its key".into())
        }
        K::Base64(_) | K::Json(_) | K::Utf8(_) | K::InvalidToken => {
            Refusal::Malformed("its parts do not decode".into())
        }
        other => Refusal::Malformed(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> OidcArgs {
        OidcArgs {
            oidc_issuer: Some("https://login.example.com/tenant".into()),
            oidc_audience: Some("api://lodestone".into()),
            ..OidcArgs::default()
        }
    }

    #[test]
    fn hmac_algorithms_none_and_plain_http_elsewhere_are_refused_at_start() {
        assert!(Settings::from_args(&args()).is_ok());
        for algs in [&["HS256"][..], &["RS256", "HS512"], &["none"], &[]] {
            let mut a = args();
            a.oidc_algorithms = algs.iter().map(|s| s.to_string()).collect();
            assert!(Settings::from_args(&a).is_err(), "{algs:?}");
        }
        let mut a = args();
        a.oidc_issuer = Some("http://login.example.com".into());
        let error = Settings::from_args(&a).unwrap_err().to_string();
        assert!(error.contains("must be https"), "{error}");
        a.oidc_issuer = Some("http://127.0.0.1:8080".into());
        assert!(Settings::from_args(&a).is_ok());
        a.oidc_audience = Some(String::new());
        assert!(Settings::from_args(&a).is_err());
    }

    #[test]
    fn a_header_is_read_before_any_key_and_refusals_say_what_failed() {
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let none = format!("{}.{}.", encode(r#"{"alg":"none"}"#), encode("{}"));
        let header = read_header(&none).unwrap();
        assert_eq!((header.alg.as_str(), header.kid), ("none", None));
        assert!(matches!(read_header("a.b"), Err(Refusal::Malformed(_))));
        assert!(matches!(read_header("!.b.c"), Err(Refusal::Malformed(_))));
        assert!(matches!(
            read_header(&format!("{}.b.c", encode("[1]"))),
            Err(Refusal::Malformed(_))
        ));
        let long = format!(
            "{}.b.c",
            encode(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(500)))
        );
        assert_eq!(read_header(&long).unwrap().kid.unwrap().len(), 64);
    }

    #[test]
    fn roles_come_from_the_configured_claim_and_the_highest_wins() {
        let verifier = Verifier {
            settings: Settings::from_args(&args()).unwrap(),
            http: http_client().unwrap(),
            keys: RwLock::new(None),
            fetcher: tokio::sync::Mutex::new(Fetcher::default()),
            refreshing: AtomicBool::new(false),
        };
        let client = |claims: Value| verifier.client(&claims);
        let c = client(serde_json::json!({
            "sub": "erp", "client_id": "erp-sap",
            "roles": ["other", "lodestone.reader", "lodestone.writer"],
        }))
        .unwrap();
        assert_eq!(
            (c.name.as_str(), c.role, c.client_id.as_deref()),
            ("erp", Role::Writer, Some("erp-sap"))
        );
        let admin = client(serde_json::json!({"sub": "a", "roles": "lodestone.admin"})).unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert_eq!(
            client(serde_json::json!({"sub": "n", "roles": ["x"]})),
            Err(Refusal::NoRole {
                claim: "roles".into()
            })
        );
        assert_eq!(
            client(serde_json::json!({"sub": "n", "roles": [1]})),
            Err(Refusal::ClaimType("roles".into()))
        );
        assert_eq!(
            client(serde_json::json!({"roles": ["lodestone.reader"]})),
            Err(Refusal::MissingClaim("sub".into()))
        );
    }
}
