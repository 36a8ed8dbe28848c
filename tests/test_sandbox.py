"""The sandbox against ordinary and hostile programs, under every isolation this machine supports."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fastslow.tasks import sandbox
from fastslow.tasks.codeio import CodeIOTask
from fastslow.tasks.sandbox import Limits, best_isolation, run_python

FAST = Limits(timeout_s=1.0, cpu_s=1)
SECRET = "fastslow-test-secret-7b1e"


def _works(isolation: str) -> bool:
    result = run_python("print('ok')", isolation=isolation)
    return result.ok and result.stdout.strip() == "ok"


AVAILABLE = [iso for iso in ("namespaces", "userns", "process") if _works(iso)]


@pytest.fixture(params=AVAILABLE)
def isolation(request):
    return request.param


@pytest.fixture
def planted(tmp_path):
    """Files outside the sandbox that hostile programs go after; the test checks they are untouched."""
    target = tmp_path / "planted"
    (target / "sub").mkdir(parents=True)
    files = {target / "keep.txt": "precious\n", target / "sub" / "data.csv": "a,b\n1,2\n"}
    for path, text in files.items():
        path.write_text(text)
    yield target
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == [
        Path("keep.txt"), Path("sub"), Path("sub/data.csv")
    ], "files appeared or vanished outside the sandbox"
    for path, text in files.items():
        assert path.read_text() == text, f"{path} was changed"


def _sandbox_processes() -> int:
    """Processes of any sandbox run: their command line names the run's fastslow-sandbox-* directory."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            count += entry.name.isdigit() and b"fastslow-sandbox-" in (entry / "cmdline").read_bytes()
        except OSError:
            pass
    return count


# ----------------------------------------------------------------------------- ordinary programs


def test_best_isolation_is_one_that_works():
    assert best_isolation() in AVAILABLE


def test_falls_back_to_process_isolation_without_unshare(monkeypatch, caplog):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING):
        assert best_isolation.__wrapped__() == "process"
    assert "unshare" in caplog.text and "audit hook only" in caplog.text


def test_runs_a_program_with_stdin_and_stdout(isolation):
    code = "import math\nname = input()\nprint(f'{name}: {math.comb(5, 2)}')"
    result = run_python(code, "pascal", isolation=isolation)
    assert result.ok and result.error_kind is None and not result.timed_out
    assert result.stdout == "pascal: 10\n"
    assert result.isolation == isolation


def test_program_errors_are_reported_not_raised(isolation):
    result = run_python("def f(x):\n    return 1 / x\nf(0)", isolation=isolation)
    assert not result.ok and result.error_kind == "exception"
    assert "ZeroDivisionError" in result.error
    syntax = run_python("def f(:\n", isolation=isolation)
    assert not syntax.ok and "SyntaxError" in syntax.error


def test_exit_status_decides_ok(isolation):
    assert run_python("import sys\nprint('done')\nsys.exit(0)", isolation=isolation).ok
    failed = run_python("import sys\nsys.exit(3)", isolation=isolation)
    assert not failed.ok and failed.error == "SystemExit: 3"


def test_private_working_directory_is_writable_and_removed_afterwards(isolation):
    code = "import os\nopen('notes.txt', 'w').write('hi')\nprint(open('notes.txt').read(), os.getcwd())"
    result = run_python(code, isolation=isolation)
    assert result.ok, result.error
    text, cwd = result.stdout.split()
    assert text == "hi" and "fastslow-sandbox-" in cwd
    assert not Path(cwd).exists()


def test_output_is_capped(isolation):
    result = run_python("print('x' * 50000)", limits=Limits(max_output_chars=1000), isolation=isolation)
    assert result.ok and len(result.stdout) < 1100 and result.stdout.endswith("[output truncated]")


def test_set_order_is_reproducible(isolation):
    code = "print(list({'banana', 'apple', 'cherry', 'date'}))"
    first, second = run_python(code, isolation=isolation), run_python(code, isolation=isolation)
    assert first.ok and first.stdout == second.stdout


# ----------------------------------------------------------------------------- hostile programs

HOSTILE = {
    "infinite loop": ("while True:\n    pass", {"timeout"}),
    "sleeping forever": ("import time\ntime.sleep(600)", {"timeout"}),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", {"blocked", "exception"}),
    "10 GB allocation": ("data = bytearray(10 * 1024**3)\nprint(len(data))", {"memory"}),
    "socket": ("import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))", {"blocked"}),
    "subprocess": ("import subprocess\nsubprocess.run(['rm', '-rf', '{planted}'])", {"blocked"}),
    "os.system": ("import os\nos.system('rm -rf {planted}')", {"blocked"}),
    "ctypes": ("import ctypes\nctypes.CDLL(None).unlink(b'{planted}/keep.txt')", {"blocked"}),
    "kill everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)", {"blocked"}),
    "raise own limits": ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))", {"blocked"}),
    "read a token file": ("print(open('{planted}/keep.txt').read())", {"blocked"}),
    "list a home directory": ("import os\nprint(os.listdir('{planted}'))", {"blocked"}),
    "overwrite a file": ("open('{planted}/keep.txt', 'w').write('pwned')", {"blocked"}),
    "append via relative path": (
        "import os\nrel = os.path.relpath('{planted}/keep.txt')\nopen(rel, 'a').write('pwned')", {"blocked"}
    ),
    "new file outside": ("open('{planted}/new.txt', 'x').write('pwned')", {"blocked"}),
    "delete a file": ("import os\nos.remove('{planted}/keep.txt')", {"blocked"}),
    "delete a tree": ("import shutil\nshutil.rmtree('{planted}')", {"blocked"}),
    "rename a file": ("import os\nos.rename('{planted}/keep.txt', 'stolen.txt')", {"blocked"}),
    "chmod a file": ("import os\nos.chmod('{planted}/keep.txt', 0o777)", {"blocked"}),
    "write through a symlink": (
        "import os\nos.symlink('{planted}/keep.txt', 'link')\nopen('link', 'w').write('pwned')", {"blocked"}
    ),
    "write through a hard link": (
        "import os\nos.link('{planted}/keep.txt', 'link')\nopen('link', 'w').write('pwned')", {"blocked"}
    ),
    "unlink via dir_fd": (
        "import os\nfd = os.open('{planted}', os.O_RDONLY)\nos.unlink('keep.txt', dir_fd=fd)", {"blocked"}
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_stopped(name, isolation, planted):
    code, kinds = HOSTILE[name]
    result = run_python(code.replace("{planted}", str(planted)), limits=FAST, isolation=isolation)
    assert not result.ok, f"{name} was not stopped: {result}"
    os_refusal = result.error_kind == "exception" and any(
        text in result.error for text in ("Permission denied", "Read-only file system")
    )
    assert result.error_kind in kinds or (os_refusal and isolation != "process"), result
    assert result.error  # a one-line explanation
    assert result.timed_out == (result.error_kind == "timeout")


def test_timeout_kills_every_process_of_the_program(isolation):
    code = "import time\nprint('started', flush=True)\ntime.sleep(600)"
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_python, code, limits=Limits(timeout_s=1.5, cpu_s=2), isolation=isolation)
        seen = 0
        while not running.done() and not seen:
            seen = _sandbox_processes()
        result = running.result()
    assert seen > 0  # the probe sees a running sandbox ...
    assert _sandbox_processes() == 0  # ... and none is left once run_python returns
    assert result.timed_out and result.stdout == "started\n"
    assert "wall-clock" in result.error


def test_cpu_limit_stops_busy_program_before_wall_clock(isolation):
    result = run_python("while True:\n    pass", limits=Limits(timeout_s=5.0, cpu_s=1), isolation=isolation)
    assert result.timed_out and result.error_kind == "timeout"
    assert "CPU" in result.error


def test_environment_secrets_are_not_inherited(isolation, monkeypatch):
    monkeypatch.setenv("FASTSLOW_TEST_SECRET", SECRET)
    code = "import os\nprint(sorted(os.environ))\nprint(os.environ.get('FASTSLOW_TEST_SECRET'))"
    result = run_python(code, isolation=isolation)
    assert result.ok and SECRET not in result.stdout
    assert "FASTSLOW_TEST_SECRET" not in result.stdout
    parent = run_python("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())", isolation=isolation)
    assert SECRET not in parent.stdout and not parent.ok
    own_parent = run_python(f"print(open('/proc/{os.getpid()}/environ', 'rb').read())", isolation=isolation)
    assert SECRET not in own_parent.stdout and not own_parent.ok


# ----------------------------------------------------------------------------- each OS layer on its own

needs_namespaces = pytest.mark.skipif("namespaces" not in AVAILABLE, reason="needs root and working unshare")


@pytest.fixture
def world_writable():
    """A directory anyone may write to: only the read-only mounts protect it."""
    path = Path(tempfile.mkdtemp(prefix="fastslow-test-open-"))
    path.chmod(0o777)
    (path / "keep.txt").write_text("precious\n")
    (path / "keep.txt").chmod(0o666)
    yield path
    assert [p.name for p in path.iterdir()] == ["keep.txt"] and (path / "keep.txt").read_text() == "precious\n"
    shutil.rmtree(path)


@needs_namespaces
def test_namespaces_hold_without_the_audit_hook(planted, world_writable, monkeypatch):
    monkeypatch.setenv("FASTSLOW_TEST_SECRET", SECRET)

    def run(code):
        code = code.replace("{planted}", str(planted))
        return run_python(code, limits=FAST, isolation="namespaces", audit_hook=False)

    assert "Permission denied" in run("open('{planted}/keep.txt', 'w').write('pwned')").error  # runs as nobody
    assert "Read-only file system" in run(f"open('{world_writable}/keep.txt', 'w').write('pwned')").error
    assert "Read-only file system" in run(f"open('{world_writable}/new.txt', 'w')").error
    assert not run(f"import os\nos.remove('{world_writable}/keep.txt')").ok
    assert not run("import os\nos.remove('{planted}/keep.txt')").ok
    assert "unreachable" in run(HOSTILE["socket"][0]).error
    assert run("import os\nprint(os.getuid())").stdout.strip() == "65534"
    assert SECRET not in run("import os\nprint(dict(os.environ))").stdout
    assert not run(HOSTILE["subprocess"][0].replace("{planted}", str(planted))).ok
    # 16 processes at most (RLIMIT_NPROC for nobody), all gone when the run ends
    bomb = run("import os, time\nn = 0\nwhile True:\n    if os.fork() == 0:\n        time.sleep(60)\n    n += 1")
    assert not bomb.ok and "Resource temporarily unavailable" in bomb.error
    assert _sandbox_processes() == 0
    assert run("x = bytearray(10 * 1024**3)").error_kind == "memory"


# ----------------------------------------------------------------------------- through a verifier


@pytest.mark.parametrize("name", ["infinite loop", "fork bomb", "10 GB allocation", "socket", "overwrite a file",
                                  "delete a tree", "subprocess"])
def test_verifier_gives_zero_reward_and_feedback_for_hostile_code(name, planted, tmp_path):
    code, _ = HOSTILE[name]
    body = textwrap.indent(code.replace("{planted}", str(planted)), "    ")
    row = {"id": "evil", "code": f"def main_solution(x):\n{body}\n    return x\n", "input": {"x": 1}, "output": 1}
    data = tmp_path / "codeio.jsonl"
    data.write_text(json.dumps(row) + "\n")
    task = CodeIOTask(path=str(data), predict="input", timeout_s=1.0, val_fraction=0, test_fraction=0)
    (problem,) = task.problems("train", 1, seed=0)
    verdict = task.score(problem, 'I think x = 1 works.\nAnswer: {"x": 1}')
    assert verdict.reward == 0.0
    assert "failed" in verdict.feedback and "main_solution" in verdict.feedback


def test_verifier_cannot_leak_secrets_into_rewards(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSLOW_TEST_SECRET", SECRET)
    row = {"code": "import os\ndef main_solution(name):\n    return os.environ.get(name, 'none')\n",
           "input": {"name": "PATH"}, "output": SECRET}
    data = tmp_path / "codeio.jsonl"
    data.write_text(json.dumps(row) + "\n")
    task = CodeIOTask(path=str(data), predict="input", val_fraction=0, test_fraction=0)
    (problem,) = task.problems("train", 1, seed=0)
    verdict = task.score(problem, 'Answer: {"name": "FASTSLOW_TEST_SECRET"}')
    assert verdict.reward == 0.0 and "'none'" in verdict.feedback
