//! # Lodestone
//!
//! A gRPC service that tells automakers and their suppliers which production
//! lines will stop, when, and why, as export licences for rare earths are
//! granted, delayed or refused.
//!
//! # Layout
//!
//! Data flows one way: `api` → `network` → `domain` and `store`.
//!
//! - [`domain`]: the records, the rules they keep, and how a write request
//!   becomes a set of changes. Plain Rust, testable alone.
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
//!   network's structure and recent answers cached; after licence changes,
//!   an answer is the one before with the changed pools' cones simulated
//!   again; supplier impacts and licence stakes weigh each candidate's cone,
//!   and forecasts sample the pending licences' decisions.
//! - [`api`]: the tonic services, which only translate between protobuf and
//!   the domain, and the one mapping of domain errors to gRPC statuses; the
//!   licence stream, and the streams of watched risk questions.
//! - [`watch`]: watches of risk questions: one evaluator per question
//!   shared by its watchers, the differences between answers, and the
//!   [`watch::Clock`] that says what day "today" is for every question.
//! - [`pb`]: the protobuf contract compiled from `proto/lodestone/v1`, its
//!   translation to and from domain records, and `Encoded`, a message kept as
//!   its encoding (a warm exposure is sent as the bytes its answer kept).
//! - [`web`]: what the serving port answers besides gRPC: the web view
//!   (`web/page`, built into the binary), the contract as JSON over HTTP (each call transcoded to the gRPC call it stands for),
//!   its OpenAPI description, and metrics; gRPC-Web and CORS are layers
//!   beside it.
//! - [`gate`]: what every gRPC request passes first: authentication (tokens and
//!   roles from [`auth`]), admission with load shedding, request metrics;
//!   then [`consistency`]: read-your-writes across replicas.
//! - [`startup`]: configuration, TLS, limits, and the wiring in named
//!   parts: health, the router, background tasks, draining at shutdown.
//! - [`generate`]: synthetic networks of any size, for benchmarks and tests;
//!   [`throwaway`]: PostgreSQL clusters for them.
//! - [`demo`]: the demonstration network of `serve --demo`.
//! - [`cli`]: the data tools of the command: generate, import, export;
//!   [`csv_import`] reads the CSV files ERP systems export.
//! - [`telemetry`]: structured logs and Prometheus metrics.

pub mod api;
pub mod auth;
pub mod cli;
pub mod consistency;
pub mod csv_import;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod gate;
pub mod generate;
pub mod network;
pub mod pb;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod throwaway;
pub mod view;
pub mod watch;
pub mod web;
