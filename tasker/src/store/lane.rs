//! Group commit for a SQLite file: this process's writes take turns on one connection, and a
//! write that arrives while another runs joins its transaction instead of waiting to start its
//! own. SQLite has one writer at a time, so concurrent creates, claims and completions would
//! otherwise commit one after another, each paying `BEGIN IMMEDIATE`, the commit's WAL frames
//! (a page touched by several of them is written once per group instead) and a hand-off
//! between threads.
//!
//! Each write runs in a savepoint of its own: one that fails is rolled back alone and gets
//! its error, while the others still commit. If SQLite rolled the whole transaction back (a
//! full disk, an I/O error), rolling back to that savepoint fails, which is how the lane knows
//! the group's other writes are lost. A write's result is given back only after its group
//! committed; if the commit fails (or SQLite rolled the whole transaction back), every member
//! gets that error, so nothing is reported written that was not.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::r2d2::{Pool as R2d2Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;

use super::Conn;
use super::pool::Manager;
use crate::error::{Error, Result};

/// Most writes in one transaction: bounds how long the first of them waits for its commit.
const MAX_MEMBERS: usize = 32;
/// How long a group stays open to writes that join it, from its `BEGIN`.
#[cfg(not(test))]
const MAX_OPEN: Duration = Duration::from_millis(5);
/// The unit tests below check which writes share a group, not the window: on a loaded machine
/// their writers take longer than 5 ms to line up, which split the group they build.
#[cfg(test)]
const MAX_OPEN: Duration = Duration::from_secs(5);

type Pooled = PooledConnection<Manager<SqliteConnection>>;

/// The writers of one SQLite file in this process.
#[derive(Default)]
pub(crate) struct Lane {
    state: Mutex<State>,
    /// The connection is free for the next writer.
    turn: Condvar,
    /// A group ended (committed or failed).
    ended: Condvar,
}

#[derive(Default)]
struct State {
    /// A writer is using the connection (running its write, or committing).
    busy: bool,
    /// Writers waiting for their turn.
    waiting: usize,
    /// The group still open to writers that join it.
    open: Option<Group>,
    /// Groups are numbered from 1 and end in order: every group up to this one has ended.
    last_ended: u64,
    last_begun: u64,
    /// Groups whose commit failed: the error, and how many members have yet to read it.
    failed: HashMap<u64, (String, usize)>,
}

/// A transaction several writes share.
struct Group {
    id: u64,
    conn: Pooled,
    members: usize,
    begun: Instant,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in a savepoint of the open group (or of a new one on a connection of `pool`),
    /// and returns its result once the group has committed.
    pub(crate) fn write<T>(
        &self,
        pool: &R2d2Pool<Manager<SqliteConnection>>,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut group = match self.take_turn() {
            Some(group) => group,
            None => match begin(pool, self) {
                Ok(group) => group,
                Err(error) => {
                    self.give_turn(None);
                    return Err(error);
                }
            },
        };
        group.members += 1;
        let id = group.id;
        let ran = catch_unwind(AssertUnwindSafe(|| {
            group.conn.conn.transaction(|c| f(&mut Conn::Sqlite(c)))
        }));
        let result = match ran {
            Ok(result) => result,
            Err(panic) => {
                self.end(
                    group,
                    Err("a write of this transaction panicked".to_owned()),
                );
                resume_unwind(panic);
            }
        };
        // The write's savepoint was released or rolled back; if SQLite had rolled the whole
        // transaction back, rolling back to the savepoint failed and diesel counts the
        // transaction broken: the group's other writes are lost.
        if in_one_transaction(&mut group.conn.conn) {
            self.hand_on_or_commit(group);
        } else {
            let problem = match &result {
                Err(error) => format!("a write of this transaction failed: {error}"),
                Ok(_) => "the transaction ended under a write".to_owned(),
            };
            self.end(group, Err(problem));
        }
        let outcome = self.outcome(id);
        result.and_then(|value| outcome.map(|()| value))
    }

    /// Waits for the connection; returns the group open to join, if any.
    fn take_turn(&self) -> Option<Group> {
        let mut state = self.lock();
        state.waiting += 1;
        while state.busy {
            state = self
                .turn
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.waiting -= 1;
        state.busy = true;
        state.open.take()
    }

    /// Frees the connection, leaving `open` for the next writer to join.
    fn give_turn(&self, open: Option<Group>) {
        let mut state = self.lock();
        state.busy = false;
        state.open = open;
        drop(state);
        self.turn.notify_one();
    }

    /// Leaves the group open to a writer already waiting, or commits it.
    fn hand_on_or_commit(&self, group: Group) {
        let mut state = self.lock();
        if state.waiting > 0 && group.members < MAX_MEMBERS && group.begun.elapsed() < MAX_OPEN {
            state.busy = false;
            state.open = Some(group);
            drop(state);
            self.turn.notify_one();
            return;
        }
        drop(state);
        let mut group = group;
        let committed =
            <AnsiTransactionManager as TransactionManager<SqliteConnection>>::commit_transaction(
                &mut group.conn.conn,
            )
            .map_err(|error| format!("the commit failed: {error}"));
        self.end(group, committed);
    }

    /// Ends a group: on failure rolls back what is left of it and records the error for its
    /// members; then frees the connection.
    fn end(&self, mut group: Group, outcome: std::result::Result<(), String>) {
        if outcome.is_err() {
            let conn = &mut group.conn.conn;
            if in_one_transaction(conn) {
                let _ = <AnsiTransactionManager as TransactionManager<SqliteConnection>>::rollback_transaction(conn);
            }
            // Whatever state it is in, it is not handed out again.
            group.conn.mark_failed();
        }
        let mut state = self.lock();
        state.last_ended = group.id;
        if let Err(problem) = outcome {
            state.failed.insert(group.id, (problem, group.members));
        }
        state.busy = false;
        drop(state);
        drop(group);
        self.ended.notify_all();
        self.turn.notify_one();
    }

    /// Waits for group `id` to end; its commit's error, if it failed.
    fn outcome(&self, id: u64) -> Result<()> {
        let mut state = self.lock();
        while state.last_ended < id {
            state = self
                .ended
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let Some((problem, unread)) = state.failed.get_mut(&id) else {
            return Ok(());
        };
        let problem = problem.clone();
        *unread -= 1;
        if *unread == 0 {
            state.failed.remove(&id);
        }
        Err(Error::Database(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new(format!(
                "not written, with the writes grouped into its transaction: {problem}"
            )),
        )))
    }
}

/// A new group: a pooled connection with `BEGIN IMMEDIATE` run on it.
fn begin(pool: &R2d2Pool<Manager<SqliteConnection>>, lane: &Lane) -> Result<Group> {
    let mut conn = pool.get()?;
    // IMMEDIATE takes the write lock up front (a deferred transaction that later writes fails
    // with SQLITE_BUSY instead of waiting); other processes' writers wait in busy_timeout.
    if let Err(error) =
        AnsiTransactionManager::begin_transaction_sql(&mut conn.conn, "BEGIN IMMEDIATE")
    {
        conn.mark_failed();
        return Err(error.into());
    }
    let mut state = lane.lock();
    state.last_begun += 1;
    Ok(Group {
        id: state.last_begun,
        conn,
        members: 0,
        begun: Instant::now(),
    })
}

/// Whether the connection is inside the group's transaction and no deeper (its savepoint
/// released or rolled back).
fn in_one_transaction(conn: &mut SqliteConnection) -> bool {
    matches!(
        AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(Some(depth)) if depth.get() == 1
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use diesel::RunQueryDsl;
    use diesel::connection::SimpleConnection;

    use super::super::pool::{ConnectOptions, Pool};
    use super::*;

    /// A pool and lane on a fresh file with a table `t (x UNIQUE)`.
    fn open() -> (tempfile::TempDir, Arc<Pool>) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("lane.db");
        let pool = Pool::open(
            path.to_str().expect("path"),
            ConnectOptions {
                pool_size: 4,
                connection_timeout: Duration::from_secs(5),
                statement_timeout: Duration::from_secs(5),
            },
        )
        .expect("pool");
        pool.with_conn(|c| match c {
            Conn::Sqlite(c) => Ok(c.batch_execute("CREATE TABLE t (x INTEGER UNIQUE)")?),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => unreachable!("a SQLite pool"),
        })
        .expect("table");
        (dir, Arc::new(pool))
    }

    fn parts(pool: &Pool) -> (&R2d2Pool<Manager<SqliteConnection>>, &Lane) {
        match pool {
            Pool::Sqlite(pool, lane) => (pool, lane),
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => unreachable!("a SQLite pool"),
        }
    }

    fn run(c: &mut Conn<'_>, sql: &str) -> Result<()> {
        match c {
            Conn::Sqlite(c) => Ok(c.batch_execute(sql)?),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => unreachable!("a SQLite pool"),
        }
    }

    fn rows(pool: &Pool) -> Vec<i64> {
        pool.with_conn(|c| match c {
            Conn::Sqlite(c) => Ok(diesel::sql_query("SELECT x FROM t ORDER BY x")
                .load::<X>(*c)?
                .into_iter()
                .map(|r| r.x)
                .collect()),
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => unreachable!("a SQLite pool"),
        })
        .expect("rows")
    }

    #[derive(diesel::QueryableByName)]
    struct X {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        x: i64,
    }

    /// Runs `first` while `others` wait for their turn, so all of them share its group.
    fn together(pool: &Arc<Pool>, first: &'static str, others: &[&'static str]) -> Vec<Result<()>> {
        let started = Arc::new(AtomicBool::new(false));
        let waiting = others.len();
        let leader = {
            let (pool, started) = (Arc::clone(pool), Arc::clone(&started));
            std::thread::spawn(move || {
                let (r2d2, lane) = parts(&pool);
                lane.write(r2d2, |c| {
                    run(c, first)?;
                    started.store(true, Ordering::SeqCst);
                    while lane.lock().waiting < waiting {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                })
            })
        };
        while !started.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let followers: Vec<_> = others
            .iter()
            .map(|&sql| {
                let pool = Arc::clone(pool);
                std::thread::spawn(move || {
                    let (r2d2, lane) = parts(&pool);
                    lane.write(r2d2, |c| run(c, sql))
                })
            })
            .collect();
        std::iter::once(leader)
            .chain(followers)
            .map(|t| t.join().expect("thread"))
            .collect()
    }

    #[test]
    fn writes_made_together_share_one_transaction_and_fail_alone() {
        let (_dir, pool) = open();
        let results = together(
            &pool,
            "INSERT INTO t VALUES (1)",
            &["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"],
        );
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(
            matches!(
                results[1],
                Err(Error::Database(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _
                )))
            ),
            "{:?}",
            results[1]
        );
        assert!(results[2].is_ok(), "{:?}", results[2]);
        assert_eq!(rows(&pool), [1, 2]);
        assert_eq!(parts(&pool).1.lock().last_begun, 1, "one transaction");
    }

    #[test]
    fn a_write_that_ends_the_transaction_fails_its_whole_group() {
        let (_dir, pool) = open();
        let results = together(&pool, "INSERT INTO t VALUES (10)", &["ROLLBACK"]);
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert_eq!(rows(&pool), Vec::<i64>::new(), "nothing reported written");
        let (r2d2, lane) = parts(&pool);
        lane.write(r2d2, |c| run(c, "INSERT INTO t VALUES (11)"))
            .expect("the lane goes on");
        assert_eq!(rows(&pool), [11]);
    }
}
