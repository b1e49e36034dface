//! The `shoal` command line (clap). Contracts are frozen in docs/CLI.md.
//!
//! Each subcommand lives in its own file; this one parses, sets up logging
//! and maps errors to exit codes (0 success, 1 failure, 2 usage).

mod agent;
mod chaos;
pub mod dev;
pub mod http;
mod init;
mod kv;
mod members;
pub mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use init::{init_cluster, InitOptions};

#[derive(Parser, Debug)]
#[command(
    name = "shoal",
    version,
    about = "A Kubernetes-shaped orchestrator built as a distributed actor system"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a new cluster's CA, certificates, token, gossip key and node configs.
    Init {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Zones assigned round-robin to the nodes.
        #[arg(long, value_delimiter = ',', default_value = "a,b,c")]
        zones: Vec<String>,
        /// Node K's host address, one a node, for a cluster across machines
        /// (default: every node on loopback).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<std::net::IpAddr>,
        /// How many of the nodes (the last ones) are worker-only: certified
        /// for the worker role alone, without the admin token or the
        /// secrets key.
        #[arg(long, default_value_t = 0)]
        workers: usize,
    },
    /// Run one node.
    Agent {
        #[arg(long)]
        config: PathBuf,
    },
    /// Decommission a node: announce `leaving`, leave, and stop its agent.
    Leave {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a local cluster of child agents (creates it on first use).
    Dev {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = ".shoal-dev")]
        data_dir: PathBuf,
        /// The nodes' pod runtime: `process` (containers' commands as
        /// processes) or `sim` (hollow pods).
        #[arg(long, value_enum, default_value_t = crate::kubelet::config::RuntimeKind::Process)]
        runtime: crate::kubelet::config::RuntimeKind,
        /// Pod networking: `cni` (a network namespace per pod on a bridge
        /// per node; root), `host` (loopback pod IPs) or `auto`.
        #[arg(long, value_enum, default_value_t = crate::kubelet::config::PodNetwork::Auto)]
        network: crate::kubelet::config::PodNetwork,
        /// The pods' addresses; each node is given a /24 of it when it
        /// registers.
        #[arg(long, default_value = "10.88.0.0/16")]
        pod_cidr: String,
    },
    /// Show a node's membership view.
    Members {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The replicated key-value store, user namespace (like etcdctl).
    Kv {
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: kv::KvAction,
    },
    /// Store operations.
    Store {
        #[command(subcommand)]
        action: kv::StoreAction,
    },
    /// Internal: runs one container instance for the process runtime and
    /// outlives its agent (see `kubelet::process::shim`).
    #[command(hide = true)]
    Shim(crate::kubelet::process::shim::ShimArgs),
    /// The real control plane against N hollow (sim) nodes, in one process.
    Sim {
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = 1000)]
        pods: usize,
        #[arg(long, default_value_t = 10)]
        deployments: usize,
        /// One JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Record no Events (the scheduler's, the controllers' and the
        /// hollow kubelets'), to compare with them on.
        #[arg(long)]
        no_events: bool,
        /// The workload is one DaemonSet (a pod on every node) instead of
        /// Deployments; --pods and --deployments are ignored.
        #[arg(long)]
        daemonset: bool,
        /// The workload is --deployments StatefulSets (Parallel, each pod
        /// with a claim of the default class, provisioned on its node)
        /// instead of Deployments.
        #[arg(long)]
        statefulsets: bool,
    },
    /// Inject faults into the cluster's transport and gossip.
    Chaos {
        #[arg(long)]
        config: PathBuf,
        /// Lifetime of the rule (e.g. 60s, 500ms, 5m).
        #[arg(long, global = true, value_parser = chaos::parse_duration)]
        ttl: Option<std::time::Duration>,
        #[command(subcommand)]
        action: chaos::Action,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Shim(args) = &cli.command {
        return crate::kubelet::process::shim::main(args);
    }
    init_logging();
    crate::install_crypto_provider();
    let result = match cli.command {
        Command::Init {
            out,
            nodes,
            zones,
            hosts,
            workers,
        } => init::run(
            &out,
            &init::InitOptions {
                nodes,
                zones,
                hosts,
                workers,
            },
        ),
        Command::Agent { config } => agent::run(&config),
        Command::Leave { config } => members::leave(&config),
        Command::Dev {
            nodes,
            data_dir,
            runtime,
            network,
            pod_cidr,
        } => dev::run(
            nodes,
            &data_dir,
            &dev::Options {
                runtime,
                network,
                pod_cidr,
            },
        ),
        Command::Members { config, json } => members::run(&config, json),
        Command::Chaos {
            config,
            ttl,
            action,
        } => chaos::run(&config, ttl, action),
        Command::Kv { config, action } => kv::run(&config, action),
        Command::Sim {
            nodes,
            pods,
            deployments,
            json,
            timeout_secs,
            no_events,
            daemonset,
            statefulsets,
        } => sim::run(sim::SimOptions {
            daemonset,
            statefulsets,
            nodes,
            pods,
            deployments,
            json,
            events: !no_events,
            timeout: std::time::Duration::from_secs(timeout_secs),
        }),
        Command::Store {
            action: kv::StoreAction::Status { config, json },
        } => kv::status(&config, json),
        Command::Shim(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,quinn=warn,rustls=warn,openraft=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A small multi-thread runtime for client commands.
pub(crate) fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}
