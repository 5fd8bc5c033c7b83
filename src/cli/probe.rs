//! `lvmsync probe`: describe a device as lvmsync sees it.

use clap::Args;

/// Arguments of `lvmsync probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The device: `vg/lv`, `/dev/vg/lv` or `/dev/mapper/<dm-name>`.
    pub device: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `lvmsync probe`.
pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let info = lvmsync::dm::probe(&args.device)?;
    println!("{info}");
    Ok(())
}
