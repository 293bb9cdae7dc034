//! Integration tests: a real server on a loopback port, driven over HTTP, on SQLite and on
//! PostgreSQL. One test binary keeps link time down.

mod common;

mod assistants;
mod server;
mod tools;
mod tts;
