//! MISC_CHECK: a command's exit status decides.

use std::{
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
};

use tokio::{process::Command, time::timeout};

use super::{
    check::Outcome,
    model::{Check, MiscCheck},
};

/// Runs `misc_path` (split like a shell command line, without a shell) in a process group of
/// its own, with no input and its output discarded. After `misc_timeout` (default `delay_loop`)
/// the whole group is killed, as it is when the attempt is dropped.
pub(super) async fn attempt(check: &Check, misc: &MiscCheck) -> Outcome {
    let down = |why: String| Outcome::Down(format!("misc_path {:?}: {why}", misc.path));
    let Some(argv) = shlex::split(&misc.path) else {
        return down("unbalanced quotes".into());
    };
    let Some((program, args)) = argv.split_first() else {
        return down("no command".into());
    };
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return down(e.to_string()),
    };
    let group = ProcessGroup(child.id().and_then(|id| libc::pid_t::try_from(id).ok()));
    let limit = misc.timeout.unwrap_or(check.delay_loop);
    match timeout(limit, child.wait()).await {
        Ok(Ok(status)) => {
            group.disarm();
            verdict(status, misc.dynamic).unwrap_or_else(down)
        }
        Ok(Err(e)) => down(format!("waiting for it: {e}")),
        Err(_) => {
            drop(group);
            let _ = child.wait().await;
            down(format!("killed after {limit:?}"))
        }
    }
}

/// keepalived's reading of an exit status: 0 passes; with `misc_dynamic`, 1 fails and 2..=255
/// pass with weight status - 2; without it any other status fails, as does a signal.
fn verdict(status: ExitStatus, dynamic: bool) -> Result<Outcome, String> {
    match status.code() {
        Some(0) => Ok(Outcome::Up),
        Some(code @ 2..=255) if dynamic => Ok(Outcome::Weight(code.unsigned_abs() - 2)),
        Some(code) => Err(format!("exit status {code}")),
        None => Err(format!(
            "killed by signal {}",
            status.signal().unwrap_or_default()
        )),
    }
}

/// The process group of a child (its id is the child's pid): dropping this kills the group.
struct ProcessGroup(Option<libc::pid_t>);

impl ProcessGroup {
    /// Lets the group be: its leader is reaped, so the id may name another group soon, and
    /// what the leader left behind is its own business (as in keepalived).
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            // SAFETY: kill(2) takes no pointers. While armed, the group's leader (our child) is
            // not reaped, so its pid, the group's id, names no other process or group.
            unsafe { libc::kill(-id, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::health::{check::tests::check, model::CheckKind};

    /// One attempt of a MISC_CHECK running `path`.
    async fn run(path: &str, dynamic: bool, timeout: Option<Duration>) -> Outcome {
        let misc = MiscCheck {
            path: path.into(),
            timeout,
            dynamic,
        };
        attempt(&check(CheckKind::Misc(misc.clone())), &misc).await
    }

    #[tokio::test]
    async fn exit_status_zero_passes_and_any_other_fails() {
        assert_eq!(run("true", false, None).await, Outcome::Up);
        assert_eq!(
            run("sh -c 'exit 1'", false, None).await,
            Outcome::Down(r#"misc_path "sh -c 'exit 1'": exit status 1"#.into())
        );
        assert_eq!(
            run("sh -c 'exit 7'", false, None).await,
            Outcome::Down(r#"misc_path "sh -c 'exit 7'": exit status 7"#.into())
        );
    }

    #[tokio::test]
    async fn misc_dynamic_turns_statuses_2_to_255_into_weights() {
        assert_eq!(run("true", true, None).await, Outcome::Up);
        assert_eq!(run("sh -c 'exit 2'", true, None).await, Outcome::Weight(0));
        assert_eq!(run("sh -c 'exit 7'", true, None).await, Outcome::Weight(5));
        assert_eq!(
            run("sh -c 'exit 255'", true, None).await,
            Outcome::Weight(253)
        );
        assert!(matches!(
            run("sh -c 'exit 1'", true, None).await,
            Outcome::Down(why) if why.ends_with("exit status 1")
        ));
    }

    #[tokio::test]
    async fn the_command_line_is_split_like_a_shell_without_a_shell() {
        // Quoted words stay whole; `;` and `$HOME` are plain arguments, not shell syntax.
        assert_eq!(run(r#"test "a b" = 'a b'"#, false, None).await, Outcome::Up);
        assert_eq!(
            run("test '$HOME;' = '$HOME;'", false, None).await,
            Outcome::Up
        );
        assert!(matches!(
            run("sh -c 'exit 0", false, None).await,
            Outcome::Down(why) if why.ends_with("unbalanced quotes")
        ));
        assert!(matches!(
            run("/nonexistent/check --flag", false, None).await,
            Outcome::Down(why) if why.contains("No such file")
        ));
    }

    #[tokio::test]
    async fn a_signal_fails_the_check() {
        assert!(matches!(
            run("sh -c 'kill -TERM $$'", true, None).await,
            Outcome::Down(why) if why.ends_with("killed by signal 15")
        ));
    }

    /// A command line whose shell starts a grandchild in its group, writes the grandchild's pid
    /// to a file of its own, and waits; and that file.
    fn parent_of_a_sleeper(name: &str) -> (String, std::path::PathBuf) {
        let pid_file =
            std::env::temp_dir().join(format!("xdpvs-misc-{}-{name}.pid", std::process::id()));
        let path = format!("sh -c 'sleep 30 & echo $! > {}; wait'", pid_file.display());
        (path, pid_file)
    }

    /// Whether the process whose pid is in `pid_file` dies within 2 s (SIGKILL takes effect when
    /// it is next scheduled; a zombie waiting for its new parent to reap it is dead).
    async fn dies(pid_file: &std::path::Path) -> bool {
        let pid = std::fs::read_to_string(pid_file).unwrap();
        std::fs::remove_file(pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let dead = || std::fs::read_to_string(&stat).map_or(true, |stat| stat.contains(") Z "));
        let deadline = Instant::now() + Duration::from_secs(2);
        while !dead() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        dead()
    }

    #[tokio::test]
    async fn a_command_over_its_time_is_killed_with_its_children() {
        let (path, pid_file) = parent_of_a_sleeper("timeout");
        let started = Instant::now();
        let outcome = run(&path, false, Some(Duration::from_millis(300))).await;
        let took = started.elapsed();
        assert_eq!(
            outcome,
            Outcome::Down(format!("misc_path {path:?}: killed after 300ms"))
        );
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(dies(&pid_file).await, "the grandchild survived");
    }

    #[tokio::test]
    async fn a_dropped_attempt_kills_the_command_with_its_children() {
        let (path, pid_file) = parent_of_a_sleeper("dropped");
        let given_up = tokio::time::timeout(
            Duration::from_millis(300),
            run(&path, false, Some(Duration::from_secs(30))),
        )
        .await;
        assert!(given_up.is_err(), "{given_up:?}");
        assert!(dies(&pid_file).await, "the grandchild survived");
    }

    #[tokio::test]
    async fn without_misc_timeout_delay_loop_bounds_the_command() {
        let misc = MiscCheck {
            path: "sleep 30".into(),
            timeout: None,
            dynamic: false,
        };
        let mut sleepy = check(CheckKind::Misc(misc.clone()));
        sleepy.delay_loop = Duration::from_millis(200);
        let started = Instant::now();
        assert!(matches!(
            attempt(&sleepy, &misc).await,
            Outcome::Down(why) if why.ends_with("killed after 200ms")
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
