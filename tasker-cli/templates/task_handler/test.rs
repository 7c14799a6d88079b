//! Runs the `{{name}}` workflow end to end on a temporary SQLite database.

use std::time::Duration;

use tasker::prelude::*;
use {{imports}};

#[tasker::test]
async fn {{name}}_runs_to_completion() -> tasker::Result<()> {
    let database = std::env::temp_dir().join(format!("{{name}}-{}.db", std::process::id()));
    let tasker = Tasker::builder()
        .database_url(database.display().to_string())
        .build()
        .await?;
    let worker = tasker.start_worker();

    let context = {{context_type}} { id: 1 };
    let task = tasker.create::<{{handler_type}}>(&context).await?;
    let finished = tasker.wait_for_task(task.id, Duration::from_secs(30)).await?;
    worker.shutdown().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }

    assert_eq!(finished.state, TaskState::Complete);
    Ok(())
}
