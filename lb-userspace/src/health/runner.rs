//! Runs the checkers on time: one tokio task per checker of every real server, so that a slow
//! or hanging server delays only its own checks. Each task keeps its [`Checker`] and sends a
//! [`Report`] after every attempt to the daemon's event loop.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use tokio::{
    sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
    task::AbortHandle,
    time::Instant,
};

use super::{
    check::{self, Outcome},
    model::{Check, ServiceHealth},
    monitor::{CheckKey, Checker, Verdict},
};

/// The result of one attempt.
#[derive(Clone, Debug)]
pub struct Report {
    /// Which checker.
    pub key: CheckKey,
    /// The task that ran it (a replaced task's late reports are ignored).
    pub(crate) task: u64,
    /// The checker's verdict, if this attempt changed it.
    pub verdict: Option<Verdict>,
    /// What the attempt found.
    pub outcome: Outcome,
    /// How long it took.
    pub latency: Duration,
}

#[cfg(test)]
impl Report {
    /// A report of no task.
    pub(crate) fn new(key: CheckKey, verdict: Option<Verdict>, outcome: Outcome) -> Self {
        Self {
            key,
            task: 0,
            verdict,
            outcome,
            latency: Duration::ZERO,
        }
    }
}

/// The running checker tasks.
pub struct Runner {
    tasks: HashMap<CheckKey, Task>,
    next_task: u64,
    reports: UnboundedSender<Report>,
}

struct Task {
    id: u64,
    check: Check,
    handle: AbortHandle,
}

impl Runner {
    /// A runner with no checks, and the receiving end of its reports.
    pub fn new() -> (Self, UnboundedReceiver<Report>) {
        let (reports, rx) = unbounded_channel();
        let runner = Self {
            tasks: HashMap::new(),
            next_task: 0,
            reports,
        };
        (runner, rx)
    }

    /// Runs the checkers of `health`: a checker whose settings are unchanged keeps its task
    /// (and its schedule); changed and new ones start afresh; the rest stop. Must be called
    /// within the tokio runtime.
    pub fn update(&mut self, health: &[ServiceHealth]) {
        let mut wanted = HashMap::new();
        for service in health {
            for rs in &service.real_servers {
                let target = SocketAddr::new(rs.addr, service.addr.port);
                for (i, check) in rs.checks.iter().enumerate() {
                    let key = CheckKey {
                        service: service.addr,
                        server: rs.addr,
                        check: i,
                    };
                    wanted.insert(key, (check, target, Verdict::initial(service.alpha)));
                }
            }
        }
        self.tasks.retain(|key, task| {
            let keep = wanted.get(key).is_some_and(|(c, ..)| **c == task.check);
            if !keep {
                task.handle.abort();
            }
            keep
        });
        for (key, (check, target, verdict)) in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let id = self.next_task;
            self.next_task += 1;
            let handle = tokio::spawn(run(
                key,
                id,
                check.clone(),
                target,
                verdict,
                self.reports.clone(),
            ))
            .abort_handle();
            self.tasks.insert(
                key,
                Task {
                    id,
                    check: check.clone(),
                    handle,
                },
            );
        }
    }

    /// Whether `report` comes from a checker's current task.
    pub fn is_current(&self, report: &Report) -> bool {
        self.tasks
            .get(&report.key)
            .is_some_and(|t| t.id == report.task)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.handle.abort();
        }
    }
}

/// One checker's loop: wait, attempt, report.
async fn run(
    key: CheckKey,
    task: u64,
    check: Check,
    target: SocketAddr,
    verdict: Verdict,
    reports: UnboundedSender<Report>,
) {
    let mut checker = Checker::new(&check, verdict);
    let mut delay = Checker::warmup(&check, Checker::random_unit(task));
    loop {
        tokio::time::sleep(delay).await;
        let started = Instant::now();
        let outcome = check::attempt(&check, target).await;
        let latency = started.elapsed();
        let verdict;
        (verdict, delay) = checker.record(&outcome);
        let report = Report {
            key,
            task,
            verdict,
            outcome,
            latency,
        };
        if reports.send(report).is_err() {
            return;
        }
    }
}
