//! Graceful shutdown: the bounded wait for a group of tasks (RTMP sessions, recordings, done-hooks)
//! that every service of media does the same way.

use std::time::Duration;

use tokio_util::task::TaskTracker;
use tracing::warn;

/// Closes `tracker` to new tasks and waits up to `timeout` for the ones it has; if some are still
/// running then, says how many (`what`: which tasks they are) and returns without them.
pub async fn drain(tracker: &TaskTracker, timeout: Duration, what: &str) {
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        warn!(
            pending = tracker.len(),
            ?timeout,
            "{what} still running at exit"
        );
    }
}
