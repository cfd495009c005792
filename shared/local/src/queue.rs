//! Jobs on a bounded in-process channel: the local twin of SQS. `quarry serve` starts batches by
//! sending their jobs here, and one background task works them, as the embed-workers work the SQS
//! queue on AWS. Bounded, so that a huge batch waits for room instead of filling memory.

use quarry_core::PortError;
use quarry_core::ports::{IndexJob, JobQueue};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct ChannelQueue {
    tx: mpsc::Sender<IndexJob>,
}

/// The receiver's task has stopped: nothing will work the jobs.
#[derive(Debug, thiserror::Error)]
#[error("the local job queue is closed")]
pub struct QueueClosed;

impl ChannelQueue {
    /// A queue holding up to `capacity` jobs, and the receiving end for the task that works them.
    pub fn new(capacity: usize) -> (ChannelQueue, mpsc::Receiver<IndexJob>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ChannelQueue { tx }, rx)
    }

    /// Whether the worker still takes jobs (its receiver is alive): for readiness.
    pub fn alive(&self) -> Result<(), PortError> {
        if self.tx.is_closed() {
            return Err(PortError::Permanent { operation: "queue.alive", source: "the job worker has stopped".into() });
        }
        Ok(())
    }
}

impl JobQueue for ChannelQueue {
    async fn enqueue(&self, jobs: &[IndexJob]) -> Result<(), PortError> {
        for job in jobs {
            self.tx
                .send(job.clone())
                .await
                .map_err(|_| PortError::Permanent { operation: "queue.send", source: Box::new(QueueClosed) })?;
        }
        Ok(())
    }
}
