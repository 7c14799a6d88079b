//! Worker processes: this binary re-executed as a worker, for the multi-process measurements.
//!
//! Parent and child speak one line at a time over the child's stdin and stdout:
//!
//! 1. the child builds its engine, then prints `ready`;
//! 2. the parent writes `start`, and the child starts its worker (so the parent's clock starts
//!    when the workers do, not when the processes do);
//! 3. the parent closes the child's stdin to stop it; the child reads its statement counters
//!    (from `start` until then, before its graceful shutdown, as the one-process lines count),
//!    shuts its worker down, prints them as `statements N transactions M` and exits.
//!
//! Closing stdin rather than sending SIGTERM needs no platform code or extra dependency, and a
//! child whose parent dies stops too. A child also stops on ctrl-c or SIGTERM, like any worker
//! process, and still prints its counters.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tasker::prelude::*;

use crate::Settings;
use crate::statements::{self, Snapshot};

/// What a child prints once its engine is built.
const READY: &str = "ready";
/// What the parent writes to start a child's worker.
const START: &str = "start";
/// How long a child may take to build its engine, or to shut down and report.
const PATIENCE: Duration = Duration::from_secs(120);

/// The child's side: builds an engine on `url` with `template`, then runs a worker between
/// the parent's `start` and the end of its stdin, and reports what its connections sent.
pub(crate) async fn run_child(
    url: &str,
    template: TaskTemplate,
    settings: Settings,
) -> Result<(), String> {
    let tasker = crate::engine_with(url, vec![template], settings).await?;
    let mut commands = stdin_lines();
    say(READY)?;
    match commands.recv().await {
        Some(line) if line.trim() == START => {}
        // Stopped before it started: nothing ran, so there is nothing to report.
        _ => return Ok(()),
    }
    let before = statements::peek();
    let worker = tasker.start_worker();
    tokio::select! {
        () = until_closed(&mut commands) => {}
        () = tasker::shutdown_signal() => {}
    }
    let counted = statements::peek().since(before);
    worker.shutdown().await;
    say(&counted.to_line())
}

/// Lines of this process's stdin; the channel closes at end of input.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (lines, received) = tokio::sync::mpsc::unbounded_channel();
    // Blocking reads on a thread of their own: the runtime has no async stdin here.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}

/// Waits for the end of the parent's commands.
async fn until_closed(commands: &mut tokio::sync::mpsc::UnboundedReceiver<String>) {
    while commands.recv().await.is_some() {}
}

/// One protocol line on stdout, flushed at once: the parent is waiting for it.
fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to the parent: {e}"))
}

/// What a reader thread saw on one child's stdout.
enum Heard {
    Line(usize, String),
    Closed(usize),
}

/// The parent's side: worker processes of one measurement. Dropping it kills any child still
/// running, so a failed measurement leaves no worker behind.
pub(crate) struct WorkerProcesses {
    children: Vec<Child>,
    commands: Vec<ChildStdin>,
    heard: mpsc::Receiver<Heard>,
}

impl WorkerProcesses {
    /// Starts `count` children on `url` with the template named `shape`, and returns once each
    /// has built its engine (its worker not yet started).
    pub(crate) fn spawn(
        count: usize,
        url: &str,
        shape: &str,
        settings: Settings,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let (tell, heard) = mpsc::channel();
        let mut processes = WorkerProcesses {
            children: Vec::with_capacity(count),
            commands: Vec::with_capacity(count),
            heard,
        };
        for index in 0..count {
            let mut child = Command::new(&exe)
                .args(["--worker-url", url, "--worker-shape", shape])
                .args(["--worker-concurrency", &settings.to_arg()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start a worker process: {e}"))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                processes.children.push(child);
                return Err("a worker process has no stdin or stdout pipe".to_owned());
            };
            processes.children.push(child);
            processes.commands.push(stdin);
            let tell = tell.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tell.send(Heard::Line(index, line)).is_err() {
                        return;
                    }
                }
                let _ = tell.send(Heard::Closed(index));
            });
        }
        processes.wait_for_each("build its engine", |line| {
            (line.trim() == READY).then_some(())
        })?;
        Ok(processes)
    }

    /// Starts every child's worker.
    pub(crate) fn start(&mut self) -> Result<(), String> {
        for stdin in &mut self.commands {
            writeln!(stdin, "{START}")
                .and_then(|()| stdin.flush())
                .map_err(|e| format!("cannot start a worker process: {e}"))?;
        }
        Ok(())
    }

    /// Stops every child and returns their statement counters, summed.
    pub(crate) fn stop(mut self) -> Result<Snapshot, String> {
        // End of input is the stop signal.
        self.commands.clear();
        let counted = self.wait_for_each("report its statements", Snapshot::from_line)?;
        for child in &mut self.children {
            let status = child.wait().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("a worker process ended with {status}"));
            }
        }
        self.children.clear();
        Ok(counted
            .into_iter()
            .fold(Snapshot::default(), Snapshot::plus))
    }

    /// The first line of each child that `read` accepts, in the children's order; an error
    /// names what a child failed to do when it closes its stdout first or takes too long.
    fn wait_for_each<T>(
        &self,
        what: &str,
        read: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        let mut found: Vec<Option<T>> = (0..self.children.len()).map(|_| None).collect();
        let deadline = Instant::now() + PATIENCE;
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(Heard::Line(index, line)) => {
                    if let (Some(slot @ None), Some(value)) = (found.get_mut(index), read(&line)) {
                        *slot = Some(value);
                    }
                }
                Ok(Heard::Closed(index)) => {
                    if found.get(index).is_some_and(Option::is_none) {
                        return Err(format!(
                            "worker process {index} exited before it could {what} (its errors are above)"
                        ));
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "a worker process did not {what} within {} s",
                        PATIENCE.as_secs()
                    ));
                }
            }
        }
        Ok(found.into_iter().flatten().collect())
    }
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
