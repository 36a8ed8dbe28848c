"""Run untrusted Python (model completions, dataset code) in a sandboxed subprocess.

Layers, outermost first; each one alone stops the common accidents, together they stop hostile code:

1. **Namespaces** (`unshare`, when it works here; probed once): a private network namespace (no network at
   all), a private PID namespace (the program sees and signals only itself; everything in it dies with it), and,
   when we are root, a private mount namespace in which every mount is read-only, the working directory is a
   small private tmpfs, and the program runs as `nobody` (so file permissions apply and RLIMIT_NPROC counts).
   Not root: a user namespace gives the network and PID namespaces without the rest.
2. **Resource limits** (`resource`, set in the child before the program runs): CPU seconds, address space,
   processes, file size, open files, no core dumps; plus a wall-clock timeout that kills the whole process group.
3. **A Python audit hook** installed before the program runs: refuses sockets, process creation and signals,
   ctypes, file writes/renames/removes outside the working directory, reads outside the system, interpreter
   and working directories (no home directories, hence no token files), opening directories outside the
   working directory, other processes' /proc entries and raising limits. It is a tripwire, not a boundary:
   the layers above are.
4. **A clean environment**: no inherited variables (no secrets), HOME and TMPDIR in the private directory,
   stdin/stdout/stderr are anonymous temporary files (output is capped), no user site-packages.

`run_python` never raises on hostile code: every failure is a `SandboxResult` with `ok=False`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ISOLATIONS = ("auto", "namespaces", "userns", "process")
NOBODY = 65534  # uid/gid of `nobody` on Linux
STATUS_MARK = "\x00fastslow-sandbox-status "  # the child's last stderr line: how the program ended


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 5.0  # wall clock
    cpu_s: int = 5  # CPU seconds
    memory_mb: int = 512  # address space
    max_processes: int = 16  # RLIMIT_NPROC, counted per user; root is exempt, so it binds under namespaces
    max_file_mb: int = 16  # largest file the program may write (its stdout/stderr included)
    max_open_files: int = 64
    workspace_mb: int = 32  # size of the private tmpfs working directory (namespaces isolation)
    max_output_chars: int = 100_000  # stdout/stderr returned to the caller
    site_packages: bool = False  # let the program import installed packages (numpy, ...), not just the stdlib


@dataclass(frozen=True)
class SandboxResult:
    ok: bool  # the program ran to the end (or exited with status 0)
    stdout: str
    stderr: str
    error_kind: str | None  # None, "timeout", "memory", "blocked", "exception", "crash" or "sandbox"
    error: str  # one line saying what went wrong; "" when ok
    timed_out: bool
    isolation: str  # the isolation it ran under: "namespaces", "userns" or "process"


# The child: runs as `python -c CHILD CONFIG_JSON` with the program and its stdin as JSON on stdin.
# Everything before `exec(program)` is trusted; it locks the process down, then runs the program.
CHILD = r'''
import io, json, os, sys
cfg = json.loads(sys.argv[1])
payload = json.load(sys.stdin)
sys.argv = ["main.py"]
MARK = cfg["mark"]
REFUSED = "sandbox refused "


def jail(cfg):
    """Namespaces isolation, as root in fresh mount/net/pid namespaces: read-only mounts, a private tmpfs, nobody."""
    import ctypes
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()
        if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {target}: {os.strerror(err)}")

    # The interpreter may live where nobody cannot read (e.g. /root/.pyenv): show it under our directory.
    for root, alias in cfg["python_aliases"].items():
        mount(root, alias, None, MS_BIND | MS_REC)
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        target = fields[4].encode().decode("unicode_escape")
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for name, bit in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)):
            flags |= bit if name in fields[5].split(",") else 0
        try:
            mount(None, target, None, flags)
        except OSError:
            pass  # nobody's file permissions still apply there
    size = f"size={cfg['workspace_mb']}m,mode=0700,uid={cfg['nobody']},gid={cfg['nobody']}"
    mount("tmpfs", cfg["work"], "tmpfs", MS_NOSUID | MS_NODEV, size)
    aliases = sorted(cfg["python_aliases"].items(), key=lambda kv: -len(kv[0]))
    def alias(path):
        for root, new in aliases:
            if path == root or path.startswith(root + os.sep):
                return new + path[len(root):]
        return path
    sys.path[:] = [alias(p) for p in sys.path]
    for module in list(sys.modules.values()):  # packages imported at startup find submodules through __path__
        if isinstance(getattr(module, "__path__", None), list):
            module.__path__[:] = [alias(p) for p in module.__path__]
    sys.path_importer_cache.clear()
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    os.setgroups([])
    os.setgid(cfg["nobody"])
    os.setuid(cfg["nobody"])  # drops every capability
    if os.getuid() != cfg["nobody"] or os.geteuid() != cfg["nobody"]:
        raise OSError("could not drop privileges")


def set_limits(cfg):
    import resource
    mb = 1024 * 1024
    limits = {
        resource.RLIMIT_CPU: (cfg["cpu_s"],) * 2,  # SIGKILL (PID 1 of a namespace ignores SIGXCPU)
        resource.RLIMIT_AS: (cfg["memory_mb"] * mb,) * 2,
        resource.RLIMIT_NPROC: (cfg["max_processes"],) * 2,
        resource.RLIMIT_FSIZE: (cfg["max_file_mb"] * mb,) * 2,
        resource.RLIMIT_NOFILE: (cfg["max_open_files"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in limits.items():
        old_soft, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:  # never ask for more than we have
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(which, (soft, hard))


def install_guard(work):
    """Audit hook: refuse what a program predicting an output has no business doing."""
    import posixpath, stat
    realpath, join, dirname, basename = posixpath.realpath, posixpath.join, posixpath.dirname, posixpath.basename
    fsdecode, readlink, stat_, getcwd, getpid = os.fsdecode, os.readlink, os.stat, os.getcwd, os.getpid
    S_ISDIR = stat.S_ISDIR
    work = realpath(work)
    # Reading is limited to the system, the interpreter and the working directory: not home directories,
    # where tokens live (~/.cache/huggingface/token, ~/.netrc, ...), nor other users' files.
    system = ["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/dev", "/sys", "/proc"]
    python = [p for p in sys.path if p] + [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    readable = tuple({realpath(p) for p in [work, *system, *python]})
    blocked_prefixes = (
        "socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
        "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit", "gc.get_objects",
        "gc.get_referrers", "gc.get_referents", "sqlite3.", "mmap.", "fcntl.", "urllib.", "http.", "ftplib.",
        "smtplib.", "imaplib.", "poplib.", "nntplib.", "telnetlib.", "webbrowser.", "syslog.",
    )
    # Fresh imports of these would bring back what we removed, or reach raw memory and processes.
    blocked_imports = {
        "_posixsubprocess", "_posixshmem", "_xxsubinterpreters", "_testcapi", "_testinternalcapi", "os", "posix",
    }
    # event -> (positions of paths, positions of dir_fds, follows symlinks)
    path_events = {
        "os.remove": ((0,), (1,), False), "os.rmdir": ((0,), (1,), False), "os.mkdir": ((0,), (2,), False),
        "os.rename": ((0, 1), (2, 3), False), "os.link": ((0, 1), (2, 3), True), "os.symlink": ((1,), (2,), False),
        "os.chmod": ((0,), (2,), True), "os.chown": ((0,), (3,), True), "os.utime": ((0,), (3,), True),
        "os.truncate": ((0,), (), True), "os.chflags": ((0,), (), True), "os.lchflags": ((0,), (), False),
        "os.setxattr": ((0,), (), True), "os.removexattr": ((0,), (), True), "shutil.copyfile": ((1,), (), True),
        "shutil.copymode": ((1,), (), True), "shutil.copystat": ((1,), (), True), "shutil.copytree": ((1,), (), True),
        "shutil.rmtree": ((0,), (1,), False), "shutil.move": ((0, 1), (), False), "shutil.chown": ((0,), (), True),
        "shutil.make_archive": ((0,), (), True),
    }
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def refuse(event, detail=""):
        raise PermissionError(f"{REFUSED}{event}{': ' + detail if detail else ''}")

    def resolve(path, dir_fd, follow):
        if isinstance(path, int):
            return readlink(f"/proc/self/fd/{path}")
        path = fsdecode(path)
        base = readlink(f"/proc/self/fd/{dir_fd}") if isinstance(dir_fd, int) and dir_fd >= 0 else getcwd()
        path = join(base, path)
        if follow:
            return realpath(path)
        name = basename(path.rstrip("/"))
        return join(realpath(dirname(path.rstrip("/"))), name)

    def inside(path, roots=(work,)):
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def check_read(real, event):
        if not inside(real, readable):
            refuse(event + " outside the system and working directories", real)
        parts = real.split("/")
        if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and parts[2] != str(getpid()):
            refuse("reading another process", real)

    def hook(event, args):
        if event == "import":
            if args[0] in blocked_imports:
                refuse("import", args[0])
        elif event.startswith("ctypes."):
            if event != "ctypes.dlopen" or args[0] is not None:  # `import ctypes` (numpy does) opens None only
                refuse(event)
        elif event.startswith(blocked_prefixes):
            refuse(event)
        elif event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            writing = bool((flags or 0) & write_flags) or any(c in (mode or "") for c in "wax+")
            try:
                real = resolve(path, None, True)
            except OSError:
                refuse(event, str(path))
            if writing and not inside(real):
                refuse("write outside the working directory", real)
            if not inside(real):
                check_read(real, "read")
                try:
                    is_dir = S_ISDIR(stat_(real).st_mode)
                except OSError:
                    is_dir = False
                if is_dir:  # a directory fd would let dir_fd-relative calls escape the path checks
                    refuse("opening a directory outside the working directory", real)
        elif event in ("os.listdir", "os.scandir") and not isinstance(args[0], int):
            try:
                real = resolve(args[0] if args[0] is not None else ".", None, True)
            except OSError:
                refuse(event, str(args[0]))
            check_read(real, event)
        elif event in path_events:
            paths, dir_fds, follow = path_events[event]
            dir_fd = next((args[i] for i in dir_fds if i < len(args) and args[i] not in (None, -1, -100)), None)
            for i in paths:
                if i >= len(args) or args[i] is None:
                    continue
                try:
                    real = resolve(args[i], dir_fd, follow)
                except OSError:
                    refuse(event, str(args[i]))
                if not inside(real):
                    refuse(event + " outside the working directory", real)

    sys.addaudithook(hook)


def report(kind, message=""):
    sys.stdout.flush()
    sys.stderr.write("\n" + MARK + json.dumps({"kind": kind, "message": message[:500]}) + "\n")
    sys.stderr.flush()


try:
    if cfg["isolation"] == "namespaces":
        jail(cfg)
    os.chdir(cfg["work"])
    os.environ["HOME"] = os.environ["TMPDIR"] = cfg["work"]
    sys.path[:] = [p for p in sys.path if p]  # not the working directory: the program cannot shadow our imports
    code = compile(payload["code"], "main.py", "exec")
    sys.stdin = io.StringIO(payload["stdin"])
    # Functions without an audit event that a program could misuse (as root, or to start processes).
    import _posixsubprocess

    def fork_exec(*args):
        raise PermissionError(REFUSED + "_posixsubprocess.fork_exec")

    _posixsubprocess.fork_exec = fork_exec  # no audit event of its own; `import subprocess` still works
    for name in ("mknod", "mkfifo", "chroot", "setns", "unshare", "pidfd_open"):
        for module in (os, sys.modules["posix"]):
            if hasattr(module, name):
                delattr(module, name)
    set_limits(cfg)
    if cfg["audit_hook"]:
        install_guard(cfg["work"])
except BaseException as exc:
    report("sandbox", f"{type(exc).__name__}: {exc}")
    os._exit(70)

namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
del cfg, payload, jail, set_limits, install_guard
try:
    exec(code, namespace)
    kind, message, status = "ok", "", 0
except SystemExit as exc:
    failed = exc.code not in (None, 0)
    kind, message, status = ("exception", f"SystemExit: {exc.code}", 1) if failed else ("ok", "", 0)
except MemoryError:
    kind, message, status = "memory", "MemoryError: out of memory", 1
except BaseException as exc:
    text = str(exc)
    if isinstance(exc, PermissionError) and text.startswith(REFUSED):
        kind, message = "blocked", "refused " + text[len(REFUSED):]
    else:
        kind, message = "exception", f"{type(exc).__name__}: {text}"
        try:
            import traceback
            traceback.print_exception(exc, limit=-3)
        except BaseException:
            pass
    status = 1
try:
    report(kind, message)
finally:
    os._exit(status)
'''


def _clean_env(work: str) -> dict[str, str]:
    # Nothing inherited: API keys and tokens in our environment must not reach the program.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": work,
        "TMPDIR": work,
        "PYTHONHASHSEED": "0",  # set iteration order, hence printed output, is reproducible
        "PYTHONIOENCODING": "utf-8",
    }


def _unreadable_by_others(path: str) -> bool:
    """True when `nobody` cannot reach `path` (an ancestor without o+x, or the directory without o+rx)."""
    current = Path(path).resolve()
    for part in [*reversed(current.parents), current]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return True
        need = 0o005 if part == current else 0o001
        if mode & need != need:
            return True
    return False


@functools.cache
def _python_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return sorted(r for r in roots if _unreadable_by_others(r))


def _command(isolation: str) -> list[str]:
    if isolation == "namespaces":
        return ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if isolation == "userns":
        return ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    return []


def run_python(
    code: str, stdin: str = "", limits: Limits | None = None, isolation: str = "auto", audit_hook: bool = True
) -> SandboxResult:
    """Run `code` as a Python program in the sandbox; `stdin` is its standard input.

    `isolation`: "auto" (the strongest that works here), "namespaces" (root only), "userns" or "process".
    `audit_hook=False` leaves out the audit hook: only for testing that the OS layers hold on their own.
    """
    limits = limits or Limits()
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    if isolation == "auto":
        isolation = best_isolation()
    try:
        return _run(code, stdin, limits, isolation, audit_hook)
    except Exception as exc:  # e.g. unshare vanished, /tmp full: still a result, never an exception
        return SandboxResult(False, "", "", "sandbox", f"could not run the sandbox: {exc}", False, isolation)


def _run(code: str, stdin: str, limits: Limits, isolation: str, audit_hook: bool) -> SandboxResult:
    base = tempfile.mkdtemp(prefix="fastslow-sandbox-")
    try:
        work = os.path.join(base, "work")
        os.mkdir(work, 0o700)
        aliases = {}
        if isolation == "namespaces":
            os.chmod(base, 0o711)  # nobody must traverse it to reach its tmpfs and the interpreter alias
            for i, root in enumerate(_python_roots()):
                aliases[root] = os.path.join(base, f"python{i}")
                os.mkdir(aliases[root])
        cfg = {**asdict(limits), "work": work, "isolation": isolation, "mark": STATUS_MARK, "nobody": NOBODY,
               "python_aliases": aliases, "audit_hook": audit_hook}
        flags = ["-s", "-B"] if limits.site_packages else ["-S", "-s", "-B"]
        command = _command(isolation) + [sys.executable, *flags, "-c", CHILD, json.dumps(cfg)]
        with tempfile.TemporaryFile() as inp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            inp.write(json.dumps({"code": code, "stdin": stdin}).encode())
            inp.seek(0)
            proc = subprocess.Popen(
                command, stdin=inp, stdout=out, stderr=err, cwd=work, env=_clean_env(work),
                start_new_session=True, close_fds=True,  # own process group: killpg reaches every descendant
            )
            try:
                returncode, cpu_s, wall_timeout = _wait(proc, limits.timeout_s)
            finally:
                _kill_group(proc.pid, wait_s=2.0)  # whatever the program left behind: gone before we return
            stdout, _ = _read_capped(out, limits.max_output_chars)
            stderr, status = _split_status(_read_capped(err, limits.max_output_chars + 1000)[0])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return _result(stdout, stderr, status, returncode, wall_timeout, cpu_s, limits, isolation)


def _wait(proc: subprocess.Popen, timeout_s: float) -> tuple[int, float, bool]:
    """Wait for the child, killing the program at the deadline: (exit status, CPU seconds used, timed out).

    wait4 gives the CPU time of the child and of the descendants it reaped (the program, under unshare),
    which tells a CPU-limit kill apart from a crash even when the status is unshare's own.
    """
    deadline, pause, killed_at = time.monotonic() + timeout_s, 0.001, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.monotonic()
        if killed_at is None and now >= deadline:
            killed_at = now
            # Under unshare, kill the program first so that unshare reaps it (and, as PID 1 of its namespace,
            # takes every process in there with it); killing the group at once would orphan it instead.
            if not _kill_children(proc.pid):
                _kill_group(proc.pid)
        elif killed_at is not None and now >= killed_at + 1.0:
            _kill_group(proc.pid)
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return proc.returncode, usage.ru_utime + usage.ru_stime, killed_at is not None


def _kill_children(pid: int) -> bool:
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return False
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return bool(children)


def _kill_group(pgid: int, wait_s: float = 0.0) -> None:
    """SIGKILL the process group; then wait up to `wait_s` until none of its processes is left."""
    deadline = time.monotonic() + wait_s
    try:
        os.killpg(pgid, signal.SIGKILL)
        while time.monotonic() < deadline:
            time.sleep(0.005)
            os.killpg(pgid, 0)  # raises once the group is empty (killed processes reparented and reaped)
    except (ProcessLookupError, PermissionError):
        pass


def _read_capped(file, max_chars: int) -> tuple[str, bool]:
    file.seek(0)
    data = file.read(max_chars * 4 + 1)  # utf-8: at most 4 bytes a character
    text = data.decode("utf-8", errors="replace")
    truncated = len(text) > max_chars or len(data) > max_chars * 4
    return (text[:max_chars] + "\n[output truncated]" if truncated else text), truncated


def _split_status(stderr: str) -> tuple[str, dict | None]:
    head, mark, tail = stderr.rpartition(STATUS_MARK)
    if not mark:
        return stderr, None
    try:
        return head.rstrip("\n"), json.loads(tail.splitlines()[0])
    except (ValueError, IndexError):
        return stderr, None


def _result(stdout, stderr, status, returncode, wall_timeout, cpu_s, limits: Limits, isolation) -> SandboxResult:
    def fail(kind: str, message: str, timed_out: bool = False) -> SandboxResult:
        return SandboxResult(False, stdout, stderr, kind, message, timed_out, isolation)

    if wall_timeout:
        return fail("timeout", f"timed out: exceeded the wall-clock limit of {limits.timeout_s:g} s", True)
    if status is None and cpu_s >= 0.9 * limits.cpu_s:  # killed near the limit (rusage runs a few % low)
        return fail("timeout", f"timed out: exceeded the CPU time limit of {limits.cpu_s} s", True)
    if status is not None and status.get("kind") != "ok":
        return fail(status.get("kind", "exception"), status.get("message", ""))
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else returncode
        return fail("crash", f"killed by signal {name}")
    if returncode != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
        return fail("exception", last[:500])
    return SandboxResult(True, stdout, stderr, None, "", False, isolation)


@functools.cache
def best_isolation() -> str:
    """The strongest isolation that works on this machine (probed once per process)."""
    candidates = (["namespaces"] if os.geteuid() == 0 else []) + ["userns"]
    if shutil.which("unshare"):
        for isolation in candidates:
            probe = run_python("print('ok')", "", Limits(timeout_s=30, cpu_s=10), isolation)
            if probe.ok and probe.stdout.strip() == "ok":
                return isolation
            log.debug("sandbox: %s isolation unavailable: %s %s", isolation, probe.error, probe.stderr[-300:])
    log.warning(
        "sandbox: namespaces (unshare) unavailable; untrusted code runs with resource limits and an audit hook only"
        + (" (as root: prefer a machine where `unshare --mount --net --pid` works)" if os.geteuid() == 0 else "")
    )
    return "process"
