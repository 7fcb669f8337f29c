//! The rate limit of the demo login (`POST /api/v1/demo/token`), per client
//! address.
//!
//! The demo login mints a token for any name, so a script could mint them by
//! the thousand; the limit keeps that to a human pace. Each client address has
//! a bucket (governor's GCRA: `burst` logins at once, then `per_minute`); over
//! it the answer is 429 with `Retry-After`.
//!
//! The address comes from axum's `ConnectInfo<SocketAddr>`, which the
//! server's accept loop puts on every request. A router served without it (a
//! test calling it directly) has every caller share one bucket
//! ([`ClientKey::Unknown`]): still a limit on minting, only a coarser one.
//! Memory is bounded too: when `max_clients` addresses are tracked, buckets
//! that are full again are dropped, and if that frees nothing, new addresses
//! share one overflow bucket until it does.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// Whose bucket a login is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A client whose address the server knows.
    Address(IpAddr),
    /// Every client when the server does not see addresses.
    Unknown,
    /// New addresses while `max_clients` are tracked.
    Overflow,
}

impl From<Option<IpAddr>> for ClientKey {
    /// IPv6 clients are keyed by their /64: one host usually holds a whole
    /// /64, and a bucket per address would give it 2^64 buckets.
    fn from(address: Option<IpAddr>) -> Self {
        match address {
            None => Self::Unknown,
            Some(IpAddr::V4(v4)) => Self::Address(IpAddr::V4(v4)),
            Some(IpAddr::V6(v6)) => {
                let network = u128::from(v6) & !(u128::from(u64::MAX));
                Self::Address(IpAddr::V6(network.into()))
            }
        }
    }
}

/// A login over the limit, and when the client may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many demo logins; try again in {retry_after_secs} s")]
pub struct LoginRateLimited {
    /// Whole seconds until a login would pass (at least 1), for `Retry-After`.
    pub retry_after_secs: u64,
}

/// The buckets of the demo login.
#[derive(Debug)]
pub struct DemoLoginLimiter<C: Clock = DefaultClock> {
    /// One GCRA state per client key.
    buckets: RateLimiter<ClientKey, DashMapStateStore<ClientKey>, C, NoOpMiddleware<C::Instant>>,
    /// Addresses tracked at most.
    max_clients: usize,
}

impl DemoLoginLimiter {
    /// `burst` logins at once per client, refilled at `per_minute`, for at
    /// most `max_clients` addresses.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32, max_clients: usize) -> Self {
        Self::with_clock(per_minute, burst, max_clients, DefaultClock::default())
    }
}

impl<C: Clock> DemoLoginLimiter<C> {
    /// [`new`](DemoLoginLimiter::new) on a given clock (tests use a fake one).
    pub fn with_clock(
        per_minute: NonZeroU32,
        burst: NonZeroU32,
        max_clients: usize,
        clock: C,
    ) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            buckets: RateLimiter::dashmap_with_clock(quota, clock),
            max_clients,
        }
    }

    /// Takes one login from `client`'s bucket.
    pub fn check(&self, client: ClientKey) -> Result<(), LoginRateLimited> {
        let key = if self.buckets.len() >= self.max_clients {
            self.buckets.retain_recent();
            if self.buckets.len() >= self.max_clients {
                ClientKey::Overflow
            } else {
                client
            }
        } else {
            client
        };
        self.buckets.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.buckets.clock().now());
            LoginRateLimited {
                retry_after_secs: whole_seconds_at_least_one(wait),
            }
        })
    }

    /// Client keys tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// `Retry-After` is whole seconds; rounding down would invite an early retry.
fn whole_seconds_at_least_one(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(max_clients: usize) -> (DemoLoginLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limiter = DemoLoginLimiter::with_clock(
            NonZeroU32::new(6).unwrap(),
            NonZeroU32::new(3).unwrap(),
            max_clients,
            clock.clone(),
        );
        (limiter, clock)
    }

    fn address(last: u8) -> ClientKey {
        ClientKey::Address(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn a_burst_passes_then_the_client_waits_for_the_refill() {
        let (limiter, clock) = limiter(100);
        for _ in 0..3 {
            assert_eq!(limiter.check(address(1)), Ok(()));
        }
        // 6 a minute: one every 10 s.
        assert_eq!(
            limiter.check(address(1)),
            Err(LoginRateLimited {
                retry_after_secs: 10
            })
        );
        // 1.5 s to go is said as 2: a client that waits what it is told succeeds.
        clock.advance(Duration::from_millis(8_500));
        assert_eq!(
            limiter.check(address(1)),
            Err(LoginRateLimited {
                retry_after_secs: 2
            })
        );
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(limiter.check(address(1)), Ok(()));
    }

    #[test]
    fn each_address_has_its_own_bucket() {
        let (limiter, _clock) = limiter(100);
        for _ in 0..3 {
            limiter.check(address(1)).unwrap();
        }
        assert!(limiter.check(address(1)).is_err());
        assert_eq!(limiter.check(address(2)), Ok(()));
        assert_eq!(limiter.check(ClientKey::from(None)), Ok(()));
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let key = |text: &str| ClientKey::from(Some(text.parse::<IpAddr>().unwrap()));
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff:1"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        assert_eq!(
            key("192.0.2.7"),
            ClientKey::Address(IpAddr::from([192, 0, 2, 7]))
        );
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let (limiter, clock) = limiter(10);
        for last in 0..200 {
            let _ = limiter.check(address(last));
            assert!(limiter.tracked() <= 11, "{}", limiter.tracked());
        }
        // New addresses now share the overflow bucket, which is spent.
        assert!(limiter.check(address(250)).is_err());
        // Buckets that refilled are dropped, and a new address has its own again.
        clock.advance(Duration::from_secs(60));
        assert_eq!(limiter.check(address(251)), Ok(()));
        assert!(limiter.tracked() <= 2, "{}", limiter.tracked());
    }
}
