"""Loading task data: local JSONL/JSON/CSV/parquet files or a Hugging Face dataset, split deterministically.

Rows become `Problem`s through a task-specific `to_problem(row)`; a row it rejects (by raising
ValueError, KeyError or TypeError) is malformed. `row_text` reads a prompt or answer field: a string or a
number, never null, a boolean, a list or an object silently turned into text. Malformed rows are skipped with one warning giving their
count and the first one's location; if no row is usable the load fails with a `FastSlowError`.

Splits: a row's own split (a "split" column, or the split of a Hugging Face dataset) is kept; `val` and
`test` splits that the data lacks are carved out of its train rows by fraction, by a hash of each problem
id, so the assignment is stable and does not depend on row order or on the seed `problems()` is called with.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from fastslow.errors import FastSlowError
from fastslow.tasks.base import SPLITS, Problem

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
MALFORMED = (ValueError, KeyError, TypeError)
MAX_ROW_BYTES = 16 << 20  # one row of a dataset: far beyond any model's context, and checked before it is read whole
MAX_JSON_FILE_BYTES = 1 << 30  # a .json file is one document, read whole; larger data is read row by row as JSONL
T = TypeVar("T")


def read_rows(
    source: str, hf_config: str | None = None, hf_split: str | None = None, field: str = "task.args.path"
) -> Iterator[tuple[str, Any, str | None]]:
    """Yield (location, row, split) for each row of a local file or a Hugging Face dataset.

    `location` names the row for error messages ("line 7", "row 3"); `row` is whatever the file holds there
    (normally a dict); `split` is the row's own split name, if the source has one.
    """
    path = Path(source).expanduser()
    if path.is_file():
        yield from _read_file(path, field)
    elif path.suffix.lower() in FILE_SUFFIXES:
        raise FastSlowError(f"{field}: file not found: {source}")
    else:  # a hub name, or a local directory of data files (load_dataset reads both)
        yield from _read_hf(str(path) if path.is_dir() else source, hf_config, hf_split, field)


def _read_file(path: Path, field: str) -> Iterator[tuple[str, Any, str | None]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open("rb") as f:
            for number, line in _capped_lines(f, path, field):
                text = line.decode("utf-8", errors="replace")
                if text.strip():
                    try:
                        row = json.loads(text)
                    except json.JSONDecodeError as exc:
                        row = ValueError(f"not valid JSON ({exc.msg})")  # a malformed row, reported as such
                    except RecursionError:
                        row = ValueError("JSON nested too deeply")
                    yield f"line {number}", row, None
    elif suffix == ".json":  # one document: read whole, so the file is capped (JSONL is read row by row)
        if path.stat().st_size > MAX_JSON_FILE_BYTES:
            raise FastSlowError(f"{field}: {path} is {path.stat().st_size >> 20} MB, more than the "
                                f"{MAX_JSON_FILE_BYTES >> 20} MB a .json file may hold (it is read whole); write it as "
                                "JSONL, one row per line")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise FastSlowError(f"{field}: {path} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
            for split, rows in data.items():  # {"train": [...], "test": [...]}
                for i, row in enumerate(rows):
                    yield _within_cap(f"{split} row {i}", row, path, field), row, split
        elif isinstance(data, list):
            for i, row in enumerate(data):
                yield _within_cap(f"row {i}", row, path, field), row, None
        else:
            raise FastSlowError(f"{field}: {path} must hold a list of objects or a mapping of split -> list")
    elif suffix == ".csv":
        csv.field_size_limit(max(csv.field_size_limit(), MAX_ROW_BYTES))  # a field may be as long as a row
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            reader = csv.DictReader(line for _, line in _capped_lines(f, path, field))
            try:
                for row in reader:
                    yield f"line {reader.line_num}", row, None
            except csv.Error as exc:
                raise FastSlowError(f"{field}: {path} line {reader.line_num}: not valid CSV ({exc})") from None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=256)  # a batch at a time, not the whole table
            i = 0
            for batch in batches:
                for row in batch.to_pylist():
                    yield _within_cap(f"row {i}", row, path, field), row, None
                    i += 1
        except FastSlowError:
            raise
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise FastSlowError(f"{field}: cannot read parquet file {path}: {exc}") from None
    else:
        raise FastSlowError(f"{field}: unsupported file type {path.suffix!r}; expected one of {FILE_SUFFIXES}")


def _capped_lines(f, path: Path, field: str) -> Iterator[tuple[int, Any]]:
    """(number, line) of a file opened for reading; a line longer than MAX_ROW_BYTES is refused after reading that
    much of it, never read whole (a 1 GB line costs 16 MB and a moment)."""
    number = 0
    while line := f.readline(MAX_ROW_BYTES + 1):
        number += 1
        if len(line) > MAX_ROW_BYTES:
            raise FastSlowError(_too_large(field, path, f"line {number}"))
        yield number, line


def _within_cap(location: str, row: Any, path: Path | str, field: str) -> str:
    """`location`, once the decoded row is found to be within MAX_ROW_BYTES (its text, counted in characters)."""
    if _text_size(row) > MAX_ROW_BYTES:
        raise FastSlowError(_too_large(field, path, location))
    return location


def _text_size(value: Any) -> int:
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(k) + _text_size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_text_size(v) for v in value)
    return 8


def _too_large(field: str, path: Path | str, location: str) -> str:
    return (f"{field}: {path} {location} is longer than {MAX_ROW_BYTES >> 20} MB, the cap on one dataset row "
            "(no model's context holds a prompt that long); fix or remove that row")


def _read_hf(name: str, config: str | None, split: str | None, field: str) -> Iterator[tuple[str, Any, str | None]]:
    import datasets

    try:
        data = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # hub errors, missing configs, no network: all a bad `path` for the user
        raise FastSlowError(f"{field}: {name!r} is neither a local file nor a loadable dataset: {exc}") from None
    parts = data.items() if isinstance(data, datasets.DatasetDict) else [(split, data)]
    for part, rows in parts:
        for i, row in enumerate(rows):  # memory-mapped arrow: a row is decoded when it is read
            yield _within_cap(f"{part or 'dataset'} row {i}", row, name, field), row, part


def row_text(row: dict, field: str, structured: bool = False) -> str:
    """A row's `field` as text: a string or a finite number; with `structured`, a list or an object too (as JSON).
    Anything else (missing, null, blank, a boolean, NaN) makes the row malformed."""
    value = row[field]
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        text = str(value)
    elif structured and isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        kind = {type(None): "null", bool: "a boolean", list: "a list", dict: "an object"}.get(type(value), repr(value))
        raise ValueError(f"{field!r} must be a string or a number{' (or JSON)' if structured else ''}, got {kind}")
    if not text.strip():
        raise ValueError(f"empty {field!r}")
    return text


def load_records(
    source: str,
    parse: Callable[[dict], T],
    expected: str,
    *,
    key: Callable[[T], str] | None = None,
    hf_config: str | None = None,
    hf_split: str | None = None,
    field: str = "task.args.path",
) -> list[tuple[T, str | None]]:
    """Parse every row of `source`; returns (item, the row's own split or None) for the good rows.

    A row is malformed when it is not an object, when `parse` raises ValueError/KeyError/TypeError, or when
    its `key` repeats an earlier row's. `expected` describes a good row for error messages.
    """
    items: list[tuple[T, str | None]] = []
    seen: set[str] = set()
    bad, first_bad, total = 0, "", 0
    for location, row, split in read_rows(source, hf_config, hf_split, field):
        total += 1
        try:
            if isinstance(row, Exception):
                raise row
            if not isinstance(row, dict):
                raise ValueError(f"expected an object, got {type(row).__name__}")
            item = parse(row)
            if key is not None:
                if key(item) in seen:
                    raise ValueError(f"duplicate id {key(item)!r}")
                seen.add(key(item))
            label = row.get("split") or split
            items.append((item, SPLIT_NAMES.get(str(label).lower()) if label else None))
        except MALFORMED as exc:
            bad += 1
            reason = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
            first_bad = first_bad or f"{location}: {reason}"
    if not items:
        what = "is empty" if total == 0 else f"has no usable rows ({bad} malformed, first at {first_bad})"
        raise FastSlowError(f"{field}: {source} {what}; expected {expected}")
    if bad:
        log.warning("%s: skipped %d malformed rows of %d (first at %s)", source, bad, total, first_bad)
    return items


def load_problems(
    source: str,
    to_problem: Callable[[dict], Problem],
    expected: str,
    *,
    hf_config: str | None = None,
    hf_split: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    field: str = "task.args.path",
) -> ProblemSet:
    """Read `source` into a `ProblemSet` (rows become problems through `to_problem`)."""
    labelled = load_records(
        source, to_problem, expected, key=lambda p: p.id, hf_config=hf_config, hf_split=hf_split, field=field
    )
    return ProblemSet(assign_splits(labelled, val_fraction, test_fraction, split_seed), source=str(source))


def assign_splits(
    labelled: list[tuple[Problem, str | None]], val_fraction: float, test_fraction: float, split_seed: int = 0
) -> dict[str, list[Problem]]:
    """Keep given splits; carve missing val/test splits out of the train/unlabelled rows, by id hash."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise FastSlowError("task.args: val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
    splits: dict[str, list[Problem]] = {s: [] for s in SPLITS}
    pool = []
    for problem, split in labelled:
        if split in ("val", "test"):
            splits[split].append(problem)
        else:
            pool.append(problem)
    pool.sort(key=lambda p: _id_hash(p.id, split_seed))
    size = len(pool)
    for split, fraction in (("val", val_fraction), ("test", test_fraction)):
        if not splits[split] and fraction > 0:
            take = max(1, round(size * fraction)) if size >= 3 else 0
            splits[split], pool = pool[:take], pool[take:]
    splits["train"] = pool
    for split in SPLITS:
        splits[split].sort(key=lambda p: _id_hash(p.id, split_seed))
    return splits


def _id_hash(problem_id: str, salt: int) -> str:
    return hashlib.sha256(f"{salt}:{problem_id}".encode()).hexdigest()


def content_id(*parts: Any, prefix: str = "") -> str:
    """A stable id from a row's content (for data without an id field)."""
    digest = hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return prefix + digest


class ProblemSet:
    """Problems grouped by split; `problems(split, n, seed)` draws a seeded sample of one split."""

    def __init__(self, splits: dict[str, list[Problem]], source: str = "data"):
        self.splits = splits
        self.source = source

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in SPLITS:
            raise FastSlowError(f"split: expected one of {SPLITS}, got {split!r}")
        pool = self.splits[split]
        if n > len(pool):
            hint = f"lower task.{split}_size" if split != "test" else "ask for fewer"
            raise FastSlowError(
                f"task: {self.source} has {len(pool)} {split} problems but {n} were asked for; {hint} or add data"
            )
        return random.Random(seed).sample(pool, n)

    def __len__(self) -> int:
        return sum(len(v) for v in self.splits.values())
