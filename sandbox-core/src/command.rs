//! A command to run in a sandbox, built like `std::process::Command`, and
//! the ways to run it: `output`, `status`, `spawn`, `spawn_async`.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;

use crate::child::SandboxChild;
use crate::error::Result;
use crate::outcome::RunOutcome;
use crate::plan::CommandSpec;
use crate::run::{self, Inner};
use crate::stdio::{Stdio, StdioChoice};
#[cfg(doc)]
use crate::{Error, Sandbox};

/// A command to run in a [`Sandbox`](crate::Sandbox), built like
/// [`std::process::Command`].
#[derive(Clone)]
pub struct SandboxCommand {
    inner: Arc<Inner>,
    spec: CommandSpec,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    pty: bool,
    job_control: Option<crate::relay::JobControlHook>,
}

impl std::fmt::Debug for SandboxCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCommand")
            .field("spec", &self.spec)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("pty", &self.pty)
            .finish_non_exhaustive()
    }
}

impl SandboxCommand {
    pub(crate) fn new(inner: Arc<Inner>, program: &OsStr) -> Self {
        SandboxCommand {
            inner,
            spec: CommandSpec {
                program: program.to_owned(),
                args: Vec::new(),
                env: Vec::new(),
                env_clear: false,
                current_dir: None,
            },
            stdin: None,
            stdout: None,
            stderr: None,
            pty: false,
            job_control: None,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.spec.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spec
            .args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the command (on top of what the
    /// policy's `env` section passes and sets).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        let key = key.as_ref().to_owned();
        self.spec.env.retain(|(k, _)| *k != key);
        self.spec.env.push((key, Some(value.as_ref().to_owned())));
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes an environment variable: one set with
    /// [`env`](SandboxCommand::env) before, one the policy's `env.set`
    /// sets, or one the caller has and the policy passes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let sandbox = sandbox_core::Sandbox::from_profile("default")?;
    /// let out = sandbox.command("sh").args(["-c", "echo ${HOME-unset}"]).env_remove("HOME").output()?;
    /// assert_eq!(out.stdout, b"unset\n");
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        let key = key.as_ref().to_owned();
        self.spec.env.retain(|(k, _)| *k != key);
        self.spec.env.push((key, None));
        self
    }

    /// Passes none of the caller's environment (whatever the policy's
    /// `env.pass` says) and forgets the variables set with
    /// [`env`](SandboxCommand::env) so far. The policy's `env.set` still
    /// applies: it is part of the sandbox's definition (remove a variable
    /// of it with [`env_remove`](SandboxCommand::env_remove)).
    pub fn env_clear(&mut self) -> &mut Self {
        self.spec.env.clear();
        self.spec.env_clear = true;
        self
    }

    /// The program, as given to [`Sandbox::command`].
    pub fn get_program(&self) -> &OsStr {
        &self.spec.program
    }

    /// The arguments (not the program).
    pub fn get_args(&self) -> impl ExactSizeIterator<Item = &OsStr> {
        self.spec.args.iter().map(OsString::as_os_str)
    }

    /// The command's own environment changes, in order: `(key, Some(value))`
    /// for a variable set, `(key, None)` for one removed (as
    /// [`std::process::Command::get_envs`]). What the policy passes and sets
    /// is not listed.
    pub fn get_envs(&self) -> impl ExactSizeIterator<Item = (&OsStr, Option<&OsStr>)> {
        self.spec
            .env
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_deref()))
    }

    /// The working directory, a path inside the sandbox (default: the
    /// policy's `filesystem.workdir`).
    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.spec.current_dir = Some(dir.into());
        self
    }

    /// Where stdin comes from (default: [`Stdio::Null`]).
    pub fn stdin(&mut self, stdio: Stdio) -> &mut Self {
        self.stdin = Some(stdio);
        self
    }

    /// Where stdout goes (default: [`Stdio::Piped`], except for
    /// [`status`](SandboxCommand::status)).
    pub fn stdout(&mut self, stdio: Stdio) -> &mut Self {
        self.stdout = Some(stdio);
        self
    }

    /// Where stderr goes (default: [`Stdio::Piped`], except for
    /// [`status`](SandboxCommand::status)).
    pub fn stderr(&mut self, stdio: Stdio) -> &mut Self {
        self.stderr = Some(stdio);
        self
    }

    /// Gives the command a pseudo-terminal of its own (made in the
    /// sandbox's own devpts): its stdin, stdout and stderr, and its
    /// controlling terminal. The supervisor relays the terminal's output to
    /// where [`stdout`](SandboxCommand::stdout) says (stdout and stderr
    /// arrive merged, as on any terminal; `stderr` is not used) and what
    /// [`stdin`](SandboxCommand::stdin) gives into it. The window size is
    /// the caller's terminal's, if stdout or stdin is one, else 24 × 80;
    /// change it with [`SandboxChild::resize`].
    ///
    /// The caller's own terminal never enters the sandbox: an interactive
    /// program inside changes only its own terminal's modes. (Putting the
    /// caller's terminal in raw mode while it relays is the caller's part,
    /// as `sbx run --tty` does.)
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let sandbox = sandbox_core::Sandbox::from_profile("default")?;
    /// let out = sandbox.command("tty").pty(true).output()?;
    /// assert!(out.stdout.starts_with(b"/dev/pts/"));
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn pty(&mut self, pty: bool) -> &mut Self {
        self.pty = pty;
        self
    }

    /// Calls `hook` when the command is stopped (job control: `SIGTSTP`
    /// from its terminal, `SIGSTOP`) or continued, from the thread that
    /// supervises the run (keep it quick). A stopped command stays stopped
    /// until continued with [`SandboxChild::signal`]`(SIGCONT)`; `sbx run
    /// --tty` uses this to suspend itself with it, as a shell's job would.
    pub fn on_job_control(
        &mut self,
        hook: impl Fn(crate::JobControl) + Send + Sync + 'static,
    ) -> &mut Self {
        self.job_control = Some(Arc::new(hook));
        self
    }

    fn choice(&self, default_out: Stdio) -> StdioChoice {
        StdioChoice {
            stdin: self.stdin.clone().unwrap_or(Stdio::Null),
            stdout: self.stdout.clone().unwrap_or(default_out.clone()),
            stderr: self.stderr.clone().unwrap_or(default_out),
            pty: self.pty,
            job_control: self.job_control.clone(),
        }
    }

    /// Runs the command to its end in the calling thread and returns the
    /// outcome, with stdout and stderr captured (capped at
    /// `max_output_bytes` each).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] before anything is spawned if the policy
    /// cannot be enforced here and says `on_unavailable = "fail"`;
    /// [`Error::InvalidCommand`], [`Error::Prepare`] or [`Error::Setup`] if
    /// the sandbox could not be made or the program could not be executed.
    /// Nothing is left running in any case.
    pub fn output(&self) -> Result<RunOutcome> {
        self.run(Stdio::Piped)
    }

    /// Like [`output`](SandboxCommand::output), but stdout and stderr go
    /// to the caller's own (relayed as they come, still capped at
    /// `max_output_bytes`) unless set: the outcome's output fields are
    /// empty, and its `*_truncated` fields say whether all of it got there.
    ///
    /// # Errors
    ///
    /// As for [`output`](SandboxCommand::output).
    pub fn status(&self) -> Result<RunOutcome> {
        self.run(Stdio::Inherit)
    }

    fn run(&self, default_out: Stdio) -> Result<RunOutcome> {
        let mut choice = self.choice(default_out);
        if matches!(choice.stdin, Stdio::Piped) {
            // Nobody could write to it: give the command EOF.
            choice.stdin = Stdio::Null;
        }
        run::start(&self.inner, &self.spec, &choice, false)?.supervise(&self.inner)
    }

    /// Starts the command for async code (the `tokio` feature) and
    /// returns once it has exec'd: an [`AsyncChild`](crate::AsyncChild),
    /// supervised like a [`spawn`](SandboxCommand::spawn)ed child by the
    /// shared supervisor (no thread per sandbox), with its output on the
    /// runtime's reactor. Must be called within a tokio runtime. Dropping
    /// the future before it completes kills the sandbox.
    ///
    /// # Errors
    ///
    /// As for [`output`](SandboxCommand::output).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sandbox_core::Error> {
    /// let sandbox = sandbox_core::Sandbox::from_profile("default")?;
    /// let jobs = (0..100).map(|i| {
    ///     let mut command = sandbox.command("sh");
    ///     command.args(["-c", &format!("echo job {i}")]);
    ///     async move { command.spawn_async().await?.output().await }
    /// });
    /// for outcome in futures_join_all(jobs).await {
    ///     println!("{}", String::from_utf8_lossy(&outcome?.stdout));
    /// }
    /// # Ok(()) }
    /// # async fn futures_join_all<F: std::future::Future>(f: impl IntoIterator<Item = F>) -> Vec<F::Output> { let mut v = Vec::new(); for x in f { v.push(x.await) } v }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn spawn_async(&self) -> Result<crate::AsyncChild> {
        let (ends_tx, ends_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        crate::supervisor::spawn(
            Arc::clone(&self.inner),
            self.spec.clone(),
            self.choice(Stdio::Piped),
            Box::new(move |ends| {
                // Nobody waits for it any more (the future was dropped):
                // the sandbox goes too.
                if let Err(Ok(ends)) = ends_tx.send(ends) {
                    let _ = crate::child::ChildControl::new(Some(ends.pidfd), None).kill();
                }
            }),
            Box::new(move |outcome| {
                let _ = done_tx.send(outcome);
            }),
        )?;
        let ends = ends_rx.await.map_err(|_| crate::Error::Supervisor {
            what: "the spawner thread ended before it said whether the sandbox started",
        })??;
        crate::AsyncChild::new(ends, done_rx)
    }

    /// Starts the command and returns at once (once it has exec'd). The
    /// process's shared supervisor relays its output and enforces the
    /// wall-clock limit while it runs, whether or not the caller waits: a
    /// spawned sandbox costs no thread of its own (one supervising thread
    /// and a few spawner threads serve them all), and outlives the thread
    /// that spawned it, not the process.
    ///
    /// Piped stdout and stderr (the default) are readable as they come
    /// from [`SandboxChild::stdout`] and [`SandboxChild::stderr`]; what the
    /// caller leaves there is collected into the outcome by
    /// [`SandboxChild::wait`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::{BufRead, BufReader};
    /// # let sandbox = sandbox_core::Sandbox::from_profile("default")?;
    /// let mut child = sandbox.command("sh").args(["-c", "echo one; sleep 1; echo two"]).spawn()?;
    /// if let Some(stdout) = child.stdout.take() {
    ///     for line in BufReader::new(stdout).lines() {
    ///         println!("got {}", line.unwrap_or_default()); // "one" a second before "two"
    ///     }
    /// }
    /// let outcome = child.wait()?;
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`output`](SandboxCommand::output).
    pub fn spawn(&self) -> Result<SandboxChild> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let ends = crate::supervisor::spawn_blocking(
            Arc::clone(&self.inner),
            self.spec.clone(),
            self.choice(Stdio::Piped),
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        )?;
        Ok(SandboxChild::new(ends, rx))
    }
}
