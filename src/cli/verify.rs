//! `lvmsync verify`: compare source and destination block by block (blake3 of each block,
//! through the block-hash walker), list the ranges that differ, and with `--repair` send
//! exactly those ranges through the journaled apply. Repair also seeds a destination that
//! already holds an old full copy: only its differing blocks travel.
//!
//! The destination may be remote (ssh://, tls://, quic://, tcp://): both ends then build a
//! blake3 hash tree and compare it from the root down over the transport, so an equal or
//! mostly-equal destination costs a few hashes per tree level; the differing ranges are listed
//! exactly as for a local destination, and a repair is a delta of only those ranges that the
//! far side applies through its normal journaled path.

use super::receive::ApplyArgs;
use super::send::{clip_to, device_size, NetArgs};
use clap::Args;
use lvmsync::blockhash::remote::{serve, HashClient, Served};
use lvmsync::blockhash::tree::{differing_blocks, HashTree};
use lvmsync::blockhash::{check_block_size, BlockExtents};
use lvmsync::journal::dest::Destination;
use lvmsync::journal::{apply_stream_held, ApplyOptions, ApplyReport, DestPaths};
use lvmsync::stream::progress::{Progress, ProgressMode};
use lvmsync::stream::{send_changes, EncodeOptions, Fingerprint, Header};
use lvmsync::transport::{open_channel, Channel, Dest, Session};
use lvmsync::units::Bytes;
use lvmsync::{ChangeSet, Error, ErrorClass};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Arguments of `lvmsync verify`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  lvmsync verify disk.img /backup/disk.img            # list differing ranges (exit 4 if any)
  lvmsync verify disk.img /dev/vg/copy --repair       # and fix them, journaled
  lvmsync verify vm.img ssh://backup/dev/vg1/vm-copy  # remote: runs `lvmsync verify
                                                      #   --serve-hashes` there through ssh
  lvmsync verify vm.img tls://backup:7000/vm --cert c.pem --key c.key --ca ca.pem --repair
                                                      # against `lvmsync receive --listen`

A remote destination is compared by hash tree: both ends hash their blocks, then only the
hashes of differing subtrees cross the network (an equal copy costs one root hash). With
--repair only the differing blocks are sent, and the far side applies them through its undo
journal (a destination that holds an old full copy is seeded this way). The far side applies
with its own options: those of `lvmsync receive --listen` (--state-dir, --snapback, --grow), or
for ssh:// the --remote-arg flags (e.g. --remote-arg=--state-dir=/var/lib/lvmsync); here
--dry-run lists and says what would be repaired. Exit codes against a remote destination: 4
when it differs (without --repair) or the far side can't read it (missing); a repair the far
side fails exits with its apply's code there (4 busy or too small, 5 bad stream, ...), as a
refused send does; 6 when the connection fails or is refused (unknown name, certificates).

Output: one differing range a line, `<offset_bytes> <length_bytes>`, then a summary line.")]
pub struct VerifyArgs {
    /// The source image or device (the truth).
    #[arg(value_name = "SOURCE", required_unless_present = "serve_hashes")]
    pub source: Option<PathBuf>,
    /// The destination to check: an image or device, or ssh://[user@]host[:port]/<path>,
    /// tls://host:port/<name>, quic://host:port/<name>, tcp://127.0.0.1:port/<name>.
    #[arg(value_name = "DEST", required_unless_present = "serve_hashes")]
    pub dest: Option<String>,
    /// Block size in bytes for the comparison (a power of two, 512 B to 16 MiB).
    #[arg(long, default_value_t = 65536)]
    pub block_size: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Send the differing blocks to the destination (journaled, atomic); a destination block
    /// device that is mounted or in use is refused (exit 4) before the comparison, and is
    /// held exclusively (O_EXCL) from then to the end of the repair.
    #[arg(long)]
    pub repair: bool,
    /// Internal, the far side of `verify ssh://...`: answer hash queries about DEV on
    /// stdin/stdout (docs/transport.md, "Verify").
    #[arg(long, hide = true, value_name = "DEV", conflicts_with_all = ["source", "dest", "repair", "json"])]
    pub serve_hashes: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

/// Run `lvmsync verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    if let Some(device) = &args.serve_hashes {
        return serve_stdio(device, &args.apply);
    }
    let (Some(source), Some(dest)) = (&args.source, &args.dest) else {
        unreachable!("clap requires SOURCE and DEST without --serve-hashes");
    };
    let bs = Bytes(args.block_size);
    check_block_size(bs)?;
    match dest.parse::<Dest>()? {
        Dest::File(path) => verify_local(args, source, &path),
        Dest::Stdout => {
            Err(Error::InvalidArgument("verify needs a destination to read, not `-`".into()).into())
        }
        remote => verify_remote(args, source, &remote),
    }
}

/// Both ends on this machine: one pass over both with the block-hash walker.
fn verify_local(args: &VerifyArgs, source: &Path, dest: &Path) -> anyhow::Result<()> {
    // A busy device can't be repaired: say so before the comparison, not after it. Claimed
    // from here to the end of the repair, so nobody can mount it while the differing blocks
    // are found and spooled (a mount would change what the comparison saw).
    let held = args
        .repair
        .then(|| Destination::open(dest, false))
        .transpose()?;
    let size = device_size(source)?;
    let dest_size = device_size(dest)?;
    let found = lvmsync::blockhash::compare_files(dest, source, Bytes(args.block_size))?;
    let diff = clip_to(&found, size)?;
    let dest_name = dest.display().to_string();
    let fix = report_diff(args, source, &dest_name, &diff)?;
    let Some(held) = held.filter(|_| fix) else {
        return Ok(());
    };
    if dest_size < size && !args.apply.grow {
        return Err(Error::Destination {
            dest: dest_name,
            detail: format!("is smaller than the source ({size} bytes); pass --grow"),
        }
        .into());
    }
    let header = repair_header(source, size, &diff, args.block_size)?;
    // Spool the repair delta: the apply reads it while nothing else writes the destination.
    let paths = DestPaths::new(&args.apply.state_dir, dest)?;
    let spool = paths.journal.with_extension("repair.lvd");
    let name = spool.display().to_string();
    let file = File::create(&spool).map_err(|e| Error::io(&spool, e))?;
    let sent = send_changes(
        source,
        &diff,
        &header,
        BufWriter::new(file),
        &name,
        EncodeOptions::default(),
        &mut |_, _| {},
    );
    let result = sent.and_then(|(out, _)| {
        drop(out);
        let input = BufReader::new(File::open(&spool).map_err(|e| Error::io(&spool, e))?);
        apply_repair(
            input,
            &name,
            &held,
            &args.apply.options(),
            args.apply.progress,
        )
    });
    let _ = std::fs::remove_file(&spool);
    let r = result?;
    let bytes = r.data_bytes + r.zeroed_bytes;
    tracing::info!(
        dest = %dest.display(),
        bytes,
        ranges = diff.len(),
        target = %r.header.target,
        "{}: repaired {bytes} bytes in {} ranges; now {}",
        dest.display(),
        diff.len(),
        r.header.target
    );
    Ok(())
}

/// A remote destination: hash trees on both ends, compared from the root down over `dest`'s
/// transport; a repair goes back through the same channel.
fn verify_remote(args: &VerifyArgs, source: &Path, dest: &Dest) -> anyhow::Result<()> {
    let size = Bytes(device_size(source)?);
    let mut ch = open_channel(dest, &args.net.options())?;
    let endpoint = ch.endpoint().to_string();
    match exchange(args, source, size, &mut *ch, &endpoint) {
        Ok(()) => Ok(ch.close()?),
        // Differences without --repair, the server's own words about its device, or its
        // classified verdict on a repair.
        Err(e)
            if e.downcast_ref::<Error>().is_some_and(|e| {
                matches!(e, Error::Destination { .. } | Error::Remote { .. })
                    && e.class() != ErrorClass::Transport
            }) =>
        {
            let _ = ch.close();
            Err(e)
        }
        // A lost channel, or a repair refused by an older far side (no class): over ssh its
        // exit status and stderr say why; over the network, closing a socket the far side
        // already closed only fails with a broken pipe, so the exchange's own error (with
        // the far side's reason, if it sent one) is the one to report.
        Err(e) => match ch.close() {
            Err(closed) if matches!(dest, Dest::Ssh { .. }) => Err(closed.into()),
            _ => Err(e),
        },
    }
}

/// The client side of the hash-query protocol, for a source of `size` bytes.
fn exchange(
    args: &VerifyArgs,
    source: &Path,
    size: Bytes,
    ch: &mut dyn Channel,
    endpoint: &str,
) -> anyhow::Result<()> {
    let bs = Bytes(args.block_size);
    let mut client = HashClient::new(&mut *ch, endpoint);
    let dest_len = client.remote_len()?;
    let common = Bytes(size.0.min(dest_len.0));
    // The far side hashes while we do.
    client.start_build(bs, common)?;
    let local = HashTree::build(source, common, bs)?;
    let (blocks, root) = client.built()?;
    if blocks != local.blocks() {
        return Err(Error::Transport {
            endpoint: endpoint.to_string(),
            detail: format!(
                "the far side hashed {blocks} blocks, we hashed {}",
                local.blocks()
            ),
        }
        .into());
    }
    let differing = if root == local.root() {
        Vec::new()
    } else {
        differing_blocks(&local, &mut client)?
    };
    tracing::debug!(
        dest = endpoint,
        blocks,
        differing = differing.len(),
        hashes_asked = client.nodes_asked(),
        "{endpoint}: compared {blocks} blocks by hash tree; asked for {} hashes",
        client.nodes_asked()
    );
    let mut found = BlockExtents::new(bs, common);
    for b in differing {
        found.push_block(b);
    }
    let diff = clip_to(&found.finish(dest_len, size)?, size.0)?;
    let verdict = report_diff(args, source, endpoint, &diff);
    if matches!(verdict, Ok(true)) && args.apply.dry_run {
        tracing::info!(
            dest = endpoint,
            bytes = diff.changed_bytes().0,
            ranges = diff.len(),
            "{endpoint}: would repair {} bytes in {} ranges (--dry-run)",
            diff.changed_bytes(),
            diff.len()
        );
        client.quit()?;
        return Ok(());
    }
    let header = verdict.and_then(|fix| {
        fix.then(|| repair_header(source, size.0, &diff, args.block_size))
            .transpose()
    });
    let Ok(Some(header)) = header else {
        client.quit()?;
        return header.map(|_| ());
    };
    client.start_repair()?;
    let mut progress = Progress::new(args.apply.progress, "repair");
    let sent = send_changes(
        source,
        &diff,
        &header,
        client.channel(),
        endpoint,
        EncodeOptions::default(),
        &mut |d, t| progress.update(d, t),
    );
    progress.finish();
    let sent = match sent {
        Ok(sent) => sent,
        // A write to the channel failed: the far side gave up on the repair (a busy or too
        // small destination refuses it at once) and closed; its reply says why, in its class.
        Err(e) if matches!(&e, Error::Io { path, .. } if path == Path::new(endpoint)) => {
            return Err(client.repaired().err().unwrap_or(e).into());
        }
        Err(e) => return Err(e.into()),
    };
    sent.0.end_writes().map_err(|e| Error::Transport {
        endpoint: endpoint.to_string(),
        detail: format!("ending the repair stream: {e}"),
    })?;
    client.repaired()?;
    tracing::info!(
        dest = endpoint,
        bytes = diff.changed_bytes().0,
        ranges = diff.len(),
        target = %header.target,
        "{endpoint}: repaired {} bytes in {} ranges; now {}",
        diff.changed_bytes(),
        diff.len(),
        header.target
    );
    Ok(())
}

/// Print the differing ranges. `Ok(true)`: there are some and `--repair` asks to fix them;
/// `Ok(false)`: nothing differs; `Err`: they differ and no repair was asked for (exit 4).
fn report_diff(
    args: &VerifyArgs,
    source: &Path,
    dest: &str,
    diff: &ChangeSet,
) -> anyhow::Result<bool> {
    if args.json {
        println!("{}", serde_json::to_string(diff)?);
    } else {
        for e in diff.extents() {
            println!("{} {}", e.offset, e.length);
        }
        println!(
            "# {} differing ranges, {} bytes, block size {}",
            diff.len(),
            diff.changed_bytes(),
            args.block_size
        );
    }
    std::io::stdout().flush()?;
    if diff.is_empty() {
        return Ok(false);
    }
    if !args.repair {
        return Err(Error::Destination {
            dest: dest.to_string(),
            detail: format!(
                "differs from {} in {} ranges ({} bytes); run `lvmsync verify --repair` to fix",
                source.display(),
                diff.len(),
                diff.changed_bytes()
            ),
        }
        .into());
    }
    Ok(true)
}

/// The repair stream's header. It has no base: the comparison itself established what
/// differs, so the receiver applies it with `force`. Its target is the identity a full send
/// of `source` would record, so incremental sends can follow a repair-seeded destination.
fn repair_header(source: &Path, size: u64, diff: &ChangeSet, block: u64) -> anyhow::Result<Header> {
    Ok(Header {
        source: source.display().to_string(),
        source_uuid: String::new(),
        device_size: Bytes(size),
        base_size: Bytes(0),
        block_size: Bytes(block),
        base: Fingerprint::NONE,
        target: super::send::target_identity(source, Bytes(size))?,
        created_unix: lvmsync::journal::state::now_unix(),
        touched_bytes: diff.changed_bytes(),
    })
}

/// Apply a repair stream through the journaled path (base check off: see [`repair_header`])
/// into `dest`, claimed by the caller.
fn apply_repair(
    input: impl Read + Send,
    name: &str,
    dest: &Destination,
    opts: &ApplyOptions,
    mode: ProgressMode,
) -> lvmsync::Result<ApplyReport> {
    let mut progress = Progress::new(mode, "repair");
    let opts = ApplyOptions {
        force: true,
        resume: false,
        resume_if_continuation: false,
        ..opts.clone()
    };
    let r = apply_stream_held(input, name, dest, &opts, &mut |d, t| progress.update(d, t));
    progress.finish();
    r
}

/// Answer hash queries (and apply a repair) for `device` on `ch`, for the peer it names.
fn answer_on(
    ch: impl Read + Write + Send,
    peer: &str,
    device: &Path,
    opts: &ApplyOptions,
    mode: ProgressMode,
) -> anyhow::Result<()> {
    let mut repair = |input: &mut (dyn Read + Send)| {
        // Claimed for the repair only: the hash queries before it are reads.
        Destination::open(device, false)
            .and_then(|held| apply_repair(input, peer, &held, opts, mode))
            .map(|r| {
                format!(
                    "{}: repaired {} bytes; now {}",
                    device.display(),
                    r.data_bytes + r.zeroed_bytes,
                    r.header.target
                )
            })
    };
    match serve(ch, peer, device, &mut repair)? {
        Served::Quit => tracing::info!(
            dest = %device.display(),
            peer,
            "{}: answered hash queries from {peer}",
            device.display()
        ),
        Served::Repaired(summary) => tracing::info!(
            dest = %device.display(),
            peer,
            "{summary} (from {peer})"
        ),
    }
    Ok(())
}

/// `lvmsync receive --listen`'s hook for a `Query` session: answer it with the receiver's
/// apply options (a repair is applied like any stream, journaled).
pub fn answer(session: Session, opts: &ApplyOptions, mode: ProgressMode) -> anyhow::Result<()> {
    let device = session.device.clone();
    let mut ch = session.into_channel();
    let peer = ch.endpoint().to_string();
    let result = answer_on(&mut ch, &peer, &device, opts, mode);
    // The client may already be gone after its last question; that is not a failure.
    let _ = Box::new(ch).close();
    result
}

/// stdin and stdout as one channel (the far side of `verify ssh://...`).
struct Stdio {
    read: std::io::Stdin,
    write: BufWriter<std::io::Stdout>,
}

impl Read for Stdio {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read.read(buf)
    }
}

impl Write for Stdio {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.write.flush()
    }
}

/// `lvmsync verify --serve-hashes <dev>`: answer on stdin/stdout (nothing else may print to
/// stdout here; messages go to stderr, which ssh shows the verifier).
fn serve_stdio(device: &Path, apply: &ApplyArgs) -> anyhow::Result<()> {
    let ch = Stdio {
        read: std::io::stdin(),
        write: BufWriter::with_capacity(1 << 20, std::io::stdout()),
    };
    answer_on(
        ch,
        "ssh client",
        device,
        &apply.options(),
        ProgressMode::None,
    )
}
