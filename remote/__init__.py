"""Outside the service: its client (``unilabel-remote``, ``LabelClient``) and a supervisor that runs the whole
stack as local processes (scripts/stack.py, the integration tests, bench/bench_service.py)."""
