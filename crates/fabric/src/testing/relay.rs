//! A unix-socket relay for tests: listens at a path and copies each
//! connection to a target socket (the Docker Engine's), so a test can
//! take "the engine's socket" away and bring it back without touching the
//! real daemon. Stopping it closes every relayed connection, as a daemon
//! that goes away does.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A running relay; stopped when dropped.
pub struct UnixRelay {
    path: PathBuf,
    stopped: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl UnixRelay {
    /// Listens at `path` (replacing a stale socket there) and relays to
    /// `target`.
    pub fn start(path: &Path, target: &Path) -> std::io::Result<UnixRelay> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let stopped = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let (flag, held, target) = (stopped.clone(), conns.clone(), target.to_owned());
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = UnixStream::connect(&target) else {
                    continue;
                };
                let pair = [&client, &server].map(|s| s.try_clone());
                let ([Ok(c2), Ok(s2)], Ok(c3), Ok(s3)) =
                    (pair, client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                if let Ok(mut h) = held.lock() {
                    h.push(c3);
                    h.push(s3);
                }
                std::thread::spawn(move || copy(client, s2));
                std::thread::spawn(move || copy(server, c2));
            }
        });
        Ok(UnixRelay {
            path: path.to_owned(),
            stopped,
            conns,
            accept: Some(accept),
        })
    }

    /// Stops listening, removes the socket and closes every connection.
    pub fn stop(&mut self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the accept loop, which sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        if let Ok(mut conns) = self.conns.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for UnixRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies `from` into `to` until either end closes.
fn copy(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_relays_and_stopping_closes_what_it_relayed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.sock");
        let listener = UnixListener::bind(&target).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            // Holds the connection open until the relay closes it.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let path = dir.path().join("relay.sock");
        let mut relay = UnixRelay::start(&path, &target).unwrap();
        let mut c = UnixStream::connect(&path).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        relay.stop();
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap(), 0, "the relay closed it");
        assert!(UnixStream::connect(&path).is_err(), "nobody listens now");
        echo.join().unwrap();
    }
}
