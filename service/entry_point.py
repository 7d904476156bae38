"""The ``unilabel-admin`` console script ([project.scripts]): service.admin's main, started by
models.interrupts.run_console_script so that a Ctrl-C while service.admin loads says one line.
Light on purpose: nothing heavy is imported before that handler is in place."""

from models.interrupts import run_console_script


def unilabel_admin() -> int:
    """``unilabel-admin``: service.admin.main."""
    return run_console_script("unilabel-admin", "service.admin")
