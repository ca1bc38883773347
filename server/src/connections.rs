//! How many connections the server serves at once.
//!
//! The HTTP layer reads ahead on every open connection, up to about 160 KB of a request's body
//! before the handler asks for it, in buffers that grow to about 300 KB: a province's phones
//! uploading photos all at once would hold a photo each in the server's memory while two cores
//! work through them. So the server accepts at most `limit` connections; more wait, queued by
//! the operating system, until one closes. While the server is busy (it was full within the last
//! second), each response closes its connection, so that the phones waiting take turns with
//! those served instead of waiting for a phone that keeps its connection for all its
//! submissions. (Closing only while full let the served phones keep their connections in the
//! instants after each close, and the last of those waiting waited seconds.)

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the server counts as busy after it was last full.
const BUSY_FOR: Duration = Duration::from_secs(1);

/// The open connections, against the limit.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    limit: usize,
    started: Instant,
    /// When the server was last full, in milliseconds since `started`, plus one (0: never).
    last_full: AtomicU64,
}

/// One open connection, counted until it is dropped with the connection.
#[derive(Debug)]
pub struct Open(Arc<Connections>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    /// At most `limit` connections over `workers` HTTP workers. The HTTP layer limits each
    /// worker, and a worker refuses more only once it is full, so each gets an equal share,
    /// rounded up.
    pub fn new(limit: usize, workers: usize) -> Arc<Connections> {
        Arc::new(Connections {
            open: AtomicUsize::new(0),
            limit: Self::per_worker(limit, workers) * workers.max(1),
            started: Instant::now(),
            last_full: AtomicU64::new(0),
        })
    }

    pub fn per_worker(limit: usize, workers: usize) -> usize {
        limit.max(1).div_ceil(workers.max(1))
    }

    pub fn opened(self: &Arc<Self>) -> Open {
        if self.open.fetch_add(1, Ordering::Relaxed) + 1 >= self.limit {
            self.last_full.store(self.millis() + 1, Ordering::Relaxed);
        }
        Open(self.clone())
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Whether the server is full, or was within the last second: phones may be waiting.
    pub fn busy(&self) -> bool {
        if self.open.load(Ordering::Relaxed) >= self.limit {
            return true;
        }
        match self.last_full.load(Ordering::Relaxed) {
            0 => false,
            full => self.millis() + 1 - full < BUSY_FOR.as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_once_every_worker_has_its_share_open_and_for_a_second_after() {
        let connections = Connections::new(5, 2);
        assert_eq!(Connections::per_worker(5, 2), 3);
        let mut open: Vec<Open> = (0..5).map(|_| connections.opened()).collect();
        assert!(!connections.busy(), "two workers take three each");
        open.push(connections.opened());
        assert!(connections.busy());
        open.pop();
        assert!(connections.busy(), "was full a moment ago");
        std::thread::sleep(BUSY_FOR);
        assert!(!connections.busy());
    }
}
