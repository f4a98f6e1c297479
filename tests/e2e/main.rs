//! End-to-end tests: the real `handler` binary, started by the Functions
//! host simulator, against the fake Azure. One file per behaviour area;
//! `support` builds the world each test runs in.

mod browser;
mod envelope;
mod events;
mod faults;
mod hostile;
mod infra;
mod key_versions;
mod operations;
mod operator;
mod ordering;
mod package;
mod rotation;
mod secrets;
mod seeded;
mod shapes;
mod simulation;
mod support;
mod throttling;
