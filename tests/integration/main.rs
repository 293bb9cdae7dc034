//! Integration tests: a real server on a loopback port, driven over HTTP, on SQLite and on
//! PostgreSQL. One test binary keeps link time down.

mod common;

mod analysis;
mod assistant_builder;
mod assistants;
mod browser;
mod call_lab;
mod calls;
mod catalog;
mod chats;
mod cli;
mod cluster_calls;
mod conversations;
mod exotel_calls;
mod inspector;
mod llm;
mod llm_faults;
mod mcp;
mod multinode;
mod outbound_calls;
mod phone_numbers;
mod plivo_calls;
mod provider_faults;
mod recordings;
mod sales;
mod security;
mod server;
mod stt_deepgram;
mod stt_sarvam;
mod stt_support;
mod telnyx_calls;
mod tools;
mod trunks;
mod tts;
mod twilio_calls;
mod v1_assistants;
mod voicemail;
mod vonage_calls;
mod web_calls;
mod web_client;
mod webhooks;
