"""Every log line the suite makes, kept for the privacy scan that runs last.

The suite logs as production does (`luxfact.kit.logging.configure` at INFO, which the
processes call at start), and a second handler with the same JSON formatter writes every
line to this run's log directory. `configure` replaces the root handlers, so it is hooked
to add that handler back whenever a command run in-process calls it again. Live servers
(`tests/live.py`) write their stderr there too. What the scan reads is thus what
production would write, redaction included.
"""

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from luxfact.kit import logging as luxlog

ENV = "LUXFACT_TEST_LOG_DIR"


_MADE: list[Path] = []  # the directory this process made (and removes at the end)
# Patients a test deletes (GDPR erasure) before the scan reads the table: (names, matricule).
ERASED: list[tuple[str, str, str | None]] = []


def remember(family: str, given: str, matricule: str | None) -> None:
    ERASED.append((family, given, matricule))


def directory() -> Path:
    """This run's log directory (made once, inherited by subprocesses through the env)."""
    if ENV not in os.environ:
        os.environ[ENV] = tempfile.mkdtemp(prefix="luxfact-suite-logs-")
        _MADE.append(Path(os.environ[ENV]))
    return Path(os.environ[ENV])


def remove(keep: bool) -> None:
    """At the end of the run: the directory goes unless `keep` (a failed run, to read)."""
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, _SuiteHandler):
            handler.close()
    for made in _MADE:
        if keep:
            print(f"\nthe suite's log lines are kept in {made}")
        else:
            shutil.rmtree(made, ignore_errors=True)


class _SuiteHandler(logging.FileHandler):
    pass


def _attach() -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _SuiteHandler) for h in root.handlers):
        handler = _SuiteHandler(directory() / "in-process.jsonl", encoding="utf-8")
        handler.setFormatter(luxlog.JsonFormatter())
        root.addHandler(handler)


def install() -> None:
    """Capture from now on, including after every later `configure`."""
    original = luxlog.configure
    if getattr(original, "captures_suite", False):
        return

    def configure(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)  # type: ignore[arg-type]
        _attach()

    configure.captures_suite = True  # type: ignore[attr-defined]
    luxlog.configure = configure  # type: ignore[assignment]
    # As `luxfact serve` starts; its stderr copy is not needed here, the file has it all.
    configure("INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 - open for the run
    # httpx is also the tests' own client, whose INFO line is the URL it asked for (the
    # product's search queries included): that is the test speaking, not the product.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def lines() -> list[tuple[str, str]]:
    """(file name, line) of everything captured so far."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    found: list[tuple[str, str]] = []
    for path in sorted(directory().glob("*")):
        with path.open(encoding="utf-8", errors="replace") as text:
            found.extend((path.name, line.rstrip("\n")) for line in text)
    return found


_WORD = re.compile(r"\w+")


def leaks(captured: list[tuple[str, str]], names: set[str],
          matricules: set[str]) -> list[str]:
    """The captured lines that carry one of these names or identifiers.

    A name is looked for as a whole word, case-insensitively (a one-word name by the
    line's words, a longer one as a phrase), so that "Bert" is not found in "Albert".
    """
    single = {n.casefold() for n in names if _WORD.fullmatch(n)}
    phrases = [re.compile(rf"(?<!\w){re.escape(n)}(?!\w)", re.IGNORECASE)
               for n in names if not _WORD.fullmatch(n)]
    found = []
    for file, line in captured:
        hit = next((m for m in matricules if m in line), None)
        if hit is None:
            words = {w.casefold() for w in _WORD.findall(line)}
            hit = next(iter(words & single), None)
        if hit is None:
            hit = next((p.pattern for p in phrases if p.search(line)), None)
        if hit is not None:
            found.append(f"{file}: {hit!r} in {line[:300]}")
    return found
