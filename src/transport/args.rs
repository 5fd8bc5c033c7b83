//! Command-line flags for the transports, ready to `#[command(flatten)]` into `send` and
//! `receive`, so the CLI files only forward them.

use super::client::ConnectOptions;
use super::server::{Allow, ServerOptions};
use super::ssh::SshOptions;
use super::tlsconf::TlsFiles;
use super::url::ListenUrl;
use crate::Result;
use clap::Args;
use std::path::PathBuf;

/// Sender flags for tls://, quic:// and ssh:// destinations.
#[derive(Debug, Clone, Default, Args)]
pub struct SendTransportArgs {
    /// Client certificate (PEM) for tls:// and quic:// (mutual TLS).
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// CA (PEM) that signed the server's certificate.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// ssh identity file for ssh:// destinations (ssh -i).
    #[arg(long, value_name = "FILE")]
    pub ssh_identity: Option<PathBuf>,
    /// Extra ssh argument, repeatable (e.g. --ssh-arg=-oStrictHostKeyChecking=yes).
    #[arg(long = "ssh-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub ssh_args: Vec<String>,
    /// The lvmsync binary on the ssh:// far side.
    #[arg(long, value_name = "PATH", default_value = "lvmsync")]
    pub remote_lvmsync: String,
}

impl SendTransportArgs {
    /// The library options; `remote_args` go to the remote `lvmsync receive` (e.g. `--force`).
    pub fn connect_options(&self, remote_args: Vec<String>) -> ConnectOptions {
        ConnectOptions {
            tls: TlsFiles {
                cert: self.cert.clone(),
                key: self.key.clone(),
                ca: self.ca.clone(),
            },
            ssh: SshOptions {
                identity: self.ssh_identity.clone(),
                extra_args: self.ssh_args.clone(),
                remote_lvmsync: self.remote_lvmsync.clone(),
                remote_args,
                ..SshOptions::default()
            },
        }
    }
}

/// Receiver flags for `lvmsync receive --listen`.
#[derive(Debug, Clone, Default, Args)]
pub struct ListenArgs {
    /// Serve senders instead of reading stdin: tls://addr:port, quic://addr:port or
    /// tcp://127.0.0.1:port (loopback only).
    #[arg(long, value_name = "URL")]
    pub listen: Option<String>,
    /// Server certificate (PEM).
    #[arg(long, value_name = "PEM", requires = "listen")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "PEM", requires = "listen")]
    pub key: Option<PathBuf>,
    /// CA (PEM) that must have signed every client's certificate.
    #[arg(long, value_name = "PEM", requires = "listen")]
    pub client_ca: Option<PathBuf>,
    /// Map a name clients may ask for to a device or file: <name>=<device>; repeatable.
    #[arg(long, value_name = "NAME=DEVICE", requires = "listen")]
    pub allow: Vec<String>,
    /// Exit after the first accepted client (with its outcome) instead of serving forever.
    #[arg(long, requires = "listen")]
    pub once: bool,
}

impl ListenArgs {
    /// The parsed listen URL and server options, or `None` without `--listen`.
    pub fn server(&self) -> Result<Option<(ListenUrl, ServerOptions)>> {
        let Some(url) = &self.listen else {
            return Ok(None);
        };
        let allow = self
            .allow
            .iter()
            .map(|a| a.parse::<Allow>())
            .collect::<Result<Vec<_>>>()?;
        let opts = ServerOptions {
            tls: TlsFiles {
                cert: self.cert.clone(),
                key: self.key.clone(),
                ca: self.client_ca.clone(),
            },
            allow,
        };
        Ok(Some((url.parse()?, opts)))
    }
}
