//! End-to-end tests: the real `handler` binary, started by the Functions
//! host simulator, against the fake Azure. One file per behaviour area;
//! `support` builds the world each test runs in.

mod envelope;
mod events;
mod key_versions;
mod operator;
mod ordering;
mod rotation;
mod seeded;
mod simulation;
mod support;
mod throttling;
