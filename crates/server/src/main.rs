//! The `waav-gateway` binary: the gateway with every provider crate this build enables.

// Linking a provider crate registers its plugins.
#[cfg(feature = "assemblyai")]
use waav_assemblyai as _;
#[cfg(feature = "aws")]
use waav_aws as _;
#[cfg(feature = "azure")]
use waav_azure as _;
#[cfg(feature = "cartesia")]
use waav_cartesia as _;
#[cfg(feature = "deepgram")]
use waav_deepgram as _;
#[cfg(feature = "elevenlabs")]
use waav_elevenlabs as _;
#[cfg(feature = "google")]
use waav_google as _;
#[cfg(feature = "hume")]
use waav_hume as _;
#[cfg(feature = "ibm")]
use waav_ibm as _;
#[cfg(feature = "lmnt")]
use waav_lmnt as _;
#[cfg(feature = "local")]
use waav_local as _;
#[cfg(feature = "openai")]
use waav_openai as _;
#[cfg(feature = "playht")]
use waav_playht as _;
#[cfg(feature = "processors")]
use waav_processors as _;

fn main() -> std::process::ExitCode {
    waav_gateway::cli::main()
}
