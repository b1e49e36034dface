//! `kubectl exec -i` and `-t` against the process runtime on `shoal dev`:
//! stdin reaches the command in order and its end ends the command (v5's
//! close signal); on a terminal the command sees a tty of the client's
//! size, its input echoed and its exit code returned.

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
"#;

/// Drives kubectl on a pseudo-terminal of 33 rows and 101 columns, as a
/// person at a terminal would: waits for the shell's prompt, types
/// `script`, and prints everything the terminal showed; exits with
/// kubectl's code.
const ON_A_TERMINAL: &str = r##"
import fcntl, os, select, struct, subprocess, sys, termios, time
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
p = subprocess.Popen(sys.argv[2:], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
os.close(slave)
seen, typed, deadline = b"", False, time.time() + 60
while time.time() < deadline:
    if not typed and (b"# " in seen or b"$ " in seen):
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
    let out = std::process::Command::new("python3")
        .args(["-c", ON_A_TERMINAL])
        .arg("tty; stty size; echo \"hi-$((6*7)) $TERM\"; exit 3\n")
        .arg(k.kubectl())
        .args(["exec", "-it", "box", "--", "sh"])
        .env("KUBECONFIG", k.dir().join("kubeconfig"))
        .env("HOME", k.dir())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{shown}\n{out:?}");
    assert!(shown.contains("/dev/pts/"), "not a terminal: {shown}");
    assert!(shown.contains("33 101"), "the client's size: {shown}");
    assert!(shown.contains("hi-42 xterm"), "{shown}");
    // The terminal echoed what was typed (the unexpanded line).
    assert!(shown.contains("hi-$((6*7))"), "{shown}");
}
