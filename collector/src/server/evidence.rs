//! The evidence endpoints: `GET /v1/nodes/{name}/keys` (a node's keys with their validity
//! periods; any reader: admin or viewer token, or a dashboard session) and `GET /v1/export`
//! (the evidence bundle, streamed as it is written; the admin token or an admin dashboard
//! session, see [`super::ui::auth::admin_read`]), so an auditor's request needs no shell on
//! the collector host.
//!
//! The export runs on a blocking thread and hands 64 KiB chunks to the response through a
//! bounded channel: memory stays flat whatever the range, and a client that reads slowly
//! slows the export instead of filling memory. Once the first byte is sent the status is
//! 200; an error after that aborts the body, so the client gets a truncated gzip stream
//! that no tool takes for a whole bundle.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::mpsc;

use super::error::HttpError;
use super::{blocking, now_unix, AppState};
use crate::evidence::{self, manifest::safe_name, ExportKey};
use crate::store::ExportFilter;

/// Chunks in flight between the export thread and the response.
const CHANNEL_CHUNKS: usize = 8;
const CHUNK_BYTES: usize = 64 * 1024;
/// `node=` parameters at most in one export request.
const MAX_NODES: usize = 10_000;

/// `GET /v1/nodes/{name}/keys`: every key the node held, oldest first, with when each was
/// valid, as PEM and in securesystemslib's form. 404 for an unknown node.
pub async fn get_node_keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let result = async {
        super::ui::auth::read(&state, &headers)?;
        blocking(&state, move |s| {
            let periods = s.key_history(&name)?;
            evidence::manifest::keys_of(&name, &periods).map_err(HttpError::internal)
        })
        .await
    }
    .await;
    match result {
        Ok(keys) => Json(keys).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `%XX` and `+` decoding of one query component.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("{text:?} has a bad %-escape"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8"))
}

/// The filter of `?since=T&until=T&node=A&node=B` (times: a date or RFC 3339).
pub fn parse_filter(query: Option<&str>) -> Result<ExportFilter, String> {
    let mut filter = ExportFilter::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value)?;
        match key {
            "since" => filter.since = Some(super::fleet::parse_until(&value)?),
            "until" => filter.until = Some(super::fleet::parse_until(&value)?),
            "node" => {
                if !safe_name(&value) {
                    return Err(format!(
                        "{:?} is not a node name (letters, digits, '-', '.', '_')",
                        crate::text::escape(&value)
                    ));
                }
                if filter.nodes.len() >= MAX_NODES {
                    return Err(format!("at most {MAX_NODES} node= parameters"));
                }
                filter.nodes.push(value);
            }
            other => {
                return Err(format!(
                    "unknown parameter {:?}: use since, until and node",
                    crate::text::escape(other)
                ))
            }
        }
    }
    Ok(filter)
}

/// `GET /v1/export?since=&until=&node=`: the evidence bundle (`application/gzip`).
pub async fn get_export(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let prepared = async {
        super::ui::auth::admin_read(&state, &headers)?;
        let filter = parse_filter(query.as_deref()).map_err(HttpError::bad_request)?;
        let key = state.export_key.clone().ok_or_else(|| {
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_export_key",
                "this collector has no export key, so it cannot sign a bundle: create one with \
                 `nodeproof-collector export-key create --out DIR` and start serve with \
                 --export-key DIR/export-key.pem",
            )
        })?;
        // Unknown nodes are a 404 before the 200 starts.
        let names = filter.nodes.clone();
        blocking(&state, move |s| {
            for n in &names {
                s.key_history(n)?;
            }
            Ok(())
        })
        .await?;
        Ok::<_, HttpError>((filter, key))
    }
    .await;
    let (filter, key) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_CHUNKS);
    let store = Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || {
        let mut writer =
            std::io::BufWriter::with_capacity(CHUNK_BYTES, ChannelWriter { tx: tx.clone() });
        let result = evidence::export(store.as_ref(), &filter, &key, now_unix(), &mut writer)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|_| writer.flush());
        if let Err(e) = result {
            tracing::error!(error = %e, "export failed; the response is cut short");
            let _ = tx.blocking_send(Err(e));
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/gzip")
        .header(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"nodeproof-evidence.tar.gz\"",
        )
        .body(Body::new(ChannelBody { rx }))
        .unwrap_or_else(|e| HttpError::internal(e.to_string()).into_response())
}

/// Blocking writes into the response channel; fails when the client went away.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The response body: the chunks as they come.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(http_body::Frame::data)))
    }
}

/// The export key `serve --export-key` loaded.
pub type SharedExportKey = Arc<ExportKey>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_query_parses_times_and_repeated_nodes() {
        let f = parse_filter(Some(
            "since=2026-01-01&until=2026-04-01T00%3A00%3A00Z&node=a&node=b.c",
        ))
        .unwrap();
        assert_eq!(f.since, Some(1_767_225_600));
        assert_eq!(f.until, Some(1_775_001_600));
        assert_eq!(f.nodes, vec!["a", "b.c"]);
        assert!(parse_filter(Some("node=..%2Fetc")).is_err());
        assert!(parse_filter(Some("limit=3")).is_err());
        assert!(parse_filter(Some("since=%zz")).is_err());
        assert_eq!(parse_filter(None).unwrap(), ExportFilter::default());
    }
}
