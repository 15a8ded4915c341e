//! What an operator relies on: health, reflection, graceful shutdown.

mod common;

use std::time::Duration;

use common::spawn_app;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_both_services() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "lodestone.v1.RecordService", "lodestone.v1.RiskService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_begins() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest { service: "".into() })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(app.stop());
    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("a health update within 30 s");
    let update = next
        .expect("the watch stream stays open")
        .expect("an update comes");
    assert_eq!(update.status, ServingStatus::NotServing as i32);
    drop(watch);
    stopping.await.unwrap();
}

mod reflection {
    use super::*;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as ClientV1;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest as RequestV1;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse as ResponseV1;
    use tonic_reflection::pb::v1::ServerReflectionRequest as ReflectionRequestV1;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as ClientV1alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as RequestV1alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as ResponseV1alpha;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as ReflectionRequestV1alpha;

    /// What either version lists: the reflection services of both
    /// versions among them, whichever a client asks through.
    const EXPECTED: [&str; 5] = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "lodestone.v1.RecordService",
        "lodestone.v1.RiskService",
    ];

    #[tokio::test]
    async fn v1_lists_the_services_and_serves_their_descriptors() {
        let app = spawn_app().await;
        let mut client = ClientV1::new(app.channel.clone());
        let requests = vec![
            ReflectionRequestV1 {
                host: String::new(),
                message_request: Some(RequestV1::ListServices(String::new())),
            },
            ReflectionRequestV1 {
                host: String::new(),
                message_request: Some(RequestV1::FileContainingSymbol(
                    "lodestone.v1.RiskService".into(),
                )),
            },
        ];
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let Some(ResponseV1::ListServicesResponse(list)) =
            responses.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for expected in EXPECTED {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        let Some(ResponseV1::FileDescriptorResponse(files)) =
            responses.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a file descriptor")
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }

    #[tokio::test]
    async fn v1alpha_lists_the_services_for_older_grpcurl() {
        let app = spawn_app().await;
        let mut client = ClientV1alpha::new(app.channel.clone());
        let request = ReflectionRequestV1alpha {
            host: String::new(),
            message_request: Some(RequestV1alpha::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let Some(ResponseV1alpha::ListServicesResponse(list)) =
            responses.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for expected in EXPECTED {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
    }
}

/// On SIGTERM an import still streaming gets the grace period to finish:
/// one that finishes within it is applied and answered; one that does not is
/// cut off when the period ends, and the process exits cleanly either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_calls_in_flight_the_grace_period_and_no_more() {
    use lodestone::pb::{self, record_service_client::RecordServiceClient};
    use std::time::{Duration, Instant};

    let supplier = |id: &str| pb::ImportRecordsRequest {
        records: vec![pb::Record {
            record: Some(pb::record::Record::Supplier(pb::Supplier {
                id: id.into(),
                country: "DE".into(),
                ..Default::default()
            })),
        }],
    };
    for (finishes_within_grace, grace) in [(true, 30u64), (false, 2)] {
        let data = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let mut server = common::ServerProcess::start(
            data.path(),
            port,
            &["--shutdown-grace-seconds", &grace.to_string()],
        );
        let channel = server.connect().await;
        // An import whose client sends one message, then holds the stream
        // open until told to finish.
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let messages = async_stream_of(supplier("GRACE-1"), supplier("GRACE-2"), finished);
        let import = tokio::spawn(async move {
            RecordServiceClient::new(channel)
                .import_records(messages)
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let terminated = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::sleep(Duration::from_millis(500)).await;
        if finishes_within_grace {
            let _ = finish.send(());
            let answer = tokio::time::timeout(Duration::from_secs(60), import)
                .await
                .expect("the import is answered")
                .unwrap()
                .expect("an import finished within the grace period is applied");
            assert_eq!(answer.into_inner().upserted_count, 2);
        } else {
            // Never finished: cut off at the end of the grace period.
            let outcome = tokio::time::timeout(Duration::from_secs(60), import)
                .await
                .expect("the import ends when the grace period does")
                .unwrap();
            assert!(outcome.is_err(), "{outcome:?}");
            drop(finish);
        }
        let status = tokio::task::spawn_blocking(move || server.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a clean exit: {status:?}");
        let took = terminated.elapsed();
        assert!(
            took < Duration::from_secs(grace + 30),
            "stopped {took:?} after SIGTERM (grace {grace} s)"
        );
        if !finishes_within_grace {
            assert!(
                took >= Duration::from_secs(grace),
                "the call had its grace period: stopped after {took:?}"
            );
        }
    }
}

/// Two messages, the second only once `go` fires; the stream then ends.
/// If `go` is dropped instead, the stream stays open for ever.
fn async_stream_of(
    first: lodestone::pb::ImportRecordsRequest,
    second: lodestone::pb::ImportRecordsRequest,
    go: tokio::sync::oneshot::Receiver<()>,
) -> impl tokio_stream::Stream<Item = lodestone::pb::ImportRecordsRequest> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.try_send(first).expect("room for the first message");
    tokio::spawn(async move {
        if go.await.is_ok() {
            let _ = tx.send(second).await;
        } else {
            std::future::pending::<()>().await;
            drop(tx);
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
