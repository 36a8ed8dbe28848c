"""One error type for everything a user can get wrong; the CLI prints it as one line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

WRITE_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for a file size limit (ulimit -f)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
LOW_SPACE = 64 << 20  # bytes: a write that fails where less is free is taken for a full disk


class FastSlowError(Exception):
    """Bad input (config, file, endpoint, run dir): the message names the field or file and what was expected."""


def write_failure(exc: BaseException, path: str | Path) -> str:
    """Why a write under `path` failed, in words: "no space left on the device" however the library says it (the OS's
    ENOSPC, safetensors' "os error 28", torch.save's "[enforce fail at inline_container.cc] unexpected pos", whose
    context holds the OS's error when torch wrote through a Python file)."""
    cause = exc
    while cause is not None:  # torch.save to a Python file raises RuntimeError with the file's OSError as context
        if isinstance(cause, OSError) and cause.errno in WRITE_REASONS:
            return WRITE_REASONS[cause.errno]
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(exc).split())
    for code, reason in WRITE_REASONS.items():
        if f"os error {code})" in text:  # safetensors (Rust): "I/O error: No space left on device (os error 28)"
            return reason
    if "inline_container" in text or "file write failed" in text:  # torch's C++ writer hides the OS error
        free = _free_bytes(path)
        if free is not None and free < LOW_SPACE:
            return f"no space left on the device ({free >> 20} MB free)"
        return f"the write failed (torch: {text[:120]})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return text[:200] or type(exc).__name__


def _free_bytes(path: str | Path) -> int | None:
    for candidate in [Path(path), *Path(path).parents]:
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def named_write_error(exc: OSError, path: str | Path) -> OSError:
    """`exc` (a failed write, which often carries no file name) as an OSError naming `path` with the reason in words,
    which the CLI prints as one line: "PATH: no space left on the device"."""
    return OSError(exc.errno, write_failure(exc, path), str(path))
