//! The stage's own thread: the rooms' mixers, the WebRTC socket and its sessions run on a
//! runtime of their own, so a node busy writing to a large audience (the listeners' runtime)
//! never delays a frame between the people on stage. The operating system shares the cores
//! between the two; the stage thread sleeps most of a tick and so is scheduled first when its
//! frame is due, and where the process may (root, or `CAP_SYS_NICE` / `RLIMIT_RTPRIO`) it runs
//! real-time (`SCHED_FIFO`), as audio servers do, else at nice −10. Measured with 10 000
//! listeners beside the stage (docs/BENCHMARKS.md §8): nice −10 still let a busy moment of the
//! listeners' threads hold a speaker's packet 20 ms now and then (p99 +22 ms); real-time did not.
//! The stage's work is a few percent of a core per room, and Linux keeps 5 % of every second
//! for other threads (`sched_rt_runtime_us`), so even a runaway stage cannot lock a machine.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

/// A one-worker runtime for the stage, shut down (its tasks dropped) when the node lets go of
/// it.
pub struct StageRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl StageRuntime {
    /// Starts the stage thread.
    pub fn start() -> std::io::Result<StageRuntime> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tribune-stage")
            .on_thread_start(raise_priority)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(StageRuntime {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Runs a task on the stage thread.
    pub fn spawn<F>(&self, f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for StageRuntime {
    fn drop(&mut self) {
        // Dropped from inside the listeners' runtime: never block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for StageRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StageRuntime")
    }
}

/// Raises the calling thread's priority: real-time (`SCHED_FIFO`, priority 10) where allowed,
/// else nice −10, else it stays as is.
fn raise_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler with pid 0 changes only the calling thread's policy; `param`
    // lives across the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        return;
    }
    // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the calling thread's nice
    // value (Linux threads are scheduled entities of their own); it takes no pointers.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
    if r != 0 {
        tracing::debug!("stage thread keeps its priority (no permission to raise it)");
    }
}
