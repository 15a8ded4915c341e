//! `lodestone.v1.RecordService`: translates requests into domain calls and
//! results back into messages. No rule of the domain is decided here.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::page::{decode_token, encode_token, page_size, PagePin};
use super::{plant_for, refuse_if_any};
use crate::domain::audit::{micros, AuditQuery, Request as AuditRequest};
use crate::domain::record::{Kind, LicenseStatus, Record, RecordKey};
use crate::domain::validate::{identifier_problem, is_country_code, MAX_RECORDS_PER_REQUEST};
use crate::domain::write::{Incoming, Origin};
use crate::domain::write::{LicenseDecision, Revisions};
use crate::domain::{Error, Violation};
use crate::network::{Apply, Network, Upsert};
use crate::pb::{self, record_service_server::RecordService, DateReader};
use crate::transport::auth::{attribution, caller, PlantRefusal};
use crate::view::{ListPage, ListQuery};

/// Records per `ExportRecordsResponse` message.
const EXPORT_CHUNK: usize = 500;

pub(crate) struct RecordApi {
    network: Arc<Network>,
    shutdown: CancellationToken,
}

impl RecordApi {
    pub(crate) fn new(network: Arc<Network>, shutdown: CancellationToken) -> Self {
        RecordApi { network, shutdown }
    }
}

/// Decodes `records[offset..]` of a request into domain records, collecting
/// what cannot be decoded.
fn decode_records(
    records: Vec<pb::Record>,
    offset: usize,
    incoming: &mut Vec<Incoming>,
    malformed: &mut Vec<Violation>,
) {
    incoming.reserve(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let index = offset + i;
        if let Some(record) = pb::record_from_pb(record, &format!("records[{index}]"), malformed) {
            incoming.push(Incoming {
                origin: Origin::Records(index),
                record,
            });
        }
    }
}

/// Checks an id argument (a Get's `id`, a filter) and reports it at `field`.
fn check_id(field: &str, value: &str, violations: &mut Vec<Violation>) {
    if let Some(problem) = identifier_problem(value) {
        violations.push(Violation::new(field, problem));
    }
}

/// Checks an optional filter id: empty means "any".
fn check_filter_id(field: &str, value: &str, violations: &mut Vec<Violation>) {
    if !value.is_empty() {
        check_id(field, value, violations);
    }
}

fn get_key(kind: Kind, id: String) -> Result<RecordKey, Error> {
    let mut violations = Vec::new();
    check_id("id", &id, &mut violations);
    refuse_if_any(violations)?;
    Ok(RecordKey::new(kind, id))
}

fn status_filter(field: &str, number: i32, violations: &mut Vec<Violation>) -> LicenseStatus {
    let status = LicenseStatus::from_number(number);
    if number != 0 && status == LicenseStatus::Unspecified {
        violations.push(Violation::new(
            field,
            format!("{number} is not a LicenseStatus"),
        ));
    }
    status
}

/// Serves one page of `query` for a List request.
async fn list_page(
    network: &Network,
    query: ListQuery,
    page_size_requested: i32,
    page_token: &str,
) -> Result<(ListPage, String), Error> {
    let size = page_size(page_size_requested)?;
    let listing = format!("{query:?}");
    let cursor = decode_token(page_token, &listing)?;
    let page = network.list(&query, cursor.after.as_deref(), size);
    let next = match (page.more, page.records.last()) {
        (true, Some(last)) => encode_token(&listing, last.id(), &PagePin::default()),
        _ => String::new(),
    };
    Ok((page, next))
}

fn total(page: &ListPage) -> i32 {
    i32::try_from(page.total).unwrap_or(i32::MAX)
}

macro_rules! records_of {
    ($page:expr, $variant:ident, $to_pb:path) => {
        $page
            .records
            .iter()
            .filter_map(|r| match r {
                Record::$variant(x) => Some($to_pb(x)),
                _ => None,
            })
            .collect()
    };
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportRecordsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RecordService for RecordApi {
    async fn upsert_records(
        &self,
        request: Request<pb::UpsertRecordsRequest>,
    ) -> Result<Response<pb::UpsertRecordsResponse>, Status> {
        let by = attribution(&request, AuditRequest::UpsertRecords);
        let request = request.into_inner();
        let count = request.records.len();
        if count > MAX_RECORDS_PER_REQUEST {
            return Err(Error::TooManyRecords {
                count,
                limit: MAX_RECORDS_PER_REQUEST,
            }
            .into());
        }
        let (mut incoming, mut malformed) = (Vec::new(), Vec::new());
        decode_records(request.records, 0, &mut incoming, &mut malformed);
        let outcome = self
            .network
            .upsert(
                Upsert {
                    records: incoming,
                    malformed,
                    revisions: Revisions::Preconditions,
                    apply: if request.validate_only {
                        Apply::ValidateOnly
                    } else {
                        Apply::Commit
                    },
                },
                &by,
            )
            .await?;
        Ok(Response::new(pb::UpsertRecordsResponse {
            upserted_count: count as u32,
            revision: outcome.revision,
        }))
    }

    async fn delete_records(
        &self,
        request: Request<pb::DeleteRecordsRequest>,
    ) -> Result<Response<pb::DeleteRecordsResponse>, Status> {
        let by = attribution(&request, AuditRequest::DeleteRecords);
        let refs = request.into_inner().refs;
        let mut violations = Vec::new();
        let mut keys = Vec::with_capacity(refs.len());
        for (i, reference) in refs.into_iter().enumerate() {
            match pb::record_ref_to_key(reference) {
                Some(key) => {
                    check_id(&format!("refs[{i}].{}", key.kind), &key.id, &mut violations);
                    keys.push(key);
                }
                None => violations.push(Violation::new(
                    format!("refs[{i}]"),
                    "must name one of material, supplier, component, line or license",
                )),
            }
        }
        refuse_if_any(violations)?;
        // The plan refuses the request unless every distinct record exists,
        // so on success exactly these were deleted.
        let distinct = keys.iter().collect::<HashSet<_>>().len();
        let outcome = self.network.delete(keys, &by).await?;
        Ok(Response::new(pb::DeleteRecordsResponse {
            deleted_count: distinct as u32,
            revision: outcome.revision,
        }))
    }

    async fn import_records(
        &self,
        request: Request<Streaming<pb::ImportRecordsRequest>>,
    ) -> Result<Response<pb::ImportRecordsResponse>, Status> {
        let by = attribution(&request, AuditRequest::ImportRecords);
        let mut stream = request.into_inner();
        let (mut incoming, mut malformed) = (Vec::new(), Vec::new());
        let mut received = 0usize;
        while let Some(message) = stream.next().await {
            let records = message?.records;
            let offset = received;
            received += records.len();
            decode_records(records, offset, &mut incoming, &mut malformed);
        }
        tracing::info!(records = received, "import received; validating");
        let outcome = self
            .network
            .upsert(
                Upsert {
                    records: incoming,
                    malformed,
                    // An export loads anywhere, whatever its revisions.
                    revisions: Revisions::Ignored,
                    apply: Apply::Commit,
                },
                &by,
            )
            .await?;
        Ok(Response::new(pb::ImportRecordsResponse {
            upserted_count: received as u64,
            revision: outcome.revision,
        }))
    }

    type ExportRecordsStream = ExportStream;

    async fn export_records(
        &self,
        request: Request<pb::ExportRecordsRequest>,
    ) -> Result<Response<Self::ExportRecordsStream>, Status> {
        if let Some(client) = caller(&request).filter(|c| c.limited_to().is_some()) {
            return Err(super::status::plant_refused(
                &client,
                &PlantRefusal::Everything,
            ));
        }
        // The view is one consistent snapshot, however many writes follow.
        let view = self.network.view();
        let (tx, rx) = mpsc::channel(4);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let revision = view.revision;
            let mut records = view.records().peekable();
            while records.peek().is_some() {
                let message = pb::ExportRecordsResponse {
                    records: records
                        .by_ref()
                        .take(EXPORT_CHUNK)
                        .map(|r| pb::record_to_pb(&r))
                        .collect(),
                    revision,
                };
                tokio::select! {
                    sent = tx.send(Ok(message)) => if sent.is_err() { return },
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(Error::ShuttingDown.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_material(
        &self,
        request: Request<pb::GetMaterialRequest>,
    ) -> Result<Response<pb::Material>, Status> {
        let key = get_key(Kind::Material, request.into_inner().id)?;
        match self.network.get(&key)? {
            Record::Material(m) => Ok(Response::new(pb::material_to_pb(&m))),
            _ => Err(Error::Storage(format!("{key} holds another kind of record")).into()),
        }
    }

    async fn get_supplier(
        &self,
        request: Request<pb::GetSupplierRequest>,
    ) -> Result<Response<pb::Supplier>, Status> {
        let key = get_key(Kind::Supplier, request.into_inner().id)?;
        match self.network.get(&key)? {
            Record::Supplier(s) => Ok(Response::new(pb::supplier_to_pb(&s))),
            _ => Err(Error::Storage(format!("{key} holds another kind of record")).into()),
        }
    }

    async fn get_component(
        &self,
        request: Request<pb::GetComponentRequest>,
    ) -> Result<Response<pb::Component>, Status> {
        let key = get_key(Kind::Component, request.into_inner().id)?;
        match self.network.get(&key)? {
            Record::Component(c) => Ok(Response::new(pb::component_to_pb(&c))),
            _ => Err(Error::Storage(format!("{key} holds another kind of record")).into()),
        }
    }

    async fn get_production_line(
        &self,
        request: Request<pb::GetProductionLineRequest>,
    ) -> Result<Response<pb::ProductionLine>, Status> {
        let caller = caller(&request);
        let key = get_key(Kind::Line, request.into_inner().id)?;
        match self.network.get(&key)? {
            Record::Line(l) => match caller.filter(|c| !c.sees(&l.plant)) {
                Some(client) => Err(super::status::plant_refused(
                    &client,
                    &PlantRefusal::Other(l.plant.clone()),
                )),
                None => Ok(Response::new(pb::production_line_to_pb(&l))),
            },
            _ => Err(Error::Storage(format!("{key} holds another kind of record")).into()),
        }
    }

    async fn get_license(
        &self,
        request: Request<pb::GetLicenseRequest>,
    ) -> Result<Response<pb::License>, Status> {
        let key = get_key(Kind::License, request.into_inner().id)?;
        match self.network.get(&key)? {
            Record::License(l) => Ok(Response::new(pb::license_to_pb(&l))),
            _ => Err(Error::Storage(format!("{key} holds another kind of record")).into()),
        }
    }

    async fn get_shipment(
        &self,
        request: Request<pb::GetShipmentRequest>,
    ) -> Result<Response<pb::Shipment>, Status> {
        let key = get_key(Kind::Shipment, request.into_inner().id)?;
        match self.network.get(&key)? {
            Record::Shipment(s) => Ok(Response::new(pb::shipment_to_pb(&s))),
            _ => Err(Error::Storage(format!("{key} holds another kind of record")).into()),
        }
    }

    async fn list_materials(
        &self,
        request: Request<pb::ListMaterialsRequest>,
    ) -> Result<Response<pb::ListMaterialsResponse>, Status> {
        let r = request.into_inner();
        let (page, next_page_token) = list_page(
            &self.network,
            ListQuery::Materials,
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(pb::ListMaterialsResponse {
            materials: records_of!(page, Material, pb::material_to_pb),
            next_page_token,
            total_size: total(&page),
            revision: page.revision,
        }))
    }

    async fn list_suppliers(
        &self,
        request: Request<pb::ListSuppliersRequest>,
    ) -> Result<Response<pb::ListSuppliersResponse>, Status> {
        let r = request.into_inner();
        if !r.country.is_empty() && !is_country_code(&r.country) {
            return Err(Error::invalid_argument(
                "country",
                format!("{:?} is not an ISO 3166-1 alpha-2 country code", r.country),
            )
            .into());
        }
        let query = ListQuery::Suppliers { country: r.country };
        let (page, next_page_token) =
            list_page(&self.network, query, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListSuppliersResponse {
            suppliers: records_of!(page, Supplier, pb::supplier_to_pb),
            next_page_token,
            total_size: total(&page),
            revision: page.revision,
        }))
    }

    async fn list_components(
        &self,
        request: Request<pb::ListComponentsRequest>,
    ) -> Result<Response<pb::ListComponentsResponse>, Status> {
        let r = request.into_inner();
        let mut violations = Vec::new();
        check_filter_id("supplier_id", &r.supplier_id, &mut violations);
        check_filter_id("material", &r.material, &mut violations);
        refuse_if_any(violations)?;
        let query = ListQuery::Components {
            supplier_id: r.supplier_id,
            material: r.material,
        };
        let (page, next_page_token) =
            list_page(&self.network, query, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListComponentsResponse {
            components: records_of!(page, Component, pb::component_to_pb),
            next_page_token,
            total_size: total(&page),
            revision: page.revision,
        }))
    }

    async fn list_production_lines(
        &self,
        request: Request<pb::ListProductionLinesRequest>,
    ) -> Result<Response<pb::ListProductionLinesResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        let query = ListQuery::Lines {
            plant: plant_for(caller.as_ref(), &r.plant)?,
        };
        let (page, next_page_token) =
            list_page(&self.network, query, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListProductionLinesResponse {
            lines: records_of!(page, Line, pb::production_line_to_pb),
            next_page_token,
            total_size: total(&page),
            revision: page.revision,
        }))
    }

    async fn list_licenses(
        &self,
        request: Request<pb::ListLicensesRequest>,
    ) -> Result<Response<pb::ListLicensesResponse>, Status> {
        let r = request.into_inner();
        let mut violations = Vec::new();
        check_filter_id("supplier_id", &r.supplier_id, &mut violations);
        check_filter_id("material", &r.material, &mut violations);
        let status = status_filter("status", r.status, &mut violations);
        refuse_if_any(violations)?;
        let query = ListQuery::Licenses {
            supplier_id: r.supplier_id,
            material: r.material,
            status,
        };
        let (page, next_page_token) =
            list_page(&self.network, query, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListLicensesResponse {
            licenses: records_of!(page, License, pb::license_to_pb),
            next_page_token,
            total_size: total(&page),
            revision: page.revision,
        }))
    }

    async fn list_shipments(
        &self,
        request: Request<pb::ListShipmentsRequest>,
    ) -> Result<Response<pb::ListShipmentsResponse>, Status> {
        let r = request.into_inner();
        let mut violations = Vec::new();
        check_filter_id("component_id", &r.component_id, &mut violations);
        refuse_if_any(violations)?;
        let query = ListQuery::Shipments {
            component_id: r.component_id,
        };
        let (page, next_page_token) =
            list_page(&self.network, query, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListShipmentsResponse {
            shipments: records_of!(page, Shipment, pb::shipment_to_pb),
            next_page_token,
            total_size: total(&page),
            revision: page.revision,
        }))
    }

    async fn update_license_status(
        &self,
        request: Request<pb::UpdateLicenseStatusRequest>,
    ) -> Result<Response<pb::License>, Status> {
        let by = attribution(&request, AuditRequest::UpdateLicenseStatus);
        let r = request.into_inner();
        let mut violations = Vec::new();
        check_id("id", &r.id, &mut violations);
        let status = status_filter("status", r.status, &mut violations);
        let mut dates = DateReader {
            path: String::new(),
            violations: &mut violations,
        };
        let decision = LicenseDecision {
            decided_on: dates.read("decided_on", &r.decided_on),
            valid_from: dates.read("valid_from", &r.valid_from),
            valid_until: dates.read("valid_until", &r.valid_until),
            status: (status != LicenseStatus::Unspecified).then_some(status),
            quantity_kg: (r.quantity_kg != 0.0).then_some(r.quantity_kg),
            revision: r.revision,
            id: r.id,
        };
        // A malformed id or status says nothing about the stored licence: refuse now.
        if violations
            .iter()
            .any(|v| v.field == "id" || v.field == "status")
        {
            return Err(Error::InvalidArgument { violations }.into());
        }
        let license = self
            .network
            .decide_license(decision, violations, &by)
            .await?;
        Ok(Response::new(pb::license_to_pb(&license)))
    }

    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        let r = request.into_inner();
        let mut violations = Vec::new();
        let from = audit_time("recorded_from", r.recorded_from, &mut violations);
        let before = audit_time("recorded_before", r.recorded_before, &mut violations);
        if let (Some(from), Some(before)) = (from, before) {
            if from >= before {
                violations.push(Violation::new(
                    "recorded_before",
                    "must be later than recorded_from",
                ));
            }
        }
        let size = page_size(r.page_size);
        if let Err(Error::InvalidArgument { violations: more }) = &size {
            violations.extend(more.iter().cloned());
        }
        refuse_if_any(violations)?;
        let size = size?;
        // A page token continues the same filters after its last revision.
        let listing = format!(
            "audit:{}:{}:{}",
            r.after_revision,
            r.recorded_from.map(|t| t.to_string()).unwrap_or_default(),
            r.recorded_before.map(|t| t.to_string()).unwrap_or_default(),
        );
        let cursor = decode_token(&r.page_token, &listing)?;
        let after_revision = match cursor.after {
            Some(after) => after.parse::<u64>().map_err(|_| {
                Error::invalid_argument("page_token", "is not a page token this service issued")
            })?,
            None => r.after_revision,
        };
        let query = AuditQuery {
            after_revision,
            from,
            before,
        };
        let mut entries = self.network.read_audit(query, size + 1).await?;
        let next_page_token = if entries.len() > size {
            entries.truncate(size);
            let last = entries.last().map_or(after_revision, |e| e.revision);
            encode_token(&listing, &last.to_string(), &PagePin::default())
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAuditEntriesResponse {
            entries: entries.iter().map(pb::audit_entry_to_pb).collect(),
            next_page_token,
            oldest_revision: self.network.oldest_audited().await?,
        }))
    }
}

/// A listing's time bound, to the microsecond the trail keeps, rounded up:
/// an entry is recorded at or after `t` exactly when it is at or after the
/// bound, and before `t` exactly when it is before the bound.
fn audit_time(
    field: &str,
    time: Option<prost_types::Timestamp>,
    violations: &mut Vec<Violation>,
) -> Option<std::time::SystemTime> {
    let time = time?;
    if !(0..1_000_000_000).contains(&time.nanos) {
        violations.push(Violation::new(
            format!("{field}.nanos"),
            format!("must be 0 to 999,999,999, is {}", time.nanos),
        ));
        return None;
    }
    let Ok(at) = std::time::SystemTime::try_from(time) else {
        violations.push(Violation::new(
            field,
            "is not a time this server can represent",
        ));
        return None;
    };
    let truncated = micros(at);
    Some(if truncated < at {
        truncated + std::time::Duration::from_micros(1)
    } else {
        truncated
    })
}
