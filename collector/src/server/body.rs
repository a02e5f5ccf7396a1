//! Reading request bodies under a size limit, with a JSON 413 the client actually receives.
//!
//! A server that answers 413 while the client is still writing and then closes the socket
//! makes the client's TCP stack see a reset, and the answer is usually lost: the agent would
//! see "connection reset" instead of "too large" and retry forever. So past the limit the
//! rest of the body is read and thrown away, up to [`DRAIN_LIMIT`], before answering; beyond
//! that (or when Content-Length already says so) the connection is not worth keeping.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use http_body_util::BodyExt as _;

use super::error::HttpError;

/// The largest body accepted: 1 MiB, as documented.
pub const MAX_BODY: usize = 1 << 20;
/// How much of an oversized body is read and discarded so the 413 reaches the client.
pub const DRAIN_LIMIT: usize = 8 << 20;

fn too_large(limit: usize) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the request body is over {limit} bytes, more than any report or request an \
             agent sends: check what the client is sending"
        ),
    )
}

/// The body as bytes, or `too_large` (413) past `limit`, or `malformed` (400) when the
/// client stopped sending halfway.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, HttpError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large(limit));
    }

    let mut body = body;
    // Grown as bytes arrive, not reserved from Content-Length: a peer that declares 1 MiB
    // and sends nothing must not cost 1 MiB (400 of them would cost 400 MiB).
    let mut buf: Vec<u8> =
        Vec::with_capacity(declared.map_or(8192, |n| (n as usize).min(limit).min(16 << 10)));
    let mut seen: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            // The connection bounds stopped it (too slow, or the byte budget is spent).
            if let Some(limit) = super::limits::body_limit_error(&e) {
                return limit.to_http();
            }
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("could not read the request body ({e}): the client stopped sending"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT {
            return Err(too_large(limit));
        }
        if seen <= limit {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(too_large(limit));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn within_limit_is_read_whole() {
        let got = read_limited(&HeaderMap::new(), Body::from(vec![7u8; 100]), 100)
            .await
            .unwrap();
        assert_eq!(got.len(), 100);
    }

    #[tokio::test]
    async fn over_limit_is_too_large() {
        let err = read_limited(&HeaderMap::new(), Body::from(vec![7u8; 101]), 100)
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.code(), "too_large");
    }

    #[tokio::test]
    async fn huge_declared_length_is_refused_unread() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_LENGTH,
            (DRAIN_LIMIT as u64 + 1).to_string().parse().unwrap(),
        );
        let err = read_limited(&headers, Body::empty(), 100)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "too_large");
    }
}
