//! The webhook engine against a real HTTP receiver on 127.0.0.1, in paused time: a receiver that is
//! down, or failing, still gets every event, verified and in order per room. And over HTTPS, in real
//! time (TLS handshakes are real work): a receiver whose certificate chains to a trusted CA gets the
//! events, one that does not never does.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::Registry;
use serde_json::Map;
use switchboard_api::webhooks::signature::DEFAULT_TOLERANCE;
use switchboard_api::webhooks::{
    EVENT_ID_HEADER, EngineConfig, RoomEvent, SIGNATURE_HEADER, Tls, WebhookEvent, WebhookMetrics,
    WebhookSettings, Webhooks, verify,
};
use switchboard_proto::{ConnId, TenantId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_0123456789abcdef";

/// What the receiver got: every verified request in arrival order, and how many distinct events.
#[derive(Clone)]
struct Receiver {
    received: Arc<Mutex<Vec<WebhookEvent>>>,
    distinct: watch::Sender<usize>,
    seen: Arc<Mutex<HashSet<String>>>,
    /// Answer 503 to every n-th request (0: never), to force retries.
    fail_every: usize,
    requests: Arc<Mutex<usize>>,
}

impl Receiver {
    fn new(fail_every: usize) -> Self {
        Receiver {
            received: Arc::default(),
            distinct: watch::channel(0).0,
            seen: Arc::default(),
            fail_every,
            requests: Arc::default(),
        }
    }

    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (signature, event_id) = (header(SIGNATURE_HEADER), header(EVENT_ID_HEADER));
        let body = match request.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => panic!("body: {e}"),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let Some(signature) = signature else {
            panic!("no signature header")
        };
        assert_eq!(
            verify(SECRET.as_bytes(), &signature, &body, now, DEFAULT_TOLERANCE),
            Ok(()),
            "every request verifies"
        );
        let event: WebhookEvent = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(e) => panic!("body is an event: {e}"),
        };
        assert_eq!(event_id.as_deref(), Some(event.id.as_str()));
        let n = {
            let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            *requests += 1;
            *requests
        };
        if self.fail_every > 0 && n % self.fail_every == 0 {
            return reply(StatusCode::SERVICE_UNAVAILABLE);
        }
        let distinct = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.insert(event.id.clone());
            seen.len()
        };
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        self.distinct.send_replace(distinct);
        reply(StatusCode::NO_CONTENT)
    }

    /// Serves on `listener` until the returned task is aborted (then the port refuses connections).
    fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        self.serve_with(listener, None)
    }

    /// Serves HTTPS with the test server certificate (tests/data) on `listener`; connections whose
    /// handshake fails are dropped, as a real receiver would.
    fn serve_tls(&self, listener: TcpListener) -> JoinHandle<()> {
        self.serve_with(listener, Some(test_acceptor()))
    }

    fn serve_with(&self, listener: TcpListener, tls: Option<TlsAcceptor>) -> JoinHandle<()> {
        let receiver = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let receiver = receiver.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, Infallible>(receiver.handle(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        })
    }

    async fn wait_for(&self, distinct: usize) {
        let mut rx = self.distinct.subscribe();
        // Paused time: this bound costs nothing in real time, it only turns a hang into a failure.
        let waited = tokio::time::timeout(
            Duration::from_secs(4 * 3600),
            rx.wait_for(|n| *n >= distinct),
        )
        .await
        .map(|r| r.is_ok());
        let got = *self.distinct.borrow();
        assert_eq!(waited, Ok(true), "receiver got {got} of {distinct} events");
    }

    fn received(&self) -> Vec<WebhookEvent> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn acme() -> TenantId {
    match TenantId::parse("acme") {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn peer(n: u8) -> ConnId {
    ConnId::from_random_bytes([n; 16])
}

struct Engine {
    webhooks: Webhooks,
    metrics: WebhookMetrics,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start_engine(addr: SocketAddr, config: EngineConfig) -> Engine {
    start_engine_at(format!("http://{addr}/hooks"), config)
}

fn start_engine_at(url: String, config: EngineConfig) -> Engine {
    let metrics = match WebhookMetrics::new() {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    assert!(metrics.register(&Registry::new()).is_ok());
    let webhooks = Webhooks::new(
        config,
        move |tenant: &TenantId| {
            (tenant.as_str() == "acme").then(|| WebhookSettings {
                url: url.clone(),
                secret: SECRET.to_owned(),
            })
        },
        metrics.clone(),
    );
    let shutdown = CancellationToken::new();
    let task = {
        let (webhooks, shutdown) = (webhooks.clone(), shutdown.clone());
        tokio::spawn(async move { webhooks.run(shutdown).await })
    };
    Engine {
        webhooks,
        metrics,
        shutdown,
        task,
    }
}

impl Engine {
    fn emit(&self, event: RoomEvent, emitted: &mut Vec<(String, String)>) {
        let room = event.room.clone();
        match self.webhooks.emit(event) {
            Ok(Some(queued)) => emitted.push((room, queued.id)),
            other => panic!("event not queued: {other:?}"),
        }
    }

    /// Waits (in paused time) until the engine has taken in the receiver's last answer.
    async fn settled(&self) {
        for _ in 0..1000 {
            if self.metrics.pending.get() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} events still pending", self.metrics.pending.get());
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Per room: the ids in emission order must equal the distinct ids in arrival order, and a room's
/// sequence numbers never go back (a redelivery repeats only the room's latest event).
fn assert_complete_and_in_order(emitted: &[(String, String)], received: &[WebhookEvent]) {
    let mut want: HashMap<&str, Vec<&str>> = HashMap::new();
    for (room, id) in emitted {
        want.entry(room).or_default().push(id);
    }
    let mut got: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    for event in received {
        let last = last_seq.entry(&event.room).or_insert(0);
        assert!(
            event.seq >= *last,
            "room {} went back from seq {last} to {}",
            event.room,
            event.seq
        );
        *last = event.seq;
        let ids = got.entry(&event.room).or_default();
        if ids.last() != Some(&event.id.as_str()) {
            assert!(
                !ids.contains(&event.id.as_str()),
                "an older event came again after a newer one"
            );
            ids.push(&event.id);
        }
    }
    assert_eq!(got, want, "every event, in order per room");
}

/// A listener on a free loopback port, and its address.
async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    match listener.local_addr() {
        Ok(addr) => (listener, addr),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_receiver_down_for_30_seconds_gets_every_event_of_the_outage_in_order() {
    let (listener, addr) = loopback().await;
    let receiver = Receiver::new(0);
    let server = receiver.serve(listener);
    let engine = start_engine(addr, EngineConfig::default());
    let tenant = acme();
    let mut emitted = Vec::new();

    // Up: the first events go through.
    engine.emit(
        RoomEvent::room_started(tenant.clone(), "standup", 1),
        &mut emitted,
    );
    engine.emit(
        RoomEvent::participant_joined(tenant.clone(), "standup", peer(1), Map::new(), 1),
        &mut emitted,
    );
    receiver.wait_for(2).await;

    // Down for 30 s: the port refuses connections; rooms keep changing meanwhile.
    server.abort();
    let _ = server.await;
    for second in 0..30u8 {
        let at = 1000 * u64::from(second);
        let room = format!("room-{}", second % 3);
        if second < 3 {
            engine.emit(
                RoomEvent::room_started(tenant.clone(), room.clone(), at),
                &mut emitted,
            );
        }
        engine.emit(
            RoomEvent::participant_joined(
                tenant.clone(),
                room.clone(),
                peer(second),
                Map::new(),
                at,
            ),
            &mut emitted,
        );
        engine.emit(
            RoomEvent::participant_left(tenant.clone(), "standup", peer(second), Map::new(), at),
            &mut emitted,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    engine.emit(
        RoomEvent::room_finished(tenant.clone(), "standup", 30_000),
        &mut emitted,
    );
    assert_eq!(
        receiver.received().len(),
        2,
        "nothing arrives while the receiver is down"
    );
    assert!(engine.metrics.failed.with_label_values(&["connect"]).get() > 0);
    assert!(engine.metrics.retrying.get() > 0, "rooms wait for retries");
    assert!(
        engine.metrics.oldest_pending_age.get() >= 29.0,
        "the age of the oldest pending event shows the outage"
    );

    // Back on the same address.
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => panic!("the receiver's port was taken meanwhile: {e}"),
    };
    let server = receiver.serve(listener);
    receiver.wait_for(emitted.len()).await;

    assert_complete_and_in_order(&emitted, &receiver.received());
    engine.settled().await;
    assert_eq!(engine.metrics.sent.get(), emitted.len() as u64);
    assert_eq!(
        engine.metrics.dropped.with_label_values(&["expired"]).get(),
        0
    );
    assert_eq!(engine.metrics.retrying.get(), 0);
    assert_eq!(engine.metrics.oldest_pending_age.get(), 0.0);
    server.abort();
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retries_keep_each_rooms_order() {
    let (listener, addr) = loopback().await;
    // Every third request fails: rooms hit retries at different points of their sequence.
    let receiver = Receiver::new(3);
    let server = receiver.serve(listener);
    let engine = start_engine(addr, EngineConfig::default());
    let tenant = acme();
    let mut emitted = Vec::new();
    for n in 0..20u8 {
        for room in ["a", "b", "c", "d"] {
            engine.emit(
                RoomEvent::participant_joined(
                    tenant.clone(),
                    room,
                    peer(n),
                    Map::new(),
                    u64::from(n),
                ),
                &mut emitted,
            );
        }
    }
    receiver.wait_for(emitted.len()).await;
    assert_complete_and_in_order(&emitted, &receiver.received());
    assert!(
        engine.metrics.failed.with_label_values(&["status"]).get() > 0,
        "retries happened"
    );
    server.abort();
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_event_is_retried_for_the_retry_time_only_then_the_room_moves_on() {
    let (listener, addr) = loopback().await;
    drop(listener);
    let config = EngineConfig {
        max_retry_time: Duration::from_secs(120),
        ..EngineConfig::default()
    };
    let engine = start_engine(addr, config);
    let tenant = acme();
    let mut lost = Vec::new();
    engine.emit(RoomEvent::room_started(tenant.clone(), "r", 0), &mut lost);
    // Down for longer than the retry time: the event is dropped and counted, not retried forever.
    tokio::time::sleep(Duration::from_secs(120 + 300)).await;
    assert_eq!(
        engine.metrics.dropped.with_label_values(&["expired"]).get(),
        1
    );
    assert_eq!(engine.metrics.pending.get(), 0);
    assert_eq!(engine.metrics.retrying.get(), 0);

    // The room's later events are delivered once the receiver is back.
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => panic!("the receiver's port was taken meanwhile: {e}"),
    };
    let receiver = Receiver::new(0);
    let server = receiver.serve(listener);
    let mut emitted = Vec::new();
    engine.emit(
        RoomEvent::participant_joined(tenant.clone(), "r", peer(1), Map::new(), 1),
        &mut emitted,
    );
    receiver.wait_for(1).await;
    let received = receiver.received();
    assert_complete_and_in_order(&emitted, &received);
    assert_eq!(
        received[0].seq, 2,
        "the dropped event left a gap in the room's sequence"
    );
    server.abort();
    engine.stop().await;
}

fn test_data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The receiver's side: the test server certificate for 127.0.0.1 and localhost, signed by the test CA.
fn test_acceptor() -> TlsAcceptor {
    let certs = CertificateDer::pem_file_iter(test_data("webhook-test-server.pem"))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>());
    let certs = match certs {
        Ok(c) => c,
        Err(e) => panic!("server certificate: {e}"),
    };
    let key = match PrivateKeyDer::from_pem_file(test_data("webhook-test-server.key")) {
        Ok(k) => k,
        Err(e) => panic!("server key: {e}"),
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key));
    let mut config = match config {
        Ok(c) => c,
        Err(e) => panic!("server TLS config: {e}"),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(std::sync::Arc::new(config))
}

async fn https_receiver() -> (Receiver, SocketAddr, JoinHandle<()>) {
    let (listener, addr) = loopback().await;
    let receiver = Receiver::new(0);
    let server = receiver.serve_tls(listener);
    (receiver, addr, server)
}

#[tokio::test]
async fn https_to_a_receiver_whose_certificate_chains_to_a_trusted_ca_delivers_signed_events() {
    let (receiver, addr, server) = https_receiver().await;
    let tls = match Tls::with_ca_files(&[test_data("webhook-test-ca.pem")]) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let config = EngineConfig {
        tls,
        ..EngineConfig::default()
    };
    // The certificate must name the IP address the URL gives (an IP SAN).
    let engine = start_engine_at(format!("https://{addr}/hooks"), config);
    let tenant = acme();
    let mut emitted = Vec::new();
    engine.emit(
        RoomEvent::room_started(tenant.clone(), "r", 0),
        &mut emitted,
    );
    engine.emit(
        RoomEvent::participant_joined(tenant.clone(), "r", peer(1), Map::new(), 1),
        &mut emitted,
    );
    // Real time: a bound that only turns a hang into a failure.
    let delivered =
        tokio::time::timeout(Duration::from_secs(20), receiver.wait_for(emitted.len())).await;
    assert!(
        delivered.is_ok(),
        "the events were not delivered over HTTPS"
    );
    // `Receiver::handle` verified every signature.
    assert_complete_and_in_order(&emitted, &receiver.received());
    assert_eq!(engine.metrics.failed.with_label_values(&["tls"]).get(), 0);
    engine.stop().await;

    // By name: the certificate's DNS SAN `localhost`.
    let engine = start_engine_at(
        format!("https://localhost:{}/hooks", addr.port()),
        EngineConfig {
            tls: match Tls::with_ca_files(&[test_data("webhook-test-ca.pem")]) {
                Ok(t) => t,
                Err(e) => panic!("{e}"),
            },
            ..EngineConfig::default()
        },
    );
    engine.emit(RoomEvent::room_finished(tenant, "r", 2), &mut emitted);
    let delivered =
        tokio::time::timeout(Duration::from_secs(20), receiver.wait_for(emitted.len())).await;
    assert!(
        delivered.is_ok(),
        "the event was not delivered to https://localhost"
    );
    server.abort();
    engine.stop().await;
}

#[tokio::test]
async fn https_to_a_receiver_no_trusted_ca_vouches_for_fails_with_reason_tls() {
    let (receiver, addr, server) = https_receiver().await;
    // The system's roots only: the test CA is not among them.
    let engine = start_engine_at(format!("https://{addr}/hooks"), EngineConfig::default());
    let mut emitted = Vec::new();
    engine.emit(RoomEvent::room_started(acme(), "r", 0), &mut emitted);
    let failed = engine.metrics.failed.with_label_values(&["tls"]);
    for _ in 0..200 {
        if failed.get() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed.get() > 0, "the attempt failed the TLS handshake");
    assert!(receiver.received().is_empty(), "nothing was delivered");
    assert_eq!(engine.metrics.sent.get(), 0);
    assert_eq!(
        engine.metrics.pending.get(),
        1,
        "the event waits for a retry"
    );
    server.abort();
    engine.stop().await;
}
