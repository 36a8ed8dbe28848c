"""A full disk, for real: a tmpfs of a few MB (tests/clirun.on_a_small_disk). Every write that fails says "no space
left on the device" in one line naming the path, and what was written before stays as it was."""

import json

from clirun import on_a_small_disk, tiny_run

RUN = """
import json, os, subprocess, sys, yaml
from pathlib import Path
disk, data = Path(sys.argv[1]), json.loads(sys.argv[2])
data["output_dir"] = str(disk / "runs")
(disk.parent / "config.yaml").write_text(yaml.safe_dump(data))
result = subprocess.run([sys.executable, "-m", "fastslow", "run", str(disk.parent / "config.yaml")],
                        capture_output=True, text=True)
checkpoints = disk / "runs" / "r" / "checkpoints"
from fastslow.checkpoint import latest_checkpoint, verify
print(json.dumps({"code": result.returncode, "stderr": result.stderr, "disk": str(disk),
                  "checkpoints": sorted(p.name for p in checkpoints.iterdir()),
                  "latest": latest_checkpoint(checkpoints).name, "intact": verify(checkpoints / "step-000001"),
                  "lock": (disk / "runs" / "r" / ".lock").exists(),
                  "rows": [json.loads(line)["step"] for line in (disk / "runs" / "r" / "metrics.jsonl").open()]}))
"""


def test_a_full_disk_during_a_checkpoint_says_so_and_keeps_the_earlier_checkpoint(tmp_path, tiny_model_path):
    """A checkpoint of the tiny model is 12 MB (weights 4, optimizer 8): on 20 MB the second one's optimizer state
    (torch.save, whose own message was "[enforce fail at inline_container.cc:672] unexpected pos") finds no room."""
    data = tiny_run(tmp_path, tiny_model_path, loop={"steps": 3, "steps_per_cycle": 1, "problems_per_step": 2,
                                                     "rollouts_per_problem": 2, "population_size": 1})
    result = on_a_small_disk(tmp_path, 20, RUN, json.dumps(data))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    stderr = seen["stderr"]
    assert seen["code"] == 2 and "Traceback" not in stderr and "enforce fail" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last == (f"error: {seen['disk']}/runs/r/checkpoints: cannot write checkpoint step-000002 (no space left on "
                    "the device); step-000001 is intact (resume with --resume)"), stderr
    assert seen["checkpoints"] == ["LATEST", "step-000001"]  # no half-written step-000002, no .tmp-step-* folder
    assert seen["latest"] == "step-000001" and seen["intact"] is None and not seen["lock"]
    assert seen["rows"] == [0, 1, 2]


APPEND_AND_REPLACE = """
import json, os, sys
from pathlib import Path
from fastslow.checkpoint import write_text_atomic
from fastslow.rundir import append_durably
disk = Path(sys.argv[1])
(disk / "metrics.jsonl").write_text('{"step": 0}\\n')
(disk / "cycle-0.json").write_text('{"cycle": 0}')
fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
try:  # fill the disk to its last byte
    while os.write(fd, b"x" * 4096):
        pass
except OSError:
    pass
os.close(fd)
errors = []
for attempt in (lambda: append_durably(disk / "metrics.jsonl", b'{"step": 1, "pad": "' + b"y" * 65536 + b'"}\\n'),
                lambda: write_text_atomic(disk / "cycle-0.json", json.dumps({"cycle": 0, "pad": "z" * 65536}))):
    try:
        attempt()
        errors.append(None)
    except OSError as exc:
        errors.append([exc.filename, exc.strerror])
print(json.dumps({"errors": errors, "metrics": (disk / "metrics.jsonl").read_text(),
                  "population": (disk / "cycle-0.json").read_text(), "files": sorted(os.listdir(disk))}))
"""


def test_metrics_and_population_writes_on_a_full_disk_name_the_file_and_leave_it_as_it_was(tmp_path):
    result = on_a_small_disk(tmp_path, 1, APPEND_AND_REPLACE)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    disk = str(tmp_path / "small-disk")
    assert seen["errors"] == [[f"{disk}/metrics.jsonl", "no space left on the device"],
                              [f"{disk}/cycle-0.json", "no space left on the device"]]
    assert seen["metrics"] == '{"step": 0}\n'  # no half row for --resume to choke on
    assert seen["population"] == '{"cycle": 0}'
    assert seen["files"] == ["cycle-0.json", "filler", "metrics.jsonl"]  # no .cycle-0.json.tmp left


EXPORT = """
import json, os, subprocess, sys
from pathlib import Path
disk, run_dir = Path(sys.argv[1]), sys.argv[2]
result = subprocess.run([sys.executable, "-m", "fastslow", "export", run_dir, str(disk / "exported")],
                        capture_output=True, text=True)
print(json.dumps({"code": result.returncode, "stderr": result.stderr, "files": sorted(os.listdir(disk))}))
"""


def test_an_export_onto_a_full_disk_is_one_line_and_writes_nothing(tmp_path, tiny_model_path):
    from test_export import make_run  # a run directory holding the tiny model's checkpoint (4 MB of weights)

    run_dir, _ = make_run(tmp_path, tiny_model_path, lora=False)
    result = on_a_small_disk(tmp_path, 2, EXPORT, run_dir)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    disk = tmp_path / "small-disk"
    assert seen["code"] == 2 and "Traceback" not in seen["stderr"], seen["stderr"]
    assert seen["stderr"].strip() == (f"error: {disk}/exported: cannot export (no space left on the device); nothing "
                                      "was written")
    assert seen["files"] == []  # no half-written model, no temporary folder
