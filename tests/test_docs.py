"""README.md and docs/*.md against the code: the commands they show parse with the real command lines, the
files, Python names and links they name exist, and the environment variables the code reads are documented.
Cheap checks, so that a renamed flag, file or function makes a test fail instead of a stale doc.
(docs/service.md's routes and settings: tests/service/test_service_doc.py; docs/hyperparameters.md:
tests/test_config.py; docs/library.md's script: tests/test_library_doc.py.)"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.run_dir import RUN_FILES

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = ("unilabel-remote", "unilabel-admin", "unilabel-api", "python scripts/stack.py", "unilabel")
CODE_DIRS = ("models", "service", "worker", "remote", "api_schemas", "scripts")


def _without_code_blocks(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def doc_commands() -> Iterator[tuple[str, str, bool]]:
    """(doc, command line, whether it is a whole command from a bash block): every line of a ```bash block
    that runs one of the programs, continuation lines joined and comments cut, and every `inline` mention."""
    program = "|".join(re.escape(p) for p in PROGRAMS)
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if re.match(rf"({program})(\s|$)", line):
                    yield doc.name, line, True
        for mention in re.findall(rf"`((?:{program})(?:\s[^`]*)?)`", _without_code_blocks(text)):
            yield doc.name, mention, False


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from models.cli import build_parser as unilabel
    from remote.cli import build_parser as remote
    from service.admin import build_parser as admin

    return {"unilabel": unilabel(), "unilabel-remote": remote(), "unilabel-admin": admin()}


def _options_from_help(argv: list[str]) -> tuple[set[str], set[str]]:
    """The options and the first positional's choices of a program whose parser is built inside its main
    (scripts/stack.py, unilabel-api), read from its --help."""
    shown = subprocess.run(
        [*argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    options = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", shown.stdout))
    positionals = shown.stdout.partition("positional arguments:")[2]
    choices = re.search(r"\{([\w,-]+)\}", positionals)
    return options, set(choices.group(1).split(",")) if choices else set()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _problems_with(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What in ``words`` (the arguments after the program) the parser does not know: a subcommand that is
    none, an option of no parser on the way to the subcommand."""
    actions = dict(parser._option_string_actions)
    problems, current, value_next = [], parser, False
    for word in (w.strip("[]") for w in words):  # `keys list [--json]`: an optional flag is still a flag
        if value_next:  # the value of the option before (`--threads 1 train`)
            value_next = False
            continue
        if re.match(r"--?[a-zA-Z]", word):
            option = word.split("=")[0]
            if option not in actions:
                problems.append(f"no option {word}")
            value_next = "=" not in word and option in actions and actions[option].nargs != 0
            continue
        sub = _subparsers(current)
        if not sub:
            continue  # a positional argument
        if word not in sub:
            if re.fullmatch(r"[a-z][a-z-]*", word):  # a word, not a placeholder (RUN, DATA, ...)
                problems.append(f"no subcommand {word!r} (there are {', '.join(sub)})")
            break
        current = sub[word]
        actions |= current._option_string_actions
    return problems


def _parses(parser: argparse.ArgumentParser, words: list[str]) -> str | None:
    """None when argparse takes the whole line, else its error."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(words)
        except SystemExit as exit_:
            return None if exit_.code == 0 else err.getvalue().strip().splitlines()[-1]
    return None


def test_every_command_in_the_docs_is_one_the_programs_take() -> None:
    parsers = _parsers()
    by_help = {
        "python scripts/stack.py": _options_from_help([sys.executable, "scripts/stack.py"]),
        "unilabel-api": _options_from_help([sys.executable, "-m", "service.serve"]),
    }
    seen, problems = 0, []
    for doc, line, whole in doc_commands():
        program = next(p for p in PROGRAMS if line == p or line.startswith(p + " "))
        try:
            words = shlex.split(line[len(program) :])
        except ValueError:
            words = line[len(program) :].split()
        seen += 1
        if program in parsers:
            found = _problems_with(parsers[program], words)
            # a whole command from a bash block, no placeholder syntax: argparse must take all of it
            placeholder = any(s in line for s in ("[", "|", "...", "$"))
            if not found and whole and not placeholder:
                error = _parses(parsers[program], words)
                found = [error] if error else []
        else:
            options, choices = by_help[program]
            found = [f"no option {w}" for w in words if re.match(r"--?[a-zA-Z]", w) and w not in options]
            first = next((w for w in words if not w.startswith("-")), None)
            if first and choices and first not in choices and words.index(first) == 0:
                found.append(f"no command {first!r} (there are {', '.join(sorted(choices))})")
        problems += [f"{doc}: `{line}`: {p}" for p in found]
    assert seen > 100, seen  # the docs' commands were found
    assert not problems, "\n".join(problems)


def test_files_named_in_the_docs_exist() -> None:
    tops = "|".join(
        ("models", "service", "worker", "remote", "api_schemas", "bench", "scripts", "docker", "tests")
    )
    missing = []
    for doc in DOCS:
        for name in re.findall(rf"(?<![\w./-])((?:{tops}|docs)/[\w./*-]*[\w*])", doc.read_text()):
            if not list(ROOT.glob(name)) and not (ROOT / name).exists():
                missing.append(f"{doc.name}: {name}")
    assert not missing, missing


def test_python_names_in_the_docs_resolve() -> None:
    """`models.pipeline.Cancelled`, `remote.client.LabelClient`, ...: each a module, or a name in one."""
    unresolved = []
    for doc in DOCS:
        for name in set(
            re.findall(
                r"(?<![\w./-])((?:models|service|worker|remote|api_schemas)(?:\.\w+)+)", doc.read_text()
            )
        ):
            if re.search(r"\.(md|py|json|csv|yml|Dockerfile)$", name):  # a file name (service.md), not a name
                continue
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                with contextlib.suppress(ModuleNotFoundError):
                    obj = importlib.import_module(".".join(parts[:cut]))
                    break
            try:
                for attribute in parts[cut:]:
                    obj = getattr(obj, attribute)
            except AttributeError:
                unresolved.append(f"{doc.name}: {name}")
    assert not unresolved, unresolved


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_docs_resolve() -> None:
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", _without_code_blocks(doc.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path) if path else doc
            if not linked.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+\s+(.*)$", _without_code_blocks(linked.read_text()), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


def test_the_readme_names_every_file_of_a_run_directory() -> None:
    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("A run directory holds") :].split("\n\n")[0]
    assert not [name for name in RUN_FILES if f"`{name}`" not in paragraph], paragraph


def _variables_read_by_the_code() -> set[str]:
    read = set()
    for folder in CODE_DIRS:
        for source in (ROOT / folder).rglob("*.py"):
            text = source.read_text()
            read |= set(re.findall(r"(?:environ\.get|environ\[|getenv)\(?\s*\"([A-Z][A-Z0-9_]+)\"", text))
            read |= set(re.findall(r"\"(UNILABEL_[A-Z_]+)\"", text))  # the CLIs' variables, passed by name
    return read


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    read = _variables_read_by_the_code()
    assert {"UNILABEL_CACHE_DIR", "UNILABEL_THREADS", "UNILABEL_API_KEY", "UNILABEL_URL"} <= read, read
    docs = "\n".join(doc.read_text() for doc in DOCS)
    assert not [name for name in sorted(read) if name not in docs]


@pytest.mark.parametrize("name", ["UNILABEL_THREADS", "UNILABEL_META_THREADS", "UNILABEL_CACHE_DIR"])
def test_the_documented_cli_variables_are_read(name: str) -> None:
    assert name in _variables_read_by_the_code()
