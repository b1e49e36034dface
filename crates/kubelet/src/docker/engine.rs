//! The Docker Engine as the docker runtime reaches it: bollard over the
//! engine's unix socket, pinned to API 1.41 (Docker 20.10, the oldest
//! engine shoal supports; newer engines serve it too), and the pause image
//! the pod sandboxes run, built by shoal itself at first use.
//!
//! The pause image holds one file, the static `pause` program that
//! build.rs compiles from `pause.c`. It is brought in with the equivalent
//! of `docker import` (`POST /images/create?fromSrc=-`), so no registry is
//! ever asked for it. Its tag carries a hash of the program, so an agent
//! with a changed program imports its own image beside the old one.

use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::{ClientVersion, Docker};
use futures::StreamExt;

/// The engine's default socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The API version shoal speaks (Docker Engine 20.10).
pub const API: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// How long one API call may take before it fails (pulls stream, and
/// have deadlines of their own).
const CALL_TIMEOUT_SECS: u64 = 120;

/// How often the engine is pinged while it answers (and how long a ping
/// may take).
pub const HEALTH_PERIOD: Duration = Duration::from_secs(5);

/// The static pause program (see build.rs).
pub static PAUSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The repository of the pause image.
pub const PAUSE_REPO: &str = "shoal/pause";

/// The pause image's tag for this build: a hash of the program.
pub fn pause_tag() -> String {
    let digest = fnv1a(PAUSE);
    format!("{digest:016x}")
}

/// The pause image for this build, `shoal/pause:<hash>`.
pub fn pause_image() -> String {
    format!("{PAUSE_REPO}:{}", pause_tag())
}

/// FNV-1a over the bytes: enough to tell builds of the program apart (it
/// names an image, it guards nothing).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A connection to one Docker Engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    socket: String,
}

impl Engine {
    /// A client of the engine at `socket` (nothing is sent yet: see
    /// [`Engine::ping`]).
    pub fn connect(socket: &Path) -> Result<Engine, String> {
        let path = socket
            .to_str()
            .ok_or_else(|| format!("the Docker socket path {socket:?} is not UTF-8"))?;
        let docker = Docker::connect_with_unix(path, CALL_TIMEOUT_SECS, &API)
            .map_err(|e| format!("the Docker Engine at {path}: {e}"))?;
        Ok(Engine {
            docker,
            socket: path.to_string(),
        })
    }

    /// The socket it reaches the engine by.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// Follows whether the engine answers, telling `health` each change
    /// (None: it does; else why not), until `alive` says the runtime is
    /// gone. The engine's
    /// event stream is kept open, so a socket that closes is seen at once;
    /// a ping every [`HEALTH_PERIOD`] sees an engine that hangs.
    pub async fn follow_health(self, health: impl Fn(Option<String>), alive: impl Fn() -> bool) {
        use bollard::query_parameters::EventsOptionsBuilder;
        let filters = std::collections::HashMap::from([("type", vec!["daemon"])]);
        let mut events = None;
        let mut last: Option<Option<String>> = None;
        while alive() {
            let state = self
                .ping(HEALTH_PERIOD)
                .await
                .err()
                .map(|e| format!("{e} (socket {})", self.socket));
            let up = state.is_none();
            if last.as_ref() != Some(&state) {
                match &state {
                    Some(why) => tracing::warn!("docker runtime: {why}"),
                    None => tracing::info!("docker runtime: the Docker Engine answers"),
                }
                health(state.clone());
                last = Some(state);
            }
            if !up {
                events = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let stream = events.get_or_insert_with(|| {
                self.docker
                    .events(Some(EventsOptionsBuilder::new().filters(&filters).build()))
            });
            tokio::select! {
                // The stream ends (or fails) when the socket closes.
                _ = async { while let Some(Ok(_)) = stream.next().await {} } => events = None,
                _ = tokio::time::sleep(HEALTH_PERIOD) => {}
            }
        }
    }

    /// The bollard client.
    pub fn api(&self) -> &Docker {
        &self.docker
    }

    /// Whether the engine answers within `deadline`, and its API version.
    pub async fn ping(&self, deadline: Duration) -> Result<String, String> {
        let version = tokio::time::timeout(deadline, self.docker.version())
            .await
            .map_err(|_| format!("the Docker Engine did not answer within {deadline:?}"))?
            .map_err(|e| format!("the Docker Engine: {e}"))?;
        let api = version.api_version.unwrap_or_default();
        let (major, minor) = api
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .unwrap_or((0, 0));
        if (major, minor) < (API.major_version, API.minor_version) {
            return Err(format!(
                "the Docker Engine speaks API {api}; shoal needs 1.41 (Docker 20.10) or later"
            ));
        }
        Ok(api)
    }

    /// Container `id`'s log (stdout and stderr; `follow`, `timestamps`,
    /// the last `tail` lines) in the pieces the engine sends. A terminal's
    /// log is one raw stream, which bollard's decoder holds until a
    /// newline that may never come; it is read here off the socket as it
    /// arrives instead. Other containers' frames go through bollard.
    pub async fn logs(
        &self,
        id: &str,
        follow: bool,
        timestamps: bool,
        tail: Option<u64>,
    ) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>, String> {
        let tty = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| format!("the engine: {e}"))?
            .config
            .and_then(|c| c.tty)
            .unwrap_or(false);
        if !tty {
            let mut options = bollard::query_parameters::LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .follow(follow)
                .timestamps(timestamps);
            if let Some(n) = tail {
                options = options.tail(&n.to_string());
            }
            let stream = self.docker.logs(id, Some(options.build()));
            return Ok(stream
                .map(|c| {
                    c.map(|c| c.into_bytes())
                        .map_err(|e| format!("the engine's logs: {e}"))
                })
                .boxed());
        }
        use http_body_util::BodyExt;
        let sock = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| format!("the Docker socket {}: {e}", self.socket))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(sock))
                .await
                .map_err(|e| format!("the engine: {e}"))?;
        // Drives the connection; ends with the response or its reader.
        tokio::spawn(conn);
        let mut query = format!("stdout=1&stderr=1&follow={follow}&timestamps={timestamps}");
        if let Some(n) = tail {
            query.push_str(&format!("&tail={n}"));
        }
        let uri = format!(
            "/v{}.{}/containers/{id}/logs?{query}",
            API.major_version, API.minor_version
        );
        let req = hyper::Request::get(uri)
            .header(hyper::header::HOST, "docker")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("the logs request: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("the engine: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            let text = body.map(|b| String::from_utf8_lossy(&b).into_owned());
            return Err(format!(
                "the engine's logs: {status}: {}",
                text.unwrap_or_default()
            ));
        }
        let body = http_body_util::BodyStream::new(resp.into_body());
        Ok(body
            .filter_map(|frame| async move {
                match frame {
                    Ok(f) => f.into_data().ok().map(Ok),
                    Err(e) => Some(Err(format!("the engine's logs: {e}"))),
                }
            })
            .boxed())
    }

    /// Returns once the engine answers a ping (tried each second).
    pub async fn answers(&self) {
        while self.ping(Duration::from_secs(1)).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Whether the engine has `image` locally.
    pub async fn has_image(&self, image: &str) -> Result<bool, String> {
        self.image_present(image).await.map_err(|e| match e {
            PullError::InvalidName(m) | PullError::Failed(m) => {
                format!("inspecting the image {image}: {m}")
            }
        })
    }

    /// Pulls `image` through the engine within `deadline` (`credentials`:
    /// a registry login, from imagePullSecrets).
    pub async fn pull(
        &self,
        image: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
        deadline: Duration,
    ) -> Result<(), PullError> {
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let pull = async {
            let mut progress = self.docker.create_image(Some(options), None, credentials);
            while let Some(step) = progress.next().await {
                step.map_err(|e| PullError::of(image, e))?;
            }
            Ok(())
        };
        tokio::time::timeout(deadline, pull).await.map_err(|_| {
            PullError::Failed(format!("pulling {image}: no answer within {deadline:?}"))
        })?
    }

    /// Whether the engine has `image` locally; an error for a reference the
    /// engine cannot parse (`InvalidImageName`).
    pub async fn image_present(&self, image: &str) -> Result<bool, PullError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(PullError::of(image, e)),
        }
    }

    /// Imports the pause image unless the engine has it; returns its name.
    pub async fn ensure_pause(&self) -> Result<String, String> {
        let image = pause_image();
        if self.has_image(&image).await? {
            return Ok(image);
        }
        let rootfs = pause_rootfs().map_err(|e| format!("the pause image's archive: {e}"))?;
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(PAUSE_REPO)
            .tag(&pause_tag())
            .changes(vec![
                r#"ENTRYPOINT ["/pause"]"#.to_string(),
                "LABEL io.shoal.pause=1".to_string(),
            ])
            .build();
        let mut progress =
            self.docker
                .create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| format!("importing {image}: {e}"))?;
        }
        if !self.has_image(&image).await? {
            return Err(format!(
                "importing {image}: the engine does not show it after the import"
            ));
        }
        tracing::info!(%image, "docker runtime: imported the pause image");
        Ok(image)
    }
}

/// Why an image could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullError {
    /// The reference does not parse (`InvalidImageName`).
    InvalidName(String),
    /// The pull failed or timed out (`ErrImagePull`).
    Failed(String),
}

impl PullError {
    fn of(image: &str, e: bollard::errors::Error) -> PullError {
        let text = e.to_string();
        if text.contains("invalid reference format") {
            PullError::InvalidName(format!(
                "Failed to apply default image tag {image:?}: {text}"
            ))
        } else {
            PullError::Failed(format!("pulling {image}: {text}"))
        }
    }
}

/// The pause image's root filesystem as a tar archive: `/pause` alone.
fn pause_rootfs() -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(PAUSE.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    archive.append_data(&mut header, "pause", PAUSE)?;
    archive.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_rootfs_holds_the_static_program_alone() {
        let bytes = pause_rootfs().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![("pause".to_string(), 0o755, PAUSE.len() as u64)]
        );
        // An ELF executable, statically linked: no interpreter to find in
        // an image that holds nothing else.
        assert_eq!(&PAUSE[..4], b"\x7fELF");
        assert!(
            !program_headers(PAUSE).contains(&PT_INTERP),
            "the pause program must not need a dynamic loader"
        );
    }

    const PT_INTERP: u32 = 3;

    /// The types of an ELF64 little-endian file's program headers.
    fn program_headers(elf: &[u8]) -> Vec<u32> {
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
        let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
        let (size, count) = (u16_at(54), u16_at(56));
        (0..count).map(|i| u32_at(phoff + i * size)).collect()
    }

    #[test]
    fn a_dynamic_executable_has_an_interpreter_header() {
        // This test binary is dynamically linked: the check can fail.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(program_headers(&me).contains(&PT_INTERP));
    }

    #[test]
    fn the_pause_tag_follows_the_program() {
        assert_eq!(pause_tag(), pause_tag());
        assert_eq!(pause_tag().len(), 16);
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert!(pause_image().starts_with("shoal/pause:"));
    }
}
