//! Subcommands whose issues have not landed yet: they parse anything and exit 2 with a clear message.

use clap::Args;

/// Arguments of a planned subcommand (accepted and ignored until it is implemented).
#[derive(Debug, Args)]
pub struct PlannedArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// Fail with "not implemented yet" for subcommand `name`.
pub fn run(name: &'static str, _args: &PlannedArgs) -> anyhow::Result<()> {
    Err(lvmsync::Error::NotImplemented(name).into())
}
