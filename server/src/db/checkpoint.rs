//! WAL checkpoints of the SQLite database on a thread of their own. SQLite runs them by default
//! in the connection that commits, when the log has grown past 1,000 pages: inside the writer,
//! where copying the log into the database and syncing it held up every write waiting behind
//! it. The writer's connection therefore never checkpoints (`wal_autocheckpoint = 0`) and this
//! thread does, with a connection of its own, a few times a second. A passive checkpoint never
//! waits for the writer or the readers; it copies what no reader still needs.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use diesel::connection::SimpleConnection;

use super::{DbConn, Manager};
use crate::error::AppError;

/// How often the log is copied into the database.
const INTERVAL: Duration = Duration::from_millis(200);

/// Keeps the checkpoint thread running; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct Checkpoints {
    _running: Arc<mpsc::Sender<()>>,
}

impl Checkpoints {
    /// Starts checkpointing the SQLite database `manager` opens.
    pub fn start(manager: &Manager) -> Result<Checkpoints, AppError> {
        let DbConn::Sqlite(mut conn) = manager.open()? else {
            return Err(AppError::internal(
                "only SQLite databases have a WAL to checkpoint",
            ));
        };
        let (running, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("fieldtally-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })?;
        Ok(Checkpoints {
            _running: Arc::new(running),
        })
    }
}
