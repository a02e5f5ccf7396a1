//! The one error type of the HTTP edge: a status code and the JSON [`ApiError`] body every
//! 4xx and 5xx carries, so agents and scripts read the same stable `error` code whatever
//! went wrong, and a person reads a message that says what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nodeproof_proto::ApiError;

use crate::accept::Rejection;
use crate::store::StoreError;

/// An answer other than success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub body: ApiError,
}

impl HttpError {
    /// An error with a stable `code` and a message for a person.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            body: ApiError {
                error: code.to_string(),
                message: message.into(),
                last_sequence: None,
                last_digest: None,
            },
        }
    }

    /// The stable code, e.g. `bad_signature`.
    pub fn code(&self) -> &str {
        &self.body.error
    }

    /// A storage failure: 500, and the message names the cause so an operator can act.
    pub fn store(err: &StoreError) -> HttpError {
        // The database file is gone or the disk is full: nothing will be acknowledged until
        // an operator acts, so the answer says "unavailable, retry" rather than a bug.
        // The database server is out of reach (PostgreSQL restarting, connections cut):
        // the same request a little later will do.
        if let StoreError::Unavailable(_) = err {
            return HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                format!("{err}; this request was not acknowledged: send it again shortly"),
            );
        }
        if matches!(err, StoreError::Lost(_) | StoreError::Full(_)) {
            return HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{err}; this request was not acknowledged: send it again later"),
            );
        }
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the collector's database failed ({err}); this request was not acknowledged: send it again later"),
        )
    }

    /// A failure inside the collector that is not the client's fault.
    pub fn internal(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<Rejection> for HttpError {
    fn from(r: Rejection) -> HttpError {
        HttpError {
            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            body: ApiError {
                error: r.code.to_string(),
                message: r.message,
                last_sequence: r.last_sequence,
                last_digest: r.last_digest,
            },
        }
    }
}

/// So `?` works on store calls inside handlers: a conflict is the client's (409), a missing
/// node is 404, anything else is the collector's (500).
impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> HttpError {
        match &e {
            StoreError::Conflict(message) => {
                HttpError::new(StatusCode::CONFLICT, "conflict", message.clone())
            }
            StoreError::NoSuchNode(name) => {
                HttpError::not_found(format!("no node named {name:?} is enrolled"))
            }
            _ => HttpError::store(&e),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_rejections_keep_the_chain_position() {
        let e = HttpError::from(Rejection {
            status: 409,
            code: "chain_gap",
            message: "m".into(),
            last_sequence: Some(3),
            last_digest: Some("d".into()),
        });
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.code(), "chain_gap");
        assert_eq!(e.body.last_sequence, Some(3));
    }
}
