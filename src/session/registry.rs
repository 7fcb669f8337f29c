//! The live sessions of this process, by user.
//!
//! Admission happens here, before the WebSocket upgrade: the process-wide cap
//! (`--max-sessions`, 503 beyond) and the per-user cap
//! (`--max-sessions-per-user`, 429 beyond). Admission returns a
//! [`SessionTicket`] that the session task owns; dropping it removes the session,
//! so no path can leak an entry.
//!
//! Each entry exposes the session's latest, possibly unflushed, position, so the
//! read paths on this node see a tick before its flush (read-your-writes).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use smallvec::SmallVec;

use crate::auth::UserId;

/// A position received by a live session and not necessarily written yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivePosition {
    /// Position in milliseconds.
    pub position_ms: u64,
    /// When it was received (µs since the epoch): its write timestamp.
    pub received_at_micros: i64,
}

/// What the registry knows of one session.
#[derive(Debug)]
pub struct LiveSession {
    /// Unique within the process.
    pub session_id: u64,
    /// The session's title.
    pub movie_id: Arc<str>,
    /// Latest position received; updated by the session actor on each tick.
    latest: Mutex<Option<LivePosition>>,
}

impl LiveSession {
    /// Records the latest position received.
    pub fn set_latest(&self, position: LivePosition) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(position);
    }

    /// The latest position received, if any.
    pub fn latest(&self) -> Option<LivePosition> {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// The process holds `--max-sessions` sessions.
    #[error("this server is at its session limit, try again later")]
    ServerFull,
    /// The user holds `--max-sessions-per-user` sessions.
    #[error("too many open sessions for this user")]
    UserFull,
}

/// One user's sessions: nearly always one, held inline in the map's entry
/// instead of in a separate allocation per user.
type UserSessions = SmallVec<[Arc<LiveSession>; 1]>;

/// Live sessions by user, with the caps.
#[derive(Debug)]
pub struct SessionRegistry {
    /// Sessions of each user (a handful at most, bounded by the per-user cap).
    by_user: DashMap<UserId, UserSessions>,
    /// Sessions admitted and not yet dropped.
    live: AtomicUsize,
    /// Next session id.
    next_id: AtomicU64,
    /// Process-wide cap.
    max_sessions: usize,
    /// Per-user cap.
    max_per_user: usize,
}

impl SessionRegistry {
    /// An empty registry with the given caps.
    pub fn new(max_sessions: usize, max_per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            by_user: DashMap::new(),
            live: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            max_sessions,
            max_per_user,
        })
    }

    /// Admits a session of `user` on `movie_id`, or says which cap refuses it.
    pub fn admit(
        self: &Arc<Self>,
        user: &UserId,
        movie_id: impl Into<Arc<str>>,
    ) -> Result<SessionTicket, AdmissionError> {
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.max_sessions {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return Err(AdmissionError::ServerFull);
        }
        let session = Arc::new(LiveSession {
            session_id: self.next_id.fetch_add(1, Ordering::Relaxed),
            movie_id: movie_id.into(),
            latest: Mutex::new(None),
        });
        {
            let mut sessions = self.by_user.entry(user.clone()).or_default();
            if sessions.len() >= self.max_per_user {
                drop(sessions);
                self.live.fetch_sub(1, Ordering::AcqRel);
                return Err(AdmissionError::UserFull);
            }
            sessions.push(Arc::clone(&session));
        }
        Ok(SessionTicket {
            registry: Arc::clone(self),
            user: user.clone(),
            session,
        })
    }

    /// The newest live position of `user` on `movie_id` across this node's sessions.
    pub fn latest(&self, user: &UserId, movie_id: &str) -> Option<LivePosition> {
        let sessions = self.by_user.get(user)?;
        sessions
            .iter()
            .filter(|s| &*s.movie_id == movie_id)
            .filter_map(|s| s.latest())
            .max_by_key(|p| p.received_at_micros)
    }

    /// The newest live position of each title `user` has a session on.
    pub fn latest_by_movie(&self, user: &UserId) -> Vec<(Arc<str>, LivePosition)> {
        let Some(sessions) = self.by_user.get(user) else {
            return Vec::new();
        };
        let mut newest: Vec<(Arc<str>, LivePosition)> = Vec::new();
        for session in sessions.iter() {
            let Some(position) = session.latest() else {
                continue;
            };
            match newest
                .iter_mut()
                .find(|(movie, _)| *movie == session.movie_id)
            {
                Some((_, best)) if best.received_at_micros < position.received_at_micros => {
                    *best = position
                }
                Some(_) => {}
                None => newest.push((Arc::clone(&session.movie_id), position)),
            }
        }
        newest
    }

    /// Sessions admitted and not yet finished.
    pub fn live_count(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    fn remove(&self, user: &UserId, session_id: u64) {
        if let dashmap::Entry::Occupied(mut entry) = self.by_user.entry(user.clone()) {
            entry.get_mut().retain(|s| s.session_id != session_id);
            if entry.get().is_empty() {
                entry.remove();
            }
        }
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Proof of admission, owned by the session task; dropping it ends the
/// session's registration.
#[derive(Debug)]
pub struct SessionTicket {
    /// Where to deregister.
    registry: Arc<SessionRegistry>,
    /// The session's user.
    user: UserId,
    /// The registered session.
    session: Arc<LiveSession>,
}

impl SessionTicket {
    /// The session's user (the verified token's subject).
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The registered session.
    pub fn session(&self) -> &LiveSession {
        &self.session
    }
}

impl Drop for SessionTicket {
    fn drop(&mut self) {
        self.registry.remove(&self.user, self.session.session_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    #[test]
    fn caps_are_enforced_and_released() {
        let registry = SessionRegistry::new(3, 2);
        let a1 = registry.admit(&user("a"), "m").unwrap();
        let _a2 = registry.admit(&user("a"), "m").unwrap();
        assert_eq!(
            registry.admit(&user("a"), "m").unwrap_err(),
            AdmissionError::UserFull
        );
        let _b1 = registry.admit(&user("b"), "m").unwrap();
        assert_eq!(
            registry.admit(&user("c"), "m").unwrap_err(),
            AdmissionError::ServerFull
        );
        assert_eq!(registry.live_count(), 3);
        drop(a1);
        assert_eq!(registry.live_count(), 2);
        registry.admit(&user("c"), "m").unwrap();
    }

    #[test]
    fn latest_picks_the_newest_across_sessions_of_the_title() {
        let registry = SessionRegistry::new(10, 10);
        let alice = user("alice");
        let phone = registry.admit(&alice, "clock").unwrap();
        let tv = registry.admit(&alice, "clock").unwrap();
        let other = registry.admit(&alice, "countdown").unwrap();
        assert_eq!(registry.latest(&alice, "clock"), None);
        phone.session().set_latest(LivePosition {
            position_ms: 5,
            received_at_micros: 20,
        });
        tv.session().set_latest(LivePosition {
            position_ms: 9,
            received_at_micros: 10,
        });
        other.session().set_latest(LivePosition {
            position_ms: 1,
            received_at_micros: 30,
        });
        assert_eq!(registry.latest(&alice, "clock").unwrap().position_ms, 5);
        assert_eq!(registry.latest(&user("bob"), "clock"), None);
        let mut all = registry.latest_by_movie(&alice);
        all.sort_by_key(|(movie, _)| movie.to_string());
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.position_ms, 5);
    }
}
