//! kubectl's streaming verbs against the process runtime on `shoal dev`.
//! `exec -i` and `-t`: stdin reaches the command in order and its end ends
//! the command (v5's close signal); on a terminal the command sees a tty
//! of the client's size, its input echoed and its exit code returned.
//! `cp`: a file into the pod's emptyDir and back (tar over exec -i). The
//! same on a docker pod, and `attach -it` to a container's own shell (a
//! process pod refuses attach, saying why).
//! `port-forward`: over the WebSocket tunnel (kubectl's default) and plain
//! SPDY (its fallback), to a server bound to the pod's localhost, several
//! connections at once, a megabyte each way with half-closes, and a port
//! nothing listens on reported as upstream does.

use std::io::Write;
use std::process::Stdio;

use super::kubectl::Dev;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: box
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
    env: [{name: GREETING, value: hello-from-the-pod}]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
"#;

/// Drives kubectl on a pseudo-terminal of 33 rows and 101 columns, as a
/// person at a terminal would: waits for the shell's prompt (or attach's
/// "try pressing enter"), types `script`, and prints everything the
/// terminal showed; exits with kubectl's code.
const ON_A_TERMINAL: &str = r##"
import fcntl, os, select, struct, subprocess, sys, termios, time
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
p = subprocess.Popen(sys.argv[2:], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
os.close(slave)
seen, typed, deadline = b"", False, time.time() + 60
while time.time() < deadline:
    if not typed and (b"# " in seen or b"$ " in seen or b"pressing enter" in seen):
        os.write(master, sys.argv[1].encode())
        typed = True
    r, _, _ = select.select([master], [], [], 0.5)
    if r:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    elif p.poll() is not None:
        break
sys.stdout.buffer.write(seen)
sys.exit(p.wait(timeout=10))
"##;

#[test]
fn kubectl_exec_with_stdin_and_a_terminal() {
    let Some(k) = Dev::start_with(1, "process") else {
        return;
    };
    let pod = k.file("box.yaml", POD);
    k.ok(&["apply", "-f", &pod]);
    k.ok(&["wait", "--for=condition=Ready", "pod/box", "--timeout=60s"]);

    // -i: a megabyte through `cat`, in order and whole; the end of kubectl's
    // stdin ends the command (else this never returns).
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut cat = k
        .command(&["exec", "-i", "box", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = cat.stdin.take().unwrap();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || stdin.write_all(&data))
    };
    let out = cat.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "the bytes came back changed");

    // -i with a command that reads one line and exits with a code.
    let mut read = k
        .command(&[
            "exec",
            "-i",
            "box",
            "--",
            "sh",
            "-c",
            "read line; echo \"got $line $GREETING\"; exit 4",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    read.stdin.take().unwrap().write_all(b"one two\n").unwrap();
    let out = read.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got one two hello-from-the-pod\n"
    );

    // -it: an interactive shell on a terminal of the client's size.
    let script = "tty; stty size; echo \"hi-$((6*7)) $TERM\"; exit 3\n";
    let (code, shown) = on_a_terminal(&k, script, &["exec", "-it", "box", "--", "sh"]);
    assert_eq!(code, Some(3), "{shown}");
    assert!(shown.contains("/dev/pts/"), "not a terminal: {shown}");
    assert!(shown.contains("33 101"), "the client's size: {shown}");
    assert!(shown.contains("hi-42 xterm"), "{shown}");
    // The terminal echoed what was typed (the unexpanded line).
    assert!(shown.contains("hi-$((6*7))"), "{shown}");

    // cp: `tar` through exec -i, both ways, into the pod's own volume.
    let local = k.file("notes.txt", "first line\nsecond line\n");
    k.ok(&["cp", &local, "box:/data/notes.txt"]);
    let inside = k.ok(&["exec", "box", "--", "cat", "/data/notes.txt"]);
    assert_eq!(inside, "first line\nsecond line\n");
    let back = k.dir().join("back.txt");
    k.ok(&["cp", "box:/data/notes.txt", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "first line\nsecond line\n"
    );

    // The same verbs on a docker pod (the dev node offers docker beside
    // processes where it has sandboxes), and attach.
    if super::cni_sandboxes() {
        docker_streams(&k);
    }
}

/// Two docker pods: one to exec and cp into, one whose shell keeps its
/// stdin and terminal open to attach to.
const DOCKER_PODS: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: dbox}
spec:
  runtimeClassName: docker
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: shoal-test/busybox:1
    command: ["sleep", "3600"]
    env: [{name: GREETING, value: hello-from-docker}]
---
apiVersion: v1
kind: Pod
metadata: {name: dweb}
spec:
  runtimeClassName: docker
  terminationGracePeriodSeconds: 1
  containers: [{name: web, image: "shoal-test/web:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: dsh}
spec:
  runtimeClassName: docker
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: shoal-test/busybox:1
    command: ["sh"]
    stdin: true
    tty: true
"#;

/// Runs kubectl `args` on a terminal, typing `script` (see ON_A_TERMINAL).
fn on_a_terminal(k: &Dev, script: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new("python3")
        .args(["-c", ON_A_TERMINAL, script])
        .arg(k.kubectl())
        .args(args)
        .env("KUBECONFIG", k.dir().join("kubeconfig"))
        .env("HOME", k.dir())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn docker_streams(k: &Dev) {
    let pods = k.file("docker-pods.yaml", DOCKER_PODS);
    k.ok(&["apply", "-f", &pods]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/dbox",
        "pod/dweb",
        "pod/dsh",
        "--timeout=90s",
    ]);
    // -i with the end of stdin, and the exit code.
    let mut read = k
        .command(&[
            "exec",
            "-i",
            "dbox",
            "--",
            "sh",
            "-c",
            "read line; echo \"got $line $GREETING\"; exit 4",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    read.stdin.take().unwrap().write_all(b"one two\n").unwrap();
    let out = read.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got one two hello-from-docker\n"
    );
    // -it: a shell on a terminal of the client's size, in the container.
    let script = "tty; stty size; echo \"hi-$((6*7)) $TERM\"; exit 3\n";
    let (code, shown) = on_a_terminal(k, script, &["exec", "-it", "dbox", "--", "sh"]);
    assert_eq!(code, Some(3), "{shown}");
    assert!(shown.contains("/dev/pts/"), "not a terminal: {shown}");
    assert!(shown.contains("33 101"), "the client's size: {shown}");
    assert!(shown.contains("hi-42 xterm"), "{shown}");
    // cp both ways: tar in the image, through exec -i.
    let local = k.file("dnotes.txt", "docker line\n");
    k.ok(&["cp", &local, "dbox:/tmp/notes.txt"]);
    assert_eq!(
        k.ok(&["exec", "dbox", "--", "cat", "/tmp/notes.txt"]),
        "docker line\n"
    );
    let back = k.dir().join("dback.txt");
    k.ok(&["cp", "dbox:/tmp/notes.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "docker line\n");
    // attach -it: the container's own shell, on the client's terminal;
    // what is typed runs there, and its end ends the attachment.
    let script = "echo \"attached-$((6*7))\"; stty size; exit 5\n";
    let (code, shown) = on_a_terminal(k, script, &["attach", "-it", "dsh"]);
    assert!(shown.contains("attached-42"), "{shown}");
    // kubectl attach first sends one more row and column than the
    // terminal has, then its size (a nudge that makes the program redraw):
    // either may be the last the shell saw when it ran `stty`.
    assert!(
        shown.contains("33 101") || shown.contains("34 102"),
        "the client's size: {shown}"
    );
    assert_ne!(code, Some(0), "the shell's exit 5 is an error: {shown}");
    super::wait_for(
        std::time::Duration::from_secs(30),
        "dsh to end with 5",
        || {
            let p: serde_json::Value =
                serde_json::from_str(&k.ok(&["get", "pod", "dsh", "-o", "json"])).unwrap();
            match p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"].as_i64() {
                Some(5) => Ok(()),
                other => Err(format!("exit code {other:?}")),
            }
        },
    );
    // port-forward into the docker pod's network namespace.
    let fwd = forward_to(k, "pod/dweb", 8080, true);
    let page = {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", fwd.port)).unwrap();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut page = String::new();
        c.read_to_string(&mut page).unwrap();
        page
    };
    assert!(page.contains("shoal-test web"), "{page}");
    drop(fwd);
    // A process pod has no terminal to attach to: said, not hung.
    let refused = k.run(&["attach", "box"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("cannot attach"), "{said}");
    k.ok(&["delete", "pod", "dbox", "dweb", "dsh"]);
}

const ECHO: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: echo
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: echo
    image: python:3
    command:
    - python3
    - -c
    - |
      import socket, threading
      s = socket.socket()
      s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      s.bind(("127.0.0.1", 18080))
      s.listen(16)
      def serve(c):
          while True:
              b = c.recv(65536)
              if not b:
                  break
              c.sendall(b)
          c.close()
      while True:
          c, _ = s.accept()
          threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// `kubectl port-forward pod/echo :<port>` running, and the local port it
/// chose.
struct Forward {
    child: std::process::Child,
    port: u16,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(k: &Dev, remote: u16, websockets: bool) -> Forward {
    forward_to(k, "pod/echo", remote, websockets)
}

/// `kubectl port-forward <target> :<remote>`.
fn forward_to(k: &Dev, target: &str, remote: u16, websockets: bool) -> Forward {
    use std::io::BufRead;
    let mut child = k
        .command(&["port-forward", target, &format!(":{remote}")])
        .env(
            "KUBECTL_PORT_FORWARD_WEBSOCKETS",
            if websockets { "true" } else { "false" },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let (etx, stderr) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = etx.send(l);
        }
    });
    // "Forwarding from 127.0.0.1:40123 -> 18080"
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("kubectl port-forward printed nothing");
    let port = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    Forward {
        child,
        port,
        stderr,
    }
}

/// Sends `data` through the forwarded port, half-closes, and reads to the
/// end: the echo server sends it all back, then closes.
fn echo_through(port: u16, data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        w.write_all(&data)?;
        w.shutdown(std::net::Shutdown::Write)
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back)?;
    writer.join().unwrap()?;
    Ok(back)
}

#[test]
fn kubectl_port_forward_over_websocket_and_spdy() {
    let Some(k) = Dev::start_with(1, "process") else {
        return;
    };
    let pod = k.file("echo.yaml", ECHO);
    k.ok(&["apply", "-f", &pod]);
    k.ok(&["wait", "--for=condition=Ready", "pod/echo", "--timeout=60s"]);
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 24) as u8)
        .collect();
    for websockets in [true, false] {
        let f = forward(&k, 18080, websockets);
        // The server may still be starting: a small echo first.
        super::wait_for(
            std::time::Duration::from_secs(20),
            "the echo server through port-forward",
            || match echo_through(f.port, b"ping") {
                Ok(b) if b == b"ping" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        // Three connections at once, a megabyte each way, in order.
        let runs: Vec<_> = (0..3)
            .map(|_| {
                let (port, data) = (f.port, data.clone());
                std::thread::spawn(move || echo_through(port, &data))
            })
            .collect();
        for r in runs {
            let back = r.join().unwrap().unwrap();
            assert_eq!(back.len(), data.len(), "websockets={websockets}");
            assert!(
                back == data,
                "the bytes came back changed (websockets={websockets})"
            );
        }
    }

    // Nothing listens on 18081: the connection ends at once, and kubectl
    // reports upstream's error and gives up on the session.
    let mut f = forward(&k, 18081, true);
    let back = echo_through(f.port, b"hello");
    assert!(
        matches!(&back, Ok(b) if b.is_empty()) || back.is_err(),
        "{back:?}"
    );
    let status = super::wait_for(
        std::time::Duration::from_secs(20),
        "kubectl port-forward to exit",
        || match f.child.try_wait() {
            Ok(Some(s)) => Ok(s),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(!status.success());
    let stderr: Vec<String> = f.stderr.try_iter().collect();
    let stderr = stderr.join("\n");
    assert!(
        stderr.contains("error forwarding port 18081 to pod echo"),
        "{stderr}"
    );
    assert!(stderr.contains("connect"), "{stderr}");
}
