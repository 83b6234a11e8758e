"""Faults of the machine under a live trainer (issue 13.5, 13.9): a full disk ends the trainer non-zero with "disk full:
FILE" on stderr — never a hang, even with a hub link retrying — and a run folder deleted or replaced under it fails the
run loudly, without re-creating a partial folder. Also the run id rule (COMMON.md)."""
import errno
import hashlib
import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT
from srlora_torch.session import Session, run_id_of
from test_controller import build, train
from test_session import events


class FullDisk:
    """A file object whose writes fail with ENOSPC after `ok` of them (as a full filesystem does)."""

    def __init__(self, fh, ok):
        self.fh, self.ok = fh, ok

    def write(self, text):
        if self.ok <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.ok -= 1
        return self.fh.write(text)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def until_stopped(s, model, opt, ctl, shape, g, each=lambda steps: None, limit=100) -> int:
    """Plain-loop steps through Session s until it stops the run (or `limit` steps); each(steps done) after every
    one. Returns the steps done."""
    steps = 0
    while not s.stop_reason and steps < limit:
        s.after_step(train(model, opt, ctl, shape, g, 1))
        steps += 1
        each(steps)
    return steps


def test_a_full_disk_fails_the_session_and_says_so(tmp_path, capsys):
    model, layers, opt, ctl, shape, g = build()
    s = Session(ctl, opt, str(tmp_path / "run"), total_steps=100, batch_size=16, env={}, handle_signals=False, importance_every=1)
    s.start()
    s.telemetry.min_interval_s = 0
    s.rec._fh = FullDisk(s.rec._fh, 6)
    steps = until_stopped(s, model, opt, ctl, shape, g)
    assert steps < 100 and s.stop_reason == f"disk full: {tmp_path / 'run' / 'events.jsonl'}"
    assert s.finish() == "failed"
    assert f"disk full: {tmp_path / 'run' / 'events.jsonl'}" in capsys.readouterr().err
    events(tmp_path / "run")  # what was written is whole lines, seq without gaps


SCRIPT = r"""
import errno, sys
from srlora_torch import client
real = client.EventRecorder.__init__
def init(self, *a, **k):
    real(self, *a, **k)
    fh, left = self._fh, [int(sys.argv[1])]
    class Full:
        def write(self, t):
            if left[0] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            left[0] -= 1
            return fh.write(t)
        def __getattr__(self, n):
            return getattr(fh, n)
    self._fh = Full()
client.EventRecorder.__init__ = init
from srlora_torch.train import main
sys.exit(main(sys.argv[2:]))
"""


def test_the_trainer_exits_non_zero_on_a_full_disk_with_a_hub_link_retrying(tmp_path):
    """The link's thread (here: retrying a hub that is not there) must not keep the process alive."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    cfg = tmp_path / "c.json"
    cfg.write_text('{"task": {"kind": "matrix"}, "steps": 100000, "checkpointEvery": 0}')
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python"), "SRLORA_RUN_DIR": str(run),
           "SRLORA_HUB_URL": f"ws://127.0.0.1:{port}", "SRLORA_TOKEN": "t"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, "40", "--config", str(cfg)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert f"disk full: {run / 'events.jsonl'}" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    events(run)


def _delete_after_3_steps(run, checkpoint_every, folder_check_s, replace=False):
    """A Session of the plain loop into `run` whose folder is deleted after step 3 (replace: and made again, as another
    run of the same name would); trains until the session stops it (at most 100 steps). Returns (session, steps)."""
    model, layers, opt, ctl, shape, g = build()
    s = Session(ctl, opt, str(run), total_steps=100, batch_size=16, env={}, handle_signals=False, checkpoint_every=checkpoint_every,
                save_checkpoint=lambda d: open(f"{d}/state.pt", "w").close(), on_finish=lambda: os.makedirs(run / "export"))
    s.folder_check_s = folder_check_s
    s.start()

    def delete(steps):
        if steps == 3:
            shutil.rmtree(run)
            if replace:
                run.mkdir()
    return s, until_stopped(s, model, opt, ctl, shape, g, delete)


def test_a_run_folder_deleted_under_a_live_trainer_fails_loudly_and_is_not_recreated(tmp_path, capsys):
    for replace in (False, True):
        run = tmp_path / f"run-{replace}"
        # the check before a checkpoint alone (the time cadence has its own test)
        s, steps = _delete_after_3_steps(run, checkpoint_every=5, folder_check_s=float("inf"), replace=replace)
        assert steps == 5, steps  # the checkpoint at step 5 noticed
        assert s.finish() == "failed"
        what = "replaced while it trained" if replace else "deleted while it trained; nothing was recorded"
        assert f"run {run.name}: its folder {run} was {what}" in capsys.readouterr().err
        assert os.listdir(run) == [] if replace else not run.exists()


def test_without_checkpoints_a_deleted_run_folder_is_noticed_on_a_time_cadence(tmp_path, capsys):
    """checkpoint_every 0: no checkpoint to check before, so the folder is checked every folder_check_s seconds (0 here:
    after every step) instead of only at the end (a trainer ran 45 minutes with its folder gone)."""
    run = tmp_path / "run"
    s, steps = _delete_after_3_steps(run, checkpoint_every=0, folder_check_s=0)
    assert steps == 4, steps  # the step after the deletion noticed, not the end of the run
    assert s.finish() == "failed"
    assert f"run {run.name}: its folder {run} was deleted while it trained; nothing was recorded" in capsys.readouterr().err
    assert not run.exists()


def test_run_ids_follow_the_shared_rule():
    h = lambda name: hashlib.sha256(name.encode()).hexdigest()[:8]  # noqa: E731
    assert run_id_of("/runs/20261128-demo") == "20261128-demo" and run_id_of("/runs/a.b:c_d-1/") == "a.b:c_d-1"
    assert run_id_of("/runs/my run") == f"my-run-{h('my run')}"
    assert run_id_of("/runs/-lead") == f"lead-{h('-lead')}"
    assert run_id_of("/runs/---") == f"run-{h('---')}"
    assert run_id_of("/runs/été 2026") == f"t-2026-{h('été 2026')}"
    assert run_id_of("/runs/a:b c") == f"a-b-c-{h('a:b c')}"  # ':' is kept only in names that are ids already
    long = "x" * 200
    assert run_id_of(f"/runs/{long}") == f"{'x' * 100}-{h(long)}"
    assert run_id_of("/runs/" + "y" * 128) == "y" * 128
    assert run_id_of("/runs/ab" + " " * 120 + "c") == f"ab-c-{h('ab' + ' ' * 120 + 'c')}"
    for name in ("my run", "-lead", "é", "x" * 300, "a b/", "..", "Ω-1"):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]*", run_id_of(name)) and len(run_id_of(name)) <= 128


def test_run_ids_match_the_shared_vectors():
    import json
    from conftest import VECTORS
    cases = json.load(open(os.path.join(VECTORS, "runid.json"), encoding="utf-8"))["cases"]
    assert len(cases) >= 5
    bad = [(c["name"], c["path"], run_id_of(c["path"]), c["id"]) for c in cases if run_id_of(c["path"]) != c["id"]]
    assert bad == []


def test_a_trainer_no_supervisor_launched_records_its_own_identity(tmp_path):
    """trainer.pid as src/runfolder/pidfile.ts reads it: this process's pid, start time, group and boot, selfStarted (a
    watcher records the run failed once that identity is gone, and never signals it); 0600."""
    import json
    import stat
    from srlora_torch.session import write_own_pid_file
    write_own_pid_file(str(tmp_path))
    rec = json.loads((tmp_path / "trainer.pid").read_text())
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    assert rec == {"pid": os.getpid(), "startTime": int(fields[19]), "pgid": os.getpgid(0),
                   "bootId": open("/proc/sys/kernel/random/boot_id").read().strip(), "selfStarted": True}
    assert stat.S_IMODE(os.stat(tmp_path / "trainer.pid").st_mode) == 0o600
