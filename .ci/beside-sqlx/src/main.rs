//! Opens one SQLite database through sqlx and another through tasker, in one binary.

#[tasker::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("beside-sqlx-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", dir.join("app.db").display())).await?;
    let one: (i64,) = sqlx::query_as("select 1").fetch_one(&pool).await?;
    let tasker = tasker::Tasker::builder()
        .database_url(dir.join("tasker.db").display().to_string())
        .build()
        .await?;
    let migrations = tasker.store().migration_status()?;
    println!("sqlx answered {}; tasker applied {} migrations", one.0, migrations.len());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
