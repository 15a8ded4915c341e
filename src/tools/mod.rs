//! The command's data tools and what tests and benchmarks build with:
//! `cli` (generate, import, export, token, health), `credentials` (an
//! ERP connector's sign-in at the identity provider), `csv_import` (the CSV
//! files ERP systems export), `generate` (synthetic networks of any size),
//! `demo` (the demonstration network of `serve --demo`) and `throwaway`
//! (PostgreSQL clusters for tests and the benchmark).

pub mod cli;
pub mod credentials;
pub(crate) mod csv_import;
pub(crate) mod demo;
pub mod generate;
pub mod throwaway;
