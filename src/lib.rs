//! # Lodestone
//!
//! A gRPC service that tells automakers and their suppliers which production
//! lines will stop, when, and why, as export licences for rare earths are
//! granted, delayed or refused.
//!
//! # Layout
//!
//! Data flows one way: `api` → `network` and `engine` → `domain` and `store`.
//!
//! The core:
//!
//! - [`domain`]: the records, the rules they keep, how a write request
//!   becomes a set of changes, and the risk model with its cone runs,
//!   decision listings and forecasts. Plain Rust, testable alone.
//! - [`store`]: the [`store::Store`] interface (a writer's turn, the change
//!   feed, the licence log) and its two implementations: sled (one tree per
//!   record kind, the undo journal of large commits, group commit with
//!   `fdatasync`) and PostgreSQL, which any number of replicas share.
//! - [`network`]: the single writer path (batch the waiting writes, take a
//!   turn, catch up, plan against the newest view, commit durably, publish,
//!   acknowledge), the reads beside it, and following other replicas; in
//!   its folder also recovery from a store that failed to write, the
//!   licence log's retention, and its newest entries kept for streams.
//! - [`view`]: an in-memory copy-on-write view of every record at one
//!   revision, with the indexes lists filter by and the planner's
//!   referrers; every read is answered from a published view, whole.
//! - [`engine`]: the risk engine: the model evaluated on a view, with the
//!   network's structure and recent answers cached within a byte budget,
//!   identical cold questions computed once, and answers after licence
//!   changes built from the answer before.
//! - `watch`: watches of risk questions: one evaluator per question shared
//!   by its watchers, the differences between answers, and the clock that
//!   says what day "today" is for every question.
//! - [`api`]: the tonic services, which only translate between protobuf and
//!   the domain, and the one mapping of domain errors to gRPC statuses; the
//!   licence stream, and the streams of watched risk questions.
//! - [`pb`]: the protobuf contract compiled from `proto/lodestone/v1`, its
//!   translation to and from domain records and risk answers, and
//!   `Encoded`, a message kept as its encoding (a warm exposure is sent as
//!   the bytes its answer kept).
//!
//! Around it:
//!
//! - [`transport`]: what stands between a client and the services: tokens
//!   and roles, the gate every gRPC request passes (authentication,
//!   admission with load shedding, request metrics), read-your-writes
//!   across replicas (`x-lodestone-min-revision`), and the rest of the
//!   serving port (the web view, JSON over HTTP, OpenAPI, metrics).
//! - [`startup`]: configuration, TLS, limits, and the wiring in named
//!   parts: health, the router, background tasks, draining at shutdown;
//!   [`telemetry`]: structured logs, traces and Prometheus metrics.
//! - [`tools`]: the command's data tools (generate, import with the CSV
//!   files ERP systems export, export, token, health), the demonstration
//!   network, synthetic networks and throwaway PostgreSQL clusters for
//!   benchmarks and tests.

#![warn(unreachable_pub)]

pub mod api;
pub mod domain;
pub mod engine;
pub mod network;
pub mod pb;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod transport;
pub mod view;
pub(crate) mod watch;
