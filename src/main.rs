//! The `voxbridge` command: `serve`, `migrate`, `keys`, `sim` and `loadtest`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use voxbridge::catalog::demo::{DEMO_BUSINESS_ID, create_demo_store};
use voxbridge::config::{Config, LogFormat};
use voxbridge::loadtest::{LoadTestOptions, ServerSpec};
use voxbridge::server::{Server, shutdown_signal};
use voxbridge::sim::suite::{SimOptions, SimSuite, use_fakes_at};
use voxbridge::store::Store;
use voxbridge::widget::demo::create_demo_assistant;

#[derive(Parser)]
#[command(name = "voxbridge", version, about = "Real-time voice agent server")]
struct Cli {
    /// Configuration file; read if it exists (settings in VOXBRIDGE_* variables override it).
    #[arg(
        long,
        global = true,
        default_value = "voxbridge.toml",
        env = "VOXBRIDGE_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (migrates the database first; creates a first API key on an empty one).
    Serve {
        /// Start the sim providers in-process and use them for every provider that has no key
        /// configured: a working demo without accounts.
        #[arg(long, conflicts_with = "sim_url")]
        sim: bool,
        /// Use the fake providers already running at this URL (`voxbridge sim`, a load test) for
        /// every provider that has no key configured.
        #[arg(long, value_name = "URL")]
        sim_url: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run the fake providers (Deepgram, Sarvam, Cartesia, OpenAI-compatible chat, Twilio REST)
    /// on one loopback port and print one JSON line naming their base URLs and keys.
    Sim(SimArgs),
    /// Place many simulated Twilio calls against a server on this machine and report latency
    /// percentiles, frame gaps, barge-in reaction and the server's CPU and memory per call.
    Loadtest(LoadtestArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for an owner; the key is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        email: String,
    },
    /// List keys (prefix, owner, created, revoked); never the keys themselves.
    List,
    /// Revoke a key by its id or its shown prefix.
    Revoke { id_or_prefix: String },
}

/// `voxbridge sim`: where to listen, and the fakes' delays.
#[derive(clap::Args)]
struct SimArgs {
    /// Address to listen on (loopback only, so nothing outside this machine reaches the fakes).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port for all fakes (0: any free port).
    #[arg(long, default_value_t = 9090)]
    port: u16,
    /// The STT fakes hear what `voxbridge loadtest --turns N` callers say (their sentences, the
    /// backchannel, no words for the cough), as the fakes a load test runs itself do: for a load
    /// test against servers started with `--sim-url`.
    #[arg(long, value_name = "N")]
    loadtest_turns: Option<usize>,
    #[command(flatten)]
    delays: DelayArgs,
}

/// The fakes' delays, in milliseconds (unset: the command's default).
#[derive(clap::Args)]
struct DelayArgs {
    /// STT final result after the end of speech.
    #[arg(long)]
    stt_final_ms: Option<u64>,
    /// STT interim results and VAD events after their audio.
    #[arg(long)]
    stt_interim_ms: Option<u64>,
    /// LLM first token after the request.
    #[arg(long)]
    llm_first_token_ms: Option<u64>,
    /// LLM time between streamed chunks.
    #[arg(long)]
    llm_per_chunk_ms: Option<u64>,
    /// TTS first audio after the first text.
    #[arg(long)]
    tts_first_byte_ms: Option<u64>,
    /// TTS time between audio chunks.
    #[arg(long)]
    tts_per_chunk_ms: Option<u64>,
    /// How much faster than real time the Sarvam TTS fake synthesises after its first byte (0:
    /// as fast as the socket takes it).
    #[arg(long)]
    sarvam_tts_times_real_time: Option<u32>,
}

impl DelayArgs {
    fn options(&self, defaults: SimOptions) -> SimOptions {
        SimOptions {
            stt_final_ms: self.stt_final_ms.unwrap_or(defaults.stt_final_ms),
            stt_interim_ms: self.stt_interim_ms.unwrap_or(defaults.stt_interim_ms),
            llm_first_token_ms: self
                .llm_first_token_ms
                .unwrap_or(defaults.llm_first_token_ms),
            llm_per_chunk_ms: self.llm_per_chunk_ms.unwrap_or(defaults.llm_per_chunk_ms),
            tts_first_byte_ms: self.tts_first_byte_ms.unwrap_or(defaults.tts_first_byte_ms),
            tts_per_chunk_ms: self.tts_per_chunk_ms.unwrap_or(defaults.tts_per_chunk_ms),
            sarvam_tts_times_real_time: self
                .sarvam_tts_times_real_time
                .unwrap_or(defaults.sarvam_tts_times_real_time),
        }
    }
}

/// `voxbridge loadtest`.
#[derive(clap::Args)]
struct LoadtestArgs {
    /// Concurrent calls (at most 5000).
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Calls started per second.
    #[arg(long, default_value_t = 50.0)]
    ramp: f64,
    /// Seconds each call lasts.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Caller utterances per call (the first talks over the greeting).
    #[arg(long, default_value_t = 3)]
    turns: usize,
    /// A server already running on this machine (loopback URL); by default a server is spawned
    /// from this executable on a fresh SQLite database. Repeat it for several nodes on one
    /// PostgreSQL database: calls are spread over them in turn.
    #[arg(long, value_name = "URL", requires = "api_key")]
    server: Vec<String>,
    /// API key for `--server`.
    #[arg(long, env = "VOXBRIDGE_LOADTEST_API_KEY")]
    api_key: Option<String>,
    /// Process id of a `--server`, to measure its CPU and memory (repeat it for each node; their
    /// figures are summed).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Fakes already running (`voxbridge sim`) that the server uses; by default they run in the
    /// load generator's process. Give the same delays they were started with.
    #[arg(long, value_name = "URL")]
    sim_url: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// The assistant's TTS: `cartesia` or `sarvam` (Bulbul `anushka`, en-IN).
    #[arg(long, default_value = "cartesia", value_parser = ["cartesia", "sarvam"])]
    tts: String,
    /// The assistant's STT: `deepgram` or `sarvam` (en-IN).
    #[arg(long, default_value = "deepgram", value_parser = ["deepgram", "sarvam"])]
    stt: String,
    /// The telephony provider whose fake carries the calls (its webhooks, answer document and
    /// media stream): `twilio`, or any other registered provider.
    #[arg(long, default_value = "twilio")]
    provider: String,
    #[command(flatten)]
    delays: DelayArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("voxbridge: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(command: Command, mut config: Config) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve { sim, sim_url } => {
            if let Some(url) = &sim_url {
                use_fakes_at(&mut config, url, false);
            }
            // Kept alive for as long as the server runs.
            let _sim = if sim {
                let suite =
                    SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::default()).await?;
                suite.configure(&mut config, false);
                println!(
                    "sim providers on {} (used where no provider key is configured)",
                    suite.base_url
                );
                Some(suite)
            } else {
                None
            };
            let email = config.bootstrap_email.clone();
            let server = Server::bind(config).await?;
            if server.store().count_api_keys().await? == 0 {
                let key = server.store().create_api_key(&email).await?;
                println!("Created the first API key (owner {email}). It is shown only this once:");
                println!();
                println!("    {}", key.plaintext);
                println!();
                if sim
                    && let Some(id) = create_demo_assistant(server.store(), &key.plaintext).await?
                {
                    println!("Created a demo assistant for the sim voice: {id}");
                    let owner = server.store().owner_by_key(&key.plaintext).await?;
                    let owner = owner.ok_or("the new key has no owner")?;
                    let shop = create_demo_store(server.store(), &owner.id).await?;
                    println!(
                        "Created the {DEMO_BUSINESS_ID} catalog and a shop assistant for it: {shop}"
                    );
                    println!(
                        "  (the sales assistant: POST /internal/v1/businesses/{DEMO_BUSINESS_ID}/ai/sales_assistant_v2/invoke/v1 with context.agentDescriptorId {shop})"
                    );
                }
            }
            tracing::info!(addr = %server.local_addr(), "voxbridge listening");
            println!("voxbridge listening on http://{}", server.local_addr());
            println!(
                "demo page: http://{}/ (paste the API key, pick an assistant, press Call)",
                server.local_addr()
            );
            server.run_until(shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = connect(&config).await?;
            store.migrate().await?;
            println!("database is up to date");
        }
        Command::Keys { command } => {
            let store = connect(&config).await?;
            store.migrate().await?;
            keys(command, &store).await?;
        }
        Command::Sim(args) => {
            if !args.host.is_loopback() {
                return Err("the sim providers listen on loopback only".into());
            }
            let options = args.delays.options(SimOptions::default());
            let heard = args
                .loadtest_turns
                .map(|turns| voxbridge::loadtest::LoadScript::new(turns).stt_script());
            let suite =
                SimSuite::start_scripted((args.host, args.port).into(), options, heard).await?;
            println!("{}", suite.describe());
            shutdown_signal().await;
        }
        Command::Loadtest(args) => loadtest(args).await?,
    }
    Ok(())
}

async fn loadtest(args: LoadtestArgs) -> Result<(), Box<dyn std::error::Error>> {
    let server = match (args.server.is_empty(), args.api_key) {
        (false, Some(api_key)) => ServerSpec::External {
            urls: args.server,
            api_key,
            pids: args.server_pid,
        },
        _ => ServerSpec::Spawn {
            exe: std::env::current_exe()?,
        },
    };
    let options = LoadTestOptions {
        calls: args.calls,
        ramp_per_sec: args.ramp,
        duration: std::time::Duration::from_secs(args.duration),
        turns: args.turns,
        server,
        sim_url: args.sim_url,
        delays: args.delays.options(SimOptions::reference()),
        tts: args.tts.parse()?,
        stt: args.stt.parse()?,
        provider: voxbridge::telephony::TrunkProvider::parse(&args.provider).ok_or_else(|| {
            format!(
                "unknown provider {:?} (one of: {})",
                args.provider,
                voxbridge::telephony::TrunkProvider::names()
            )
        })?,
    };
    let report = voxbridge::loadtest::run(&options).await?;
    print!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        println!("results written to {}", path.display());
    }
    Ok(())
}

async fn connect(config: &Config) -> Result<Store, Box<dyn std::error::Error>> {
    Ok(Store::connect(&config.database_url, config.database_max_connections).await?)
}

async fn keys(command: KeysCommand, store: &Store) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        KeysCommand::Create { email } => {
            let key = store.create_api_key(&email).await?;
            println!("{}", key.plaintext);
            eprintln!(
                "(key {} for {}; store it now, it is not shown again)",
                key.row.key_prefix, key.row.email
            );
        }
        KeysCommand::List => {
            println!(
                "{:<38} {:<14} {:<28} {:<28} REVOKED",
                "ID", "PREFIX", "OWNER", "CREATED"
            );
            for key in store.list_api_keys().await? {
                println!(
                    "{:<38} {:<14} {:<28} {:<28} {}",
                    key.id,
                    key.key_prefix,
                    key.email,
                    key.created_at,
                    key.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
        KeysCommand::Revoke { id_or_prefix } => match store.revoke_api_key(&id_or_prefix).await? {
            0 => return Err(format!("no active key with id or prefix {id_or_prefix:?}").into()),
            n => println!("revoked {n} key(s)"),
        },
    }
    Ok(())
}
