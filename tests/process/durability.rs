//! The store's durability through real agents: acknowledged writes survive
//! `kill -9` of every node, a full disk (a real tmpfs) refuses writes,
//! keeps serving reads and loses nothing, and an unreadable data dir is a
//! clear start-up error.

use super::*;

/// The store survives `kill -9` of every process: each write that `shoal kv
/// put` acknowledged is there after a restart.
#[test]
fn acknowledged_writes_survive_kill_9_of_all_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    init(&dir, 3);
    let mut agents = Agents::start(&dir, 3);
    let cfg = |i: usize| dir.join(format!("node-{i}.toml"));
    let kv = |i: usize, args: &[&str]| kv(&dir, i, args);
    // Wait for a leader (the first put succeeds).
    wait_writable(&dir, 1);
    let mut acked = Vec::new();
    for n in 0..40 {
        let node = 1 + n % 3;
        let (k, v) = (format!("key-{n}"), format!("value-{n}"));
        let out = kv(node, &["put", &k, &v]);
        if out.status.success() {
            acked.push((k, v));
        }
    }
    assert!(
        acked.len() >= 35,
        "most writes should be acknowledged, got {}",
        acked.len()
    );
    for i in 1..=3 {
        agents.signal(i, libc::SIGKILL);
    }
    for i in 1..=3 {
        agents.spawn(i);
    }
    for (k, v) in &acked {
        let got = wait_for(Duration::from_secs(30), "read after restart", || {
            let out = kv(2, &["get", k]);
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        });
        assert_eq!(&got, v, "acknowledged write {k} lost or changed");
    }
    // The contract of `get --json` and of a missing key.
    let out = kv(3, &["get", "key-0", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["key"], "key-0");
    assert_eq!(v["value"], "value-0");
    assert!(v["create_rev"].as_u64().unwrap() > 0 && v["mod_rev"].as_u64().unwrap() > 0);
    let out = kv(3, &["get", "no-such-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    // store status names a leader and the three voters.
    let out = shoal()
        .args(["store", "status", "--json", "--config"])
        .arg(cfg(1))
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["leader"].as_str().unwrap().starts_with("node-"));
    assert_eq!(
        s["voters"],
        serde_json::json!(["node-1", "node-2", "node-3"])
    );
    for f in ["term", "commit_index", "applied_index", "learners"] {
        assert!(s.get(f).is_some(), "store status lacks {f}");
    }
    // members --json gains raft_role: one leader, the others voters.
    let rows = members(&dir, 2).unwrap();
    let roles: Vec<&str> = rows
        .iter()
        .map(|r| r["raft_role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "voter").count(),
        2,
        "{roles:?}"
    );
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None when this machine cannot mount (not root, no CAP_SYS_ADMIN).
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_owned()))
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount of {} failed", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every node's data dir on a real, small tmpfs: when it fills up, writes
/// are refused with a clear error, every node stays up and answers reads,
/// and after room is made and the nodes restart nothing acknowledged is
/// lost.
#[test]
fn a_full_tmpfs_refuses_writes_keeps_reads_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    init(&dir, 3);
    let mut mounts = Vec::new();
    for i in 1..=3 {
        match Tmpfs::mount(&dir.join(format!("node-{i}/data")), "6m") {
            Some(m) => mounts.push(m),
            None => {
                // Not silently green: say why it did not run.
                eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
                // SAFETY: a libc call with integer arguments only.
                let uid = unsafe { libc::geteuid() };
                assert_ne!(uid, 0, "root could not mount a tmpfs");
                return;
            }
        }
    }
    let mut agents = Agents::start(&dir, 3);
    let kv = |i: usize, args: &[&str]| kv(&dir, i, args);
    wait_writable(&dir, 1);
    // 100 KiB values (a command-line argument holds 128 KiB at most) until
    // the disks are full.
    let value = "v".repeat(100 * 1024);
    let mut acked = Vec::new();
    let mut refused = None;
    for n in 0..400 {
        let k = format!("fill-{n:03}");
        let out = kv(1 + n % 3, &["put", &k, &value]);
        if out.status.success() {
            acked.push(k);
        } else {
            refused = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let refused = refused.expect("a full disk must refuse writes");
    eprintln!(
        "refused after {} acknowledged writes: {}",
        acked.len(),
        refused.trim()
    );
    assert!(acked.len() >= 5, "some writes fit before the disk is full");
    let logs: String = (1..=3)
        .map(|i| std::fs::read_to_string(dir.join(format!("node-{i}.log"))).unwrap_or_default())
        .collect();
    assert!(
        refused.contains("No space left on device") || logs.contains("No space left on device"),
        "the error must say the disk is full: {refused}"
    );
    // Every node stays up and answers reads of what was acknowledged.
    for i in 1..=3 {
        assert!(
            agents.children[i - 1]
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
                .is_none(),
            "node-{i} exited on a full disk: {}",
            std::fs::read_to_string(dir.join(format!("node-{i}.log")))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        );
        let out = kv(i, &["get", &acked[0]]);
        assert!(
            out.status.success(),
            "node-{i} cannot read on a full disk: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Room again; restart; every acknowledged write is there.
    for m in &mounts {
        m.resize("64m");
    }
    for i in 1..=3 {
        agents.signal(i, libc::SIGTERM);
    }
    for i in 1..=3 {
        agents.spawn(i);
    }
    wait_for(Duration::from_secs(30), "writes after room is made", || {
        let out = kv(2, &["put", "after", "ok"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    for k in &acked {
        let out = kv(3, &["get", k]);
        assert!(
            out.status.success(),
            "acknowledged {k} lost: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim().len(),
            value.len()
        );
    }
    drop(agents);
}

/// A data dir the agent cannot read is a clear start-up error naming it,
/// never a fresh start. Root reads everything, so the agent runs as
/// `nobody` (setpriv) against a data dir with mode 000.
#[test]
fn an_unreadable_data_dir_is_a_clear_start_up_error() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    init(&dir, 1);
    let mut agents = Agents::start(&dir, 1);
    wait_writable(&dir, 1);
    assert!(kv(&dir, 1, &["put", "k", "v"]).status.success());
    assert!(agents.signal(1, libc::SIGTERM).success());
    // SAFETY: a libc call with integer arguments only.
    let can_drop = unsafe { libc::geteuid() } == 0
        && Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !can_drop {
        eprintln!("SKIPPED: needs root and setpriv to run the agent as another user");
        return;
    }
    // Everything else readable by `nobody`; the data dir not at all.
    let chmod = |p: &Path, mode: &str| {
        assert!(Command::new("chmod")
            .args(["-R", mode])
            .arg(p)
            .status()
            .unwrap()
            .success());
    };
    chmod(tmp.path(), "a+rX");
    let data = dir.join("node-1/data");
    let before: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_shoal"))
        .args(["agent", "--config"])
        .arg(dir.join("node-1.toml"))
        .output()
        .unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("refused: {}", stderr.trim());
    assert!(!out.status.success(), "must refuse an unreadable data dir");
    assert!(
        stderr.contains("node-1/data") && stderr.contains("ermission denied"),
        "the error must name the data dir and say why: {stderr}"
    );
    // Nothing was replaced by a fresh start, and root still starts it.
    let after: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
    agents.spawn(1);
    wait_for(Duration::from_secs(30), "the old data after all", || {
        let out = kv(&dir, 1, &["get", "k"]);
        match String::from_utf8_lossy(&out.stdout).trim() {
            "v" => Ok(()),
            _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
}
