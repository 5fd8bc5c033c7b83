//! `lvmsync probe`: describe a device as lvmsync sees it.

use clap::Args;
use lvmsync::dm::ProbeReport;
use std::io::Write;

/// Arguments of `lvmsync probe`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  lvmsync probe vg0/data-snap
  lvmsync probe /dev/mapper/vg0-thin--snap --json

Kinds: plain, origin (of classic snapshots), cow-snapshot, thin, thin-pool.
Needs root (device-mapper ioctls).")]
pub struct ProbeArgs {
    /// The device: `vg/lv`, `/dev/vg/lv` or `/dev/mapper/<dm-name>`.
    pub device: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `lvmsync probe`.
pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let report = lvmsync::dm::probe(&args.device)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &report)?;
    }
    out.flush()?;
    Ok(())
}

/// The text form: one `key: value` line per fact.
fn write_text(out: &mut impl Write, r: &ProbeReport) -> std::io::Result<()> {
    let mut line = |k: &str, v: &dyn std::fmt::Display| writeln!(out, "{k:<16} {v}");
    line("device:", &r.device)?;
    line("kind:", &r.kind.as_str())?;
    line("size:", &format_args!("{} bytes", r.size))?;
    line("dm name:", &r.dm_name)?;
    line("dm uuid:", &r.dm_uuid.as_deref().unwrap_or("-"))?;
    line("dev:", &r.devnum)?;
    if let Some(lv) = &r.lv {
        line("lv:", lv)?;
    }
    if let Some(u) = &r.lvm_uuids {
        line("vg uuid:", &u.vg_uuid)?;
        line("lv uuid:", &u.lv_uuid)?;
    }
    if let Some(s) = &r.snapshot {
        line("origin:", &s.origin.as_deref().unwrap_or("-"))?;
        line("origin real:", &s.origin_real)?;
        line("cow device:", &s.cow_device)?;
        line("chunk size:", &format_args!("{} bytes", s.chunk_size))?;
        line("store:", &serde_plain(&s.store))?;
        line("status:", &serde_plain(&s.status))?;
    }
    if let Some(snaps) = &r.snapshots {
        line(
            "snapshots:",
            &if snaps.is_empty() {
                "-".to_string()
            } else {
                snaps.join(" ")
            },
        )?;
    }
    if let Some(t) = &r.thin {
        line("thin dev id:", &t.dev_id)?;
        line("thin status:", &serde_plain(&t.status))?;
    }
    if let Some(p) = &r.pool {
        line("pool:", &p.pool_device)?;
        line("pool metadata:", &p.metadata_device)?;
        line("pool data:", &p.data_device)?;
        line("block size:", &format_args!("{} bytes", p.block_size))?;
        line("pool status:", &serde_plain(&p.status))?;
    }
    for t in &r.table {
        line(
            "table:",
            &format_args!("{} {} {}", t.start.0, t.length.0, t.target.type_name()),
        )?;
    }
    Ok(())
}

/// A compact one-line rendering of a status struct (its JSON without quotes and braces).
fn serde_plain(v: &impl serde::Serialize) -> String {
    let json = serde_json::to_value(v).unwrap_or_default();
    match json {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}
