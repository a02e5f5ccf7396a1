//! Dashboard sessions: a person enters the admin or viewer token once on the login page and
//! gets a random session id in an `HttpOnly` cookie, so no token sits in a URL, in the
//! browser's storage or in a script's reach.
//!
//! Sessions live in memory, server-side, each with an expiry. Only a valid token creates
//! one, and their number is capped (the oldest goes first), so nothing an unauthenticated
//! peer sends grows this table. The ids are 32 random bytes; the table is keyed by their
//! SHA-256, so the id itself is kept nowhere. Each session has its own CSRF token, which a
//! state-changing request made with the cookie must echo in a header.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The time (Unix seconds) the dashboard judges sessions and the login quota by: the
/// system clock unless made with [`Clock::manual`], whose time moves only when its
/// [`ClockHand`] moves it, so a test can let a session expire without waiting.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

/// Moves a [`Clock::manual`] clock; there is none for the system clock.
#[derive(Debug, Clone)]
pub struct ClockHand(Arc<AtomicI64>);

impl Clock {
    /// The system clock (the default).
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that reads `start` until its hand moves it.
    pub fn manual(start: i64) -> (Clock, ClockHand) {
        let time = Arc::new(AtomicI64::new(start));
        (Clock(Some(Arc::clone(&time))), ClockHand(time))
    }

    /// The time now, in Unix seconds.
    pub fn now(&self) -> i64 {
        match &self.0 {
            None => crate::server::now_unix(),
            Some(time) => time.load(Ordering::SeqCst),
        }
    }
}

impl ClockHand {
    /// Moves the clock by `secs` (backwards when negative, as a system clock may be set).
    pub fn advance(&self, secs: i64) {
        // fetch_update's closure always returns Some, so this cannot fail.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(secs))
            });
    }
}

/// What a session (or a bearer token) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything the dashboard shows; changes nothing.
    Viewer,
    /// Reads and changes (exceptions).
    Admin,
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub role: Role,
    /// Sent back by the page in `X-CSRF-Token` on requests that change state.
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Session {
    /// Whether `given` is this session's CSRF token, compared in constant time.
    pub fn csrf_matches(&self, given: &str) -> bool {
        let a: [u8; 32] = Sha256::digest(self.csrf.as_bytes()).into();
        let b: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(a.ct_eq(&b))
    }
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    /// Each session with its serial number (creation order, for eviction).
    map: Mutex<HashMap<[u8; 32], (u64, Session)>>,
    next: std::sync::atomic::AtomicU64,
    max: usize,
    ttl_secs: i64,
}

/// 32 random bytes as 64 hex digits.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// At most `max` sessions (at least 1), each valid for `ttl_secs`.
    pub fn new(max: usize, ttl_secs: i64) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(0),
            max: max.max(1),
            ttl_secs: ttl_secs.max(1),
        }
    }

    /// How long a session lasts, for the cookie's `Max-Age`.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A new session for someone who gave a valid token: its id (for the cookie) and the
    /// session. Expired sessions are dropped first; if the table is still full, the session
    /// created first goes.
    pub fn create(&self, role: Role, now: i64) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            role,
            csrf: random_hex(),
            created_at: now,
            expires_at: now.saturating_add(self.ttl_secs),
        };
        let serial = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.max {
            map.retain(|_, (_, s)| s.expires_at > now);
        }
        while map.len() >= self.max {
            let oldest = map
                .iter()
                .min_by_key(|(_, (serial, _))| *serial)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    map.remove(&k);
                }
                None => break,
            }
        }
        map.insert(key(&id), (serial, session.clone()));
        (id, session)
    }

    /// The live session with this id at `now`; an expired one is removed.
    pub fn get(&self, id: &str, now: i64) -> Option<Session> {
        let k = key(id);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&k) {
            Some((_, s)) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logout). Whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(id))
            .is_some()
    }

    /// Sessions held now (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_the_default_is_the_system_clock() {
        let (clock, hand) = Clock::manual(1000);
        let copy = clock.clone();
        assert_eq!(clock.now(), 1000);
        hand.advance(59);
        assert_eq!(
            (clock.now(), copy.now()),
            (1059, 1059),
            "clones share the time"
        );
        hand.advance(-60);
        assert_eq!(clock.now(), 999);
        hand.advance(i64::MAX);
        assert_eq!(clock.now(), i64::MAX, "saturates");
        let before = crate::server::now_unix();
        let now = Clock::default().now();
        assert!(now >= before && now <= crate::server::now_unix());
    }

    #[test]
    fn a_session_expires_at_its_ttl() {
        let s = Sessions::new(10, 3600);
        let (id, session) = s.create(Role::Viewer, 1000);
        assert_eq!(id.len(), 64);
        assert_eq!(session.expires_at, 4600);
        assert_eq!(s.get(&id, 4599).map(|x| x.role), Some(Role::Viewer));
        assert!(s.get(&id, 4600).is_none(), "expired at its end");
        assert!(s.is_empty(), "an expired session is dropped when seen");
    }

    #[test]
    fn ids_and_csrf_tokens_are_random_and_unrelated() {
        let s = Sessions::new(10, 60);
        let (a, sa) = s.create(Role::Admin, 0);
        let (b, sb) = s.create(Role::Admin, 0);
        assert_ne!(a, b);
        assert_ne!(sa.csrf, sb.csrf);
        assert_ne!(a, sa.csrf);
        assert!(sa.csrf_matches(&sa.csrf));
        assert!(!sa.csrf_matches(&sb.csrf));
        assert!(!sa.csrf_matches(""));
        assert!(s.get("not-an-id", 0).is_none());
    }

    #[test]
    fn the_table_is_capped_and_the_oldest_goes() {
        let s = Sessions::new(3, 3600);
        let ids: Vec<String> = (0..5).map(|i| s.create(Role::Viewer, i).0).collect();
        assert_eq!(s.len(), 3);
        assert!(s.get(&ids[0], 10).is_none());
        assert!(s.get(&ids[1], 10).is_none());
        for id in &ids[2..] {
            assert!(s.get(id, 10).is_some());
        }
    }

    #[test]
    fn expired_sessions_make_room_before_live_ones_go() {
        let s = Sessions::new(2, 100);
        let (old, _) = s.create(Role::Viewer, 0);
        let (live, _) = s.create(Role::Viewer, 150);
        let (new, _) = s.create(Role::Viewer, 160);
        assert!(s.get(&old, 160).is_none());
        assert!(s.get(&live, 160).is_some(), "a live session is kept");
        assert!(s.get(&new, 160).is_some());
    }

    #[test]
    fn logout_removes_the_session() {
        let s = Sessions::new(2, 100);
        let (id, _) = s.create(Role::Admin, 0);
        assert!(s.remove(&id));
        assert!(s.get(&id, 1).is_none());
        assert!(!s.remove(&id));
    }
}
