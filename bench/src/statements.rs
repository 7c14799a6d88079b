//! Client-side statement counting: a diesel instrumentation installed as the process default
//! before any engine is built, so every connection the engine's pools open counts what it sends.
//!
//! `pg_stat_statements` would need the server's `shared_preload_libraries` (a restart); this
//! works on both backends and cannot see other sessions of a shared server. The benchmark's own
//! connections opt out with [`silence`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};

/// Statements started (each `StartQuery`: prepared or simple, `BEGIN`/`COMMIT` included).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);
/// Top-level transactions begun.
static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);
/// Whether to also count statements by their normalised text (costs a format per statement).
static DETAIL: AtomicBool = AtomicBool::new(false);
static BY_SHAPE: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

struct Counter;

impl Instrumentation for Counter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                STATEMENTS.fetch_add(1, Ordering::Relaxed);
                if DETAIL.load(Ordering::Relaxed) {
                    let shape = normalise(&query.to_string());
                    if let Ok(mut map) = BY_SHAPE.lock() {
                        *map.get_or_insert_with(HashMap::new)
                            .entry(shape)
                            .or_default() += 1;
                    }
                }
            }
            InstrumentationEvent::BeginTransaction { depth, .. } if depth.get() == 1 => {
                TRANSACTIONS.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// Makes every connection opened from now on count its statements; `detail` also groups them
/// by normalised SQL for [`top`].
pub(crate) fn install(detail: bool) -> Result<(), String> {
    DETAIL.store(detail, Ordering::Relaxed);
    set_default_instrumentation(|| Some(Box::new(Counter))).map_err(|e| e.to_string())
}

/// Stops `conn` from counting: the benchmark's own probes are not the engine's cost.
pub(crate) fn silence<C: diesel::Connection>(conn: &mut C) {
    conn.set_instrumentation(|_: InstrumentationEvent<'_>| {});
}

/// Counters at one moment, or over a window (see [`Snapshot::since`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Statements so far.
    pub(crate) statements: u64,
    /// Top-level transactions so far.
    pub(crate) transactions: u64,
}

/// How a worker process's line with its counters starts (see [`Snapshot::to_line`]).
const LINE_PREFIX: &str = "statements ";

impl Snapshot {
    /// What was counted from `before` to `self`.
    pub(crate) fn since(self, before: Snapshot) -> Snapshot {
        Snapshot {
            statements: self.statements.saturating_sub(before.statements),
            transactions: self.transactions.saturating_sub(before.transactions),
        }
    }

    /// Both counters together: the windows of several processes summed.
    pub(crate) fn plus(self, other: Snapshot) -> Snapshot {
        Snapshot {
            statements: self.statements + other.statements,
            transactions: self.transactions + other.transactions,
        }
    }

    /// The machine-readable line a worker process prints: `statements N transactions M`.
    pub(crate) fn to_line(self) -> String {
        format!(
            "{LINE_PREFIX}{} transactions {}",
            self.statements, self.transactions
        )
    }

    /// Reads a line written by [`Snapshot::to_line`]; `None` for any other line, so a child's
    /// other output is skipped rather than misread.
    pub(crate) fn from_line(line: &str) -> Option<Snapshot> {
        let mut words = line.trim().strip_prefix(LINE_PREFIX)?.split(' ');
        let statements = words.next()?.parse().ok()?;
        let transactions = match (words.next(), words.next(), words.next()) {
            (Some("transactions"), Some(n), None) => n.parse().ok()?,
            _ => return None,
        };
        Some(Snapshot {
            statements,
            transactions,
        })
    }
}

/// The counters now; also clears the per-shape counts, so [`top`] covers from here on.
pub(crate) fn snapshot() -> Snapshot {
    if let Ok(mut map) = BY_SHAPE.lock() {
        *map = None;
    }
    Snapshot {
        statements: STATEMENTS.load(Ordering::Relaxed),
        transactions: TRANSACTIONS.load(Ordering::Relaxed),
    }
}

/// The counters now, without clearing anything.
pub(crate) fn peek() -> Snapshot {
    Snapshot {
        statements: STATEMENTS.load(Ordering::Relaxed),
        transactions: TRANSACTIONS.load(Ordering::Relaxed),
    }
}

/// Statement shapes (normalised SQL) with how often each was sent, most frequent first.
pub(crate) type Shapes = Vec<(String, u64)>;

/// The `n` most frequent statement shapes since the last [`snapshot`], most frequent first.
pub(crate) fn top(n: usize) -> Shapes {
    let Ok(map) = BY_SHAPE.lock() else {
        return Vec::new();
    };
    let mut all: Vec<(String, u64)> = map
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

/// The SQL without its binds, numbers as `0` and lists of placeholders or numbers as one, so
/// the same statement with other ids or batch sizes groups together.
fn normalise(query: &str) -> String {
    let sql = query.split(" -- binds:").next().unwrap_or(query);
    let mut out = String::with_capacity(sql.len());
    let mut in_number = false;
    for ch in sql.chars() {
        if ch.is_ascii_digit() {
            if !in_number {
                out.push('0');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(if ch.is_whitespace() { ' ' } else { ch });
        }
    }
    for (long, short) in [("?, ?", "?"), ("0,0", "0"), ("$0, $0", "$0"), ("  ", " ")] {
        while out.contains(long) {
            out = out.replace(long, short);
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::Snapshot;

    #[test]
    fn counter_line_round_trips() {
        let counted = Snapshot {
            statements: 41_234,
            transactions: 5_012,
        };
        assert_eq!(counted.to_line(), "statements 41234 transactions 5012");
        assert_eq!(Snapshot::from_line(&counted.to_line()), Some(counted));
        assert_eq!(
            Snapshot::from_line("statements 3 transactions 1\n"),
            Some(Snapshot {
                statements: 3,
                transactions: 1
            })
        );
    }

    #[test]
    fn other_lines_are_not_counters() {
        for line in [
            "ready",
            "",
            "statements",
            "statements 12",
            "statements x transactions 1",
            "statements 1 transactions -1",
            "statements 1 transactions 2 more",
            "statements 1 commits 2",
        ] {
            assert_eq!(Snapshot::from_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn windows_subtract_and_add() {
        let before = Snapshot {
            statements: 10,
            transactions: 2,
        };
        let after = Snapshot {
            statements: 25,
            transactions: 5,
        };
        let window = after.since(before);
        assert_eq!(
            window,
            Snapshot {
                statements: 15,
                transactions: 3
            }
        );
        assert_eq!(
            window.plus(window),
            Snapshot {
                statements: 30,
                transactions: 6
            }
        );
    }

    #[test]
    fn normalise_groups_batches() {
        assert_eq!(
            super::normalise("SELECT a FROM t WHERE id IN (?, ?, ?) -- binds: [1, 2, 3]"),
            "SELECT a FROM t WHERE id IN (?)"
        );
        assert_eq!(
            super::normalise("UPDATE t SET x = 1 WHERE id IN (12,13,14)"),
            "UPDATE t SET x = 0 WHERE id IN (0)"
        );
    }
}
