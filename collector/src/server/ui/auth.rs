//! Who may read and who may change, for every `/v1` read and write endpoint: a bearer token
//! (admin or viewer) or a dashboard session cookie. Reads take either role; changes take the
//! admin role, and with a cookie also the session's CSRF token in `X-CSRF-Token`, so a page
//! on another site cannot make a logged-in browser change anything (the cookie is also
//! `SameSite=Strict`).

use axum::http::{header, HeaderMap, StatusCode};

use super::session::{Role, Session};
use crate::server::error::HttpError;
use crate::server::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "nodeproof_session";
/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn unauthorized(message: &str) -> HttpError {
    HttpError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        message.to_string(),
    )
}

fn forbidden(message: &str) -> HttpError {
    HttpError::new(StatusCode::FORBIDDEN, "forbidden", message.to_string())
}

/// The bearer token of `Authorization`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
}

/// The session cookie's value, from any `Cookie` header.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The live session the request's cookie names.
pub fn session(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = session_cookie(headers)?;
    let s = state.ui.sessions.get(id, state.ui.clock.now())?;
    Some((id.to_string(), s))
}

/// The role a token gives: the admin token, then the viewer token.
pub fn token_role(state: &AppState, token: &str) -> Option<Role> {
    if state.admin_token.as_ref().is_some_and(|t| t.matches(token)) {
        return Some(Role::Admin);
    }
    if state
        .ui
        .viewer_token
        .as_ref()
        .is_some_and(|t| t.matches(token))
    {
        return Some(Role::Viewer);
    }
    None
}

/// Lets a read through with the admin or viewer bearer token, or a live session.
pub fn read(state: &AppState, headers: &HeaderMap) -> Result<Role, HttpError> {
    if state.admin_token.is_none() && state.ui.viewer_token.is_none() {
        return Err(unauthorized(
            "this collector has no admin token, so its read endpoints are closed: start it \
             with --admin-token-file",
        ));
    }
    if let Some(given) = bearer(headers) {
        return token_role(state, given).ok_or_else(|| {
            unauthorized("the bearer token is not the collector's admin or viewer token")
        });
    }
    if let Some((_, s)) = session(state, headers) {
        return Ok(s.role);
    }
    Err(unauthorized(
        "the read endpoints need `Authorization: Bearer <admin token>` (the token in the \
         collector's --admin-token-file, or the viewer token of --viewer-token-file), or a \
         dashboard session: log in at /ui/login",
    ))
}

/// Lets an admin-only read through (`GET /v1/export`, the signed evidence bundle): the
/// admin bearer token, or an admin dashboard session. The viewer role gets 403: the bundle
/// is signed with the collector's export key, a statement the collector makes to an auditor,
/// and writing it is the heaviest read there is. No CSRF token is asked for: the request
/// changes nothing, and the `SameSite=Strict` cookie is not sent on a request another
/// site's page starts.
pub fn admin_read(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    if state.admin_token.is_none() {
        return Err(unauthorized(
            "this collector has no admin token, so its admin endpoints are closed: start it \
             with --admin-token-file",
        ));
    }
    let viewer = || {
        forbidden(
            "the evidence export needs the admin token (or an admin dashboard session): the \
             viewer token can read the fleet but not have the collector sign a bundle",
        )
    };
    if let Some(given) = bearer(headers) {
        return match token_role(state, given) {
            Some(Role::Admin) => Ok(()),
            Some(Role::Viewer) => Err(viewer()),
            None => Err(unauthorized(
                "the bearer token is not the collector's admin token",
            )),
        };
    }
    match session(state, headers) {
        Some((_, s)) if s.role == Role::Admin => Ok(()),
        Some(_) => Err(viewer()),
        None => Err(unauthorized(
            "the evidence export needs `Authorization: Bearer <admin token>` (the token in \
             the collector's --admin-token-file) or an admin dashboard session",
        )),
    }
}

/// Lets a change through with the admin bearer token, or an admin session whose CSRF token
/// the request carries in `X-CSRF-Token`.
pub fn write(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    if state.admin_token.is_none() {
        return Err(unauthorized(
            "this collector has no admin token, so nothing can be changed over HTTP: start \
             it with --admin-token-file",
        ));
    }
    if let Some(given) = bearer(headers) {
        return match token_role(state, given) {
            Some(Role::Admin) => Ok(()),
            Some(Role::Viewer) => Err(forbidden(
                "the viewer token can only read: changes need the admin token",
            )),
            None => Err(unauthorized(
                "the bearer token is not the collector's admin token",
            )),
        };
    }
    let Some((_, s)) = session(state, headers) else {
        return Err(unauthorized(
            "changes need `Authorization: Bearer <admin token>` or an admin dashboard session",
        ));
    };
    if s.role != Role::Admin {
        return Err(forbidden(
            "this session was opened with the viewer token, which can only read",
        ));
    }
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !s.csrf_matches(given) {
        return Err(forbidden(
            "a change made with the session cookie must carry the session's CSRF token in \
             X-CSRF-Token (GET /ui/session gives it to the dashboard)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::AdminToken;

    #[test]
    fn the_bearer_token_comes_only_from_a_bearer_authorization() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            h
        };
        assert_eq!(bearer(&with("Bearer s3cret")), Some("s3cret"));
        assert_eq!(bearer(&with("bearer  s3cret ")), Some("s3cret"));
        assert_eq!(
            bearer(&with("Bearer ")),
            Some(""),
            "empty: matches no token"
        );
        for other in ["Basic s3cret", "s3cret", "Bearers3cret"] {
            assert_eq!(bearer(&with(other)), None, "{other}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
        let token = AdminToken::new("s3cret");
        assert!(token.matches("s3cret"));
        for bad in ["s3cre", "s3cret2", "S3CRET", ""] {
            assert!(!token.matches(bad), "{bad}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; nodeproof_session=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1".parse().unwrap());
        h.append(header::COOKIE, "nodeproof_session=xyz".parse().unwrap());
        assert_eq!(session_cookie(&h), Some("xyz"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "nodeproof_sessionx=1".parse().unwrap());
        assert_eq!(session_cookie(&h), None);
    }
}
