//! Sign-in from the company's identity provider, against a real one (npm's
//! oidc-provider, see `oidc/provider.rs`): its tokens give roles from their
//! claims beside the token file's; every wrong or forged token is refused
//! with the check it failed; a flood of unknown keys costs the provider one
//! fetch; a key rotation is taken without a restart, and a provider that
//! does not answer leaves the keys already fetched in use.

mod common;
#[path = "oidc/provider.rs"]
mod provider;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{expect_error, spawn_app_with, with_token, TestApp};
use lodestone::pb;
use lodestone::transport::auth::{new_token, Role};
use lodestone_test_macros::both_stores;
use provider::{Provider, AUDIENCE};
use serde_json::{json, Value};
use tonic::{Code, Status};

/// The provider's clients: one per role, and one with a role of another
/// service only.
fn clients() -> Value {
    let client = |id: &str, roles: &[&str]| {
        json!({
            "client_id": id,
            "client_secret": secret(id),
            "grant_types": ["client_credentials"],
            "redirect_uris": [],
            "response_types": [],
            "roles": roles,
        })
    };
    // A writer by role, limited by its plants (and so only reading).
    let limited = |id: &str, plants: &[&str]| {
        let mut c = client(id, &["lodestone.writer"]);
        c["plants"] = json!(plants);
        c
    };
    json!([
        client("erp-reader", &["lodestone.reader"]),
        client("erp-writer", &["other.app", "lodestone.writer"]),
        client("ops-admin", &["lodestone.admin"]),
        client("stranger", &["other.app"]),
        limited("zwickau-planner", &["ZWICKAU"]),
        limited("two-plants", &["ZWICKAU", "WOLFSBURG"]),
    ])
}

fn secret(id: &str) -> String {
    format!("{id}-secret-0123456789abcdef")
}

/// An access token of client `id`, from the provider's token endpoint.
async fn token(provider: &Provider, id: &str) -> String {
    provider.client_token(id, &secret(id)).await
}

async fn serve(
    provider: &Provider,
    configure: impl FnOnce(&mut lodestone::startup::ServeConfig),
) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let issuer = provider.issuer();
    spawn_app_with(dir, |c| {
        c.oidc.oidc_issuer = Some(issuer);
        c.oidc.oidc_audience = Some(AUDIENCE.into());
        configure(c);
    })
    .await
}

/// Loads the seed network with a writer's token.
async fn seed(app: &TestApp, provider: &Provider) {
    let writer = token(provider, "erp-writer").await;
    app.records
        .clone()
        .upsert_records(with_token(common::seed_network(), &writer))
        .await
        .unwrap();
}

async fn get_licence(app: &TestApp, token: &str) -> Result<pb::License, Status> {
    app.records
        .clone()
        .get_license(with_token(
            pb::GetLicenseRequest {
                id: "LIC-BTM-DY-1".into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn reject_licence(app: &TestApp, token: &str) -> Result<pb::License, Status> {
    app.records
        .clone()
        .update_license_status(with_token(
            pb::UpdateLicenseStatusRequest {
                id: "LIC-BTM-DY-1".into(),
                status: pb::LicenseStatus::Rejected as i32,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

#[both_stores]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_carry_their_roles_beside_the_token_file() {
    let Some(provider) = Provider::start(clients()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file_writer, line) = new_token("nightly-batch", Role::Writer).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).unwrap();
    let app = serve(&provider, |c| c.auth_tokens = Some(tokens)).await;
    let (reader, writer, admin, stranger) = (
        token(&provider, "erp-reader").await,
        token(&provider, "erp-writer").await,
        token(&provider, "ops-admin").await,
        token(&provider, "stranger").await,
    );

    // The token file's writer loads the network, as before.
    app.records
        .clone()
        .upsert_records(with_token(common::seed_network(), &file_writer))
        .await
        .unwrap();

    // A provider reader reads, may not write, and nothing is stored.
    let before = get_licence(&app, &reader).await.unwrap();
    let status = reject_licence(&app, &reader).await.unwrap_err();
    expect_error(&status, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(
        status.message().contains("erp-reader"),
        "{}",
        status.message()
    );
    assert_eq!(get_licence(&app, &reader).await.unwrap(), before);

    // A provider writer writes; the licence log names its subject.
    let mut stream = app
        .risk
        .clone()
        .stream_license_updates(with_token(
            pb::StreamLicenseUpdatesRequest {
                from_now: true,
                ..Default::default()
            },
            &reader,
        ))
        .await
        .unwrap()
        .into_inner();
    let written = reject_licence(&app, &writer).await.unwrap();
    assert_eq!(written.status, pb::LicenseStatus::Rejected as i32);
    let update = common::next_update(&mut stream).await;
    assert_eq!(update.client, "erp-writer");

    // An admin may write too.
    app.records
        .clone()
        .update_license_status(with_token(
            pb::UpdateLicenseStatusRequest {
                id: "LIC-BTM-DY-1".into(),
                status: pb::LicenseStatus::Approved as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(common::next_update(&mut stream).await.client, "ops-admin");

    // A genuine token that gives no role of this service: PERMISSION_DENIED.
    let status = get_licence(&app, &stranger).await.unwrap_err();
    expect_error(&status, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(status.message().contains("no role"), "{}", status.message());

    // JSON over HTTP takes the same tokens.
    let http = reqwest::Client::new();
    let call = |token: &str| {
        http.post(format!(
            "http://{}/lodestone.v1.RecordService/GetLicense",
            app.address
        ))
        .bearer_auth(token)
        .json(&json!({"id": "LIC-BTM-DY-1"}))
        .send()
    };
    assert_eq!(call(&reader).await.unwrap().status(), 200);
    assert_eq!(call(&stranger).await.unwrap().status(), 403);
    assert_eq!(call("eyJ.x.y").await.unwrap().status(), 401);

    // The audit trail names the three identities that wrote, a provider
    // token's by its subject and client; only the admin may read it.
    let trail = |token: &str| {
        let mut records = app.records.clone();
        let request = with_token(pb::ListAuditEntriesRequest::default(), token);
        async move { records.list_audit_entries(request).await }
    };
    for token in [&reader, &writer] {
        let status = trail(token).await.unwrap_err();
        expect_error(&status, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    let entries = trail(&admin).await.unwrap().into_inner().entries;
    let authors: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            let author = e.author.as_ref().unwrap();
            (
                author.name.as_str(),
                author.subject.as_str(),
                author.client_id.as_str(),
                e.request.as_str(),
            )
        })
        .collect();
    assert_eq!(
        authors,
        [
            ("nightly-batch", "", "", "UpsertRecords"),
            (
                "erp-writer",
                "erp-writer",
                "erp-writer",
                "UpdateLicenseStatus"
            ),
            ("ops-admin", "ops-admin", "ops-admin", "UpdateLicenseStatus"),
        ]
    );
    app.stop().await;
}

/// A token `claims` in its payload and `header` as its header, signed
/// with nothing.
fn unsigned(header: &Value, claims: &Value) -> String {
    let encode = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", encode(header), encode(claims))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_forged_tokens_are_refused_with_the_check_they_failed() {
    let Some(provider) = Provider::start(clients()).await else {
        return;
    };
    let app = serve(&provider, |_| {}).await;
    seed(&app, &provider).await;
    let now = chrono::Utc::now().timestamp();
    let reader = |claims: &mut Value| claims["roles"] = json!(["lodestone.reader"]);
    let claims_with = |change: &dyn Fn(&mut Value)| {
        let mut claims = provider.claims("forger", &["lodestone.reader"]);
        change(&mut claims);
        claims
    };
    let good = token(&provider, "erp-reader").await;

    // Tokens the provider's keys sign, good but for their own reasons.
    let accepted = [
        ("ES256", provider.sign("ec", &claims_with(&reader))),
        ("EdDSA", provider.sign("ed", &claims_with(&reader))),
        (
            "expired 10 s ago, within the clock skew",
            provider.sign("rsa", &claims_with(&|c| c["exp"] = json!(now - 10))),
        ),
    ];
    for (what, token) in &accepted {
        get_licence(&app, token)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    }

    let mut tampered: Vec<String> = good.split('.').map(String::from).collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&tampered[1])
            .unwrap(),
    )
    .unwrap();
    payload["roles"] = json!(["lodestone.admin"]);
    tampered[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
    let tampered = tampered.join(".");

    // HS256 keyed with the provider's public key, as if the server would
    // take its public key for a shared secret.
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(provider.kid("rsa"));
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims_with(&reader),
        &jsonwebtoken::EncodingKey::from_secret(provider.public_jwk("rsa").to_string().as_bytes())
            .unwrap(),
    )
    .unwrap();
    // ES256 signed by the EC key, but naming the RSA key.
    let mut mixed = provider.sign("ec", &claims_with(&reader));
    let header = json!({"alg": "ES256", "kid": provider.kid("rsa")});
    let rest = mixed.split_once('.').unwrap().1.to_string();
    mixed = format!(
        "{}.{rest}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string())
    );

    let refused: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            provider.sign("rsa", &claims_with(&|c| c["exp"] = json!(now - 600))),
            "has expired",
        ),
        (
            "not yet valid",
            provider.sign("rsa", &claims_with(&|c| c["nbf"] = json!(now + 600))),
            "not valid yet",
        ),
        (
            "another issuer",
            provider.sign(
                "rsa",
                &claims_with(&|c| c["iss"] = json!("https://evil.example")),
            ),
            "another issuer",
        ),
        (
            "another audience",
            provider.sign("rsa", &claims_with(&|c| c["aud"] = json!("urn:other:api"))),
            "another audience",
        ),
        (
            "no exp",
            provider.sign(
                "rsa",
                &claims_with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "lacks the claim \"exp\"",
        ),
        (
            "alg none",
            unsigned(
                &json!({"alg": "none", "kid": provider.kid("rsa")}),
                &claims_with(&reader),
            ),
            "algorithm \"none\" is not accepted",
        ),
        (
            "HS256 keyed with the public key",
            hs256,
            "algorithm \"HS256\" is not accepted",
        ),
        ("a tampered payload", tampered, "signature does not verify"),
        ("a key of another family", mixed, "cannot check ES256"),
        (
            "no kid",
            unsigned(&json!({"alg": "RS256"}), &claims_with(&reader)) + "c2ln",
            "names no key",
        ),
        (
            "an unknown kid",
            unsigned(
                &json!({"alg": "RS256", "kid": "nobody"}),
                &claims_with(&reader),
            ) + "c2ln",
            "\"nobody\" is not among",
        ),
    ];
    for (what, token, reason) in &refused {
        let status = get_licence(&app, token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert!(
            status.message().contains(reason),
            "{what}: {:?} should say {reason:?}",
            status.message()
        );
        assert!(
            !status.message().contains(token.as_str()),
            "{what}: the token is repeated"
        );
    }

    // Each refusal is counted by its reason.
    let metrics = reqwest::get(format!("http://{}/metrics", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "algorithm",
        "signature",
        "unknown_kid",
    ] {
        assert!(
            metrics.contains(&format!(
                "lodestone_auth_refusals_total{{reason=\"{reason}\"}}"
            )),
            "{reason} counted in {metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_keys_costs_the_provider_one_fetch() {
    let Some(provider) = Provider::start(clients()).await else {
        return;
    };
    let app = serve(&provider, |c| c.oidc.oidc_jwks_min_refetch_seconds = 600).await;
    let before = provider.jwks_requests().await;
    assert!(before >= 1, "the keys are fetched when the server starts");
    let claims = provider.claims("forger", &["lodestone.admin"]);
    let calls = (0..200).map(|i| {
        let token = unsigned(
            &json!({"alg": "RS256", "kid": format!("forged-{i}")}),
            &claims,
        ) + "c2ln";
        let app = &app;
        async move { get_licence(app, &token).await.unwrap_err() }
    });
    for status in futures_util::future::join_all(calls).await {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status.message().contains("is not among"),
            "{}",
            status.message()
        );
    }
    let fetched = provider.jwks_requests().await - before;
    assert!(
        fetched <= 1,
        "200 unknown kids fetched the keys {fetched} times"
    );
    // Good tokens still pass.
    let good = token(&provider, "erp-reader").await;
    let status = get_licence(&app, &good).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::NotFound,
        "authenticated; no such licence yet"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_a_restart_and_cached_keys_outlive_an_outage() {
    let Some(mut provider) = Provider::start(clients()).await else {
        return;
    };
    let app = serve(&provider, |c| c.oidc.oidc_jwks_min_refetch_seconds = 1).await;
    seed(&app, &provider).await;
    let old = token(&provider, "erp-reader").await;
    get_licence(&app, &old).await.unwrap();

    // The provider goes away: tokens whose key is cached still pass.
    provider.stop();
    get_licence(&app, &old).await.unwrap();

    // It comes back with new keys: its new tokens pass, with no restart of
    // the server; the old key, gone from its set, no longer does.
    provider.rotate().await;
    let new = token(&provider, "erp-reader").await;
    assert_ne!(
        new.split('.').next(),
        old.split('.').next(),
        "a new kid in the header"
    );
    common::eventually(Duration::from_secs(60), || async {
        get_licence(&app, &new).await.ok()
    })
    .await;
    let status = get_licence(&app, &old).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("is not among"),
        "{}",
        status.message()
    );
    app.stop().await;
}

async fn lodestone(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_lodestone"))
            .args(args)
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erp_connector_signs_in_by_itself_to_import() {
    let Some(provider) = Provider::start(clients()).await else {
        return;
    };
    let app = serve(&provider, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("network.jsonl");
    let generated = lodestone(vec![
        "generate".into(),
        "--suppliers".into(),
        "20".into(),
        "--components".into(),
        "60".into(),
        "--lines".into(),
        "4".into(),
        "--licenses".into(),
        "30".into(),
        "--output".into(),
        file.display().to_string(),
    ])
    .await;
    assert!(generated.status.success(), "{generated:?}");
    let import = |id: &str, secret: String| {
        lodestone(vec![
            "import".into(),
            file.display().to_string(),
            "--server".into(),
            format!("http://{}", app.address),
            "--oidc-issuer".into(),
            provider.issuer(),
            "--client-id".into(),
            id.into(),
            "--client-secret".into(),
            secret,
        ])
    };
    let refused = import("erp-writer", "wrong".into()).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused client \"erp-writer\""), "{stderr}");
    let reader = import("erp-reader", secret("erp-reader")).await;
    assert!(!reader.status.success());
    let stderr = String::from_utf8_lossy(&reader.stderr);
    assert!(stderr.contains("is a reader and may not call"), "{stderr}");
    let reader = token(&provider, "erp-reader").await;
    let licences = || async {
        app.records
            .clone()
            .list_licenses(with_token(
                pb::ListLicensesRequest {
                    page_size: 1000,
                    ..Default::default()
                },
                &reader,
            ))
            .await
            .unwrap()
            .into_inner()
            .licenses
            .len()
    };
    assert_eq!(licences().await, 0, "nothing stored");

    let imported = import("erp-writer", secret("erp-writer")).await;
    assert!(imported.status.success(), "{imported:?}");
    assert_eq!(licences().await, 30, "every licence of the file");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_client_renews_its_token_before_it_expires() {
    let Some(provider) = Provider::start_with(clients(), 3).await else {
        return;
    };
    let app = serve(&provider, |c| c.oidc.oidc_clock_skew_seconds = 0).await;
    seed(&app, &provider).await;
    let header = lodestone::tools::credentials::ClientCredentials {
        issuer: provider.issuer(),
        client_id: "erp-reader".into(),
        client_secret: secret("erp-reader"),
        scope: None,
        resource: None,
    }
    .sign_in()
    .await
    .unwrap();
    let current = || {
        let value = header.read().clone().unwrap();
        value
            .to_str()
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_string()
    };
    let first = current();
    get_licence(&app, &first).await.unwrap();
    // Ten seconds: three lifetimes of a token. Each call uses the header
    // of that moment and must pass.
    let mut seen = vec![first.clone()];
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = current();
        get_licence(&app, &now)
            .await
            .unwrap_or_else(|e| panic!("the current token is refused: {e:?}"));
        if !seen.contains(&now) {
            seen.push(now);
        }
    }
    assert!(seen.len() >= 3, "renewed {} times in 10 s", seen.len() - 1);
    let status = get_licence(&app, &first).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "the first has expired"
    );
    app.stop().await;
}

/// The status of a call, OK or its error's code and reason.
fn outcome<T>(result: Result<T, Status>) -> (Code, String) {
    match result {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (status.code(), common::error_reason(&status)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plant_limited_token_is_answered_about_its_plants_only() {
    use pb::get_exposure_request::Scope;
    let Some(provider) = Provider::start(clients()).await else {
        return;
    };
    let app = serve(&provider, |c| {
        c.oidc.oidc_plants_claim = Some("plants".into())
    })
    .await;
    seed(&app, &provider).await;
    let zwickau = token(&provider, "zwickau-planner").await;
    let two = token(&provider, "two-plants").await;
    let mut risk = app.risk.clone();
    let mut records = app.records.clone();
    let denied = (Code::PermissionDenied, "PLANT_NOT_PERMITTED".to_string());
    let ok = (Code::Ok, String::new());

    // Listings: the caller's plant when it names none; another is refused.
    let at_risk = |plant: &str| pb::ListAtRiskLinesRequest {
        plant: plant.into(),
        scenario: Some(pb::Scenario {
            idled_lines: vec!["ZW-EV1".into(), "WOB-ICE1".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let lines = risk
        .list_at_risk_lines(with_token(at_risk(""), &zwickau))
        .await
        .unwrap()
        .into_inner()
        .lines;
    let plants: Vec<&str> = lines.iter().map(|l| l.plant.as_str()).collect();
    assert_eq!(plants, ["ZWICKAU"], "the idled Wolfsburg line is not shown");
    let status = risk
        .list_at_risk_lines(with_token(at_risk("WOLFSBURG"), &zwickau))
        .await
        .unwrap_err();
    assert_eq!(outcome::<()>(Err(status.clone())), denied);
    assert!(
        status.message().contains("\"WOLFSBURG\""),
        "{}",
        status.message()
    );
    for plant in ["", "WOLFSBURG"] {
        let expected = if plant.is_empty() { &ok } else { &denied };
        let impacts = pb::ListSupplierImpactsRequest {
            plant: plant.into(),
            ..Default::default()
        };
        let got = outcome(
            risk.list_supplier_impacts(with_token(impacts, &zwickau))
                .await,
        );
        assert_eq!(&got, expected, "ListSupplierImpacts {plant:?}");
        let stakes = pb::ListLicenseStakesRequest {
            plant: plant.into(),
            ..Default::default()
        };
        let got = outcome(risk.list_license_stakes(with_token(stakes, &zwickau)).await);
        assert_eq!(&got, expected, "ListLicenseStakes {plant:?}");
        let forecasts = pb::ListLineForecastsRequest {
            plant: plant.into(),
            samples: 20,
            ..Default::default()
        };
        let got = outcome(
            risk.list_line_forecasts(with_token(forecasts, &zwickau))
                .await,
        );
        assert_eq!(&got, expected, "ListLineForecasts {plant:?}");
        let watch = pb::WatchAtRiskLinesRequest {
            plant: plant.into(),
            ..Default::default()
        };
        let got = outcome(risk.watch_at_risk_lines(with_token(watch, &zwickau)).await);
        assert_eq!(&got, expected, "WatchAtRiskLines {plant:?}");
        let list = pb::ListProductionLinesRequest {
            plant: plant.into(),
            ..Default::default()
        };
        let got = records
            .list_production_lines(with_token(list, &zwickau))
            .await;
        if plant.is_empty() {
            let ids: Vec<String> = got
                .unwrap()
                .into_inner()
                .lines
                .into_iter()
                .map(|l| l.id)
                .collect();
            assert_eq!(ids, ["ZW-EV1"]);
        } else {
            assert_eq!(&outcome(got), expected, "ListProductionLines {plant:?}");
        }
    }

    // An exposure whose scope reaches a line of another plant is refused,
    // whatever the scope names.
    for (scope, expected) in [
        (Some(Scope::LineId("ZW-EV1".into())), &ok),
        (Some(Scope::Plant("ZWICKAU".into())), &ok),
        (Some(Scope::LineId("WOB-ICE1".into())), &denied),
        (Some(Scope::Plant("WOLFSBURG".into())), &denied),
        (Some(Scope::ComponentId("CAT-CONV".into())), &denied),
        (Some(Scope::ComponentId("TRACTION-MOTOR".into())), &denied),
        (None, &denied),
    ] {
        let request = pb::GetExposureRequest {
            scope: scope.clone(),
            ..Default::default()
        };
        let got = outcome(risk.get_exposure(with_token(request, &zwickau)).await);
        assert_eq!(&got, expected, "GetExposure {scope:?}");
    }
    let line = |id: &str| pb::GetProductionLineRequest { id: id.into() };
    assert_eq!(
        outcome(
            records
                .get_production_line(with_token(line("ZW-EV1"), &zwickau))
                .await
        ),
        ok
    );
    assert_eq!(
        outcome(
            records
                .get_production_line(with_token(line("WOB-ICE1"), &zwickau))
                .await
        ),
        denied
    );
    assert_eq!(
        outcome(
            records
                .export_records(with_token(pb::ExportRecordsRequest {}, &zwickau))
                .await
        ),
        denied
    );

    // Limited to plants, a writer's role only reads.
    let status = reject_licence(&app, &zwickau).await.unwrap_err();
    expect_error(&status, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(
        status.message().contains("limited to some plants"),
        "{}",
        status.message()
    );

    // With several plants, a listing must name one.
    let got = outcome(risk.list_at_risk_lines(with_token(at_risk(""), &two)).await);
    assert_eq!(got, denied);
    let got = outcome(
        risk.list_at_risk_lines(with_token(at_risk("WOLFSBURG"), &two))
            .await,
    );
    assert_eq!(got, ok);

    // JSON over HTTP keeps the same rules.
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{}/lodestone.v1.RiskService/ListAtRiskLines",
            app.address
        ))
        .bearer_auth(&zwickau)
        .json(&json!({"plant": "WOLFSBURG"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_to_the_web_view_and_sees_their_plant() {
    let browser_tools = [
        (
            "python3",
            &["-c", "import selenium, requests"][..],
            "python3 with selenium and requests",
        ),
        ("/usr/bin/chromium", &["--version"][..], "Debian's chromium"),
        (
            "/usr/bin/chromedriver",
            &["--version"][..],
            "Debian's chromium-driver",
        ),
    ];
    for (tool, probe, what) in browser_tools {
        if common::outside_tool(tool, probe, what).is_none() {
            return;
        }
    }
    let port = common::free_port();
    let mut with_web = clients();
    with_web.as_array_mut().unwrap().push(json!({
        "client_id": "lodestone-web",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [format!("http://127.0.0.1:{port}/")],
        "scope": "openid lodestone",
    }));
    let Some(provider) = Provider::start(with_web).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let issuer = provider.issuer();
    let server = common::ServerProcess::start(
        dir.path(),
        port,
        &[
            "--demo",
            "--oidc-issuer",
            &issuer,
            "--oidc-audience",
            AUDIENCE,
            "--oidc-plants-claim",
            "plants",
            "--oidc-web-client-id",
            "lodestone-web",
            "--oidc-web-scope",
            "openid lodestone",
            "--oidc-web-resource",
            AUDIENCE,
        ],
    );
    server.connect().await;
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/network.json"))
            .unwrap(),
    )
    .unwrap();
    let emden: Vec<&str> = demo["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["line"]["plant"] == "EMDEN")
        .map(|r| r["line"]["id"].as_str().unwrap())
        .collect();
    assert!(!emden.is_empty());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web/signin.py");
    common::python_passes(
        vec![
            script.into(),
            format!("http://127.0.0.1:{port}"),
            "reader@EMDEN".into(),
            "EMDEN".into(),
            json!(emden).to_string(),
        ],
        "all sign-in checks passed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_connector_signs_in_by_itself_and_renews_its_token() {
    if common::outside_tool(
        "python3",
        &["-c", "import grpc, grpc_tools, requests"],
        "python3 with grpcio, grpcio-tools and requests",
    )
    .is_none()
    {
        return;
    }
    let Some(provider) = Provider::start_with(clients(), 3).await else {
        return;
    };
    let app = serve(&provider, |c| c.oidc.oidc_clock_skew_seconds = 0).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/signin_client.py"
    );
    common::python_passes(
        vec![
            script.into(),
            app.address.to_string(),
            provider.issuer(),
            "erp-reader".into(),
            secret("erp-reader"),
            "8".into(),
        ],
        "all sign-in client checks passed",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_provider_drops_stops_passing_once_the_keys_are_refreshed() {
    let Some(mut provider) = Provider::start(clients()).await else {
        return;
    };
    let app = serve(&provider, |c| {
        c.oidc.oidc_jwks_min_refetch_seconds = 1;
        c.oidc.oidc_jwks_refresh_seconds = 1;
    })
    .await;
    seed(&app, &provider).await;
    let old = token(&provider, "erp-reader").await;
    get_licence(&app, &old).await.unwrap();
    // The provider drops that key (new keys, same port). No token names an
    // unknown kid, so only the background refresh can learn of it.
    provider.rotate().await;
    let before = provider.jwks_requests().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = (0..20).map(|_| get_licence(&app, &old));
    let answers = futures_util::future::join_all(calls).await;
    assert!(
        answers.iter().any(Result::is_ok),
        "the kept key serves while the refresh runs"
    );
    common::eventually(Duration::from_secs(60), || async {
        let status = get_licence(&app, &old).await.err()?;
        (status.code() == Code::Unauthenticated).then_some(())
    })
    .await;
    let fetched = provider.jwks_requests().await - before;
    assert!(
        (1..=3).contains(&fetched),
        "one refresh at a time: {fetched} fetches"
    );
    app.stop().await;
}
