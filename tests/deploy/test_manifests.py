"""What the operations issue requires of deploy/, checked without Docker or a database.

The image cannot be built here, so its Dockerfile is read: its stages, what it copies from the
build context (the repository's root, as docs/operations.md and compose.yaml give it), what
the context's dockerignore lets through, and the commands it runs, which are parsed by the
real `luxfact` command line (a renamed option or command fails here, not at deploy time).
compose.yaml and k8s/ are read as YAML: the environment each container would get is rebuilt
(the image's ENV, then env_file/envFrom, then environment/env) and loaded by the real Settings
model, so an unknown, misspelt or malformed LUXFACT_ variable fails here as well.
"""

import ipaddress
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from configparser import ConfigParser
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from sqlalchemy.engine import make_url
from typer.main import get_command
from typer.testing import CliRunner

import luxfact
from luxfact.billing.pdf import LAYOUT
from luxfact.claims import xml as claims_xml
from luxfact.cli.main import app
from luxfact.routes import routes
from luxfact.settings import ROOT as SETTINGS_ROOT
from luxfact.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
PGBOUNCER_INI = DEPLOY / "pgbouncer" / "pgbouncer.ini"
USERLIST_EXAMPLE = DEPLOY / "pgbouncer" / "userlist.txt.example"
OPERATIONS = ROOT / "docs" / "operations.md"

SETTING_VARS = frozenset("LUXFACT_" + name.upper() for name in Settings.model_fields)
# Variables whose values are secrets: from a Secret or deploy/.env, never a literal.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL")
# The image sets no TMPDIR: Python's temporary files (the web workers' metrics) go here.
CONTAINER_TMP = "/tmp"  # noqa: S108
# What the dockerignore may keep out of a copied directory.
JUNK = re.compile(r"(^|/)__pycache__(/|$)|\.py[co]$")
HTTP_PATHS = frozenset(getattr(route, "path", "") for route in routes())


def _doc_section(title: str) -> str:
    text = OPERATIONS.read_text("utf-8")
    assert f"\n## {title}\n" in text, f"docs/operations.md has no section {title!r}"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _settings(env: dict[str, str], where: str) -> Settings:
    """The Settings a process started with `env` would load (other LUXFACT_ variables of
    the test run removed)."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("LUXFACT_")}
    clean.update({k: v for k, v in env.items() if k.startswith("LUXFACT_")})
    with mock.patch.dict(os.environ, clean, clear=True):
        try:
            return load_settings()
        except SettingsError as exc:
            pytest.fail(f"{where}: the service would refuse to start: {exc}")


def _is_any_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _seconds(value: Any) -> float:
    """A compose duration ("40s", "1m30s") or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value), f"duration {value!r}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


# --- The Dockerfile ---------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [i.value for i in self.instructions if i.keyword == keyword]


@dataclass(frozen=True)
class Copy:
    stage: str
    flags: dict[str, str]
    sources: tuple[str, ...]
    dest: str


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined; comments (and the parser
    directives, which are comments) left out."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "deploy/Dockerfile ends inside a continued line"
    return lines


@cache
def _stages() -> tuple[Stage, ...]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(DOCKERFILE.read_text("utf-8")):
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "ARG" and not stages:
            name, _, default = value.partition("=")
            args[name] = default.strip("\"'")
        elif keyword == "FROM":
            words = [w for w in value.split() if not w.startswith("--")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            named = len(words) == 3 and words[1].upper() == "AS"
            stages.append(Stage(base, words[2] if named else str(len(stages))))
        else:
            assert stages, f"deploy/Dockerfile: {keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, value))
    return tuple(stages)


def _runtime() -> Stage:
    return _stages()[-1]


def _exec_form(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]


def _flags(words: list[str]) -> dict[str, str]:
    flags = {}
    while words and words[0].startswith("--"):
        name, _, val = words.pop(0)[2:].partition("=")
        flags[name] = val
    return flags


@cache
def _copies() -> tuple[Copy, ...]:
    copies = []
    for stage in _stages():
        for value in stage.values("COPY") + stage.values("ADD"):
            words = value.split()
            flags = _flags(words)
            rest = " ".join(words)
            paths = json.loads(rest) if rest.startswith("[") else rest.split()
            copies.append(Copy(stage.name, flags, tuple(paths[:-1]), paths[-1]))
    return tuple(copies)


def _context_copies() -> list[Copy]:
    """The COPYs that read the build context (not another stage)."""
    return [c for c in _copies() if "from" not in c.flags]


@cache
def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for value in _runtime().values("ENV"):
        words = shlex.split(value)
        if "=" not in words[0]:  # the legacy `ENV NAME value` form
            env[words[0]] = value.split(None, 1)[1]
            continue
        for word in words:
            name, _, val = word.partition("=")
            env[name] = val
    return env


def _entrypoint() -> list[str]:
    values = _runtime().values("ENTRYPOINT")
    return _exec_form(values[-1]) if values else []


def _cmd() -> list[str]:
    values = _runtime().values("CMD")
    return _exec_form(values[-1]) if values else []


def _runtime_runs() -> str:
    return "\n".join(_runtime().values("RUN"))


def _venv() -> str:
    match = re.search(r"python3? -m venv (\S+)", _runtime_runs())
    assert match, "the runtime stage makes no virtual environment"
    return match[1].rstrip("/")


def _python_version(image: str) -> str:
    match = re.fullmatch(r"(?:[\w.-]+/)*python:(\d+\.\d+)[\w.-]*", image)
    assert match, f"not a python:X.Y image: {image}"
    return match[1]


# --- The build context's dockerignore ---------------------------------------------------


def _glob_regex(pattern: str) -> str:
    """Docker's pattern syntax (Go's filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            out, i = out + "[" + pattern[i + 1:end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


@cache
def _ignore_patterns() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    patterns = []
    for raw in DOCKERIGNORE.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = posixpath.normpath(line.removeprefix("!").strip().lstrip("/"))
        patterns.append((negated, re.compile(_glob_regex(cleaned))))
    return tuple(patterns)


def _excluded(path: str) -> bool:
    """Whether the dockerignore keeps `path` (relative to the context) out: the last pattern
    matching it or one of its parent directories decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex in _ignore_patterns():
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


def _context_files(source: str) -> Iterator[str]:
    """The files of the context a COPY source names (a file, a directory, a glob)."""
    matches = sorted(ROOT.glob(source)) if any(c in source for c in "*?[") else [ROOT / source]
    assert matches and all(m.exists() for m in matches), (
        f"deploy/Dockerfile copies {source!r}, which is not in the build context {ROOT}")
    for match in matches:
        if match.is_dir():
            for path in sorted(match.rglob("*")):
                if path.is_file():
                    yield path.relative_to(ROOT).as_posix()
        else:
            yield match.relative_to(ROOT).as_posix()


# --- The `luxfact` command line ---------------------------------------------------------

CLI = get_command(app)
runner = CliRunner()


def _parse_cli(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """`luxfact ARGV` parsed by the real command line, without running it: the command's
    name ("serve", "db upgrade") and its parameters. An unknown command, an unknown option
    or a value the option refuses fails the test."""
    shown = "luxfact " + " ".join(argv)
    command, args, parent, name, path = CLI, list(argv), None, "luxfact", []
    while hasattr(command, "commands"):  # a group: the next word names a command
        ctx = command.context_class(command, info_name=name, parent=parent)
        assert args, f"`{shown}`: no command given"
        name = args.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"`{shown}`: the CLI has no command {name!r}"
        command, parent = sub, ctx
        path.append(name)
    try:
        params = command.make_context(name, args, parent=parent).params
    except Exception as exc:  # the CLI's usage errors
        pytest.fail(f"`{shown}` is refused by the CLI: {exc}")
    helped = runner.invoke(app, [*path, "--help"])
    assert helped.exit_code == 0, f"`luxfact {' '.join(path)} --help`: {helped.output}"
    return " ".join(path), params


def _luxfact_runs(argv: list[str], where: str) -> list[list[str]]:
    """The `luxfact` invocations of a container's command line: exec form, or `sh -c` with
    commands joined by &&. Every container of the image runs luxfact and nothing else."""
    if len(argv) == 3 and argv[0] in ("/bin/sh", "sh") and argv[1] == "-c":
        script = argv[2]
        assert not re.search(r"[;|`<>]|\$\(", script.replace("&&", "")), (
            f"{where}: only `luxfact ... && luxfact ...` is understood here: {script!r}")
        runs = [shlex.split(part) for part in script.split("&&")]
    else:
        runs = [list(argv)]
    for run in runs:
        assert run and posixpath.basename(run[0]) == "luxfact", f"{where}: runs {run}"
    return [run[1:] for run in runs]


def _commands(argv: list[str], where: str) -> dict[str, dict[str, Any]]:
    """{command name: its parameters} for every luxfact invocation of a container."""
    return dict(_parse_cli(run) for run in _luxfact_runs(argv, where))


# --- compose.yaml -----------------------------------------------------------------------


@cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text("utf-8"))


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _dotenv(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not NAME=value: {line!r}"
            values[name.strip()] = value.strip().strip("\"'")
    return values


_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """compose's ${VAR}, ${VAR:-default}, ${VAR:?error} with deploy/.env.example's values
    (deploy/.env is a copy of it, passed with --env-file)."""

    def replace(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name, op, arg = m[1] or m[4], m[2] or "", m[3] or ""
        current = env.get(name)
        missing = current is None or (op.startswith(":") and current == "")
        if missing and op.endswith("?"):
            pytest.fail(f"compose.yaml requires {name} ({arg}); .env.example does not set it")
        if missing and op.endswith("-"):
            return arg
        return current or ""

    return _VAR.sub(replace, value)


def _env_mapping(environment: Any) -> dict[str, str]:
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {k: "" if v is None else str(v) for k, v in (environment or {}).items()}


def _env_files(service: dict[str, Any]) -> list[Path]:
    files = service.get("env_file", [])
    files = [files] if isinstance(files, str | dict) else files
    return [DEPLOY / (f if isinstance(f, str) else f["path"]) for f in files]


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A container's environment: the image's ENV, its env_file (deploy/.env, of which
    .env.example is the committed template), then `environment`."""
    variables = _dotenv(ENV_EXAMPLE)
    env = dict(_image_env()) if "build" in service else {}
    for path in _env_files(service):
        env.update(_dotenv(ENV_EXAMPLE if path == DEPLOY / ".env" else path))
    for name, value in _env_mapping(service.get("environment")).items():
        env[name] = _interpolate(value, variables)
    return env


def _compose_argv(service: dict[str, Any]) -> list[str]:
    def words(value: Any) -> list[str]:
        return shlex.split(value) if isinstance(value, str) else list(value)

    if "entrypoint" in service:  # an entrypoint given drops the image's CMD as well
        return words(service["entrypoint"]) + words(service.get("command", []))
    return _entrypoint() + (words(service["command"]) if "command" in service else _cmd())


@cache
def _compose_roles() -> dict[str, str]:
    """Which service is PostgreSQL, the migration, the web process and the worker."""
    roles = {}
    for name, service in _services().items():
        if "build" not in service:
            if str(service.get("image", "")).startswith("postgres"):
                roles["db"] = name
            continue
        commands = _commands(_compose_argv(service), f"compose.yaml, {name}")
        for command, role in (("db upgrade", "migrate"), ("serve", "web"), ("worker", "worker")):
            if command in commands:
                assert role not in roles, f"compose.yaml: {roles[role]} and {name} both {role}"
                roles[role] = name
    return roles


def _compose_role(role: str) -> dict[str, Any]:
    roles = _compose_roles()
    assert role in roles, f"compose.yaml has no {role} service (found {roles})"
    return _services()[roles[role]]


# --- k8s/ -------------------------------------------------------------------------------


@cache
def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))


@cache
def _resources() -> tuple[dict[str, Any], ...]:
    objects = []
    for name in _kustomization()["resources"]:
        if (K8S / name).is_file():  # a missing one: test_kustomization_lists_exactly...
            objects += [o for o in yaml.safe_load_all((K8S / name).read_text("utf-8")) if o]
    return tuple(objects)


def _of_kind(*kinds: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in _resources() if o["kind"] in kinds}


def _workloads() -> dict[str, dict[str, Any]]:
    return _of_kind("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob")


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod(workload)["spec"]
    return spec.get("initContainers", []) + spec["containers"]


@cache
def _secret_example() -> dict[str, Any]:
    return yaml.safe_load((K8S / "secret.example.yaml").read_text("utf-8"))


def _secrets() -> dict[str, dict[str, str]]:
    secret = _secret_example()
    return {secret["metadata"]["name"]: secret["stringData"]}


def _configmaps() -> dict[str, dict[str, str]]:
    return {name: o.get("data", {}) for name, o in _of_kind("ConfigMap").items()}


def _k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: the image's ENV, envFrom, then env (secret values taken
    from secret.example.yaml)."""
    env = dict(_image_env())
    secrets, configmaps = _secrets(), _configmaps()
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var["valueFrom"]
        if "secretKeyRef" in ref:
            env[var["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[var["name"]] = configmaps[key["name"]][key["key"]]
    return env


def _k8s_argv(container: dict[str, Any]) -> list[str]:
    if "command" in container:  # replaces the ENTRYPOINT, and the CMD with it
        return [*container["command"], *container.get("args", [])]
    return [*_entrypoint(), *container.get("args", _cmd())]


def _app_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, workload, container) for every container of the Luxfact image."""
    images = {i["name"] for i in _kustomization().get("images", [])}
    for name, workload in _workloads().items():
        for container in _containers(workload):
            if container["image"].split(":")[0] in images:
                yield name, workload, container


@cache
def _k8s_roles() -> dict[str, tuple[str, str]]:
    """role -> (workload name, container name), by what the container runs."""
    roles: dict[str, tuple[str, str]] = {}
    for name, _, container in _app_containers():
        commands = _commands(_k8s_argv(container), f"k8s {name}/{container['name']}")
        for command, role in (("db upgrade", "migrate"), ("serve", "web"), ("worker", "worker")):
            if command in commands:
                assert role not in roles, f"k8s: {roles[role]} and {name} both run {command}"
                roles[role] = (name, container["name"])
    return roles


def _k8s_role(role: str) -> tuple[dict[str, Any], dict[str, Any]]:
    roles = _k8s_roles()
    assert role in roles, f"deploy/k8s has no workload running the {role} (found {roles})"
    name, container_name = roles[role]
    workload = _workloads()[name]
    return workload, next(c for c in _containers(workload) if c["name"] == container_name)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels/matchExpressions, or a Service's plain map)."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _pod_labels() -> dict[str, dict[str, str]]:
    return {name: _pod(w)["metadata"].get("labels", {}) for name, w in _workloads().items()}


_UNITS = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _quantity(value: Any) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(value))
    assert match and match[2] in _UNITS, f"not a Kubernetes quantity: {value!r}"
    return float(match[1]) * _UNITS[match[2]]


def _container_port(container: dict[str, Any], port: Any) -> int:
    """A probe's or a Service's port (a number, or the name of a container port)."""
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"container {container['name']} has no port named {port!r}"
    return named[port]


# --- deploy/pgbouncer -------------------------------------------------------------------


@cache
def _pgbouncer() -> ConfigParser:
    parser = ConfigParser(interpolation=None)
    parser.read_string(PGBOUNCER_INI.read_text("utf-8"))
    return parser


def _through_pgbouncer(url: str) -> bool:
    parsed = make_url(url)
    listen_port = _pgbouncer().getint("pgbouncer", "listen_port")
    return parsed.port == listen_port or "pgbouncer" in (parsed.host or "")


# =========================================================================================
# Dockerfile
# =========================================================================================


def test_the_image_is_multi_stage_with_a_slim_runtime() -> None:
    stages = _stages()
    assert len(stages) >= 2, "deploy/Dockerfile must build in one stage and run in another"
    assert "slim" in _runtime().base, f"the runtime stage is {_runtime().base}, not slim"
    # The wheels built by one stage install on the other: the same Python.
    versions = {_python_version(s.base) for s in stages}
    assert len(versions) == 1, f"stages on different Pythons: {[s.base for s in stages]}"
    # ... and it is one the project supports.
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(versions.pop())
    # Every stage referred to (COPY --from, RUN --mount=...,from=) is an earlier one.
    names = [s.name for s in stages]
    for i, stage in enumerate(stages):
        refs = [c.flags["from"] for c in _copies() if c.stage == stage.name and "from" in c.flags]
        refs += re.findall(r"--mount=\S*?\bfrom=([\w.-]+)", "\n".join(stage.values("RUN")))
        for ref in refs:
            assert ref in names[:i], f"stage {stage.name} uses {ref!r}, not an earlier stage"


def test_the_runtime_runs_as_a_non_root_user() -> None:
    users = _runtime().values("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0"), f"USER {users[-1]}"
    assert group not in ("root", "0"), f"USER {users[-1]}"
    if user.isdigit():  # the uid exists in the image (a home, a group, for tools that ask)
        assert re.search(rf"useradd\b[^&]*--uid {user}\b", _runtime_runs()), (
            f"USER {user}: no `useradd --uid {user}` in the runtime stage")


def test_the_image_healthcheck_asks_the_web_process() -> None:
    values = _runtime().values("HEALTHCHECK")
    assert len(values) == 1, "the runtime stage needs one HEALTHCHECK"
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", values[0], re.S)
    assert match, f"HEALTHCHECK {values[0]!r}"
    argv = _exec_form(match[2])
    _assert_http_check(argv, port=int(_image_env()["LUXFACT_PORT"]), where="HEALTHCHECK")
    exposed = {int(p.split("/")[0]) for v in _runtime().values("EXPOSE") for p in v.split()}
    assert int(_image_env()["LUXFACT_PORT"]) in exposed


def _assert_http_check(argv: list[str], *, port: int, where: str) -> str:
    """An HTTP check of the web process: it runs a tool the slim image has (python: no curl
    or wget in it unless the runtime installs them), asks /healthz or /readyz (real routes)
    on the port the web process listens on. Returns the path asked."""
    tool = posixpath.basename(argv[0] if argv[:2] != ["/bin/sh", "-c"] else argv[2].split()[0])
    if tool in ("curl", "wget"):
        assert re.search(rf"apt-get install[^&]*\b{tool}\b", _runtime_runs()), (
            f"{where} runs {tool}, which the slim runtime image does not have")
    else:
        assert re.fullmatch(r"python3?(\.\d+)?", tool), f"{where}: runs {argv[0]!r}"
        code = argv[argv.index("-c") + 1]
        compile(code, where, "exec")  # a SyntaxError here would be an unhealthy container
    command = " ".join(argv)
    urls = re.findall(r"https?://([^/'\"\s]+)(/[\w/-]*)", command)
    assert len(urls) == 1, f"{where}: expected one URL, found {urls}"
    authority, path = urls[0]
    assert path in ("/healthz", "/readyz"), f"{where} asks {path}, not /healthz or /readyz"
    assert path in HTTP_PATHS, f"{where} asks {path}, which the app does not serve"
    given = authority.rsplit(":", 1)[1]
    if given.isdigit():
        assert int(given) == port, f"{where} asks port {given}, the web process is on {port}"
    else:  # the port from LUXFACT_PORT, with the image's value as fallback
        assert "LUXFACT_PORT" in command and f"'{port}'" in command, f"{where}: port {given}"
    return path


def test_every_copied_path_exists_in_the_documented_build_context() -> None:
    # docs/operations.md, "Deployment": built from the repository's root.
    commands = re.findall(r"`(docker build [^`]+)`", _doc_section("Deployment"))
    commands += re.findall(r"#\s+(docker build .+)", DOCKERFILE.read_text("utf-8"))
    assert commands, "no `docker build` command in docs/operations.md or the Dockerfile"
    for command in commands:
        words, positional, dockerfile = shlex.split(command)[2:], [], None
        while words:
            word = words.pop(0)
            if word in ("-f", "--file"):
                dockerfile = words.pop(0)
            elif word in ("-t", "--tag", "--build-arg", "--target", "--platform"):
                words.pop(0)
            elif not word.startswith("-"):
                positional.append(word)
        assert positional == ["."], f"{command!r}: the context is not the current directory"
        assert dockerfile and (ROOT / dockerfile).resolve() == DOCKERFILE, command
    # compose.yaml builds the same context (relative to deploy/) with the same Dockerfile.
    built = [s for s in _services().values() if "build" in s]
    assert built, "compose.yaml builds nothing"
    for service in built:
        build = service["build"]
        build = {"context": build} if isinstance(build, str) else build
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT, f"compose.yaml builds from {context}, not {ROOT}"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    # What is copied from that context is there.
    copies = _context_copies()
    assert copies
    for copy in copies:
        for source in copy.sources:
            assert list(_context_files(source)), f"COPY {source}: nothing to copy"


def test_the_dockerignore_lets_through_what_is_copied_and_nothing_else() -> None:
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile before .dockerignore.
    assert DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore") == DOCKERIGNORE
    assert DOCKERIGNORE.is_file()
    for copy in _context_copies():
        for source in copy.sources:
            assert not _excluded(source), f"COPY {source}: the dockerignore excludes it"
            dropped = [f for f in _context_files(source) if _excluded(f) and not JUNK.search(f)]
            assert not dropped, f"COPY {source}: the dockerignore drops {dropped[:5]}"
    # What must stay out of the image (docs: .venv, var/, tests/; and the secrets).
    for path in (".venv/bin/python", "var/luxfact.db", "tests/conftest.py", "deploy/.env",
                 ".git/config", "luxfact/__pycache__/settings.cpython-311.pyc"):
        assert _excluded(path), f"the dockerignore lets {path} into the build context"


def test_invoices_and_tenants_go_where_the_code_looks_for_them() -> None:
    runtime = _runtime()
    copies = {s: c for c in _context_copies() if c.stage == runtime.name for s in c.sources}
    assert "invoices" in copies, "invoices/ is not copied into the runtime image"
    assert "tenants" in copies, "tenants/ is not copied into the runtime image"
    # The code looks for invoices/ beside the package (LUXFACT_INVOICES_DIR's default, the
    # claim schemas): in the image the package is in the venv's site-packages.
    package_parent = Path(luxfact.__file__).resolve().parent.parent
    assert package_parent == SETTINGS_ROOT
    assert Settings.model_fields["invoices_dir"].default == package_parent / "invoices"
    assert package_parent / "invoices" / "schemas" == claims_xml.SCHEMAS
    site = f"{_venv()}/lib/python{_python_version(runtime.base)}/site-packages"
    image_env = _image_env()
    invoices_dir = image_env.get("LUXFACT_INVOICES_DIR", f"{site}/invoices")
    assert copies["invoices"].dest.rstrip("/") == invoices_dir, (
        f"invoices/ goes to {copies['invoices'].dest}; the service reads {invoices_dir}")
    assert f"{_venv()}/bin" in image_env["PATH"].split(":")
    # `luxfact tenants sync` reads LUXFACT_TENANTS_DIR: the demo tenants are there.
    assert copies["tenants"].dest.rstrip("/") == image_env["LUXFACT_TENANTS_DIR"]


def test_the_image_has_the_dejavu_fonts_the_pdfs_embed() -> None:
    layout = tomllib.loads((ROOT / "invoices" / "layouts" / f"{LAYOUT}.toml").read_text())
    files = sorted({font["file"] for font in layout["fonts"].values()})
    assert files and all(f.startswith("DejaVu") for f in files), files
    installed = re.search(r"apt-get install[^&]*fonts-dejavu", _runtime_runs())
    if not installed:  # then shipped in invoices/fonts/, which must reach the image
        for name in files:
            path = f"invoices/fonts/{name}"
            assert (ROOT / path).is_file(), f"{path} is missing"
            assert not _excluded(path), f"the dockerignore drops {path}"
            assert any(posixpath.normpath(s) in ("invoices", "invoices/fonts", path)
                       for c in _context_copies() if c.stage == _runtime().name
                       for s in c.sources), f"{path} is not copied into the runtime"


def test_the_builder_builds_the_wheel_from_what_it_copies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    builder = next((s for s in _stages() if "pip wheel" in " ".join(s.values("RUN"))), None)
    assert builder is not None, "no stage runs `pip wheel`"
    copied = {posixpath.normpath(s) for c in _context_copies() if c.stage == builder.name
              for s in c.sources}
    needed = {"pyproject.toml", "constraints.txt", pyproject["project"]["readme"]}
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed |= {p.rstrip("*") for p in packages}
    assert needed <= copied, f"the builder does not copy {needed - copied}"
    # Every file of the package the wheel would not take as a module (templates, static
    # files, migrations outside a package...) is named by package-data, else the image
    # lacks it. (A package-data pattern matching nothing is harmless: not checked.)
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    for package in {p.rstrip("*") for p in packages}:
        covered = {path for pattern in package_data.get(package, [])
                   for path in (ROOT / package).glob(pattern) if path.is_file()}
        for path in (ROOT / package).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if not path.is_file() or JUNK.search(relative) or _excluded(relative):
                continue
            module = path.suffix == ".py" and (path.parent / "__init__.py").is_file()
            assert module or path in covered, f"{relative} would not be in the wheel"
    # The wheels are built into a directory the runtime mounts and installs from, offline.
    run = " ".join(builder.values("RUN"))
    wheel_dir = re.search(r"pip wheel\b.*?--wheel-dir[= ](\S+)", run)
    assert wheel_dir and re.search(r"--constraint[= ]constraints\.txt", run), run
    mount = re.search(rf"--mount=type=bind,from={re.escape(builder.name)},source=(\S+?),"
                      r"target=(\S+)", _runtime_runs())
    assert mount and mount[1] == wheel_dir[1], "the runtime does not mount the builder's wheels"
    install = re.search(r"pip install --no-index --find-links (\S+) (\S+)", _runtime_runs())
    assert install, "the runtime does not install from the wheels only (--no-index)"
    assert (install[1], install[2]) == (mount[2], pyproject["project"]["name"])


def test_constraints_pin_every_runtime_dependency_of_the_image() -> None:
    """`pip wheel --constraint constraints.txt .`: every distribution the image gets is
    pinned there, at a version its dependents accept (else pip would pick one, or fail)."""
    pins: dict[str, Requirement] = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = req
    version = _python_version(_runtime().base)
    todo = [Requirement(d) for d in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    problems = []
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        pin = pins.get(name)
        pinned = next(iter(pin.specifier), None) if pin else None
        if pinned is None or pinned.operator != "==":
            problems.append(f"{req.name}: not pinned (==) in constraints.txt")
        elif not req.specifier.contains(pinned.version, prereleases=True):
            problems.append(f"{req.name}: pinned {pinned.version}, needed {req.specifier}")
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            requires = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: its own dependencies cannot be read
        for spec in requires:
            dep = Requirement(spec)
            needed = dep.marker is None or any(
                dep.marker.evaluate({"extra": extra, "sys_platform": "linux",
                                     "platform_system": "Linux", "os_name": "posix",
                                     "platform_machine": machine, "python_version": version,
                                     "python_full_version": f"{version}.0",
                                     "implementation_name": "cpython",
                                     "platform_python_implementation": "CPython"})
                for extra in (req.extras or {""}) for machine in ("x86_64", "aarch64"))
            if needed:
                todo.append(dep)
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_image_starts_the_web_process_by_default() -> None:
    entry = _runtime().values("ENTRYPOINT")
    assert entry and entry[-1].startswith("["), (
        "ENTRYPOINT in exec form: luxfact is PID 1 and gets SIGTERM itself")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert _entrypoint() == ["luxfact"] and scripts["luxfact"] == "luxfact.cli.main:app"
    commands = _commands(_entrypoint() + _cmd(), "the image's default command")
    assert list(commands) == ["serve"]
    config = _settings(_image_env(), "the image's ENV")
    host = commands["serve"]["host"] or config.host
    assert _is_any_address(host), f"the image serves on {host}: unreachable from outside"


def test_the_image_bakes_in_no_secret() -> None:
    names = set(_image_env()) | {v.split("=")[0] for v in _runtime().values("ARG")}
    assert not {n for n in names if SECRET_NAME.search(n) and n != "LUXFACT_DATABASE_URL"}
    # The image's database is the SQLite default, no password in it.
    assert make_url(_image_env()["LUXFACT_DATABASE_URL"]).password is None


# =========================================================================================
# The commands the containers run, parsed by the real CLI
# =========================================================================================


def _every_container_command() -> list[tuple[str, list[str]]]:
    found = [("Dockerfile ENTRYPOINT+CMD", _entrypoint() + _cmd())]
    for name, service in _services().items():
        if "build" in service:
            found.append((f"compose.yaml {name}", _compose_argv(service)))
    for name, _, container in _app_containers():
        found.append((f"k8s {name}/{container['name']}", _k8s_argv(container)))
    return found


@pytest.mark.parametrize(("where", "argv"), _every_container_command(),
                         ids=[w for w, _ in _every_container_command()])
def test_every_container_runs_real_luxfact_commands_and_options(
        where: str, argv: list[str]) -> None:
    assert _commands(argv, where)


def test_the_cli_check_fails_on_a_renamed_option_or_command() -> None:
    """The check above is not vacuous: what a typo would look like is refused."""
    for bad in (["serve", "--hots", "127.0.0.1"], ["worker", "--concurency", "4"],
                ["worker", "--concurrency", "four"], ["db", "upgrad"], ["migrate"]):
        with pytest.raises((pytest.fail.Exception, AssertionError)):
            _parse_cli(bad)


# =========================================================================================
# compose.yaml
# =========================================================================================


def test_compose_runs_postgres_a_migration_the_web_process_and_the_worker() -> None:
    roles = _compose_roles()
    assert set(roles) == {"db", "migrate", "web", "worker"}, roles
    db = _compose_role("db")
    assert "test" in db.get("healthcheck", {}) and not db["healthcheck"].get("disable")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    migrate = _compose_role("migrate")
    assert str(migrate.get("restart", "no")) == "no", "a finished migration must not restart"
    assert migrate.get("depends_on", {}).get(roles["db"], {}).get("condition") == (
        "service_healthy")
    for role in ("web", "worker"):
        depends = _compose_role(role).get("depends_on")
        assert isinstance(depends, dict), f"{role}: depends_on without conditions"
        assert depends.get(roles["migrate"], {}).get("condition") == (
            "service_completed_successfully"), f"{role} does not wait for the migration"
        assert depends.get(roles["db"], {}).get("condition") == "service_healthy", (
            f"{role} does not wait for PostgreSQL to be healthy")


def test_compose_web_has_a_healthcheck_on_the_port_it_serves() -> None:
    web = _compose_role("web")
    healthcheck = web.get("healthcheck", {})
    assert healthcheck.get("test") and not healthcheck.get("disable"), "web: no healthcheck"
    test = healthcheck["test"]
    argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1] if
                                               test[0] == "CMD-SHELL" else test]
    serve = _commands(_compose_argv(web), "compose.yaml web")["serve"]
    config = _settings(_compose_env(web), "compose.yaml web")
    port = serve["port"] or config.port
    _assert_http_check(argv, port=port, where="compose.yaml web healthcheck")
    assert _is_any_address(serve["host"] or config.host), "web listens on loopback only"
    variables = _dotenv(ENV_EXAMPLE)
    published = [_interpolate(str(p), variables) for p in web.get("ports", [])]
    assert published and all(int(p.rsplit(":", 1)[1].split("/")[0]) == port
                             for p in published), f"web publishes {published}, serves {port}"


def test_compose_services_that_serve_no_http_do_not_inherit_the_web_healthcheck() -> None:
    """The image's HEALTHCHECK asks the web port: the migration and the worker would be
    'unhealthy' forever with it."""
    for role in ("migrate", "worker"):
        healthcheck = _compose_role(role).get("healthcheck", {})
        assert healthcheck.get("disable") is True or "test" in healthcheck, (
            f"compose {role}: inherits the image's web HEALTHCHECK")


def test_compose_worker_has_time_to_finish_its_jobs_when_stopped() -> None:
    worker = _compose_role("worker")
    grace = _commands(_compose_argv(worker), "compose.yaml worker")["worker"]["grace"]
    assert _seconds(worker.get("stop_grace_period", 10)) > grace


def test_compose_keeps_passwords_and_keys_out_of_the_file() -> None:
    for name, service in _services().items():
        for var, value in _env_mapping(service.get("environment")).items():
            if var.endswith("DATABASE_URL"):
                password = re.search(r"://[^:/@]+:([^@]*)@", value)
                assert password is None or re.fullmatch(r"\$\{\w+[^}]*\}", password[1]), (
                    f"compose {name}: {var} carries a literal password")
            elif SECRET_NAME.search(var):
                assert re.fullmatch(r"\$\{\w+[^}]*\}", value), f"compose {name}: literal {var}"
    text = COMPOSE.read_text("utf-8")
    for secret in ("LUXFACT_SECRET_KEY", "LUXFACT_APP_ROLE_PASSWORD", "LUXFACT_METRICS_TOKEN"):
        assert not re.search(rf"^\s*-?\s*{secret}\s*[:=]\s*[^$\s]", text, re.M), secret
    # The app containers get their secrets from deploy/.env, whose template holds
    # placeholders only.
    for role in ("migrate", "web", "worker"):
        assert DEPLOY / ".env" in _env_files(_compose_role(role)), f"{role}: no env_file .env"
    example = _dotenv(ENV_EXAMPLE)
    for var, value in example.items():
        if SECRET_NAME.search(var):
            assert "change-me" in value.lower(), f".env.example: {var} is not a placeholder"
    assert {"LUXFACT_SECRET_KEY", "LUXFACT_APP_ROLE_PASSWORD", "POSTGRES_PASSWORD"} <= set(
        example)


def test_deploy_env_is_never_committed() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run([git, "check-ignore", "--no-index", "-q", "deploy/.env"],
                            cwd=ROOT, check=False)
    assert result.returncode == 0, "deploy/.env (the real secrets) is not git-ignored"


def test_compose_containers_are_configured_for_production() -> None:
    for role in ("migrate", "web", "worker"):
        service = _compose_role(role)
        config = _settings(_compose_env(service), f"compose.yaml {role}")
        assert config.environment == "production"
        assert config.is_postgres, f"compose {role} is not on PostgreSQL"
        assert config.secret_key != Settings.model_fields["secret_key"].default
        if service.get("read_only"):
            tmpfs = service.get("tmpfs", [])
            assert CONTAINER_TMP in ([tmpfs] if isinstance(tmpfs, str) else tmpfs)
            if role != "migrate":
                targets = {str(v).split(":")[1] for v in service.get("volumes", [])}
                assert str(config.documents_dir) in targets, (
                    f"compose {role}: {config.documents_dir} is on a read-only file system")


# =========================================================================================
# k8s/
# =========================================================================================


def test_kustomization_lists_exactly_the_manifests_of_k8s() -> None:
    listed = _kustomization()["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists {name}, which does not exist"
    manifests = {p.name for p in K8S.iterdir() if p.suffix in (".yaml", ".yml")}
    examples = {n for n in manifests if ".example." in n}
    expected = manifests - examples - {"kustomization.yaml", "kustomization.yml"}
    assert set(listed) == expected, (
        f"not listed: {expected - set(listed)}; listed but not a manifest: "
        f"{set(listed) - expected}")
    assert "secret.example.yaml" in examples  # documented, never applied


def test_every_k8s_container_image_is_set_by_kustomization() -> None:
    images = {i["name"]: i for i in _kustomization().get("images", [])}
    for name, workload in _workloads().items():
        for container in _containers(workload):
            image = container["image"].split(":")[0]
            assert image in images, f"{name}/{container['name']}: image {image} not pinned"
            assert images[image].get("newTag") or images[image].get("digest")


def test_k8s_runs_web_and_worker_deployments_and_a_migration_job() -> None:
    web, _ = _k8s_role("web")
    worker, _ = _k8s_role("worker")
    job, _ = _k8s_role("migrate")
    assert web["kind"] == "Deployment" and worker["kind"] == "Deployment"
    assert job["kind"] == "Job"
    assert _pod(job)["spec"].get("restartPolicy") in ("Never", "OnFailure")


def test_every_k8s_container_requests_resources() -> None:
    for name, workload in _workloads().items():
        for container in _containers(workload):
            where = f"{name}/{container['name']}"
            resources = container.get("resources", {})
            requests, limits = resources.get("requests", {}), resources.get("limits", {})
            assert {"cpu", "memory"} <= set(requests), f"{where}: requests {requests}"
            for kind, limit in limits.items():
                assert kind in requests, f"{where}: a {kind} limit without a request"
                assert _quantity(limit) >= _quantity(requests[kind]), f"{where}: {kind}"


def test_k8s_web_probes_readyz_and_healthz_on_the_port_it_serves() -> None:
    _, container = _k8s_role("web")
    serve = _commands(_k8s_argv(container), "k8s web")["serve"]
    config = _settings(_k8s_env(container), "k8s web")
    port = serve["port"] or config.port
    assert _is_any_address(serve["host"] or config.host), "web listens on loopback only"
    assert port in {p["containerPort"] for p in container.get("ports", [])}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                        ("startupProbe", None)):
        if probe not in container and path is None:
            continue
        http = container.get(probe, {}).get("httpGet")
        assert http, f"k8s web: no {probe} httpGet"
        assert path is None or http["path"] == path, f"{probe} asks {http['path']}"
        assert http["path"] in HTTP_PATHS, f"{probe} asks {http['path']}: no such route"
        assert _container_port(container, http["port"]) == port, f"{probe}: wrong port"
    # The worker serves no HTTP: no HTTP probe may be pointed at it.
    _, worker = _k8s_role("worker")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert "httpGet" not in worker.get(probe, {}), f"k8s worker: an HTTP {probe}"


def test_k8s_deployments_select_their_own_pods() -> None:
    labels = _pod_labels()
    for name, workload in _of_kind("Deployment").items():
        selector = workload["spec"]["selector"]
        assert _selects(selector, labels[name]), f"{name}: its selector misses its pods"
        others = [o for o in labels if o != name and _selects(selector, labels[o])]
        assert not others, f"{name}'s selector also takes the pods of {others}"


def test_k8s_services_send_traffic_to_one_deployments_pods_on_a_port_they_serve() -> None:
    web, _ = _k8s_role("web")
    labels = _pod_labels()
    services = _of_kind("Service")
    workloads = _workloads()
    served = set()
    for name, service in services.items():
        selector = service["spec"]["selector"]
        selected = [w for w in labels if _selects(selector, labels[w])]
        assert len(selected) == 1, f"Service {name} selects {selected}"
        assert workloads[selected[0]]["kind"] == "Deployment", f"Service {name}: {selected}"
        served.add(selected[0])
        [container] = _containers(workloads[selected[0]])
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert _container_port(container, target) in {
                p["containerPort"] for p in container["ports"]}, f"Service {name}: {target}"
    assert web["metadata"]["name"] in served, "no Service for the web pods"


def test_k8s_runs_the_hl7_listener_behind_a_service_and_purges_its_log_daily() -> None:
    listeners = [(name, w, c) for name, w, c in _app_containers()
                 if "mllp" in _commands(_k8s_argv(c), f"k8s {name}")]
    assert len(listeners) == 1, listeners
    name, workload, container = listeners[0]
    assert workload["kind"] == "Deployment"
    mllp = _commands(_k8s_argv(container), f"k8s {name}")["mllp"]
    # Every address of the pod (the Service's traffic comes in on its own); one process per
    # pod: Kubernetes restarts a pod whose listener stops.
    assert mllp["host"] == "0.0.0.0" and mllp["workers"] == 1  # noqa: S104
    assert int(mllp["port"]) in {p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert _container_port(container, container[probe]["tcpSocket"]["port"]) == \
            int(mllp["port"])
    # It answers the messages in progress for up to 10 s on SIGTERM (Listener.close).
    assert _pod(workload)["spec"].get("terminationGracePeriodSeconds", 30) > 10
    purges = [(name, w) for name, w, c in _app_containers()
              if "hl7 purge" in _commands(_k8s_argv(c), f"k8s {name}")]
    assert len(purges) == 1, purges
    cron = purges[0][1]
    assert cron["kind"] == "CronJob" and cron["spec"]["schedule"].split()[2:] == ["*"] * 3
    assert cron["spec"].get("concurrencyPolicy") == "Forbid"
    assert _pod(cron)["spec"]["restartPolicy"] in ("Never", "OnFailure")


def test_k8s_pdbs_and_hpa_target_the_right_deployments() -> None:
    deployments = _of_kind("Deployment")
    labels = _pod_labels()
    covered = set()
    for name, pdb in _of_kind("PodDisruptionBudget").items():
        selected = [w for w in labels if _selects(pdb["spec"]["selector"], labels[w])]
        assert len(selected) == 1 and selected[0] in deployments, f"PDB {name}: {selected}"
        covered.add(selected[0])
    for role in ("web", "worker"):
        workload, _ = _k8s_role(role)
        assert workload["metadata"]["name"] in covered, f"no PodDisruptionBudget for the {role}"
    web, _ = _k8s_role("web")
    hpas = _of_kind("HorizontalPodAutoscaler")
    assert hpas, "deploy/k8s has no HorizontalPodAutoscaler"
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert target["name"] == web["metadata"]["name"], f"HPA {name} targets {target}"
        low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
        assert 1 <= low <= high
        # CPU utilisation is measured against the requests: every container has one.
        if any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"]):
            assert all("cpu" in c.get("resources", {}).get("requests", {})
                       for c in _containers(web))
        # At its minimum, a node drain can still take a web pod out.
        for pdb in _of_kind("PodDisruptionBudget").values():
            if _selects(pdb["spec"]["selector"], labels[target["name"]]):
                assert pdb["spec"].get("minAvailable", 0) < low


def test_k8s_secrets_are_references_never_literals() -> None:
    secrets = _secrets()
    documented = set(re.findall(r"`([a-z-]+)`", _doc_section("Deployment").split(
        "keys", 1)[1].split(":", 1)[0]))
    assert documented == set(next(iter(secrets.values()))), (
        "docs/operations.md and secret.example.yaml name different Secret keys")
    for name, workload in _workloads().items():
        for container in _containers(workload):
            where = f"{name}/{container['name']}"
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                if SECRET_NAME.search(var["name"]):
                    assert "value" not in var and "secretKeyRef" in ref, (
                        f"{where}: {var['name']} is not taken from a Secret")
                if "secretKeyRef" in ref:
                    key = ref["secretKeyRef"]
                    assert key["key"] in secrets.get(key["name"], {}), f"{where}: {key}"
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, where
    for name, data in _configmaps().items():
        leaked = [k for k in data if SECRET_NAME.search(k)]
        assert not leaked, f"ConfigMap {name} holds secrets: {leaked}"
    for key, value in next(iter(secrets.values())).items():
        assert "CHANGE-ME" in value, f"secret.example.yaml: {key} is not a placeholder"


def test_k8s_references_resolve() -> None:
    configmaps, claims = _configmaps(), _of_kind("PersistentVolumeClaim")
    # ConfigMaps made by hand are documented (`kubectl create configmap NAME`).
    by_hand = set(re.findall(r"kubectl create configmap ([\w-]+)", _doc_section("Deployment")))
    for name, workload in _workloads().items():
        volumes = {v["name"]: v for v in _pod(workload)["spec"].get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in set(configmaps) | by_hand, volume
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in claims, f"{name}: no PersistentVolumeClaim {claim}"
                if workload["kind"] == "Deployment":  # pods on several nodes share it
                    assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"]
        for container in _containers(workload):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: no volume {mount['name']}"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps


def test_k8s_pods_run_as_the_image_user_with_writable_paths() -> None:
    uid = _runtime().values("USER")[-1].partition(":")[0]
    for name, workload, container in _app_containers():
        pod_context = _pod(workload)["spec"].get("securityContext", {})
        context = {**pod_context, **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True, f"{name}: runAsNonRoot"
        if "runAsUser" in context and uid.isdigit():
            assert context["runAsUser"] == int(uid), f"{name}: not the image's user {uid}"
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        if context.get("readOnlyRootFilesystem"):
            assert CONTAINER_TMP in mounts, f"{name}: read-only root and no {CONTAINER_TMP}"
        config = _settings(_k8s_env(container), f"k8s {name}")
        commands = _commands(_k8s_argv(container), f"k8s {name}")
        if "serve" in commands or "worker" in commands:
            assert str(config.documents_dir) in mounts, f"{name}: no volume on documents"
        if "tenants sync" in commands:
            assert str(config.tenants_dir) in mounts, f"{name}: no hospital files mounted"


def test_k8s_worker_and_web_have_time_to_stop() -> None:
    worker, container = _k8s_role("worker")
    grace = _commands(_k8s_argv(container), "k8s worker")["worker"]["grace"]
    assert _pod(worker)["spec"].get("terminationGracePeriodSeconds", 30) > grace
    web, container = _k8s_role("web")
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
    sleep = pre_stop.get("command", ["sleep", "0"])
    assert sleep[0] == "sleep", pre_stop
    assert _pod(web)["spec"].get("terminationGracePeriodSeconds", 30) > float(sleep[1])


def test_k8s_containers_are_configured_for_production() -> None:
    for name, _, container in _app_containers():
        config = _settings(_k8s_env(container), f"k8s {name}")
        assert config.environment == "production"
        assert config.is_postgres, f"k8s {name} is not on PostgreSQL"
        assert config.secret_key != Settings.model_fields["secret_key"].default, name


# =========================================================================================
# LUXFACT_ variables
# =========================================================================================


def test_settings_are_read_from_luxfact_variables() -> None:
    assert Settings.model_config["env_prefix"] == "LUXFACT_"


def _variables_set() -> dict[str, set[str]]:
    """Every LUXFACT_ variable the deploy files set, and where."""
    found: dict[str, set[str]] = {}

    def add(names: Any, where: str) -> None:
        for name in names:
            if name.startswith("LUXFACT_"):
                found.setdefault(name, set()).add(where)

    add(_image_env(), "Dockerfile ENV")
    add(_dotenv(ENV_EXAMPLE), ".env.example")
    for name, service in _services().items():
        add(_env_mapping(service.get("environment")), f"compose.yaml {name}")
    for name, data in _configmaps().items():
        add(data, f"ConfigMap {name}")
    for name, workload in _workloads().items():
        for container in _containers(workload):
            add([v["name"] for v in container.get("env", [])], f"k8s {name}")
    return found


def test_every_luxfact_variable_set_is_a_real_setting() -> None:
    # compose's own variables (interpolated in compose.yaml, never read by the service).
    compose_text = COMPOSE.read_text("utf-8")
    compose_vars = set(re.findall(r"\$\{(LUXFACT_\w+)", compose_text)) - SETTING_VARS
    unknown = {name: sorted(where) for name, where in _variables_set().items()
               if name not in SETTING_VARS
               and not (name in compose_vars and where == {".env.example"})}
    assert not unknown, f"not settings of luxfact/settings.py: {unknown}"
    # ... and the comments and examples name real ones too.
    mentioned = {m for path in DEPLOY.rglob("*") if path.is_file()
                 for m in re.findall(r"\bLUXFACT_[A-Z0-9_]*[A-Z0-9]", path.read_text("utf-8"))}
    assert mentioned - SETTING_VARS - compose_vars == set()


def test_the_variable_check_catches_a_typo() -> None:
    assert "LUXFACT_DB_STATEMENT_CACHE" in SETTING_VARS
    assert "LUXFACT_DB_STATEMENTS_CACHE" not in SETTING_VARS


# =========================================================================================
# PgBouncer
# =========================================================================================


def test_pgbouncer_pools_transactions_as_documented() -> None:
    ini = _pgbouncer()
    assert ini.get("pgbouncer", "pool_mode").strip() == "transaction"
    section = _doc_section("PgBouncer")
    assert "transaction pooling" in section
    assert "`LUXFACT_DB_STATEMENT_CACHE=0`" in section
    assert "LUXFACT_DB_STATEMENT_CACHE=0" in PGBOUNCER_INI.read_text("utf-8")
    # The safeguard the guide describes is in the file.
    if "server_reset_query_always" in section:
        assert ini.get("pgbouncer", "server_reset_query").strip().upper() == "DEALLOCATE ALL"
        assert ini.getint("pgbouncer", "server_reset_query_always") == 1
    # The setting accepts 0 (the statement caches off).
    assert load_settings(db_statement_cache=0).db_statement_cache == 0


def _processes() -> Iterator[tuple[str, Settings, dict[str, dict[str, Any]]]]:
    for role in ("migrate", "web", "worker"):
        service = _compose_role(role)
        yield (f"compose {role}", _settings(_compose_env(service), f"compose {role}"),
               _commands(_compose_argv(service), f"compose {role}"))
    for name, _, container in _app_containers():
        yield (f"k8s {name}", _settings(_k8s_env(container), f"k8s {name}"),
               _commands(_k8s_argv(container), f"k8s {name}"))


def test_every_process_behind_pgbouncer_has_the_statement_cache_off() -> None:
    behind = []
    for where, config, _ in _processes():
        # The owner (migrations, DDL, advisory locks) goes to PostgreSQL directly.
        assert not _through_pgbouncer(config.database_url), f"{where}: owner via PgBouncer"
        if _through_pgbouncer(config.effective_app_database_url):
            behind.append(where)
            assert config.db_statement_cache == 0, (
                f"{where} connects through PgBouncer (transaction pooling) with "
                f"LUXFACT_DB_STATEMENT_CACHE={config.db_statement_cache}, not 0")
    # The Kubernetes manifests do use it (the Secret's app-database-url): checked above.
    assert any(w.startswith("k8s") for w in behind), behind


def test_pgbouncer_fronts_the_database_and_role_the_service_uses() -> None:
    ini = _pgbouncer()
    secret = next(iter(_secrets().values()))
    owner, app_url = make_url(secret["database-url"]), make_url(secret["app-database-url"])
    assert app_url.port == ini.getint("pgbouncer", "listen_port"), (
        f"app-database-url asks port {app_url.port}; PgBouncer listens elsewhere")
    assert app_url.database in ini["databases"], f"PgBouncer has no [databases] {app_url}"
    target = dict(part.split("=", 1) for part in ini["databases"][app_url.database].split())
    assert (target["host"], int(target["port"])) == (owner.host, owner.port)
    assert target.get("dbname", app_url.database) == owner.database
    app_role = _settings(_k8s_env(_k8s_role("web")[1]), "k8s web").app_role
    assert app_url.username == app_role, "app-database-url does not connect as LUXFACT_APP_ROLE"
    users = re.findall(r'^"([^"]+)"', USERLIST_EXAMPLE.read_text("utf-8"), re.M)
    assert app_role in users, f"userlist.txt.example has no {app_role}"


def test_pgbouncer_accepts_every_client_connection_at_full_scale() -> None:
    """Each process opens up to twice its pool (pool plus overflow)."""
    web, web_container = _k8s_role("web")
    worker, worker_container = _k8s_role("worker")
    web_config = _settings(_k8s_env(web_container), "k8s web")
    serve = _commands(_k8s_argv(web_container), "k8s web")["serve"]
    hpa = next((h for h in _of_kind("HorizontalPodAutoscaler").values()
                if h["spec"]["scaleTargetRef"]["name"] == web["metadata"]["name"]), None)
    web_pods = hpa["spec"]["maxReplicas"] if hpa else web["spec"].get("replicas", 1)
    web_connections = web_pods * (serve["workers"] or web_config.workers) * 2 * (
        web_config.db_pool_size)
    concurrency = _commands(_k8s_argv(worker_container), "k8s worker")["worker"]["concurrency"]
    worker_connections = worker["spec"].get("replicas", 1) * 2 * (concurrency + 2)
    limit = _pgbouncer().getint("pgbouncer", "max_client_conn")
    assert web_connections + worker_connections <= limit
