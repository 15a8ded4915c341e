//! Running it in production: authentication and roles, TLS and mutual TLS,
//! and limits with load shedding. (The Prometheus endpoint has its own test
//! binary, tests/metrics.rs: the recorder is global to a process.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{expect_error, metadata, next_update, spawn_app_with, with_token};
use lodestone::pb::{self, record_service_client::RecordServiceClient};
use lodestone::startup::{Application, ServeConfig};
use lodestone::transport::auth::{new_token, Role};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

/// A request carrying `token` as its bearer token.
fn get_licence(id: &str) -> pb::GetLicenseRequest {
    pb::GetLicenseRequest { id: id.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authenticate_clients_and_roles_limit_them() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (writer, writer_line) = new_token("erp-sap", Role::Writer).unwrap();
    let (reader, reader_line) = new_token("planning-ui", Role::Reader).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# clients\n{writer_line}\n{reader_line}\n"),
    )
    .unwrap();
    let app = spawn_app_with(dir.clone(), |c| c.auth_tokens = Some(tokens.clone())).await;
    let mut records = app.records.clone();

    // No token, or an unknown one: UNAUTHENTICATED, with ErrorInfo.
    let status = records.get_license(get_licence("L1")).await.unwrap_err();
    expect_error(&status, Code::Unauthenticated, "UNAUTHENTICATED");
    let status = records
        .get_license(with_token(get_licence("L1"), "not-a-token"))
        .await
        .unwrap_err();
    expect_error(&status, Code::Unauthenticated, "UNAUTHENTICATED");

    // Health and reflection stay open.
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    // A writer writes; the licence log names it.
    let mut stream = app
        .risk
        .clone()
        .stream_license_updates(with_token(
            pb::StreamLicenseUpdatesRequest::default(),
            &reader,
        ))
        .await
        .unwrap()
        .into_inner();
    let seed = common::seed_network();
    records
        .upsert_records(with_token(seed, &writer))
        .await
        .unwrap();
    let update = next_update(&mut stream).await;
    assert_eq!(update.client, "erp-sap");

    // A reader reads, and may not write: PERMISSION_DENIED, nothing stored.
    let licence = records
        .get_license(with_token(get_licence("LIC-BTM-DY-1"), &reader))
        .await
        .unwrap()
        .into_inner();
    let status = records
        .update_license_status(with_token(
            pb::UpdateLicenseStatusRequest {
                id: "LIC-BTM-DY-1".into(),
                status: pb::LicenseStatus::Rejected as i32,
                ..Default::default()
            },
            &reader,
        ))
        .await
        .unwrap_err();
    expect_error(&status, Code::PermissionDenied, "PERMISSION_DENIED");
    let meta = metadata(&status);
    assert_eq!(meta["client"], "planning-ui");
    assert_eq!(meta["role"], "reader");
    let after = records
        .get_license(with_token(get_licence("LIC-BTM-DY-1"), &writer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, licence, "a refused write changes nothing");

    // Both risk questions are reads.
    app.risk
        .clone()
        .list_at_risk_lines(with_token(
            pb::ListAtRiskLinesRequest {
                as_of: "2025-06-02".into(),
                ..Default::default()
            },
            &reader,
        ))
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_server_keeps_to_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let open = ServeConfig::new("0.0.0.0:0".parse().unwrap(), dir.path().join("data"));
    let error = Application::build(open.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("--allow-unauthenticated"),
        "{error:#}"
    );
    let mut allowed = open;
    allowed.allow_unauthenticated = true;
    assert!(Application::build(allowed).await.is_ok());

    let mut wrong = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data2"));
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "someone admin 00\n").unwrap();
    wrong.auth_tokens = Some(tokens);
    let error = Application::build(wrong).await.err().expect("refused");
    assert!(format!("{error:#}").contains("line 1"), "{error:#}");
}

/// A CA, a server certificate it signed for 127.0.0.1 and localhost, a
/// client certificate it signed, and a client certificate nobody signed.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let signed = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let stranger_key = KeyPair::generate().unwrap();
    let stranger = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .self_signed(&stranger_key)
        .unwrap();
    Pki {
        ca: ca.pem(),
        server: signed(vec!["localhost".into(), "127.0.0.1".into()]),
        client: signed(vec!["client".into()]),
        stranger: (stranger.pem(), stranger_key.serialize_pem()),
    }
}

async fn tls_channel(
    port: u16,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
}

async fn healthy(channel: Channel) -> bool {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_the_ca_signed() {
    let pki = pki();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (cert, key, ca) = (
        file("server.pem", &pki.server.0),
        file("server.key", &pki.server.1),
        file("ca.pem", &pki.ca),
    );
    let app = spawn_app_with(dir.clone(), |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_client_ca = Some(ca);
    })
    .await;
    let port = app.address.port();

    let trusted = tls_channel(port, &pki.ca, Some(&pki.client)).await.unwrap();
    assert!(healthy(trusted.clone()).await);
    RecordServiceClient::new(trusted)
        .list_licenses(pb::ListLicensesRequest::default())
        .await
        .unwrap();

    // No certificate, one nobody trusts, or no TLS at all: refused.
    for identity in [None, Some(&pki.stranger)] {
        let refused = match tls_channel(port, &pki.ca, identity).await {
            Ok(channel) => !healthy(channel).await,
            Err(_) => true,
        };
        assert!(refused, "a client with {identity:?} was served");
    }
    assert!(
        !healthy(app.channel.clone()).await,
        "plain HTTP/2 was served"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_limits_the_server_sheds_load_and_recovers() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_app_with(dir, |c| {
        c.max_concurrent_requests = 2;
        c.max_streams = 2;
        c.max_message_mb = 1;
    })
    .await;
    app.load_seed().await;
    let mut records = app.records.clone();

    // Two imports that never finish hold both request slots. A probe can
    // reach the server before a holder does and take its slot; that holder
    // is shed, and is started again until both hold.
    let holder_client = records.clone();
    let hold = || {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportRecordsRequest>(1);
        let mut client = holder_client.clone();
        let call = tokio::spawn(async move {
            client
                .import_records(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        (tx, call)
    };
    let mut holders = vec![hold(), hold()];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let shed = loop {
        for holder in holders.iter_mut() {
            if holder.1.is_finished() {
                let (_, call) = std::mem::replace(holder, hold());
                let status = call.await.unwrap().unwrap_err();
                expect_error(&status, Code::ResourceExhausted, "OVERLOADED");
            }
        }
        match records.get_license(get_licence("LIC-BTM-DY-1")).await {
            Err(status) if status.code() == Code::ResourceExhausted => break status,
            Err(status) => panic!("unexpected refusal: {status:?}"),
            Ok(_) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not shed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    expect_error(&shed, Code::ResourceExhausted, "OVERLOADED");
    assert_eq!(metadata(&shed)["limit"], "2");
    // Health is never shed.
    assert!(HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new()
        })
        .await
        .is_ok());
    // The imports end (empty); the server serves again.
    for (tx, call) in holders {
        drop(tx);
        call.await.unwrap().unwrap();
    }
    records
        .get_license(get_licence("LIC-BTM-DY-1"))
        .await
        .unwrap();

    // Streams have their own limit.
    let request = pb::StreamLicenseUpdatesRequest {
        from_now: true,
        heartbeat_seconds: 1,
        ..Default::default()
    };
    let first = app.subscribe(request.clone()).await.unwrap();
    let _second = app.subscribe(request.clone()).await.unwrap();
    let status = app.subscribe(request.clone()).await.unwrap_err();
    expect_error(&status, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    drop(first);
    // Its slot comes back once the server notices the client has gone.
    common::eventually(Duration::from_secs(60), || {
        let (app, request) = (&app, request.clone());
        async move { app.subscribe(request).await.ok() }
    })
    .await;

    // An oversized message is refused and changes nothing.
    let big = pb::Record {
        record: Some(pb::record::Record::Supplier(pb::Supplier {
            id: "BIG".into(),
            name: "x".repeat(2 << 20),
            country: "DE".into(),
            ..Default::default()
        })),
    };
    let revision = app.network.view().revision;
    let status = app.upsert(vec![big]).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    assert_eq!(app.network.view().revision, revision);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_stops_its_work() {
    let app = common::spawn_app().await;
    common::import_generated(&app.channel, 3).await;
    let mut risk = app.risk.clone();
    let ask = |day: u32| pb::ListAtRiskLinesRequest {
        as_of: format!("2025-07-{day:02}"),
        horizon_days: 730,
        ..Default::default()
    };
    // Without a deadline the question is answered (and the network's
    // structure built, so that what follows times the simulation alone).
    risk.list_at_risk_lines(ask(1)).await.unwrap();

    // Deadlines from 1 ms, doubling, each on a day not asked before: one
    // passes while the simulation runs, which then gives up.
    let mut deadline = Duration::from_millis(1);
    for day in 2..=28 {
        let mut request = Request::new(ask(day));
        request.set_timeout(deadline);
        // tonic (client and server alike) ends a call past its deadline
        // with CANCELLED, "Timeout expired"; other clients report
        // DEADLINE_EXCEEDED.
        match risk.list_at_risk_lines(request).await {
            Err(status) if matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded) => {}
            other => panic!("with a deadline of {deadline:?}: {other:?}"),
        }
        common::eventually(Duration::from_secs(60), || async {
            (app.engine.running_evaluations() == 0).then_some(())
        })
        .await;
        if app.engine.abandoned_evaluations() > 0 {
            // The same question, asked again, is answered in full.
            let answer = risk.list_at_risk_lines(ask(day)).await.unwrap();
            assert!(answer.into_inner().total_size > 0);
            app.stop().await;
            return;
        }
        deadline *= 2;
    }
    panic!("no deadline up to {deadline:?} passed during an evaluation");
}

/// The server turns transparent huge pages off for itself: their stalls
/// (2 MiB zeroed, memory compacted, on the faulting thread) slowed imports
/// and cold answers on the benchmark's machine.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_without_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        // The operator's choice stands; nothing to check here.
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let server = common::ServerProcess::start(data.path(), common::free_port(), &[]);
    server.connect().await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("the kernel reports THP_enabled (Linux 5.0 and later)");
    assert_eq!(thp.trim(), "0", "{status}");
}
