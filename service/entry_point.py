"""The service's console scripts ([project.scripts]): ``unilabel-api`` (service.serve) and ``unilabel-admin``
(service.admin), each started by models.interrupts.run_console_script so that a Ctrl-C while its module loads
says one line. Light on purpose: nothing heavy is imported before that handler is in place."""

from models.interrupts import run_console_script


def unilabel_api() -> int:
    """``unilabel-api``: service.serve.main."""
    return run_console_script("unilabel-api", "service.serve")


def unilabel_admin() -> int:
    """``unilabel-admin``: service.admin.main."""
    return run_console_script("unilabel-admin", "service.admin")
