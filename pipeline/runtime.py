"""Ray for the jobs, started or joined quietly: the one place a job calls `ray.init`.

The user's terminal shows our progress bar and summary only. Ray prints, on its own, a token-authentication
notice at start-up (a Python warning), Ray Data's INFO lines for every dataset ("Starting execution",
"Execution plan", "execution finished") and its "Progress bars disabled" warning, and its C++ core worker
writes ERROR lines such as "... has constructor arguments in the object store and max_restarts > 0" straight
to file descriptor 2. All of that stays in Ray's log folder (`<temp dir>/session_latest/logs`: Ray Data's
`ray-data.log`, the driver's `python-core-driver-*.log`, and `jodi-driver-<pid>.err` for what the C++ side
wrote to stderr). `jodi --verbose` (which sets JODI_RAY_LOGS=1) shows everything, as Ray would.
"""

from __future__ import annotations

import logging
import os
import sys

VERBOSE_ENV = "JODI_RAY_LOGS"  # "1": leave Ray's own console output alone (set by `jodi --verbose`)
# Our one-line error is the message when a job fails: Ray's own lines stay off the terminal up to CRITICAL.
CONSOLE_LEVEL = logging.CRITICAL


def ray_logs_shown() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def init_ray(**kwargs) -> None:
    """Connect to RAY_ADDRESS when set (e.g. under `ray job submit`), else start a local Ray in-process, unless
    this process is connected already. `kwargs` go to `ray.init` (e.g. include_dashboard=False)."""
    import ray

    verbose = ray_logs_shown()
    if not verbose:
        quiet_ray_console()
    if not ray.is_initialized():
        ray.init(configure_logging=False, log_to_driver=verbose, **kwargs)
        if not verbose:
            _core_worker_stderr_to_log_folder()
    ray.data.DataContext.get_current().enable_progress_bars = False  # ours is the one progress bar


def quiet_ray_console() -> None:
    """Keep Ray's Python log records off the terminal. The driver's `ray` logger has no file handler (and
    `ray.init(configure_logging=False)` removes its console handler, so its warnings would reach Python's
    last-resort stderr handler): raise its level. `ray.data` keeps its own DEBUG level and its file handler
    (ray-data.log gets every record); only its console handler is raised."""
    import ray.data  # noqa: F401 - configures Ray Data's handlers, which we then adjust

    logging.getLogger("ray").setLevel(CONSOLE_LEVEL)
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(CONSOLE_LEVEL)


def _core_worker_stderr_to_log_folder() -> None:
    """Point file descriptor 2 (where the C++ core worker writes) at a file in Ray's log folder, and keep
    Python's own stderr (our errors, the progress bar, tracebacks) on the terminal through a duplicate of
    the original descriptor."""
    import ray

    try:
        logs = ray._private.worker.global_worker.node.get_logs_dir_path()
        log = os.open(os.path.join(logs, f"jodi-driver-{os.getpid()}.err"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        terminal = os.dup(2)
    except (OSError, AttributeError):
        return  # no log folder we can write: Ray's lines stay on the terminal, nothing else changes
    sys.stderr.flush()
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
