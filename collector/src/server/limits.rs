//! Bounds on what peers that never authenticate can make the collector hold: connections,
//! time, and request bytes. Everything here runs before a signature is checked, so it must
//! assume the peer is hostile.
//!
//! - Connections: every accepted TCP connection takes a slot ([`Tracker`]) before the TLS
//!   handshake, and gives it back when it closes. When the slots (all, or one address's) are
//!   taken, the connection that has been idle the longest (no request in flight) is closed to
//!   make room; only when every slot has a request in flight is the newcomer refused. So 400
//!   idle sockets cannot keep `/healthz` or an agent out: they are the ones that go.
//! - Time: an idle connection (no request in flight, no byte received or sent) is closed
//!   after `idle_timeout`, including one that never sent a byte or stalls its TLS handshake
//!   ([`Guarded`]); hyper closes an HTTP/1.1 connection whose request head is not complete
//!   within `header_read_timeout` (slowloris); a request body must arrive whole within
//!   `body_timeout` ([`budget`]).
//! - Bytes: request bodies are counted as their bytes arrive, against one budget shared by
//!   every request still being received or handled ([`Budget`]); a request that would go
//!   over it is answered 503 at once. Per connection, hyper buffers at most `max_buf_size`
//!   (HTTP/1.1) or the flow-control windows (HTTP/2), which [`configure_http`] makes small.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::error::HttpError;

/// Every bound, each a `serve` flag. The defaults suit a fleet of a few thousand nodes
/// behind no proxy; tests make them small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most (`--max-connections`).
    pub max_connections: usize,
    /// Open connections from one IP address at most (`--max-connections-per-ip`).
    pub max_connections_per_ip: usize,
    /// An HTTP/1.1 request head must be complete this long after the server starts
    /// waiting for it (`--header-timeout`).
    pub header_read_timeout: Duration,
    /// A request body must be complete this long after its head (`--body-timeout`).
    pub body_timeout: Duration,
    /// A connection with no request in flight and no byte moving is closed after this
    /// long (`--idle-timeout`); this also bounds a TLS handshake that stalls.
    pub idle_timeout: Duration,
    /// Bytes of request bodies held at once, over all requests (`--max-buffered-bytes`).
    pub max_buffered_bytes: usize,
    /// HTTP/2 streams (requests) at once on one connection (`--h2-max-streams`).
    pub h2_max_concurrent_streams: u32,
    /// `/healthz` calls the database full below this many free bytes (`--min-free-space`).
    pub min_free_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 2048,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_buffered_bytes: 64 << 20,
            h2_max_concurrent_streams: 32,
            min_free_bytes: 256 << 20,
        }
    }
}

/// HTTP/1.1: at most this much buffered per connection (hyper's default is ~400 KiB); an
/// agent's request head is a few hundred bytes.
const H1_MAX_BUF: usize = 64 << 10;
/// HTTP/2 flow-control windows: what a peer may send before the handler reads it.
const H2_STREAM_WINDOW: u32 = 64 << 10;
const H2_CONNECTION_WINDOW: u32 = 256 << 10;
const H2_MAX_HEADER_LIST: u32 = 16 << 10;
const H2_MAX_SEND_BUF: usize = 64 << 10;

/// Sets the per-connection bounds on hyper's builder (both protocols).
pub fn configure_http(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &Limits,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(H1_MAX_BUF);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_send_buf_size(H2_MAX_SEND_BUF);
}

/// Counters of what the bounds did, for `/metrics` and `/v1/stats`.
#[derive(Debug, Default)]
pub struct LimitStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub evicted: AtomicU64,
    pub idle_closed: AtomicU64,
    pub buffered: AtomicU64,
    pub buffered_peak: AtomicU64,
    pub over_budget: AtomicU64,
    pub body_timeouts: AtomicU64,
}

impl LimitStats {
    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "connections_open": g(&self.open),
            "connections_accepted": g(&self.accepted),
            "connections_refused": g(&self.refused),
            "connections_evicted": g(&self.evicted),
            "connections_idle_closed": g(&self.idle_closed),
            "request_bytes_buffered": g(&self.buffered),
            "request_bytes_buffered_peak": g(&self.buffered_peak),
            "requests_over_budget": g(&self.over_budget),
            "request_body_timeouts": g(&self.body_timeouts),
        })
    }

    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, kind, help, v) in [
            (
                "nodeproof_connections_open",
                "gauge",
                "Open client connections.",
                g(&self.open),
            ),
            (
                "nodeproof_connections_accepted_total",
                "counter",
                "Connections given a slot.",
                g(&self.accepted),
            ),
            (
                "nodeproof_connections_refused_total",
                "counter",
                "Connections closed at once: every slot had a request in flight.",
                g(&self.refused),
            ),
            (
                "nodeproof_connections_evicted_total",
                "counter",
                "Idle connections closed to make room for a new one.",
                g(&self.evicted),
            ),
            (
                "nodeproof_connections_idle_closed_total",
                "counter",
                "Connections closed after the idle timeout.",
                g(&self.idle_closed),
            ),
            (
                "nodeproof_request_bytes_buffered",
                "gauge",
                "Request body bytes held now.",
                g(&self.buffered),
            ),
            (
                "nodeproof_request_bytes_buffered_peak",
                "gauge",
                "The most request body bytes held at once.",
                g(&self.buffered_peak),
            ),
            (
                "nodeproof_requests_over_budget_total",
                "counter",
                "Requests answered 503 because the request byte budget was spent.",
                g(&self.over_budget),
            ),
            (
                "nodeproof_request_body_timeouts_total",
                "counter",
                "Requests whose body did not arrive in time.",
                g(&self.body_timeouts),
            ),
        ] {
            super::stats::write_metric(&mut out, name, kind, help, v);
        }
        out
    }
}

/// What the tracker and a connection's stream share.
#[derive(Debug)]
struct ConnState {
    ip: IpAddr,
    /// Requests whose handler has not finished.
    in_flight: AtomicUsize,
    /// When a byte last moved or a request last finished (milliseconds since `epoch`).
    last_active_ms: AtomicU64,
    evicted: AtomicBool,
    /// Woken on eviction, so a connection blocked in a read closes at once.
    waker: Mutex<Option<Waker>>,
}

impl ConnState {
    fn touch(&self, epoch: Instant) {
        self.last_active_ms
            .store(millis_since(epoch), Ordering::Relaxed);
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            w.wake();
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The connection slots. See the module comment for the policy.
#[derive(Debug)]
pub struct Tracker {
    limits: Limits,
    epoch: Instant,
    pub stats: Arc<LimitStats>,
    inner: Mutex<TrackerInner>,
}

#[derive(Debug, Default)]
struct TrackerInner {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Tracker {
    pub fn new(limits: Limits, stats: Arc<LimitStats>) -> Arc<Tracker> {
        Arc::new(Tracker {
            limits,
            epoch: Instant::now(),
            stats,
            inner: Mutex::new(TrackerInner::default()),
        })
    }

    /// A slot for a connection from `ip`, closing an idle connection to make room when
    /// needed; `None` when every candidate has a request in flight.
    fn admit(self: &Arc<Tracker>, ip: IpAddr) -> Option<Slot> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let live = |inner: &TrackerInner, only: Option<IpAddr>| {
            inner
                .conns
                .values()
                .filter(|c| !c.evicted.load(Ordering::Relaxed))
                .filter(|c| only.is_none_or(|ip| c.ip == ip))
                .count()
        };
        let from_ip = inner.per_ip.get(&ip).copied().unwrap_or(0);
        let scope = if from_ip >= self.limits.max_connections_per_ip
            && live(&inner, Some(ip)) >= self.limits.max_connections_per_ip
        {
            Some(Some(ip))
        } else if inner.conns.len() >= self.limits.max_connections
            && live(&inner, None) >= self.limits.max_connections
        {
            Some(None)
        } else {
            None
        };
        if let Some(only) = scope {
            // The longest-idle connection in scope that has no request in flight.
            let victim = inner
                .conns
                .values()
                .filter(|c| only.is_none_or(|ip| c.ip == ip))
                .filter(|c| !c.evicted.load(Ordering::Relaxed))
                .filter(|c| c.in_flight.load(Ordering::Relaxed) == 0)
                .min_by_key(|c| c.last_active_ms.load(Ordering::Relaxed))
                .cloned();
            match victim {
                Some(v) => {
                    v.evict();
                    self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%ip, "connection refused: every connection slot has a request in flight");
                    return None;
                }
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState {
            ip,
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(millis_since(self.epoch)),
            evicted: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        inner.conns.insert(id, Arc::clone(&state));
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            id,
            state,
            tracker: Arc::clone(self),
        })
    }
}

/// A connection's slot, given back on drop.
#[derive(Debug)]
struct Slot {
    id: u64,
    state: Arc<ConnState>,
    tracker: Arc<Tracker>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self
            .tracker
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        inner.conns.remove(&self.id);
        if let Some(n) = inner.per_ip.get_mut(&self.state.ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&self.state.ip);
            }
        }
        self.tracker.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The acceptor (innermost, on the TCP stream, before any TLS): takes a slot and wraps
/// the stream and the connection's service.
#[derive(Debug, Clone)]
pub struct GuardAcceptor {
    tracker: Arc<Tracker>,
}

impl GuardAcceptor {
    pub fn new(tracker: Arc<Tracker>) -> GuardAcceptor {
        GuardAcceptor { tracker }
    }
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for GuardAcceptor {
    type Stream = Guarded<TcpStream>;
    type Service = InFlight<S>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let ip = match stream.peer_addr() {
            Ok(SocketAddr::V4(a)) => IpAddr::V4(*a.ip()),
            Ok(SocketAddr::V6(a)) => a
                .ip()
                .to_ipv4_mapped()
                .map_or(IpAddr::V6(*a.ip()), IpAddr::V4),
            Err(e) => return std::future::ready(Err(e)),
        };
        let Some(slot) = self.tracker.admit(ip) else {
            return std::future::ready(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "no connection slot free",
            )));
        };
        let _ = stream.set_nodelay(true);
        let idle = self.tracker.limits.idle_timeout;
        let conn = Arc::clone(&slot.state);
        let guarded = Guarded {
            inner: stream,
            read_idle: Box::pin(tokio::time::sleep(idle)),
            write_idle: Box::pin(tokio::time::sleep(idle)),
            idle,
            epoch: self.tracker.epoch,
            slot,
        };
        let service = InFlight {
            inner: service,
            conn,
            epoch: self.tracker.epoch,
        };
        std::future::ready(Ok((guarded, service)))
    }
}

/// A connection's stream that closes itself when idle too long or evicted.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    read_idle: Pin<Box<Sleep>>,
    write_idle: Pin<Box<Sleep>>,
    idle: Duration,
    epoch: Instant,
    slot: Slot,
}

impl<S> Guarded<S> {
    fn state(&self) -> &ConnState {
        &self.slot.state
    }

    /// Polls `timer` after the stream said Pending: `Some(error)` when the connection has
    /// been idle too long, else `None` (with the timer re-armed as needed).
    fn expired(
        timer: &mut Pin<Box<Sleep>>,
        state: &ConnState,
        idle: Duration,
        epoch: Instant,
        stats: &LimitStats,
        cx: &mut Context<'_>,
    ) -> Option<io::Error> {
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            // A request in flight is bounded by the body timeout and the handler itself;
            // the connection is not idle while it runs.
            let last = epoch + Duration::from_millis(state.last_active_ms.load(Ordering::Relaxed));
            let due = last + idle;
            if state.in_flight.load(Ordering::Relaxed) > 0 {
                timer.as_mut().reset(Instant::now() + idle);
                continue;
            }
            if due > Instant::now() {
                timer.as_mut().reset(due);
                continue;
            }
            stats.idle_closed.fetch_add(1, Ordering::Relaxed);
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle too long",
            ));
        }
    }
}

fn evicted_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "idle connection closed to make room for another",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state().evicted.load(Ordering::Relaxed) {
            return Poll::Ready(Err(evicted_error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    // The timer is not moved here (that costs a timer-wheel update per
                    // read): when it fires, `expired` re-arms it from the last activity.
                    this.slot.state.touch(this.epoch);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                {
                    let mut waker = this
                        .slot
                        .state
                        .waker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                }
                if this.state().evicted.load(Ordering::Relaxed) {
                    return Poll::Ready(Err(evicted_error()));
                }
                let stats = Arc::clone(&this.slot.tracker.stats);
                match Self::expired(
                    &mut this.read_idle,
                    &this.slot.state,
                    this.idle,
                    this.epoch,
                    &stats,
                    cx,
                ) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.slot.state.touch(this.epoch);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // A peer that stops reading its answers: the same idle bound.
                let stats = Arc::clone(&this.slot.tracker.stats);
                match Self::expired(
                    &mut this.write_idle,
                    &this.slot.state,
                    this.idle,
                    this.epoch,
                    &stats,
                    cx,
                ) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.slot.state.touch(this.epoch);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let stats = Arc::clone(&this.slot.tracker.stats);
                match Self::expired(
                    &mut this.write_idle,
                    &this.slot.state,
                    this.idle,
                    this.epoch,
                    &stats,
                    cx,
                ) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection's service, counting its requests in flight (a connection with one is
/// never idle-closed or evicted).
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    conn: Arc<ConnState>,
    epoch: Instant,
}

/// Ends a request's in-flight count however its future ends (completed or dropped).
struct InFlightGuard {
    conn: Arc<ConnState>,
    epoch: Instant,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.conn.touch(self.epoch);
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, R> tower_service::Service<R> for InFlight<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.conn.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlightGuard {
            conn: Arc::clone(&self.conn),
            epoch: self.epoch,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let out = future.await;
            drop(guard);
            out
        })
    }
}

/// The byte budget shared by every request body still held.
#[derive(Debug)]
pub struct Budget {
    max: u64,
    stats: Arc<LimitStats>,
    body_timeout: Duration,
}

impl Budget {
    pub fn new(limits: &Limits, stats: Arc<LimitStats>) -> Arc<Budget> {
        Arc::new(Budget {
            max: limits.max_buffered_bytes as u64,
            stats,
            body_timeout: limits.body_timeout,
        })
    }

    fn try_take(&self, n: u64) -> bool {
        let taken = self
            .stats
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&t| t <= self.max)
            });
        match taken {
            Ok(before) => {
                self.stats
                    .buffered_peak
                    .fetch_max(before + n, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
}

/// The bytes one request holds, given back when both its body and its handler are done.
#[derive(Debug)]
struct Held {
    budget: Arc<Budget>,
    bytes: AtomicU64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = self.bytes.load(Ordering::Relaxed);
        self.budget.stats.buffered.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Why a request body stopped being read; `body::read_limited` turns these into 408/503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyLimitError {
    #[error("the request body did not arrive within the body timeout")]
    TimedOut,
    #[error("the collector is holding as many request bytes as it allows")]
    OverBudget,
}

impl BodyLimitError {
    /// The answer for a request whose body stopped for this reason.
    pub fn to_http(self) -> HttpError {
        match self {
            BodyLimitError::TimedOut => HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time (--body-timeout): send it again",
            ),
            BodyLimitError::OverBudget => HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the collector is receiving as many request bytes as it allows \
                 (--max-buffered-bytes): send it again later",
            ),
        }
    }
}

/// A request body that counts its bytes against the budget and must end in time.
struct BudgetedBody {
    inner: Body,
    held: Arc<Held>,
    deadline: Pin<Box<Sleep>>,
    failed: bool,
}

impl http_body::Body for BudgetedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if !this.held.budget.try_take(n) {
                        this.failed = true;
                        this.held
                            .budget
                            .stats
                            .over_budget
                            .fetch_add(1, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(axum::Error::new(
                            BodyLimitError::OverBudget,
                        ))));
                    }
                    this.held.bytes.fetch_add(n, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.failed = true;
                    this.held
                        .budget
                        .stats
                        .body_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(axum::Error::new(BodyLimitError::TimedOut))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: every request's body is counted against the budget from its first byte
/// until the handler has answered (the handler holds the bytes until then).
pub async fn budget(State(budget): State<Arc<Budget>>, request: Request, next: Next) -> Response {
    let held = Arc::new(Held {
        budget: Arc::clone(&budget),
        bytes: AtomicU64::new(0),
    });
    let (parts, body) = request.into_parts();
    let body = BudgetedBody {
        inner: body,
        held: Arc::clone(&held),
        deadline: Box::pin(tokio::time::sleep(budget.body_timeout)),
        failed: false,
    };
    let response = next.run(Request::from_parts(parts, Body::new(body))).await;
    drop(held);
    response
}

/// The limit error inside a body read error, if that is why the read stopped.
pub fn body_limit_error(e: &axum::Error) -> Option<BodyLimitError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<BodyLimitError>() {
            return Some(*found);
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(max: usize, per_ip: usize) -> Arc<Tracker> {
        Tracker::new(
            Limits {
                max_connections: max,
                max_connections_per_ip: per_ip,
                ..Limits::default()
            },
            Arc::default(),
        )
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[tokio::test]
    async fn full_slots_evict_the_longest_idle_and_spare_requests_in_flight() {
        let t = tracker(2, 10);
        let busy = t.admit(A).unwrap();
        busy.state.in_flight.store(1, Ordering::Relaxed);
        let idle = t.admit(A).unwrap();
        // Full: the idle one goes, the busy one stays.
        let newcomer = t.admit(B).expect("room made");
        assert!(idle.state.evicted.load(Ordering::Relaxed));
        assert!(!busy.state.evicted.load(Ordering::Relaxed));
        drop(idle);
        // Every slot now has a request in flight: refused.
        newcomer.state.in_flight.store(1, Ordering::Relaxed);
        assert!(t.admit(B).is_none());
        assert_eq!(t.stats.refused.load(Ordering::Relaxed), 1);
        assert_eq!(t.stats.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(t.stats.open.load(Ordering::Relaxed), 2);
        drop(busy);
        assert!(t.admit(B).is_some(), "a closed connection frees its slot");
    }

    #[tokio::test]
    async fn per_address_cap_evicts_only_that_address() {
        let t = tracker(100, 1);
        let a1 = t.admit(A).unwrap();
        let b1 = t.admit(B).unwrap();
        let _a2 = t.admit(A).expect("A's idle connection makes room");
        assert!(a1.state.evicted.load(Ordering::Relaxed));
        assert!(
            !b1.state.evicted.load(Ordering::Relaxed),
            "B is not A's to evict"
        );
    }
}
