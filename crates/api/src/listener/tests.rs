//! The listener's book of connections (caps, eviction of connections that
//! never sent a request) and its idle clock (paused time).

use super::*;

fn limits(total: usize, per_ip: usize) -> Limits {
    Limits {
        max_connections: total,
        max_connections_per_ip: per_ip,
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(90),
    }
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, n])
}

#[test]
fn the_config_is_held_to_half_the_descriptor_limit() {
    let c = KubeApiConfig::default();
    let l = Limits::new(&c, 1024);
    assert_eq!(l.max_connections, 512);
    assert!(l.max_connections_per_ip <= 512);
    let l = Limits::new(&c, 1 << 20);
    assert_eq!(l.max_connections, c.max_connections);
    assert_eq!(l.max_connections_per_ip, c.max_connections_per_ip);
}

#[test]
fn at_a_cap_the_oldest_silent_connection_makes_room() {
    let book = Arc::new(Book::default());
    let m = ListenerMetrics::default();
    let l = limits(3, 2);
    let a = book.admit(ip(1), &l, &m).unwrap();
    let b = book.admit(ip(1), &l, &m).unwrap();
    // Per address: a third from 10.0.0.1 evicts the oldest of its own.
    let c = book.admit(ip(1), &l, &m).unwrap();
    assert!(a.entry.released.load(Ordering::Acquire), "a was evicted");
    assert!(!b.entry.released.load(Ordering::Acquire));
    // In all: another address evicts the oldest unproven overall (b).
    c.prove();
    let d = book.admit(ip(2), &l, &m).unwrap();
    let e = book.admit(ip(3), &l, &m).unwrap();
    assert!(b.entry.released.load(Ordering::Acquire), "b was evicted");
    assert_eq!(book.lock().total, 3);
    // Everyone in the way has proven itself: refused.
    d.prove();
    e.prove();
    assert_eq!(book.admit(ip(4), &l, &m).err(), Some(Refused::Limit));
    let f = {
        drop(e);
        book.admit(ip(1), &l, &m).unwrap()
    };
    f.prove();
    assert_eq!(book.admit(ip(1), &l, &m).err(), Some(Refused::PerIp));
    // Evicted slots dropped later are not counted twice.
    drop((a, b));
    assert_eq!(book.lock().total, 3);
    drop((c, d, f));
    let st = book.lock();
    assert_eq!((st.total, st.per_ip.len(), st.unproven.len()), (0, 0, 0));
    let evicted = m
        .closed
        .get_or_create(&vec![("reason", "evicted".to_string())])
        .get();
    assert_eq!(evicted, 2);
}

#[tokio::test(start_paused = true)]
async fn idle_means_nothing_in_flight_for_the_whole_timeout() {
    let (tx, rx) = watch::channel(0usize);
    let tx = Arc::new(tx);
    let first = Duration::from_secs(10);
    let idle = Duration::from_secs(90);
    let start = tokio::time::Instant::now();
    // Nothing ever sent: closed after the first deadline.
    idle_expired(rx.clone(), first, idle).await;
    assert_eq!(start.elapsed(), first);

    // A request in flight (a watch) keeps it open however long it runs;
    // the idle clock starts when it ends.
    let start = tokio::time::Instant::now();
    let clock = tokio::spawn(idle_expired(rx, first, idle));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let guard = InFlight::enter(tx.clone());
    tokio::time::sleep(Duration::from_secs(1000)).await;
    assert!(!clock.is_finished(), "a request in flight is not idle");
    drop(guard);
    clock.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1001) + idle);
}
