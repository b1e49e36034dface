//! Cluster DNS on every node: a hickory-server listener (UDP and TCP) on
//! the node's own address, answering the cluster domain from a [`Zone`]
//! the proxy's loop keeps from the Services and EndpointSlices it is
//! pushed (nothing polls, nothing asks the API), and forwarding every
//! other name to the node's own resolvers (`/etc/resolv.conf`, or the
//! configured upstreams) through hickory-resolver.
//!
//! Pods find it at their node's address (the bridge gateway), not at a
//! DNAT'd ClusterIP: no conntrack entry for UDP port 53 is shared through
//! a NAT, which is the race behind the classic 5 s lookups (kubernetes
//! #56903). Answers for cluster names carry a 5 s TTL, as CoreDNS's;
//! negative ones the zone's SOA.

pub mod tcp;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, CNAME, SOA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub use zone::{Answer, Ask, Zone};

/// The TTL of cluster records (CoreDNS's default).
const TTL: u32 = 5;
/// How long a TCP client may stay idle.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// The DNS metrics, named as CoreDNS's (under `shoal_`).
#[derive(Clone, Default)]
pub struct DnsMetrics {
    pub requests: Counter,
    pub responses: Family<Vec<(&'static str, String)>, Counter>,
    pub forwards: Counter,
}

impl DnsMetrics {
    pub fn register(&self, m: &shoal_fabric::metrics::Metrics) {
        m.register(
            "coredns_dns_requests",
            "DNS queries received",
            self.requests.clone(),
        );
        m.register(
            "coredns_dns_responses",
            "DNS responses sent, by response code",
            self.responses.clone(),
        );
        m.register(
            "coredns_forward_requests",
            "Queries forwarded to the node's resolvers",
            self.forwards.clone(),
        );
    }
}

/// The handler: the zone, and the forwarder for other names.
pub struct Dns {
    pub zone: Arc<RwLock<Zone>>,
    forward: Option<TokioResolver>,
    metrics: DnsMetrics,
}

impl Dns {
    /// Answers `zone`, forwarding other names to `upstreams` (`ip:port`;
    /// empty: the host's `/etc/resolv.conf`).
    pub fn new(zone: Arc<RwLock<Zone>>, upstreams: &[SocketAddr], metrics: DnsMetrics) -> Dns {
        let forward = Self::forwarder(upstreams)
            .map_err(|e| tracing::warn!("dns: no forwarder for names outside the cluster: {e}"))
            .ok();
        Dns {
            zone,
            forward,
            metrics,
        }
    }

    fn forwarder(upstreams: &[SocketAddr]) -> Result<TokioResolver, String> {
        let (config, mut opts) = if upstreams.is_empty() {
            hickory_resolver::system_conf::read_system_conf().map_err(|e| e.to_string())?
        } else {
            let mut group = NameServerConfigGroup::new();
            for u in upstreams {
                group.merge(NameServerConfigGroup::from_ips_clear(
                    &[u.ip()],
                    u.port(),
                    true,
                ));
            }
            (
                ResolverConfig::from_parts(None, Vec::new(), group),
                ResolverOpts::default(),
            )
        };
        // The client's own resolver searches; forward names as asked.
        opts.ndots = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        Ok(
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build(),
        )
    }

    fn soa(&self, domain: &str) -> Option<Record> {
        let zone = Name::from_ascii(format!("{domain}.")).ok()?;
        let mname = Name::from_ascii(format!("ns.dns.{domain}.")).ok()?;
        let rname = Name::from_ascii(format!("hostmaster.{domain}.")).ok()?;
        let soa = SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL);
        Some(Record::from_rdata(zone, TTL, RData::SOA(soa)))
    }

    /// Resolves `name`/`rtype` outside the cluster: (code, answers).
    async fn forward(&self, name: &Name, rtype: RecordType) -> (ResponseCode, Vec<Record>) {
        let Some(resolver) = &self.forward else {
            return (ResponseCode::ServFail, Vec::new());
        };
        self.metrics.forwards.inc();
        match resolver.lookup(name.clone(), rtype).await {
            Ok(lookup) => (ResponseCode::NoError, lookup.records().to_vec()),
            Err(e) if e.is_nx_domain() => (ResponseCode::NXDomain, Vec::new()),
            Err(e) if e.is_no_records_found() => (ResponseCode::NoError, Vec::new()),
            Err(e) => {
                tracing::debug!("dns: forwarding {name} {rtype}: {e}");
                (ResponseCode::ServFail, Vec::new())
            }
        }
    }

    /// The answer to one query: (code, authoritative, answers, SOA, additionals).
    async fn answer(&self, name: &Name, rtype: RecordType) -> Reply {
        let ask = match rtype {
            RecordType::A => Ask::A,
            RecordType::AAAA => Ask::Aaaa,
            RecordType::SRV => Ask::Srv,
            RecordType::CNAME => Ask::Cname,
            RecordType::ANY => Ask::Any,
            _ => Ask::Other,
        };
        let (found, domain) = {
            let zone = self.zone.read().unwrap_or_else(|p| p.into_inner());
            (
                zone.lookup(&name.to_ascii(), ask),
                zone.domain().to_string(),
            )
        };
        let mut reply = Reply {
            code: ResponseCode::NoError,
            authoritative: true,
            answers: Vec::new(),
            soa: Vec::new(),
            additionals: Vec::new(),
        };
        match found {
            Answer::A(ips) => {
                reply.answers = ips
                    .into_iter()
                    .map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip))))
                    .collect();
            }
            Answer::Srv(srvs) => {
                for s in srvs {
                    let Ok(target) = Name::from_ascii(format!("{}.", s.target)) else {
                        continue;
                    };
                    if let Some(ip) = s.address {
                        reply.additionals.push(Record::from_rdata(
                            target.clone(),
                            TTL,
                            RData::A(A(ip)),
                        ));
                    }
                    let srv = SRV::new(s.priority, s.weight, s.port, target);
                    reply
                        .answers
                        .push(Record::from_rdata(name.clone(), TTL, RData::SRV(srv)));
                }
            }
            Answer::Cname(target) => {
                if let Ok(t) = Name::from_ascii(format!("{target}.")) {
                    reply.answers.push(Record::from_rdata(
                        name.clone(),
                        TTL,
                        RData::CNAME(CNAME(t.clone())),
                    ));
                    // Chase the alias for the asked type, as a recursive
                    // server does for its clients.
                    if !matches!(rtype, RecordType::CNAME) {
                        let (_, more) = self.forward(&t, rtype).await;
                        reply.answers.extend(more);
                    }
                }
            }
            Answer::NoData => reply.soa.extend(self.soa(&domain)),
            Answer::NxDomain => {
                reply.code = ResponseCode::NXDomain;
                reply.soa.extend(self.soa(&domain));
            }
            Answer::Outside => {
                let (code, answers) = self.forward(name, rtype).await;
                reply.code = code;
                reply.authoritative = false;
                reply.answers = answers;
            }
        }
        reply
    }
}

/// A response's parts.
struct Reply {
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    soa: Vec<Record>,
    additionals: Vec<Record>,
}

/// One handler for both listeners.
struct Shared(Arc<Dns>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        self.0.handle_request(request, response).await
    }
}

#[async_trait::async_trait]
impl RequestHandler for Dns {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.metrics.requests.inc();
        let builder = MessageResponseBuilder::from_message_request(request);
        let fail = |code: ResponseCode| {
            let mut h = Header::response_from_request(request.header());
            h.set_response_code(code);
            ResponseInfo::from(h)
        };
        let count = |code: ResponseCode| {
            self.metrics
                .responses
                .get_or_create(&vec![("rcode", code.to_str().to_string())])
                .inc();
        };
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            count(ResponseCode::NotImp);
            let msg = builder.error_msg(request.header(), ResponseCode::NotImp);
            return response_handle
                .send_response(msg)
                .await
                .unwrap_or_else(|_| fail(ResponseCode::NotImp));
        }
        let info = match request.request_info() {
            Ok(i) => i,
            Err(_) => {
                count(ResponseCode::FormErr);
                let msg = builder.error_msg(request.header(), ResponseCode::FormErr);
                return response_handle
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| fail(ResponseCode::FormErr));
            }
        };
        let name: Name = info.query.name().into();
        let reply = self.answer(&name, info.query.query_type()).await;
        let mut header = Header::response_from_request(request.header());
        header.set_response_code(reply.code);
        header.set_authoritative(reply.authoritative);
        header.set_recursion_available(true);
        count(reply.code);
        let msg = builder.build(
            header,
            reply.answers.iter(),
            std::iter::empty(),
            reply.soa.iter(),
            reply.additionals.iter(),
        );
        response_handle
            .send_response(msg)
            .await
            .unwrap_or_else(|_| fail(ResponseCode::ServFail))
    }
}

/// Serves `dns` on UDP and TCP at `addr` until the process ends; the
/// bound address is returned (for port 0).
pub async fn serve(dns: Dns, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let udp = tokio::net::UdpSocket::bind(addr).await?;
    let bound = udp.local_addr()?;
    let tcp = tokio::net::TcpListener::bind(bound).await?;
    let dns = Arc::new(dns);
    // UDP through hickory's listener; TCP through our own, which caps
    // its connections (see `tcp`).
    let mut server = ServerFuture::new(Shared(dns.clone()));
    server.register_socket(udp);
    tokio::spawn(tcp::serve(dns, tcp, TCP_IDLE, tcp::MAX_TCP_CONNECTIONS));
    tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!("dns on {bound}: {e}");
        }
    });
    Ok(bound)
}

/// The nameservers of the host's `/etc/resolv.conf` that are not `own`
/// (for the node's configuration when none is given).
pub fn host_resolvers(own: IpAddr) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .filter(|ip| *ip != own)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_resolver::proto::op::{Message, Query};
    use serde_json::json;

    use super::*;

    /// One A query for `name` over UDP to `at`; the response code and
    /// addresses.
    async fn ask(at: SocketAddr, name: &str) -> Result<(ResponseCode, Vec<Ipv4Addr>), String> {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let mut m = Message::new();
        m.set_id(rand::random());
        m.add_query(Query::query(
            Name::from_ascii(name).map_err(|e| e.to_string())?,
            RecordType::A,
        ));
        sock.send_to(&m.to_vec().map_err(|e| e.to_string())?, at)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
            .await
            .map_err(|_| "no answer in 2 s".to_string())?
            .map_err(|e| e.to_string())?;
        let r = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
        let ips = r
            .answers()
            .iter()
            .filter_map(|a| a.data().as_a().map(|a| a.0))
            .collect();
        Ok((r.response_code(), ips))
    }

    #[tokio::test]
    async fn garbage_oversized_packets_and_a_flood_leave_it_answering() {
        let mut zone = Zone::new("cluster.local");
        let svc =
            serde_json::from_value(json!({"metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}))
            .unwrap();
        zone.set("default", "web", Some(&svc), []);
        let dns = Dns::new(Arc::new(RwLock::new(zone)), &[], DnsMetrics::default());
        let at = serve(dns, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let web = "web.default.svc.cluster.local.";
        let want = (ResponseCode::NoError, vec![Ipv4Addr::new(10, 96, 0, 10)]);
        assert_eq!(ask(at, web).await, Ok(want.clone()));
        let bad = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Garbage, a header alone, a header promising records that are not
        // there, and a datagram of 65,000 bytes.
        let mut header_lies = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0];
        header_lies.extend_from_slice(b"\x03www");
        for packet in [
            vec![0xff; 7],
            vec![0u8; 12],
            header_lies,
            vec![0x41; 65_000],
        ] {
            let _ = bad.send_to(&packet, at).await;
        }
        // A flood: 20,000 queries as fast as one socket sends them.
        let mut q = Message::new();
        q.add_query(Query::query(Name::from_ascii(web).unwrap(), RecordType::A));
        let q = q.to_vec().unwrap();
        for _ in 0..20_000 {
            let _ = bad.send_to(&q, at).await;
        }
        // TCP: a connection that sends a length and then nothing, and one
        // that sends garbage.
        let mut idle = tokio::net::TcpStream::connect(at).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut idle, &[0x01, 0x00])
            .await
            .unwrap();
        let mut junk = tokio::net::TcpStream::connect(at).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut junk, &[0x00, 0x04, 1, 2, 3, 4])
            .await
            .unwrap();
        // Still answering, correctly.
        shoal_fabric::testing::wait_until(Duration::from_secs(10), || async {
            match ask(at, web).await {
                Ok(got) if got == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap();
        assert_eq!(
            ask(at, "nope.default.svc.cluster.local.")
                .await
                .map(|r| r.0),
            Ok(ResponseCode::NXDomain)
        );
    }
}
