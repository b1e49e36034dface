//! `shoal kv watch` on a follower of a 5-node cluster while the leader is
//! SIGKILLed halfway through 60 writes: the follower, in the majority,
//! sits through the election without ending its watch (and a stream that
//! does end is resumed from the last revision + 1 on another node), so the
//! command prints every acknowledged write exactly once, in order, and
//! does not exit.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};

use super::*;

#[test]
fn kv_watch_on_a_follower_survives_the_leaders_death() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    init(&dir, 5);
    let mut agents = Agents::start(&dir, 5);
    wait_writable(&dir, 1);
    let leader = wait_for(Duration::from_secs(30), "a leader", || {
        let out = shoal()
            .args(["store", "status", "--json", "--config"])
            .arg(dir.join("node-1.toml"))
            .output()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        v["leader"]
            .as_str()
            .and_then(|l| l.strip_prefix("node-"))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("{v}"))
    });
    // The watcher on a follower that holds no vote (node-4: the first
    // three are the voters), so its own death later costs no quorum;
    // writes through node-5.
    let (watcher_node, writer) = (4, 5);
    assert!(leader <= 3);
    let mut watch = shoal()
        .args(["kv", "--config"])
        .arg(dir.join(format!("node-{watcher_node}.toml")))
        .args(["watch", "w/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let out = watch.stdout.take().unwrap();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let err = watch.stderr.take().unwrap();
    let resumes = Arc::new(Mutex::new(Vec::<String>::new()));
    let said = resumes.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            said.lock().unwrap().push(l);
        }
    });
    // The watch is open once it has delivered its first write.
    wait_for(Duration::from_secs(20), "the watch open", || {
        let out = kv(&dir, writer, &["put", "w/probe", "x"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if lines.lock().unwrap().iter().any(|l| l.contains("w/probe")) {
            Ok(())
        } else {
            Err(format!(
                "nothing seen yet; it said {:?}",
                resumes.lock().unwrap()
            ))
        }
    });
    let put = |i: usize| {
        wait_for(
            Duration::from_secs(30),
            &format!("w/{i} acknowledged"),
            || {
                let out = kv(&dir, writer, &["put", &format!("w/{i:02}"), &i.to_string()]);
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            },
        )
    };
    for i in 0..29 {
        put(i);
    }
    assert_eq!(
        agents.signal(leader, libc::SIGKILL).signal(),
        Some(libc::SIGKILL)
    );
    for i in 29..60 {
        put(i);
    }
    wait_for(Duration::from_secs(30), "every write watched", || {
        let got = lines.lock().unwrap().clone();
        let seen: Vec<&String> = got
            .iter()
            .filter(|l| l.contains(" PUT w/") && !l.contains("probe"))
            .collect();
        if seen.len() >= 60 {
            Ok(())
        } else {
            Err(format!("{} of 60: {:?}", seen.len(), seen.last()))
        }
    });
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watch did not exit"
    );
    // Now the watched node itself dies: the command resumes on another
    // node from the last revision + 1.
    agents.signal(watcher_node, libc::SIGKILL);
    for i in 60..70 {
        put(i);
    }
    wait_for(
        Duration::from_secs(60),
        "the watch resumed elsewhere",
        || {
            let got = lines.lock().unwrap().clone();
            let n = got
                .iter()
                .filter(|l| l.contains(" PUT w/") && !l.contains("probe"))
                .count();
            if n >= 70 {
                Ok(())
            } else {
                Err(format!("{n} of 70; it said {:?}", resumes.lock().unwrap()))
            }
        },
    );
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watch did not exit"
    );
    assert!(
        resumes
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("resuming from revision")),
        "{:?}",
        resumes.lock().unwrap()
    );
    let got = lines.lock().unwrap().clone();
    let mut revs = Vec::new();
    let mut keys = Vec::new();
    for l in &got {
        let parts: Vec<&str> = l.splitn(4, ' ').collect();
        assert_eq!(parts.len(), 4, "{l}");
        revs.push(parts[0].parse::<u64>().unwrap());
        if parts[2] != "w/probe" {
            keys.push(parts[2].to_string());
        }
    }
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {got:?}"
    );
    let want: Vec<String> = (0..70).map(|i| format!("w/{i:02}")).collect();
    assert_eq!(keys, want, "every acknowledged write exactly once");
    eprintln!("the watch's own words: {:?}", resumes.lock().unwrap());
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
}
