//! voxbridge: a real-time voice agent server.
//!
//! Module map (see ARCHITECTURE.md for the data flow and invariants):
//! - [`config`]: layered configuration (defaults < `voxbridge.toml` < `VOXBRIDGE_*`).
//! - [`server`]: binds, serves and gracefully stops the HTTP server.
//! - [`api`]: REST handlers, authentication, the response envelope and the error type.
//! - [`analysis`]: structured outputs (schema-checked JSON from the model) and post-call analysis.
//! - [`conversations`]: the conversations API (seed 004): a function's bot gathers a case.
//! - [`chat`]: text chats on the agent core, stored like calls.
//! - [`builder`]: the assistant builder (seed 000): a system prompt from a description.
//! - [`catalog`]: product catalogs, their full-text search and the agent's product tools.
//! - [`sales`]: the sales assistant (seed 003): immutable conversation states, recommendations.
//! - [`assistant`]: the assistant model, its voice, call settings and HTTP tools.
//! - [`store`]: sqlx repositories over SQLite or PostgreSQL.
//! - [`validation`]: field-level rule checking shared by every resource.
//! - [`audio`]: formats, G.711, resampling, VAD, WAV and pacing on the hot path.
//! - [`generation`]: the turn counter that lets stale LLM/TTS output be dropped.
//! - [`mcp`]: MCP servers whose tools assistants offer their model.
//! - [`provider_socket`]: the sockets STT and TTS open to providers (one TLS config, one reading
//!   of refusals).
//! - [`stt`], [`tts`], [`llm`]: a trait per provider role, one file per provider.
//! - [`egress`]: the address policy and client for URLs an API user chose.
//! - [`telephony`]: trunks, phone numbers, provider REST clients, webhook signatures, TwiML.
//! - [`sim`]: protocol-faithful fake providers for tests, benchmarks and offline demos.

pub mod agent;
pub mod analysis;
pub mod api;
pub mod assistant;
pub mod audio;
pub mod builder;
pub mod call;
pub mod catalog;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod conversations;
pub mod core_threads;
pub mod egress;
pub mod generation;
pub mod llm;
pub mod loadtest;
pub mod mcp;
pub mod metrics;
pub mod provider_socket;
pub mod recording;
pub mod sales;
pub mod server;
pub mod sim;
pub mod store;
pub mod stt;
pub mod telephony;
pub mod tokens;
pub mod transport;
pub mod tts;
pub mod validation;
pub mod webhook;
pub mod widget;
