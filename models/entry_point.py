"""The ``unilabel`` console script ([project.scripts]): models.cli's main, started by
models.interrupts.run_console_script so that a Ctrl-C while models.cli loads says one line.
Light on purpose: nothing heavy is imported before that handler is in place."""

from models.interrupts import run_console_script


def unilabel() -> int:
    """``unilabel``: models.cli.main."""
    return run_console_script("unilabel", "models.cli")
