//! What stands between a client and the services: who may call
//! (`auth`: tokens and roles; `oidc`: the identity provider's tokens), what every gRPC request passes first
//! (`gate`: authentication, admission with load shedding, request metrics),
//! read-your-writes across replicas (`consistency`), and what the serving
//! port answers besides gRPC (`web`: the web view, JSON over HTTP, the
//! OpenAPI description, metrics).

pub mod auth;
pub(crate) mod consistency;
pub(crate) mod gate;
pub mod oidc;
pub mod web;
