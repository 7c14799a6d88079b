//! Runs a two-step workflow on PostgreSQL with tasker's SQLite backend compiled out, beside
//! sqlx 0.7's SQLite driver, in one binary.

use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use tasker::prelude::*;

/// What the workflow runs over.
#[tasker::data]
struct Numbers {
    n: i64,
}

/// Doubles a number, then adds one.
#[derive(Default)]
struct Arithmetic;

#[task_handler(name = "arithmetic", namespace = "ci", context = Numbers)]
impl Arithmetic {
    #[step]
    async fn double(&self, cx: &StepContext<Numbers>) -> Result<i64, StepError> {
        Ok(cx.context().n * 2)
    }

    #[step(depends_on = double)]
    async fn add_one(&self, _cx: &StepContext<Numbers>, doubled: i64) -> Result<i64, StepError> {
        Ok(doubled + 1)
    }
}

#[tasker::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TASKER_TEST_POSTGRES_URL")
        .map_err(|_| "TASKER_TEST_POSTGRES_URL must name a PostgreSQL server")?;
    let schema = format!("tasker_pg_only_{}", std::process::id());
    let outcome = run(&url, &schema).await;
    diesel::PgConnection::establish(&url)?
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
    println!("{}", outcome?);
    Ok(())
}

/// Runs the workflow in `schema` and tries a SQLite URL; says what happened, or why it is wrong.
async fn run(url: &str, schema: &str) -> Result<String, Box<dyn std::error::Error>> {
    let sqlite = sqlx::SqlitePool::connect("sqlite::memory:").await?;
    let one: (i64,) = sqlx::query_as("select 1").fetch_one(&sqlite).await?;

    let tasker = Tasker::builder()
        .database_url(url)
        .configure(|config| config.postgres_schema = Some(schema.to_owned()))
        .build()
        .await?;
    let worker = tasker.start_worker();
    let task = tasker
        .create_task(TaskRequest::of::<Arithmetic>(&Numbers { n: 20 })?)
        .await?;
    let done = tasker
        .wait_for_task(task.id, Duration::from_secs(30))
        .await?;
    worker.shutdown().await;
    let answer = tasker
        .steps(task.id)
        .await?
        .into_iter()
        .find(|step| step.name == "add_one")
        .and_then(|step| step.results);
    if done.state != TaskState::Complete || answer != Some(41.into()) {
        return Err(format!("task ended in `{}` with {answer:?}, not 41", done.state).into());
    }

    let refused = match Tasker::builder().database_url("tasker.db").build().await {
        Ok(_) => return Err("a SQLite URL was accepted without the `sqlite` feature".into()),
        Err(error) => error,
    };
    Ok(format!(
        "sqlx 0.7 answered {}; tasker on PostgreSQL only: task {} is {}, add_one gave 41; \
         a SQLite URL: {refused}",
        one.0, task.id, done.state,
    ))
}
