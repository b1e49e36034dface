//! `kubectl port-forward` for the process runtime: a TCP connection made
//! from inside the pod's network namespace (a thread of its own joins it
//! with `setns`, connects, and ends; the socket stays in the namespace it
//! was made in). `localhost` is tried first, as upstream's runtimes do, then
//! the pod IP (a server bound to its pod IP alone). Without a sandbox the
//! pod shares the host's network: its pod IP first, then localhost.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// How long one connection attempt may take.
const CONNECT: Duration = Duration::from_secs(5);

/// Connects to `port` of the pod whose network namespace is `netns` (None:
/// the host's) and whose address is `pod_ip`.
pub async fn connect(
    netns: Option<PathBuf>,
    pod_ip: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, crate::RuntimeError> {
    connect_to(netns, pod_ip, port)
        .await
        .map_err(crate::RuntimeError::Host)
}

async fn connect_to(
    netns: Option<PathBuf>,
    pod_ip: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut targets = vec![local];
    if let Ok(ip) = pod_ip.parse::<IpAddr>() {
        if netns.is_some() {
            targets.push(ip);
        } else {
            targets.insert(0, ip);
        }
    }
    targets.dedup();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: a pool thread must never change namespace.
    std::thread::Builder::new()
        .name("port-forward".into())
        .spawn(move || {
            let _ = tx.send(connect_in(netns, &targets, port));
        })
        .map_err(|e| e.to_string())?;
    let stream = rx
        .await
        .map_err(|_| "the connecting thread died".to_string())??;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())
}

fn connect_in(
    netns: Option<PathBuf>,
    targets: &[IpAddr],
    port: u16,
) -> Result<std::net::TcpStream, String> {
    if let Some(ns) = &netns {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(ns).map_err(|e| format!("{}: {e}", ns.display()))?;
        // SAFETY: setns on a descriptor we hold, for this thread alone.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "entering {}: {}",
                ns.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    let mut last = String::from("no address to connect to");
    for ip in targets {
        match std::net::TcpStream::connect_timeout(&SocketAddr::new(*ip, port), CONNECT) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("dial tcp {}: {e}", SocketAddr::new(*ip, port)),
        }
    }
    Err(last)
}
