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

    const EXPECTED: [&str; 3] = [
        "grpc.health.v1.Health",
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
