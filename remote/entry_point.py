"""The ``unilabel-remote`` console script ([project.scripts]): remote.cli's main, started by
models.interrupts.run_console_script so that a Ctrl-C while remote.cli loads says one line.
Light on purpose: nothing heavy is imported before that handler is in place."""

from models.interrupts import run_console_script


def unilabel_remote() -> int:
    """``unilabel-remote``: remote.cli.main."""
    return run_console_script("unilabel-remote", "remote.cli")
