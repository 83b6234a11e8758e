"""The wheel users install into their own environment: built from python/pyproject.toml, it holds every module and
schema of srlora_torch (the same files the .vsix ships), imports and trains from the wheel alone, and declares as
lower bounds the versions CI tests."""
import os
import re
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT

PKG = os.path.join(ROOT, "python", "srlora_torch")


def pins():
    out = {}
    for line in open(os.path.join(ROOT, "python", "requirements-ci.txt"), encoding="utf-8"):
        m = re.match(r"([A-Za-z0-9_.-]+)==([\w.]+)", line.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_the_wheel_holds_the_package_and_runs_from_it(tmp_path):
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(os.path.join(ROOT, "python"), src, ignore=shutil.ignore_patterns("__pycache__", "tests", "tools", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)], check=True, cwd=tmp_path, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    [wheel] = os.listdir(tmp_path / "dist")
    assert wheel.startswith("srlora_torch-0.1.0-py3-none-any")
    z = zipfile.ZipFile(tmp_path / "dist" / wheel)
    names = set(z.namelist())
    shipped = {f"srlora_torch/{f}" for f in os.listdir(PKG) if f.endswith((".py", ".json"))}
    assert shipped <= names, sorted(shipped - names)
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    meta = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = dict(re.findall(r"^Requires-Dist: ([A-Za-z0-9_-]+)>=([\w.]+)", meta, re.M))
    pinned = pins()
    # each declared lower bound is the version CI tests (a bound nobody tests would be a guess)
    for name, low in requires.items():
        assert pinned.get(name.lower()) == low or pinned.get(name.lower(), "").startswith(low + "."), (name, low, pinned.get(name.lower()))
    assert {"torch", "transformers", "peft"} <= {n.lower() for n in requires}
    # imported from the unpacked wheel alone (not this checkout), it trains a short run
    site = tmp_path / "site"
    z.extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    (tmp_path / "m.srlora.json").write_text('{"task": {"kind": "matrix"}, "steps": 3, "method": "lora", "checkpointEvery": 0}')
    code = ("import srlora_torch, srlora_torch.train as t, sys; assert srlora_torch.__file__.startswith(sys.argv[1]), srlora_torch.__file__;"
            "sys.exit(t.main(['--config', 'm.srlora.json', '--runs-dir', sys.argv[2]]))")
    subprocess.run([sys.executable, "-c", code, str(site), str(tmp_path / "runs")], check=True, cwd=tmp_path, env=env, timeout=120)
    [run] = os.listdir(tmp_path / "runs")
    assert '"finished"' in (tmp_path / "runs" / run / "events.jsonl").read_text().splitlines()[-1]
