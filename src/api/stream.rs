//! `StreamLicenseUpdates`: every licence change, in order and exactly once,
//! first from the durable log and then live, with no seam between the two.
//!
//! Each stream is one task that reads the log at its client's pace: it reads
//! a bounded batch, hands events to a bounded channel, and waits when the
//! channel is full. Writers never wait for a stream; they only raise the
//! durable head, which wakes the streams that are waiting for it. The task
//! ends as soon as its client goes away, on an error, or at shutdown.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::status;
use crate::domain::changelog::LicenseChange;
use crate::domain::record::LicenseStatus;
use crate::domain::validate::identifier_problem;
use crate::domain::{Error, Violation};
use crate::network::Network;
use crate::pb;

/// Log entries read at a time.
const BATCH: usize = 256;
/// Messages queued for one client before its task waits.
pub const QUEUE: usize = 64;

/// Gauges over every open stream, for operators and tests, and the limit on
/// how many may be open at once.
#[derive(Debug)]
pub struct StreamGauges {
    /// Streams open now.
    pub open: AtomicI64,
    /// Messages queued for clients and not yet taken by the transport.
    pub queued: AtomicI64,
    /// One permit per stream that may still open.
    slots: Arc<Semaphore>,
    limit: usize,
}

impl StreamGauges {
    /// A slot for one more stream, held for as long as it runs; refused
    /// when every slot is taken.
    pub fn acquire(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| status::too_many_streams(self.limit))
    }

    /// Gauges for a server that allows `limit` streams at once.
    pub fn new(limit: usize) -> StreamGauges {
        let limit = limit.max(1);
        StreamGauges {
            open: AtomicI64::new(0),
            queued: AtomicI64::new(0),
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

/// Which changes a client wants; an empty set means all.
struct Filter {
    materials: HashSet<String>,
    suppliers: HashSet<String>,
    statuses: HashSet<LicenseStatus>,
}

impl Filter {
    fn passes(&self, change: &LicenseChange) -> bool {
        let license = &change.license;
        (self.materials.is_empty() || self.materials.contains(&license.material))
            && (self.suppliers.is_empty() || self.suppliers.contains(&license.supplier_id))
            && (self.statuses.is_empty() || self.statuses.contains(&license.status))
    }
}

fn heartbeat(head: u64) -> pb::StreamLicenseUpdatesResponse {
    pb::StreamLicenseUpdatesResponse {
        event: Some(pb::stream_license_updates_response::Event::Heartbeat(
            pb::Heartbeat {
                head_sequence: head,
                sent_at: Some(prost_types::Timestamp::from(SystemTime::now())),
            },
        )),
    }
}

fn update(change: &LicenseChange) -> pb::StreamLicenseUpdatesResponse {
    pb::StreamLicenseUpdatesResponse {
        event: Some(pb::stream_license_updates_response::Event::Update(
            pb::license_change_to_pb(change),
        )),
    }
}

/// The client's end of a stream: counts messages out of the queue.
pub(crate) struct UpdateStream {
    rx: mpsc::Receiver<Result<pb::StreamLicenseUpdatesResponse, Status>>,
    gauges: Arc<StreamGauges>,
}

impl Stream for UpdateStream {
    type Item = Result<pb::StreamLicenseUpdatesResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.gauges.queued.fetch_sub(1, Ordering::Relaxed);
        }
        polled
    }
}

impl Drop for UpdateStream {
    fn drop(&mut self) {
        // Whatever is still queued will never be taken.
        let left = self.rx.len() as i64;
        self.gauges.queued.fetch_sub(left, Ordering::Relaxed);
    }
}

/// Checks a subscription and starts its task.
pub(super) async fn subscribe(
    network: Arc<Network>,
    request: pb::StreamLicenseUpdatesRequest,
    shutdown: CancellationToken,
    gauges: Arc<StreamGauges>,
) -> Result<UpdateStream, Status> {
    // A slot first: a server at its limit refuses before doing any work.
    let slot = gauges.acquire()?;
    let mut violations = Vec::new();
    for (i, m) in request.materials.iter().enumerate() {
        if let Some(problem) = identifier_problem(m) {
            violations.push(Violation::new(format!("materials[{i}]"), problem));
        }
    }
    for (i, s) in request.supplier_ids.iter().enumerate() {
        if let Some(problem) = identifier_problem(s) {
            violations.push(Violation::new(format!("supplier_ids[{i}]"), problem));
        }
    }
    let mut statuses = HashSet::new();
    for (i, &n) in request.statuses.iter().enumerate() {
        match LicenseStatus::from_number(n) {
            LicenseStatus::Unspecified => violations.push(Violation::new(
                format!("statuses[{i}]"),
                format!("{n} is not a licence status to filter on"),
            )),
            status => {
                statuses.insert(status);
            }
        }
    }
    let heartbeat = pb::heartbeat_from_pb(request.heartbeat_seconds, &mut violations);
    if !violations.is_empty() {
        return Err(Error::InvalidArgument { violations }.into());
    }

    let durable = network.durable_head();
    let head = *durable.borrow();
    let bounds = network.store().log_bounds();
    let cursor = if request.from_now {
        head
    } else {
        let after = request.after_sequence;
        let mut known = bounds.head.max(head);
        if after > known {
            // Another replica may have committed it, and this one not yet
            // applied it: the store knows. The stream then waits for it.
            if let Ok((_, log_head)) = network.store().latest().await {
                known = known.max(log_head);
            }
        }
        if after > known {
            return Err(Error::SequenceAhead {
                requested: after,
                head: known,
            }
            .into());
        }
        if after + 1 < bounds.oldest {
            return Err(Error::SequenceCompacted {
                requested: after,
                oldest: bounds.oldest,
            }
            .into());
        }
        after
    };

    let filter = Filter {
        materials: request.materials.into_iter().collect(),
        suppliers: request.supplier_ids.into_iter().collect(),
        statuses,
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let follower = Follower {
        network,
        filter,
        cursor,
        heartbeat,
        tx,
        gauges: gauges.clone(),
        last_sent: Instant::now(),
        shutdown,
        _slot: slot,
    };
    gauges.open.fetch_add(1, Ordering::Relaxed);
    // The first heartbeat never says less than the client has seen.
    tokio::spawn(follower.run(head.max(cursor), durable));
    Ok(UpdateStream { rx, gauges })
}

/// The task behind one stream.
struct Follower {
    network: Arc<Network>,
    filter: Filter,
    /// Every event up to here has been looked at (and sent if it passed).
    cursor: u64,
    heartbeat: Duration,
    tx: mpsc::Sender<Result<pb::StreamLicenseUpdatesResponse, Status>>,
    gauges: Arc<StreamGauges>,
    last_sent: Instant,
    /// Cancelled when the server shuts down: the stream ends then, even
    /// while it waits for a client that does not read.
    shutdown: CancellationToken,
    /// Held for as long as the stream's task runs.
    _slot: OwnedSemaphorePermit,
}

/// Why a stream ends.
enum End {
    /// The client went away.
    Gone,
    /// The stream ends with this status.
    Failed(Status),
    /// Not an end: the database does not answer, so the log cannot be read
    /// for now; the stream waits and reads again.
    Unreachable,
}

/// How long a stream waits before reading the log again from a database
/// that did not answer.
const RETRY_UNREACHABLE: Duration = Duration::from_millis(500);

impl Follower {
    async fn run(mut self, head: u64, mut durable: tokio::sync::watch::Receiver<u64>) {
        let shutdown = self.shutdown.clone();
        let end = self.follow(head, &mut durable, &shutdown).await;
        if let End::Failed(status) = end {
            // Counted like every message: the client's end uncounts it.
            self.gauges.queued.fetch_add(1, Ordering::Relaxed);
            let sent = if shutdown.is_cancelled() {
                // A client that does not read would hold the task for ever.
                self.tx.try_send(Err(status)).is_ok()
            } else {
                self.tx.send(Err(status)).await.is_ok()
            };
            if !sent {
                self.gauges.queued.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.gauges.open.fetch_sub(1, Ordering::Relaxed);
    }

    async fn follow(
        &mut self,
        head: u64,
        durable: &mut tokio::sync::watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> End {
        if let Err(end) = self.send(heartbeat(head)).await {
            return end;
        }
        loop {
            let target = *durable.borrow_and_update();
            // Set while the database (of a replica) does not answer: the
            // log is read again then, and the stream goes on meanwhile.
            let retry_at = match self.deliver_through(target).await {
                Ok(()) => None,
                Err(End::Unreachable) => Some(tokio::time::Instant::now() + RETRY_UNREACHABLE),
                Err(end) => return end,
            };
            let quiet_until = self.last_sent + self.heartbeat;
            tokio::select! {
                () = async { tokio::time::sleep_until(retry_at.unwrap_or(quiet_until)).await }, if retry_at.is_some() => {}
                changed = durable.changed() => {
                    if changed.is_err() {
                        return End::Failed(Error::ShuttingDown.into());
                    }
                }
                () = tokio::time::sleep_until(quiet_until) => {
                    if let Err(end) = self.send(heartbeat(self.cursor)).await {
                        return end;
                    }
                }
                () = self.tx.closed() => return End::Gone,
                () = shutdown.cancelled() => {
                    // Send what is already durable, then say goodbye.
                    let target = *durable.borrow();
                    match self.deliver_through(target).await {
                        Ok(()) | Err(End::Unreachable) => {}
                        Err(end) => return end,
                    }
                    return End::Failed(Error::ShuttingDown.into());
                }
            }
        }
    }

    /// Sends every event after the cursor up to `target` that passes the
    /// filter, reading the log a batch at a time.
    async fn deliver_through(&mut self, target: u64) -> Result<(), End> {
        while self.cursor < target {
            let batch = self
                .network
                .read_log(self.cursor, BATCH)
                .await
                .map_err(|e| match e {
                    Error::DatabaseUnavailable(_) => End::Unreachable,
                    e => End::Failed(e.into()),
                })?;
            if batch.is_empty() {
                return Err(self.compacted());
            }
            for change in batch {
                if change.sequence > target {
                    break;
                }
                // A store read while retention deletes may skip what it
                // removed, at the start of a batch or within it: events this
                // client had not read yet are gone.
                if change.sequence != self.cursor + 1 {
                    return Err(self.compacted());
                }
                self.cursor = change.sequence;
                if self.filter.passes(&change) {
                    self.send(update(&change)).await?;
                }
            }
        }
        Ok(())
    }

    /// Retention removed events this client had not read yet.
    fn compacted(&self) -> End {
        let oldest = self.network.store().log_bounds().oldest;
        End::Failed(
            Error::SequenceCompacted {
                requested: self.cursor,
                oldest,
            }
            .into(),
        )
    }

    /// Queues `message`, waiting while the client's queue is full; at
    /// shutdown the wait ends with `UNAVAILABLE`.
    async fn send(&mut self, message: pb::StreamLicenseUpdatesResponse) -> Result<(), End> {
        // Count first: the client may take the message before `send` returns.
        self.gauges.queued.fetch_add(1, Ordering::Relaxed);
        // Biased: at shutdown what fits in the queue is still sent (what
        // is durable goes out before the goodbye); only a wait ends.
        let sent = tokio::select! {
            biased;
            sent = self.tx.send(Ok(message)) => sent.map_err(|_| End::Gone),
            () = self.shutdown.cancelled() => Err(End::Failed(Error::ShuttingDown.into())),
        };
        if let Err(end) = sent {
            self.gauges.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(end);
        }
        self.last_sent = Instant::now();
        Ok(())
    }
}
