#!/usr/bin/env python
"""Bring up the whole label service locally (redis-server, a Celery worker, the API on 127.0.0.1), run a
dataset upload, a MUG job and a prediction through it, print where to look next, and shut it down.

    python scripts/stack.py                      # demo on the real CMU-MOSI features (synthetic if absent)
    python scripts/stack.py --data synthetic     # demo on a freshly generated synthetic dataset
    python scripts/stack.py --quick              # a short schedule (3/3/10 epochs) instead of the paper's
    python scripts/stack.py --keep               # leave the stack up after the demo (Ctrl-C stops it)
    python scripts/stack.py up                   # only bring the stack up, until Ctrl-C
    python scripts/stack.py up --detach          # bring it up in the background; returns once the API answers
    python scripts/stack.py status               # whether it runs, its URL and pid (exit status 3 when not)
    python scripts/stack.py down                 # stop it, from any shell

State (Redis AOF, artifacts, logs) lives in --dir (default .stack/), so a second run finds its dataset and
its finished job again instead of training twice. The demo saves the job's labels and label report in
<dir>/labels/<job id>/ (labels.csv, report.html) and prints the report's path at the end. The stack's API
key is made on the first run (it is printed, and kept in <dir>/api-key, readable by you only) and used again
while Redis knows it; clients send it as `Authorization: Bearer <key>` (`export UNILABEL_API_KEY=$(cat
.stack/api-key)` for unilabel-remote). The stack prints the page's address with the key in its fragment
(<url>/#key=<key>; a browser never sends the part after # to a server): open it to see the datasets, jobs,
models and label reports. While a stack runs (in the foreground or detached), its pid is in <dir>/stack.pid
and its URL in <dir>/stack.url; SIGTERM to that pid (what `down` sends, or `kill $(cat .stack/stack.pid)`)
stops it like Ctrl-C: the API, the worker, then Redis (SIGHUP too: a foreground stack's terminal closed).
A detached stack logs to <dir>/logs/stack.log. One stack per --dir: a second one there is refused.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.interrupts import UNWINDING_SIGNALS, raise_interrupted, signals_ignored  # noqa: E402
from models.processes import pid_alive  # noqa: E402
from remote.cli import STRATEGY_HELP, add_set_argument, parse_set  # noqa: E402
from remote.client import DEFAULT_URL as DEFAULT_CLIENT_URL  # noqa: E402
from remote.client import LabelClient  # noqa: E402
from remote.localstack import LocalStack, free_port  # noqa: E402
from remote.workflow import run_all  # noqa: E402

DEFAULT_DIR = REPO / ".stack"
# the actions that read each option (args' names); status and down read --dir only
READ_BY = {
    **dict.fromkeys(("data", "strategy", "seed", "hp", "quick", "keep"), ("demo",)),
    **dict.fromkeys(("port", "device"), ("demo", "up")),
}
MOSI = REPO.parent / "shared" / "data" / "mosi"
# --quick: a short schedule (the default is the paper's, about a minute end to end on MOSI with 2 cores).
QUICK_SCHEDULE = {"pretrain_epochs": 3, "meta_epochs": 3, "multitask_max_epochs": 10}
# The MOSI configuration (docs/results.md): Table 2's MOSI column, unimodal tasks weighted 1 (the paper's
# Fig. 5 finds 0.01-1 satisfactory; at 0.01 the learned labels barely reach the model), text read from the
# transcripts by the frozen encoder, and vision left out: its features were fitted on the training videos
# and are at chance on the clean valid split.
MOSI_PRESET = "mosi"
MOSI_SETTINGS = {"beta": 1.0, "modalities": ["text", "audio"]}
PID_FILE, URL_FILE, REDIS_FILE = "stack.pid", "stack.url", "redis.url"  # in --dir while a stack runs
KEY_FILE = "api-key"  # in --dir: the stack's API key, kept across runs
PAGE_HINT = "(datasets, jobs, models, label reports; upload a dataset and start a job there too)"
DETACH_TIMEOUT = 300.0  # seconds `up --detach` waits for the API (the worker imports torch first)
SUPERVISE_EVERY_S = 2.0  # how often the stack looks for a process of it that ended
RESTART_BACKOFF_S = 30.0  # after a start that failed
STOP_TIMEOUT = 120.0  # seconds `down` waits (LocalStack.stop escalates to SIGKILL well within it)


def pick_data(choice: str, root: Path) -> Path:
    if choice in ("auto", "mosi"):
        if (MOSI / "utterances.csv").is_file():
            return MOSI
        if choice == "mosi":
            raise SystemExit(f"--data mosi: no dataset at {MOSI}")
        print(f"{MOSI} not found; using a synthetic dataset instead")
    if choice in ("auto", "synthetic"):
        from models.synth import make_synthetic

        out = root / "synthetic"
        if not (out / "features.npz").is_file():
            make_synthetic(out, seed=0)
        return out
    return Path(choice)


def port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def stack_key(stack: LocalStack) -> tuple[str, bool]:
    """The stack's API key: the one kept in <dir>/api-key while the API still accepts it, else a new one
    (kept there, mode 0600). Returns (key, made now)."""
    path = stack.root / KEY_FILE
    if _key_works(stack.url, path):
        return path.read_text().strip(), False
    key = stack.create_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key, True


def page_url(url: str, key: str) -> str:
    """The page at / with the key in the fragment, which the page reads and the browser never sends."""
    return f"{url}/#key={key}"


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) run of this script: a stale pid file's pid, reused by another
    process, must never be signalled."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return pid_alive(pid) and Path(__file__).name.encode() in cmdline


def running(root: Path) -> tuple[int, str] | None:
    """(pid, URL) of the stack that runs from ``root``, or None."""
    try:
        pid = int((root / PID_FILE).read_text())
        url = (root / URL_FILE).read_text().strip()
    except (OSError, ValueError):
        return None
    return (pid, url) if _alive(pid) else None


def admin_hint(root: Path) -> str:
    """Where the stack's Redis is (a free port, new at each start) and the operator command that uses it."""
    try:
        redis_url = (root / REDIS_FILE).read_text().strip()
    except OSError:
        return ""
    return f"Redis at {redis_url}: `unilabel-admin --redis-url {redis_url} keys create NAME` makes a key"


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _key_works(url: str, path: Path) -> bool:
    """Whether the key kept in ``path`` is one the API at ``url`` accepts (the stack has made it)."""
    try:
        key = path.read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        answer = httpx.get(f"{url}/v1/datasets", params={"limit": 1}, headers=headers)
    except (OSError, httpx.HTTPError):
        return False
    return answer.status_code == 200


def command_for(action: str, root: Path) -> str:
    """The command that runs ``action`` on the stack in ``root``, with its --dir unless that is the default,
    so a printed hint reaches this stack and not the default one."""
    where = "" if root == DEFAULT_DIR else f" --dir {root}"
    return f"python scripts/stack.py {action}{where}"


def client_env(root: Path, url: str) -> str:
    """The shell line that points unilabel-remote at this stack: its key, and its URL unless that is the
    client's default."""
    key = f"export UNILABEL_API_KEY=$(cat {root / KEY_FILE})"
    return key if url == DEFAULT_CLIENT_URL else f"{key} UNILABEL_URL={url}"


def _already(root: Path, state: tuple[int, str]) -> int:
    print(
        f"error: a stack already runs from {root} at {state[1]} (pid {state[0]}); "
        f"`{command_for('down', root)}` stops it",
        file=sys.stderr,
    )
    return 1


def supervise(stack: LocalStack) -> None:
    """Until interrupted: a process of the stack that ended (killed, crashed) is started again, Redis before
    the others, as they need it; a start that fails is tried again after RESTART_BACKOFF_S. Left alone, a
    dead worker left jobs queued for good while `status` said "running"."""
    starters = {"redis": stack.start_redis, "worker": stack.start_worker, "api": stack.start_api}
    while True:
        time.sleep(SUPERVISE_EVERY_S)
        for name, start in starters.items():
            proc = stack.procs.get(name)
            if proc is None or proc.poll() is None:
                continue
            log = stack.root / "logs" / f"{name}.log"
            code = proc.returncode
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            print(f"{name} ended ({how}); starting it again (its log: {log})", flush=True)
            stack.procs.pop(name)
            try:
                start()
            except Exception as exc:  # noqa: BLE001 - said, and tried again
                print(f"error: {name} did not start again ({exc}); trying again", file=sys.stderr, flush=True)
                stack.stop_process(name)  # one that started but did not come up in time
                stack.procs[name] = proc  # still ended: the next round tries again
                time.sleep(RESTART_BACKOFF_S)
                break


def _readiness(url: str) -> str | None:
    """None when the API says it is ready (Redis and a worker answer), else why not."""
    try:
        answer = httpx.get(f"{url}/readyz", timeout=5)
    except httpx.HTTPError:
        return "the API does not answer"
    if answer.status_code == 200:
        return None
    try:
        return str(answer.json()["error"]["details"][0]["problem"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"/readyz answered {answer.status_code}"


def status(root: Path) -> int:
    """Prints whether a stack runs from ``root`` and is ready; 0 when it runs and is ready, 3 when it does not
    run (as LSB init scripts do), 4 ("status unknown" there) when it runs but is not ready (a process of it
    is being started again)."""
    state = running(root)
    if state is None:
        print(f"not running (state in {root})")
        return 3
    pid, url = state
    problem = _readiness(url)
    note = f"; not ready: {problem}" if problem else ""
    print(f"running at {url} (pid {pid}, docs {url}/docs, state in {root}){note}")
    print(f"API key in {root / KEY_FILE}; for unilabel-remote: {client_env(root, url)}")
    if hint := admin_hint(root):
        print(hint)
    return 4 if problem else 0


def down(root: Path) -> int:
    """SIGTERM to the stack that runs from ``root``, then wait until it has stopped everything."""
    state = running(root)
    if state is None:
        print(f"not running (state in {root})")
        return 0
    pid, url = state
    print(f"stopping the stack at {url} (pid {pid}) ...", flush=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid):
        if time.monotonic() > deadline:
            print(f"error: pid {pid} still runs after {STOP_TIMEOUT:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print("stack stopped")
    return 0


def detach(args: argparse.Namespace) -> int:
    """Start ``up`` in a session of its own, logging to <dir>/logs/stack.log; return once its API answers."""
    if state := running(args.dir):
        return _already(args.dir, state)
    log_path = args.dir / "logs" / "stack.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.chmod(0o700)  # the log holds the API key and the page's address with it: yours only
    cmd = [sys.executable, str(Path(__file__).resolve()), "up", "--dir", str(args.dir)]
    cmd += ["--port", str(args.port), "--device", args.device]
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        os.fchmod(log.fileno(), 0o600)  # also a log an earlier version left readable
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(f"starting the stack in the background (log {log_path}) ...", flush=True)
    deadline = time.monotonic() + DETACH_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            print(f"error: the stack exited with {proc.returncode}:\n{tail}", file=sys.stderr)
            return 1
        state = running(args.dir)
        up = state and state[0] == proc.pid and _answers(state[1])
        if up and _key_works(state[1], args.dir / KEY_FILE):
            print(f"API up at {state[1]} (docs {state[1]}/docs), pid {proc.pid}")
            print(f"API key in {args.dir / KEY_FILE}; for unilabel-remote: {client_env(args.dir, state[1])}")
            key = (args.dir / KEY_FILE).read_text().strip()
            print(f"page: {page_url(state[1], key)}  {PAGE_HINT}")
            print(admin_hint(args.dir))
            print(f"`{command_for('status', args.dir)}` shows it, `{command_for('down', args.dir)}` stops it")
            return 0
        time.sleep(0.2)
    print(f"error: the API did not answer within {DETACH_TIMEOUT:.0f} s; stopping it", file=sys.stderr)
    proc.terminate()
    proc.wait(STOP_TIMEOUT)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the label service locally (redis-server, a Celery worker, the API on 127.0.0.1).",
        epilog="State (Redis data, artifacts, logs, the API key) lives in --dir; see the module docstring.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("demo", "up", "status", "down"),
        default="demo",
        help="demo (default): bring the stack up, upload a dataset, train, predict, save the labels and "
        "report, stop; up: only bring it up; status: whether it runs (exit 3 when not); down: stop it",
    )
    parser.add_argument(
        "--detach", action="store_true", help="with up: run in the background, return once the API answers"
    )
    parser.add_argument(
        "--data", default="auto", help="auto (MOSI, else synthetic), mosi, synthetic or a PATH"
    )
    parser.add_argument("--strategy", default="mug", help=STRATEGY_HELP)
    parser.add_argument("--seed", type=int, default=1111, help="training seed (default 1111)")
    add_set_argument(parser, "demo: a hyperparameter for the job (repeatable), e.g. --set beta=0.5")
    quick = ", ".join(f"{name} {value}" for name, value in QUICK_SCHEDULE.items())
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"demo: a short schedule ({quick}) instead of the paper's (Table 2)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack running after the demo")
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help="the stack's state folder (default .stack/); status and down take the same --dir",
    )
    parser.add_argument("--port", type=int, default=8000, help="API port (a free one if taken)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    if args.detach and args.command != "up":
        parser.error("--detach goes with up")
    # an option the action does not read is refused, not dropped unsaid (`status --quick`)
    unread = [
        "--set" if name == "hp" else f"--{name}"
        for name, actions in READ_BY.items()
        if args.command not in actions and getattr(args, name) != parser.get_default(name)
    ]
    if unread:
        parser.error(f"{', '.join(unread)}: not read by {args.command}")
    args.dir = args.dir.resolve()
    if args.command == "status":
        return status(args.dir)
    if args.command == "down":
        return down(args.dir)
    if args.detach:
        return detach(args)
    if state := running(args.dir):
        return _already(args.dir, state)

    for sig in UNWINDING_SIGNALS:  # SIGTERM and SIGHUP (a closed terminal) stop the stack like Ctrl-C
        signal.signal(sig, raise_interrupted)
    # the docs describe the API only, so a browser may read them without a key on this loopback stack
    stack = LocalStack(
        args.dir,
        api_port=port_or_free(args.port),
        device=args.device,
        auto_keys=False,
        extra_env={"PUBLIC_DOCS": "1"},
    )
    print(
        f"starting redis-server, a Celery worker and the API (logs in {stack.root / 'logs'}) ...", flush=True
    )
    try:
        (stack.root / URL_FILE).write_text(stack.url + "\n")
        (stack.root / REDIS_FILE).write_text(stack.redis_url + "\n")
        (stack.root / PID_FILE).write_text(f"{os.getpid()}\n")  # last: a pid file means the URL is there
        stack.start()
        stack.api_key, made = stack_key(stack)
        print(f"API up at {stack.url} (docs {stack.url}/docs), Redis at {stack.redis_url}", flush=True)
        print(
            f"API key ({'new' if made else 'kept'}, in {stack.root / KEY_FILE}): {stack.api_key}\n"
            f"  clients send `Authorization: Bearer <key>`; unilabel-remote reads env UNILABEL_API_KEY",
            flush=True,
        )
        print(f"page: {page_url(stack.url, stack.api_key)}  {PAGE_HINT}")
        if args.command == "demo":
            data = pick_data(args.data, stack.root)
            mosi = data == MOSI
            preset = MOSI_PRESET if mosi else None
            hp = {
                **(MOSI_SETTINGS if mosi else {}),
                **(QUICK_SCHEDULE if args.quick else {}),
                **parse_set(args.hp),
            }
            print(f"data: {data}", flush=True)
            print(
                f"schedule: {'quick' if args.quick else 'the paper (Table 2)'}; preset {preset}; "
                f"overrides {hp}",
                flush=True,
            )
            with LabelClient(stack.url, timeout=600, api_key=stack.api_key) as client:
                result = run_all(
                    client, data, stack.root / "labels", args.strategy, args.seed, hp, preset=preset
                )
            job, model_id = result["job"], result["job"]["model_id"]
            run_dir = stack.artifact_dir / "runs" / job["id"]
            print("\nwhere to look next:")
            print(f"  learned unimodal labels   {result['labels']}")
            print(
                f"  run directory             {run_dir}  (config.json, metrics.json, model.safetensors, ...)"
            )
            print(f"  model card                GET {stack.url}/v1/models/{model_id}")
            print(f"  model as one zip          GET {stack.url}/v1/models/{model_id}/archive")
            print(f"  job record                GET {stack.url}/v1/jobs/{job['id']}")
            print(f"  service logs              {stack.root / 'logs'}")
            valid = job.get("metrics") or {}
            shown = {k: v for k, v in valid.items() if k.startswith("valid.")}
            if shown:
                print(f"  valid metrics             {shown}")
            if not args.keep:
                print("  (add --keep to leave the API up and browse the page and /docs)")
            print(f"  label report              {result['report']}  (GET /v1/jobs/{job['id']}/report)")
        if args.command == "up" or args.keep:
            stop = command_for("down", stack.root)
            print(f"stack is up; Ctrl-C or SIGTERM (`{stop}`) stops it", flush=True)
            supervise(stack)
    except KeyboardInterrupt:
        print("\nstopping ...")
    except Exception as exc:  # show the reason, not a traceback, and still stop everything
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        with signals_ignored():  # a second Ctrl-C or SIGTERM must not cut the shutdown short
            stack.stop()
            for name in (PID_FILE, URL_FILE, REDIS_FILE):
                (stack.root / name).unlink(missing_ok=True)
            print("stack stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
