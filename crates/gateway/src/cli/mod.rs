//! The `waav-gateway` command line.
//!
//! A custom gateway build (one that links extra plugin crates) reuses it as its whole `main`:
//! `fn main() -> std::process::ExitCode { waav_gateway::cli::main() }`.

use crate::config::{CliOverrides, GatewayConfig, LogFormat};
use crate::registry::Registry;
use crate::server::{shutdown_signal, Gateway};
use clap::{Parser, Subcommand};

mod tryout;
use std::path::PathBuf;
use std::process::ExitCode;

/// WaaV Gateway: one real-time voice API in front of every STT, TTS and speech-to-speech provider.
#[derive(Debug, Parser)]
#[command(name = "waav-gateway", version, about, long_about = None)]
pub struct Cli {
    /// YAML configuration file.
    #[arg(short, long, global = true, env = "WAAV_CONFIG")]
    pub config: Option<PathBuf>,
    /// Bind address (overrides HOST and the file).
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Bind port (overrides PORT and the file).
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Log format (overrides LOG_FORMAT and the file).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// List the plugins this build registers.
    Plugins,
    /// Validate a configuration file and print the effective configuration, secrets masked.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Transcribe a 16-bit PCM WAV file with an STT provider (default: the local Whisper).
    Transcribe {
        /// The WAV file (any sample rate, mono or stereo).
        file: PathBuf,
        /// STT provider id or alias.
        #[arg(long, default_value = "local")]
        provider: String,
        /// Model ("" for the provider's default).
        #[arg(long, default_value = "")]
        model: String,
        /// Also print interim results (to stderr).
        #[arg(long)]
        interim: bool,
    },
    /// Synthesize text into a WAV file with a TTS provider (default: the local Piper voice).
    Speak {
        /// The text.
        text: String,
        /// Output WAV file.
        #[arg(short, long, default_value = "out.wav")]
        output: PathBuf,
        /// TTS provider id or alias.
        #[arg(long, default_value = "local")]
        provider: String,
        /// Voice id ("" for the provider's default).
        #[arg(long, default_value = "")]
        voice: String,
        /// Output sample rate.
        #[arg(long, default_value_t = 22_050)]
        sample_rate: u32,
    },
}

impl Cli {
    fn overrides(&self) -> CliOverrides {
        CliOverrides {
            host: self.host.clone(),
            port: self.port,
            log_format: self.log_format,
        }
    }
}

/// Parses the process arguments and runs; the whole `main` of a gateway binary.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        None | Some(Command::Serve) => serve(&cli),
        Some(Command::Plugins) => plugins(&cli).map(|table| print!("{table}")),
        Some(Command::CheckConfig { file }) => {
            check_config(file, &cli.overrides()).map(|yaml| print!("{yaml}"))
        }
        Some(Command::Transcribe {
            file,
            provider,
            model,
            interim,
        }) => offline(&cli, |config| async move {
            let text = tryout::transcribe(&config, file, provider, model, |t| {
                if *interim {
                    eprintln!("… {t}");
                }
            })
            .await?;
            print!("{text}");
            Ok(())
        }),
        Some(Command::Speak {
            text,
            output,
            provider,
            voice,
            sample_rate,
        }) => offline(&cli, |config| async move {
            let secs = tryout::speak(&config, text, output, provider, voice, *sample_rate).await?;
            eprintln!("wrote {} ({secs:.2} s of audio)", output.display());
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Runs a one-shot command with the configuration and quiet logs.
fn offline<'a, F, Fut>(cli: &'a Cli, f: F) -> Result<(), String>
where
    F: FnOnce(GatewayConfig) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + 'a,
{
    let config =
        GatewayConfig::load(cli.config.as_deref(), &cli.overrides()).map_err(|e| e.to_string())?;
    crate::telemetry::init_logging(config.server.log_format);
    runtime()?.block_on(f(config))
}

fn serve(cli: &Cli) -> Result<(), String> {
    let config =
        GatewayConfig::load(cli.config.as_deref(), &cli.overrides()).map_err(|e| e.to_string())?;
    crate::telemetry::init_logging(config.server.log_format);
    runtime()?.block_on(async move {
        let addr = format!("{}:{}", config.server.host, config.server.port);
        let gateway = Gateway::start(config).await.map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tracing::info!(%addr, "WaaV Gateway listening");
        gateway
            .serve(listener, shutdown_signal())
            .await
            .map_err(|e| format!("server error: {e}"))
    })
}

/// Validates `file` against the linked plugins; returns the effective configuration as YAML
/// with secrets masked.
pub fn check_config(file: &std::path::Path, cli: &CliOverrides) -> Result<String, String> {
    let config = GatewayConfig::load(Some(file), cli).map_err(|e| e.to_string())?;
    Registry::build(&config.plugins).map_err(|e| e.to_string())?;
    Ok(format!(
        "# {}: valid\n{}",
        file.display(),
        config.to_masked_yaml()
    ))
}

/// A readable table of the registered plugins (and their enabled state under `cli.config`).
pub fn plugins(cli: &Cli) -> Result<String, String> {
    let config =
        GatewayConfig::load(cli.config.as_deref(), &cli.overrides()).map_err(|e| e.to_string())?;
    let registry = Registry::build(&config.plugins).map_err(|e| e.to_string())?;
    let mut rows = vec![[
        "KIND".to_owned(),
        "ID".to_owned(),
        "NAME".to_owned(),
        "VERSION".to_owned(),
        "ALIASES".to_owned(),
        "ENABLED".to_owned(),
        "STAGES".to_owned(),
    ]];
    for e in registry.entries() {
        rows.push([
            e.handle.kind().as_str().to_owned(),
            if e.is_default_instance() {
                e.id.to_owned()
            } else {
                format!("{} ({})", e.id, e.info.id)
            },
            e.info.name.to_owned(),
            e.info.version.to_owned(),
            if e.is_default_instance() {
                e.info.aliases.join(",")
            } else {
                String::new()
            },
            if e.section.enabled { "yes" } else { "no" }.to_owned(),
            match &e.handle {
                waav_plugin_api::PluginHandle::Processor(p) => p
                    .stages()
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                _ => String::new(),
            },
        ]);
    }
    for b in registry.broken() {
        rows.push([
            "?".into(),
            b.module.to_owned(),
            format!("BROKEN: {}", b.error),
            String::new(),
            String::new(),
            "no".into(),
            String::new(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let processors = registry.processor_instances();
    if !processors.is_empty() {
        let budget = crate::pipeline::frame_budget(std::time::Duration::from_millis(20));
        out.push_str(&format!(
            "\nPROCESSOR INSTANCES (budget {} µs per 20 ms frame each)\n",
            budget.as_micros()
        ));
        for p in processors {
            let stages: Vec<&str> = p.stages.iter().map(|s| s.as_str()).collect();
            let settings = serde_json::Value::Object(p.settings.as_map().clone());
            out.push_str(&format!(
                "{}  {}  {}  {}\n",
                p.name,
                p.plugin,
                stages.join(","),
                settings
            ));
        }
    }
    Ok(out)
}
