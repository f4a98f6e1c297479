//! Keeps Azure Database for PostgreSQL flexible servers on the current
//! version of their customer-managed key when the key rotates in Key Vault.
//!
//! An Azure Functions custom handler: the host calls [`app::router`] with
//! Key Vault events (the `KeyEvent` function, see [`plan`]) and with one
//! queue message per server (the `RotateServer` function, see [`rotate`]).
//! ARCHITECTURE.md walks through the flow.

pub mod app;
pub mod arm;
pub mod assess;
pub mod cli;
pub mod config;
pub mod event;
pub mod graph;
pub mod http;
pub mod key_id;
pub mod keyvault;
pub mod plan;
pub mod policy;
pub mod protocol;
pub mod queue;
pub mod reconcile;
pub mod rotate;
pub mod status;
pub mod telemetry;
pub mod token;
