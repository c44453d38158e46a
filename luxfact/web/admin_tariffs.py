"""/desk/admin/tariffs: a tariff package uploaded as a .zip, shown as a diff, then applied.

What `luxfact tariffs import` does (`luxfact/cli/tariffs.py`), in two steps:

1. Upload: the .zip is opened safely (its size, the number, names and sizes of its entries
   are bounded; only the package's known CSV names are read, each written under its known
   name into a temporary directory, so no entry can land anywhere else; a path that leaves
   the package, a link or an encrypted entry refuses the whole upload). The package is read
   and checked whole (`read_package`); its problems are listed as `file:line: reason` and
   nothing is staged. A good package is compared with the catalogue (`service.diff`), kept
   under `documents_dir/staging/<sha256 of the zip>.zip`, and the diff is shown with an
   Apply button carrying that SHA-256 and a fingerprint of the diff shown.
2. Apply: the staged zip is read again (its SHA-256 checked), re-read, re-compared and, if
   the changes are still those shown, applied by `service.apply` in one transaction with its
   audit record. If the catalogue changed meanwhile, the new diff is shown instead.

The catalogue is national: shared by every hospital. On PostgreSQL the application role may
only read it (`luxfact/db/rls.py`), so the apply runs on a short-lived connection of the
owner (`settings.database_url`), as the CLI does; when the application already connects as
the owner (SQLite), it runs in the page's own transaction.
"""

import asyncio
import hashlib
import io
import json
import os
import re
import stat
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.audit.service import record
from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.settings import Settings
from luxfact.tariffs import service
from luxfact.tariffs.models import TariffImport
from luxfact.tariffs.package import FILES, Key, Package, read_package
from luxfact.tariffs.repository import CATALOGUE, TariffRepository
from luxfact.web.admin_kit import when
from luxfact.web.desk import Desk, page
from luxfact.web.i18n import N_

MAX_ZIP_BYTES = 4 * 1024 * 1024      # the upload itself
MAX_FILE_BYTES = 8 * 1024 * 1024     # one CSV, unpacked
MAX_TOTAL_BYTES = 16 * 1024 * 1024   # every CSV, unpacked
MAX_ENTRIES = 50
STAGING_HOURS = 24                   # a staged package not applied is removed after this
SHOWN = 100                          # rows listed per kind of change; the counts say the rest
SHA256 = re.compile(r"^[0-9a-f]{64}$")

TABLES = {
    "tariff_nomenclatures": N_("Nomenclatures"),
    "tariff_key_letters": N_("Key letters"),
    "tariff_cotes": N_("Cotes d'application"),
    "tariff_acts": N_("Acts"),
    "tariff_rules": N_("Rules"),
    "tariff_modifiers": N_("Modifiers"),
    "tariff_parameters": N_("Parameters"),
}


@dataclass
class ZipProblem:
    """A problem of the archive itself; `reason` is an English text with %(…)s values."""

    file: str
    reason: str
    values: dict[str, Any]


def _unsafe(name: str) -> bool:
    """A name that could leave the package directory (or is not a plain relative path)."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name:
        return True
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return True
    parts = name.rstrip("/").split("/")
    return any(part in ("", ".", "..") for part in parts)


def _ignored(name: str) -> bool:
    """Entries an archiver adds on its own, and files beside the CSVs (a README)."""
    base = name.rsplit("/", 1)[-1]
    return (name.startswith("__MACOSX/") or base.startswith("._") or base == ".DS_Store"
            or not base.lower().endswith(".csv"))


def extract(data: bytes, into: Path) -> tuple[list[ZipProblem], list[str]]:
    """Write the package's CSV files of the archive `data` into `into`, under their known
    names only. Returns the problems (any refuses the upload) and the entries not read."""
    problems: list[ZipProblem] = []
    ignored: list[str] = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
        return [ZipProblem("", N_("This is not a .zip file."), {})], []
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            return [ZipProblem("", N_("The archive holds more than %(count)s entries."),
                               {"count": MAX_ENTRIES})], []
        wanted: dict[str, zipfile.ZipInfo] = {}
        folders: set[str] = set()
        total = 0
        for info in entries:
            name = info.filename
            if _unsafe(name):
                problems.append(ZipProblem(name, N_(
                    "Refused: the path leaves the package (absolute, '..' or a drive)."), {}))
                continue
            if info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                problems.append(ZipProblem(name, N_("Refused: a link, not a file."), {}))
                continue
            if _ignored(name):
                ignored.append(name)
                continue
            folder, _, base = name.rpartition("/")
            if base not in FILES:
                problems.append(ZipProblem(name, N_(
                    "Not a file of a tariff package; the files are: %(names)s."),
                    {"names": ", ".join(FILES)}))
                continue
            if "/" in folder:
                problems.append(ZipProblem(name, N_(
                    "Too deep: put the CSV files at the top of the archive or in one "
                    "folder."), {}))
                continue
            if info.flag_bits & 0x1:
                problems.append(ZipProblem(name, N_("Refused: the entry is encrypted."), {}))
                continue
            if base in wanted:
                problems.append(ZipProblem(name, N_("This file is in the archive twice."), {}))
                continue
            if info.file_size > MAX_FILE_BYTES:
                problems.append(ZipProblem(name, N_(
                    "Too large: a file of the package may hold at most %(size)s MB."),
                    {"size": MAX_FILE_BYTES // (1024 * 1024)}))
                continue
            total += info.file_size
            folders.add(folder)
            wanted[base] = info
        if len(folders) > 1:
            problems.append(ZipProblem("", N_(
                "The CSV files must be side by side, in one folder."), {}))
        if total > MAX_TOTAL_BYTES:
            problems.append(ZipProblem("", N_(
                "Too large: the package may hold at most %(size)s MB unpacked."),
                {"size": MAX_TOTAL_BYTES // (1024 * 1024)}))
        if problems:
            return problems, ignored
        written = 0
        for base, info in wanted.items():
            try:
                with archive.open(info) as source:
                    # The declared size may lie: what is read is bounded, whatever it says.
                    content = source.read(MAX_FILE_BYTES + 1)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError,
                    zlib.error, OSError, ValueError):
                problems.append(ZipProblem(info.filename, N_(
                    "The archive is damaged or uses an unsupported compression."), {}))
                continue
            written += len(content)
            if len(content) > MAX_FILE_BYTES or written > MAX_TOTAL_BYTES:
                problems.append(ZipProblem(info.filename, N_(
                    "Too large: the package may hold at most %(size)s MB unpacked."),
                    {"size": MAX_TOTAL_BYTES // (1024 * 1024)}))
                break
            # `base` is one of the known names (checked above): nothing else is written.
            (into / base).write_bytes(content)
    return problems, ignored


def _read(data: bytes) -> tuple[Package | None, list[ZipProblem], list[str]]:
    """Extract and read a zipped package (blocking: run in a thread)."""
    with tempfile.TemporaryDirectory(prefix="luxfact-tariffs-") as directory:
        problems, ignored = extract(data, Path(directory))
        if problems:
            return None, problems, ignored
        return read_package(Path(directory)), [], ignored


def _staging(settings: Settings) -> Path:
    return Path(settings.documents_dir) / "staging"


def _stage(settings: Settings, sha: str, data: bytes) -> None:
    """Keep the zip until it is applied (or forgotten after STAGING_HOURS)."""
    directory = _staging(settings)
    directory.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - STAGING_HOURS * 3600
    for old in directory.glob("*.zip"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass
    target = directory / f"{sha}.zip"
    if target.is_file():
        os.utime(target)
        return
    partial = directory / f".{sha}.{os.getpid()}.part"
    partial.write_bytes(data)
    os.replace(partial, target)


def fingerprint(changes: service.PackageDiff) -> str:
    """What the diff shown says, so that an apply applies that and nothing else."""
    shape = [(name, [str(k) for k in d.added], [(str(k), f) for k, f in d.changed],
              [str(k) for k in d.withdrawn]) for name, d in sorted(changes.tables.items())]
    return hashlib.sha256(json.dumps(shape, default=str).encode()).hexdigest()


def _key(key: Key) -> str:
    return " ".join(str(part) for part in key)


def _value(value: Any) -> str:
    return "—" if value is None or value == "" else str(value)


async def _view(session: AsyncSession, package: Package,
                changes: service.PackageDiff) -> list[dict[str, Any]]:
    """The diff as the page lists it: per table, the keys added and withdrawn, and for each
    row changed its fields with the old and the new value."""
    repo = TariffRepository(session)
    tables = []
    for name, diff in changes.tables.items():
        old: dict[Key, Any] = {}
        if diff.changed:
            _, columns = CATALOGUE[name]
            old = {tuple(getattr(r, c) for c in columns): r for r in await repo.table(name)}
        staged = package.tables.get(name, {})
        changed = []
        for key, fields in diff.changed[:SHOWN]:
            before = old.get(key)
            changed.append({"key": _key(key), "fields": [
                (field, _value(getattr(before, field, None)),
                 _value(staged.get(key, {}).get(field))) for field in fields]})
        tables.append({
            "name": name, "label": TABLES.get(name, name),
            "counts": {"added": len(diff.added), "changed": len(diff.changed),
                       "withdrawn": len(diff.withdrawn)},
            "added": [_key(k) for k in diff.added[:SHOWN]],
            "added_more": max(len(diff.added) - SHOWN, 0),
            "changed": changed, "changed_more": max(len(diff.changed) - SHOWN, 0),
            "withdrawn": [_key(k) for k in diff.withdrawn[:SHOWN]],
            "withdrawn_more": max(len(diff.withdrawn) - SHOWN, 0)})
    return tables


async def _imports(session: AsyncSession) -> list[TariffImport]:
    query = select(TariffImport).order_by(col(TariffImport.id).desc()).limit(10)
    return list((await session.exec(query)).all())


async def _page(desk: Desk, status: int = 200, **values: Any) -> Response:
    values.setdefault("problems", [])
    values.setdefault("ignored", [])
    values.setdefault("tables", [])
    values.setdefault("notice", "")
    values.setdefault("error", "")
    applied = desk.request.query_params.get("applied", "")
    return desk.render("desk/admin/tariffs.html", status=status,
                       imports=await _imports(desk.session), when=when,
                       applied=applied if applied.isdigit() and status == 200 else "",
                       max_mb=MAX_ZIP_BYTES // (1024 * 1024), **values)


def _problems(desk: Desk, package: Package | None,
              zipped: list[ZipProblem]) -> list[dict[str, str]]:
    """The problems as the CLI prints them, `file:line: reason` (line 1 is the header);
    the archive's own in the user's language."""
    found = [{"where": problem.file, "reason": desk._(problem.reason, **problem.values)}
             for problem in zipped]
    for problem in package.problems if package else []:
        where = f"{problem.file}:{problem.line}" if problem.line else problem.file
        found.append({"where": where, "reason": problem.reason})
    return found


@page(Role.admin)
async def tariffs(desk: Desk) -> Response:
    """The upload form and the last imports."""
    return await _page(desk)


@page(Role.admin)
async def upload(desk: Desk) -> Response:
    """Check an uploaded package and show its diff; nothing is applied here."""
    upload = desk.form.get("package") if desk.form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await _page(desk, 422, error=desk._("Choose the package's .zip file."))
    data = await upload.read(MAX_ZIP_BYTES + 1)
    filename = Path(upload.filename.replace("\\", "/")).name[:200]
    if len(data) > MAX_ZIP_BYTES:
        return await _page(desk, 422, error=desk._(
            "The file is too large: a package may weigh at most %(size)s MB.",
            size=MAX_ZIP_BYTES // (1024 * 1024)), filename=filename)
    package, zipped, ignored = await asyncio.to_thread(_read, data)
    problems = _problems(desk, package, zipped)
    if package is None or problems:
        return await _page(desk, 422, problems=problems, ignored=ignored, filename=filename)
    changes = await service.diff(desk.session, package)
    sha = hashlib.sha256(data).hexdigest()
    if not changes.empty:
        await asyncio.to_thread(_stage, desk.request.state.settings, sha, data)
    return await _page(desk, filename=filename, sha256=sha, package_sha256=package.sha256,
                       ignored=ignored, tables=await _view(desk.session, package, changes),
                       empty=changes.empty, diff=fingerprint(changes))


async def _apply(session: AsyncSession, desk: Desk, package: Package, shown: str,
                 filename: str, sha: str) -> tuple[str, Any]:
    """Compare again and apply, in the caller's transaction: ("applied", version), or
    ("empty" | "changed", the diff) when there is nothing (or something else) to apply."""
    await service.lock_imports(session)
    changes = await service.diff(session, package)
    if changes.empty:
        return "empty", changes
    if fingerprint(changes) != shown:
        return "changed", changes
    package.source = f"desk upload {filename} (zip sha256 {sha})"[:500]
    version = await service.apply(session, package, changes)
    await record(session, "tariff.import", "tariff_import", str(version), {
        "file": filename, "zip_sha256": sha, "package_sha256": package.sha256,
        "summary": changes.summary()}, tenant_id=desk.tenant_id)
    return "applied", version


@page(Role.admin)
async def apply(desk: Desk) -> Response:
    """Apply exactly the staged package whose diff was shown."""
    settings: Settings = desk.request.state.settings
    sha = desk.value("sha256")
    shown = desk.value("diff")
    filename = desk.value("filename")[:200]
    if not SHA256.match(sha) or not SHA256.match(shown):
        return await _page(desk, 422, error=desk._(
            "This form does not name a staged package: upload it again."))
    path = _staging(settings) / f"{sha}.zip"
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError:
        data = b""
    if not data or hashlib.sha256(data).hexdigest() != sha:
        return await _page(desk, 409, error=desk._(
            "This package is no longer staged (applied already, or too old): upload it "
            "again."))
    package, zipped, ignored = await asyncio.to_thread(_read, data)
    problems = _problems(desk, package, zipped)
    if package is None or problems:
        return await _page(desk, 422, problems=problems, ignored=ignored, filename=filename)
    try:
        if settings.database_url == settings.effective_app_database_url:
            # The application is the owner already (SQLite): its own transaction; a
            # savepoint keeps it usable should the apply fail.
            async with desk.session.begin_nested():
                outcome, result = await _apply(desk.session, desk, package, shown, filename,
                                               sha)
        else:
            owner = Database(settings.database_url, pool_size=1,
                             tenant_setting_mode=settings.tenant_setting_mode,
                             statement_cache_size=settings.db_statement_cache)
            try:
                async with owner.transaction() as session:
                    outcome, result = await _apply(session, desk, package, shown, filename,
                                                   sha)
            finally:
                await owner.dispose()
    except sa_exc.IntegrityError:
        return await _page(desk, 409, error=desk._(
            "The catalogue changed while this package was being applied; nothing was "
            "applied. Upload it again to see the changes."))
    if outcome == "applied":
        path.unlink(missing_ok=True)
        return desk.redirect(f"/desk/admin/tariffs?applied={result}")
    if outcome == "empty":
        path.unlink(missing_ok=True)
        return await _page(desk, 200, notice=desk._(
            "Nothing to apply: the catalogue already matches this package."))
    return await _page(desk, 409, error=desk._(
        "The catalogue changed since this package was shown: nothing was applied. Check "
        "the changes below again before applying."), filename=filename, sha256=sha,
        package_sha256=package.sha256, ignored=ignored,
        tables=await _view(desk.session, package, result), empty=False,
        diff=fingerprint(result))


def routes() -> list[BaseRoute]:
    return [
        Route("/desk/admin/tariffs", tariffs, methods=["GET"]),
        Route("/desk/admin/tariffs", upload, methods=["POST"]),
        Route("/desk/admin/tariffs/apply", apply, methods=["POST"]),
    ]
