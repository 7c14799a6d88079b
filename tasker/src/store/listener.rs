//! PostgreSQL `LISTEN` on a dedicated connection, forwarding `NOTIFY`s to an in-process wake-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use tokio::sync::Notify;

use super::conn::READY_CHANNEL;

/// How often the listener checks its socket for notifications. Checking is a local, non-blocking
/// read (`PQconsumeInput`), not a round trip, so this bounds wake-up latency at little cost.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// Starts a thread that listens on `url` and calls `wake.notify_one()` per notification batch,
/// reconnecting after errors, until `stop` is set.
pub(crate) fn spawn_listener(url: String, wake: Arc<Notify>, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("tasker-listen".into())
        .spawn(move || {
            let mut retry = Duration::from_millis(100);
            while !stop.load(Ordering::Relaxed) {
                let mut conn = match PgConnection::establish(&url)
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        c.batch_execute(&format!("LISTEN {READY_CHANNEL}"))
                            .map_err(|e| e.to_string())?;
                        Ok(c)
                    }) {
                    Ok(conn) => {
                        retry = Duration::from_millis(100);
                        conn
                    }
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN connection failed; polling covers the gap");
                        std::thread::sleep(retry);
                        retry = (retry * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                // Wake once after (re)connecting: notifications sent while disconnected were lost.
                wake.notify_one();
                'listen: while !stop.load(Ordering::Relaxed) {
                    let mut woke = false;
                    for notification in conn.notifications_iter() {
                        match notification {
                            Ok(_) => woke = true,
                            Err(error) => {
                                tracing::warn!(%error, "LISTEN connection lost");
                                break 'listen;
                            }
                        }
                    }
                    if woke {
                        wake.notify_one();
                    }
                    std::thread::sleep(CHECK_EVERY);
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the LISTEN thread; polling only");
    }
}
