//! Single creates that arrive together share a transaction: each call queues its prepared task,
//! and the call that gets a writer's slot writes everything queued as one batch. N concurrent
//! callers then cost a few transactions instead of N, without connections of their own, and
//! each still gets exactly its own result.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::{Error, Result};
use crate::model::NewTask;
use crate::store::PreparedTask;

/// Prepared single creates waiting to be written, and the slots of the writers writing them.
pub(crate) struct CreateQueue {
    waiting: Mutex<Vec<Waiting>>,
    writers: Arc<Semaphore>,
}

/// A queued create and where its answer goes.
pub(crate) struct Waiting {
    pub(crate) task: PreparedTask,
    pub(crate) answer: oneshot::Sender<Answer>,
}

/// What a queued create is told.
pub(crate) enum Answer {
    /// Its result, from the batch that wrote it.
    Written(Result<NewTask>),
    /// Its batch failed as a whole: it is written alone, so that one request's fault is never
    /// another's error.
    Alone(Box<PreparedTask>),
}

impl CreateQueue {
    /// A queue with `writers` batches writing at once.
    pub(crate) fn new(writers: usize) -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            writers: Arc::new(Semaphore::new(writers.max(1))),
        }
    }

    /// Queues a task; its answer comes on the returned receiver.
    pub(crate) fn push(&self, task: PreparedTask) -> oneshot::Receiver<Answer> {
        let (answer, answered) = oneshot::channel();
        self.lock().push(Waiting { task, answer });
        answered
    }

    /// Waits for a writer's slot. `None` only if the semaphore were closed, which it never is;
    /// the caller then writes without one.
    pub(crate) async fn writer(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.writers).acquire_owned().await.ok()
    }

    /// Everything queued, for a writer to write.
    pub(crate) fn take(&self) -> Vec<Waiting> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        // The queue is a plain list, whole after any panic elsewhere: keep using it.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The answer a queued create received; a writer that stopped before answering (it panicked,
/// or the runtime is shutting down) is [`Error::CreationInterrupted`].
pub(crate) fn received(
    answer: std::result::Result<Answer, oneshot::error::RecvError>,
) -> Result<Answer> {
    answer.map_err(|_| Error::CreationInterrupted)
}
