"""Stop signals sent to a whole process group: the main process decides, child processes carry on.

SLURM (`scancel`, the time limit), systemd (`KillMode=control-group`, its default), `timeout` and
`kill -- -PGID` signal every process of the job, workers included. A worker that dies of it takes
the main process down with it (stage 3: `RuntimeError: DataLoader worker (pid …) is killed by
signal: Terminated`) before the main process can save or clean up. So a worker acts on SIGTERM /
SIGINT only when its parent sent it (torch and multiprocessing stop their workers that way), and the
main process turns SIGTERM into an exception that unwinds like Ctrl-C: partial outputs are removed,
finished ones kept, and the exit status is 128 + signal number, as the shell reports a signal.
"""

import os
import pickle
import signal
import threading

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class Terminated(BaseException):
    """SIGTERM in the main process outside training (training saves a checkpoint instead)."""

    exit_code = 128 + signal.SIGTERM


def _raise_terminated(signum, frame):
    raise Terminated()


def terminate_by_exception():
    """Main process: SIGTERM unwinds through every `finally` and `with`, instead of killing outright.
    Returns the previous handler, for the caller to put back."""
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _obey_only(parent: int) -> None:
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_pid == parent:  # a clean exit: torch reports any other status as a worker failure
            os._exit(0)


def obey_only_the_parent() -> None:
    """Child process: from now on, only the parent's SIGTERM / SIGINT stop it; others are left to the parent.

    The signals must be blocked in every thread, or the kernel hands them to a thread that does not
    block them and the default action kills the process; a thread inherits the mask of the thread that
    starts it. So call this while the process has one thread: a forked child (DataLoader workers) does;
    a spawned one must call it before importing numpy or torch, whose imports start threads
    (`start_spawned_child` does that for a process pool)."""
    if not all(hasattr(signal, name) for name in ("pthread_sigmask", "sigwaitinfo")):
        return  # macOS and Windows lack sigwaitinfo: workers keep the default handling, as before
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_obey_only, args=(os.getppid(),), daemon=True, name="stop-signals").start()


def start_spawned_child(initializer_and_args: bytes) -> None:
    """A process-pool initializer: obey only the parent, then unpickle and run the real initializer (its
    module and arguments import numpy, so they travel pickled until the signals are blocked)."""
    obey_only_the_parent()
    initializer, initargs = pickle.loads(initializer_and_args)
    initializer(*initargs)


def spawned_child_initializer(initializer, initargs: tuple) -> tuple:
    """(initializer, initargs) for ProcessPoolExecutor: children that obey only their parent."""
    return start_spawned_child, (pickle.dumps((initializer, initargs)),)
