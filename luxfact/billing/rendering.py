"""PDF rendering off the event loop: a process pool shared by the process that needs it.

Drawing a page is pure CPU for tens of milliseconds; on the event loop it would stall every
request of the worker. Processes are spawned, not forked: the web process runs threads
(the SQLite driver's, the loop's executor) that a fork would copy in an unknown state.
"""

import asyncio
import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from luxfact.billing.document import InvoiceDocument

_pool: ProcessPoolExecutor | None = None


def pool(workers: int = 0) -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                                    mp_context=multiprocessing.get_context("spawn"))
    return _pool


def shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


def render_with_digest(doc: InvoiceDocument, assets_dir: Path) -> tuple[bytes, str]:
    """Runs in a pool process: the PDF and its SHA-256."""
    from luxfact.billing.pdf import render_document  # imported in the worker only

    content = render_document(doc, assets_dir)
    return content, hashlib.sha256(content).hexdigest()


async def render(doc: InvoiceDocument, assets_dir: Path, workers: int = 0) -> tuple[bytes, str]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool(workers), render_with_digest, doc, assets_dir)
