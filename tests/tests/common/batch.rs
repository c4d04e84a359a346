//! Helpers of the batch suites (`batches`, `task_batches`): waiting for a batch, and its line in `status`.

use std::time::{Duration, Instant};

use sequencer::ledger::{BatchId, BatchInfo};
use sequencer::Sequencer;

/// How long a batch may take before a suite gives up on it.
const BATCH_DEADLINE: Duration = Duration::from_secs(300);

/// Waits until the batch has finished (its callbacks ran), up to five minutes.
pub async fn finished(seq: &Sequencer, id: BatchId, what: &str) -> BatchInfo {
    let deadline = Instant::now() + BATCH_DEADLINE;
    loop {
        let info = seq.batch_info(id).await.unwrap().expect("the batch row");
        if info.finished_at.is_some() {
            return info;
        }
        assert!(Instant::now() < deadline, "{what}: not finished: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until at least `done` members of the batch have ended, up to five minutes.
pub async fn members_done(seq: &Sequencer, id: BatchId, done: i64, what: &str) {
    let deadline = Instant::now() + BATCH_DEADLINE;
    while seq
        .batch_info(id)
        .await
        .unwrap()
        .expect("the batch row")
        .done()
        < done
    {
        assert!(
            Instant::now() < deadline,
            "{what}: stuck before {done} members ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The batch's progress line (`batch ID NAME: N of M done, STATE`) in what a `status` command printed.
pub fn status_line(status: &std::process::Output, id: BatchId, name: &str, what: &str) -> String {
    let out = String::from_utf8_lossy(&status.stdout);
    out.lines()
        .find(|l| l.starts_with(&format!("batch {id} {name}: ")))
        .unwrap_or_else(|| panic!("{what}: no progress line in `status`: {out}"))
        .to_owned()
}
