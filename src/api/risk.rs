//! `lodestone.v1.RiskService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::network::Network;
use crate::pb::{self, risk_service_server::RiskService};

pub struct RiskApi {
    #[allow(dead_code)]
    network: Arc<Network>,
}

impl RiskApi {
    pub fn new(network: Arc<Network>) -> Self {
        RiskApi { network }
    }
}

type UpdateStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::StreamLicenseUpdatesResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl RiskService for RiskApi {
    async fn get_exposure(
        &self,
        _request: Request<pb::GetExposureRequest>,
    ) -> Result<Response<pb::Exposure>, Status> {
        Err(Status::unimplemented("GetExposure is not available yet"))
    }

    async fn list_at_risk_lines(
        &self,
        _request: Request<pb::ListAtRiskLinesRequest>,
    ) -> Result<Response<pb::ListAtRiskLinesResponse>, Status> {
        Err(Status::unimplemented(
            "ListAtRiskLines is not available yet",
        ))
    }

    type StreamLicenseUpdatesStream = UpdateStream;

    async fn stream_license_updates(
        &self,
        _request: Request<pb::StreamLicenseUpdatesRequest>,
    ) -> Result<Response<Self::StreamLicenseUpdatesStream>, Status> {
        Err(Status::unimplemented(
            "StreamLicenseUpdates is not available yet",
        ))
    }
}
