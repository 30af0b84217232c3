//! Merged reads for publishers (SRS calls them "mr"): a publishing connection that has drained its
//! socket reads again only at the next tick of a clock every connection shares.
//!
//! An encoder sends a few dozen small messages a second (one per video frame and per audio frame), and
//! reading each as it arrives costs a thread wake-up, an `epoll_wait` and a `recv` apiece, which profiles
//! showed to be most of media's CPU. On a shared clock the deadlines of all sleeping connections fall in
//! the same timer slot, so the runtime wakes once per tick and reads every publisher's accumulated bytes
//! in a row, whatever the number of publishers. The price is at most one tick of extra ingest delay,
//! small next to a part (1/3 s) or a segment. The clock alone does not stop the kernel waking the
//! runtime for every arrival on a registered socket; `link.rs` takes a publisher's socket off the
//! reactor for that.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// When a connection that just drained its socket may read again: the next tick of the shared clock.
pub fn next_read(period: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    next_tick(epoch, Instant::now(), period)
}

/// The first instant after `now` that lies a whole number of `period`s after `epoch`.
fn next_tick(epoch: Instant, now: Instant, period: Duration) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let ticks = now.saturating_duration_since(epoch).as_nanos() / period_ns + 1;
    let offset = ticks.saturating_mul(period_ns);
    epoch + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_shared_multiples_of_the_period_after_now() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        let period = ms(20);
        // Connections that drain their sockets at different moments of one tick wake together.
        for at in [0, 1, 7, 19] {
            assert_eq!(next_tick(epoch, epoch + ms(at), period), epoch + ms(20));
        }
        // Exactly on a tick: the next one, never `now` itself (that would be a busy loop).
        assert_eq!(next_tick(epoch, epoch + ms(20), period), epoch + ms(40));
        assert_eq!(
            next_tick(epoch, epoch + ms(1_234), period),
            epoch + ms(1_240)
        );
        // A clock reading before the epoch (it cannot happen, but must not panic) gives the first tick.
        assert_eq!(next_tick(epoch + ms(5), epoch, period), epoch + ms(25));
    }
}
