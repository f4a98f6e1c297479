//! Local stand-in for everything the handler talks to: Azure (Key Vault,
//! Resource Manager, Resource Graph, the App Service managed-identity
//! endpoint) and the Azure Functions host that starts and calls the handler.
//!
//! Everything listens on 127.0.0.1 only. The tests and the local demo use it.

pub mod azure;
pub mod host;
