//! Session tickets: short-lived, single-use credentials for one session upgrade.
//!
//! Browsers cannot set headers on a WebSocket, so a bearer token would have to
//! travel in the session URL, where proxies, browser history and `Referer`
//! headers keep it. Instead a player asks for a ticket over the ordinary API
//! (`POST /api/v1/stream/session-ticket`, bearer header) and opens the socket
//! with `?ticket=…` at once. A ticket in a log is worth nothing: it is random
//! (256 bits), bound to one user and one title, redeemable once, and only for
//! [`SessionTicketBook::redeem`] — it is not a JWT, so no other
//! route accepts it.
//!
//! The book is in memory, on the node that issued the ticket: single use needs
//! state, and a node's memory is the only state that is consumed atomically
//! without a round trip to the store (docs/protocol.md says how this fits
//! several nodes behind a load balancer). It is a plain ledger behind one
//! mutex, so that a ticket and the counts that bound it change together:
//!
//! * at most `max_per_user` unredeemed tickets per user (429 beyond) and
//!   `max_total` on the node (503 beyond), so a flood of requests cannot grow
//!   memory;
//! * expired tickets are purged on every issue, oldest first, from a queue in
//!   issue order, so the work is proportional to what expired;
//! * redeeming removes the ticket before anything else is checked, so two
//!   upgrades racing with one ticket cannot both win, and a ticket shown for
//!   the wrong title is spent.
//!
//! Time is passed in (µs since the epoch, from the server's
//! [`WallClock`](crate::clock::WallClock)) rather than read here, so tests
//! expire tickets by moving a clock instead of sleeping.
//!
//! Not to be confused with `session::SessionTicket`, the admission slot a live
//! session holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::auth::UserId;

/// Random bytes in a ticket (256 bits; printed as 43 base64url characters).
const TICKET_BYTES: usize = 32;

/// A ticket as handed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTicket {
    /// The opaque ticket text for `?ticket=`.
    pub ticket: String,
    /// How long it may be redeemed.
    pub expires_in: Duration,
}

/// Why no ticket was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketIssueError {
    /// The user holds `--max-session-tickets-per-user` unredeemed tickets.
    #[error(
        "too many unused session tickets for this user; open a session with one, or wait until they expire"
    )]
    UserFull,
    /// The node holds `--max-session-tickets` unredeemed tickets.
    #[error("this server holds too many unused session tickets, try again later")]
    NodeFull,
}

/// Why a ticket did not open a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketRedeemError {
    /// Never issued here, already used, or expired and purged.
    #[error(
        "session ticket is unknown or already used (tickets are single-use and valid only on the server that issued them); request a new one"
    )]
    Unknown,
    /// Issued, but its lifetime is over.
    #[error("session ticket has expired; request a new one")]
    Expired,
    /// Issued for another title; it is spent all the same.
    #[error("session ticket was issued for another title; request one for this title")]
    OtherMovie,
}

/// One unredeemed ticket.
#[derive(Debug)]
struct Entry {
    /// Whom the session will belong to.
    user: UserId,
    /// The only title it opens.
    movie_id: Arc<str>,
    /// µs since the epoch after which it is refused.
    expires_at_micros: i64,
}

/// What the mutex guards: the tickets and the counts that bound them.
#[derive(Debug, Default)]
struct Ledger {
    /// Unredeemed tickets by their text.
    tickets: HashMap<Arc<str>, Entry>,
    /// Unredeemed tickets per user; a user with none has no entry.
    held_by_user: HashMap<UserId, usize>,
    /// Every ticket issued and not yet purged, oldest first, with its expiry;
    /// redeemed tickets stay here until they expire or the queue is compacted.
    expiry_queue: VecDeque<(i64, Arc<str>)>,
}

impl Ledger {
    /// Removes `ticket`, giving back its user's slot.
    fn take(&mut self, ticket: &str) -> Option<Entry> {
        let entry = self.tickets.remove(ticket)?;
        if let Some(held) = self.held_by_user.get_mut(&entry.user) {
            *held -= 1;
            if *held == 0 {
                self.held_by_user.remove(&entry.user);
            }
        }
        Some(entry)
    }

    /// Drops every ticket expired at `now`, from the front of the queue. If
    /// the clock went back, a later ticket may expire before an earlier one;
    /// it then waits for the ones before it, which the caps keep bounded.
    fn purge_expired(&mut self, now_micros: i64) {
        while let Some((expires_at, _)) = self.expiry_queue.front() {
            if *expires_at > now_micros {
                break;
            }
            if let Some((_, ticket)) = self.expiry_queue.pop_front() {
                self.take(&ticket);
            }
        }
    }

    /// Forgets queued tickets that were redeemed, once they outnumber the cap:
    /// otherwise issue-and-redeem at a high rate would grow the queue by a
    /// ticket lifetime's worth of requests.
    fn compact_if_over(&mut self, limit: usize) {
        if self.expiry_queue.len() > limit {
            let tickets = &self.tickets;
            self.expiry_queue
                .retain(|(_, ticket)| tickets.contains_key(ticket));
        }
    }
}

/// The unredeemed session tickets of this node.
#[derive(Debug)]
pub struct SessionTicketBook {
    /// Tickets and counts, changed together.
    ledger: Mutex<Ledger>,
    /// Lifetime of a ticket.
    ttl: Duration,
    /// Unredeemed tickets one user may hold.
    max_per_user: usize,
    /// Unredeemed tickets this node holds at most.
    max_total: usize,
}

impl SessionTicketBook {
    /// An empty book issuing tickets valid for `ttl`, with the two caps.
    pub fn new(ttl: Duration, max_per_user: usize, max_total: usize) -> Self {
        Self {
            ledger: Mutex::default(),
            ttl,
            max_per_user,
            max_total,
        }
    }

    /// The lifetime of every ticket this book issues.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a ticket for `user` to open one session on `movie_id`.
    pub fn issue(
        &self,
        user: &UserId,
        movie_id: &str,
        now_micros: i64,
    ) -> Result<IssuedTicket, TicketIssueError> {
        let mut ledger = self.lock();
        ledger.purge_expired(now_micros);
        if ledger.held_by_user.get(user).copied().unwrap_or(0) >= self.max_per_user {
            return Err(TicketIssueError::UserFull);
        }
        if ledger.tickets.len() >= self.max_total {
            return Err(TicketIssueError::NodeFull);
        }
        let ticket = loop {
            let ticket: Arc<str> = random_ticket().into();
            // 256 random bits do not collide; the loop only makes it certain.
            if !ledger.tickets.contains_key(&ticket) {
                break ticket;
            }
        };
        let ttl_micros = i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX);
        let expires_at_micros = now_micros.saturating_add(ttl_micros);
        ledger.tickets.insert(
            Arc::clone(&ticket),
            Entry {
                user: user.clone(),
                movie_id: movie_id.into(),
                expires_at_micros,
            },
        );
        *ledger.held_by_user.entry(user.clone()).or_insert(0) += 1;
        ledger
            .expiry_queue
            .push_back((expires_at_micros, Arc::clone(&ticket)));
        ledger.compact_if_over(self.max_total.saturating_mul(2));
        Ok(IssuedTicket {
            ticket: ticket.to_string(),
            expires_in: self.ttl,
        })
    }

    /// Spends `ticket` on a session for `movie_id` and returns its user. The
    /// ticket is gone after this call, whatever the answer.
    pub fn redeem(
        &self,
        ticket: &str,
        movie_id: &str,
        now_micros: i64,
    ) -> Result<UserId, TicketRedeemError> {
        let entry = self.lock().take(ticket).ok_or(TicketRedeemError::Unknown)?;
        if now_micros >= entry.expires_at_micros {
            return Err(TicketRedeemError::Expired);
        }
        if *entry.movie_id != *movie_id {
            return Err(TicketRedeemError::OtherMovie);
        }
        Ok(entry.user)
    }

    /// Unredeemed tickets held now, expired ones not yet purged included.
    pub fn held(&self) -> usize {
        self.lock().tickets.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // The ledger is consistent after every statement that can panic, so a
        // poisoned lock still guards valid data.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().expiry_queue.len()
    }
}

/// 256 random bits from the thread's CSPRNG, base64url without padding.
fn random_ticket() -> String {
    let mut bytes = [0u8; TICKET_BYTES];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, WallClock};

    const SECOND: i64 = 1_000_000;
    const START: i64 = 1_700_000_000 * SECOND;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn book() -> SessionTicketBook {
        SessionTicketBook::new(Duration::from_secs(30), 4, 10)
    }

    #[test]
    fn a_ticket_is_random_text_that_redeems_once_for_its_user() {
        let book = book();
        let issued = book.issue(&user("alice"), "clock", START).unwrap();
        assert_eq!(issued.expires_in, Duration::from_secs(30));
        assert_eq!(issued.ticket.len(), 43, "{}", issued.ticket);
        assert!(
            issued
                .ticket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let other = book.issue(&user("alice"), "clock", START).unwrap();
        assert_ne!(issued.ticket, other.ticket);

        assert_eq!(
            book.redeem(&issued.ticket, "clock", START),
            Ok(user("alice"))
        );
        assert_eq!(
            book.redeem(&issued.ticket, "clock", START),
            Err(TicketRedeemError::Unknown)
        );
        assert_eq!(
            book.redeem("never-issued", "clock", START),
            Err(TicketRedeemError::Unknown)
        );
    }

    #[test]
    fn a_ticket_expires_after_its_lifetime_on_the_injected_clock() {
        let book = book();
        let clock = ManualClock::at(START);
        let early = book
            .issue(&user("alice"), "clock", clock.now_micros())
            .unwrap();
        let late = book
            .issue(&user("alice"), "clock", clock.now_micros())
            .unwrap();
        clock.advance(30 * SECOND - 1);
        assert_eq!(
            book.redeem(&early.ticket, "clock", clock.now_micros()),
            Ok(user("alice"))
        );
        clock.advance(1);
        assert_eq!(
            book.redeem(&late.ticket, "clock", clock.now_micros()),
            Err(TicketRedeemError::Expired)
        );
        assert_eq!(book.held(), 0, "an expired ticket shown is gone too");
    }

    #[test]
    fn a_ticket_opens_only_its_own_title_and_is_spent_by_trying_another() {
        let book = book();
        let issued = book.issue(&user("alice"), "clock", START).unwrap();
        assert_eq!(
            book.redeem(&issued.ticket, "countdown", START),
            Err(TicketRedeemError::OtherMovie)
        );
        assert_eq!(
            book.redeem(&issued.ticket, "clock", START),
            Err(TicketRedeemError::Unknown)
        );
    }

    #[test]
    fn each_user_and_the_node_hold_a_bounded_number_of_tickets() {
        let book = book();
        for _ in 0..4 {
            book.issue(&user("alice"), "clock", START).unwrap();
        }
        assert_eq!(
            book.issue(&user("alice"), "clock", START),
            Err(TicketIssueError::UserFull)
        );
        for name in ["bob", "carol", "dave", "erin", "frank", "grace"] {
            book.issue(&user(name), "clock", START).unwrap();
        }
        assert_eq!(book.held(), 10);
        assert_eq!(
            book.issue(&user("heidi"), "clock", START),
            Err(TicketIssueError::NodeFull)
        );
        // The user cap answers first: it is the one a client can do something about.
        assert_eq!(
            book.issue(&user("alice"), "clock", START),
            Err(TicketIssueError::UserFull)
        );
    }

    #[test]
    fn redeeming_gives_the_users_slot_back() {
        let book = book();
        let tickets: Vec<_> = (0..4)
            .map(|_| book.issue(&user("alice"), "clock", START).unwrap())
            .collect();
        assert!(book.issue(&user("alice"), "clock", START).is_err());
        book.redeem(&tickets[0].ticket, "clock", START).unwrap();
        assert!(book.issue(&user("alice"), "clock", START).is_ok());
    }

    #[test]
    fn a_flood_of_issues_and_redemptions_stays_bounded() {
        // Room for 50. For ten minutes a client asks 20 times a second under
        // 97 names, and redeems all but one ticket a second; those expire.
        let book = SessionTicketBook::new(Duration::from_secs(30), 4, 50);
        let clock = ManualClock::at(START);
        for round in 0..600 {
            for i in 0..20 {
                let name = format!("viewer-{}", (round * 20 + i) % 97);
                let issued = book
                    .issue(&user(&name), "clock", clock.now_micros())
                    .expect("room");
                if i > 0 {
                    book.redeem(&issued.ticket, "clock", clock.now_micros())
                        .unwrap();
                }
            }
            // Expired tickets are purged: the last 30 s of unredeemed ones stay.
            assert!(book.held() <= 30, "held {}", book.held());
            // Redeemed ones leave the expiry queue long before they expire.
            assert!(book.queued() <= 100, "queue {}", book.queued());
            clock.advance(SECOND);
        }
        clock.advance(30 * SECOND);
        book.issue(&user("late"), "clock", clock.now_micros())
            .unwrap();
        assert_eq!((book.held(), book.queued()), (1, 1));
    }

    #[test]
    fn expired_tickets_free_the_users_slots() {
        let book = book();
        let clock = ManualClock::at(START);
        for _ in 0..4 {
            book.issue(&user("alice"), "clock", clock.now_micros())
                .unwrap();
        }
        clock.advance(30 * SECOND);
        assert!(
            book.issue(&user("alice"), "clock", clock.now_micros())
                .is_ok()
        );
        assert_eq!(book.held(), 1);
    }

    #[test]
    fn racing_redeems_of_one_ticket_have_exactly_one_winner() {
        let book = Arc::new(SessionTicketBook::new(Duration::from_secs(30), 4, 10));
        for _ in 0..50 {
            let issued = book.issue(&user("alice"), "clock", START).unwrap();
            let winners: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        let book = Arc::clone(&book);
                        let ticket = issued.ticket.clone();
                        scope.spawn(move || book.redeem(&ticket, "clock", START).is_ok())
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| usize::from(h.join().unwrap()))
                    .sum()
            });
            assert_eq!(winners, 1);
        }
    }
}
