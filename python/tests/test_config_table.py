"""Bad configs (issue 13.14): every case of the shared table test/vectors/config/invalid.json through the PyTorch
trainer's entry point — refused before any work with one short line naming the field and the file, no traceback, no
run folder. In-process through train.main (each case is a SystemExit; any other exception fails the test), plus a few
through `python -m srlora_torch.train` for the exit status and stderr."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, VECTORS
from srlora_torch.runconfig import strip_jsonc
from srlora_torch.train import main

TABLE = json.load(open(os.path.join(VECTORS, "config", "invalid.json"), encoding="utf-8"))


def materialise(case, at):
    cfg = at / TABLE["configFile"]
    for name, content in case.get("files", {}).items():
        if isinstance(content, dict):
            (at / name).mkdir()
        else:
            (at / name).write_text(content)
    special = case.get("special")
    if special == "directory":
        cfg.mkdir()
    elif special == "nul-small":
        cfg.write_bytes(b"\x00" * 64)
    elif special == "nul-large":
        cfg.write_bytes(b"\x00" * (2 << 20))
    elif special is None:
        cfg.write_text(case["text"] if "text" in case else json.dumps(case["config"]), encoding="utf-8")
    return cfg


def check_line(case, line, cfg):
    assert "\n" not in line.strip() and "Traceback" not in line, line
    assert len(line) < 600, len(line)  # quoted values cut short, a bounded read
    assert str(cfg) in line, line  # the file
    if case["field"]:
        assert f": {case['field']}:" in line, line
    for name in case.get("names", []):
        assert name in line, line


def test_the_table_has_the_cases_the_issue_asks_for():
    cases = TABLE["cases"]
    assert len(cases) >= 40 and len({c["name"] for c in cases}) == len(cases)
    kinds = {c.get("special") for c in cases} | {"text" if "text" in c else None for c in cases}
    assert {"missing", "directory", "nul-small", "nul-large", "text"} <= kinds
    assert any("did you mean" not in c["name"] and c.get("names") for c in cases)


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_a_bad_config_is_one_line_naming_the_field(case, tmp_path, monkeypatch):
    cfg = materialise(case, tmp_path)
    run = tmp_path / "run"
    monkeypatch.setenv("SRLORA_RUN_DIR", str(run))
    monkeypatch.delenv("SRLORA_HUB_URL", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["--config", str(cfg)])
    assert isinstance(e.value.code, str), e.value.code  # a message, not a bare status
    check_line(case, e.value.code, cfg)
    assert not run.exists()


@pytest.mark.parametrize("name", ["fusionRatio above 1", "unknown field, a typo", "2 MiB of NUL bytes (a bounded read, a short message)"])
def test_through_the_command_line(name, tmp_path):
    case = next(c for c in TABLE["cases"] if c["name"] == name)
    cfg = materialise(case, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python"), "SRLORA_RUN_DIR": str(tmp_path / "run")}
    env.pop("SRLORA_HUB_URL", None)
    r = subprocess.run([sys.executable, "-m", "srlora_torch.train", "--config", str(cfg)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    check_line(case, lines[0], cfg)
    assert not (tmp_path / "run").exists()


def test_jsonc_comments_and_trailing_commas_keep_error_positions():
    text = '{\n  // a comment, with "quotes" and a comma,\n  "a": "x // not a comment", /* b,\n c */ "b": [1, 2,],\n}\n'
    clean, bad = strip_jsonc(text)
    assert bad is None and len(clean) == len(text) and clean.count("\n") == text.count("\n")
    assert json.loads(clean) == {"a": "x // not a comment", "b": [1, 2]}
    assert strip_jsonc('{"a": "\\" /* still a string"}')[0] == '{"a": "\\" /* still a string"}'
    assert strip_jsonc("[1, /* x */ ]")[0].replace(" ", "") == "[1]"


def test_a_run_folders_config_json_reads_back_for_resume(tmp_path):
    """config.json as train.py writes it (every field, null for unset optional ones) must validate again on --resume."""
    from srlora_torch.train import load_config
    cfg = load_config(None, {"steps": 7})
    (tmp_path / "config.json").write_text(json.dumps(cfg, indent=2))
    assert cfg["targets"] is None and cfg["name"] is None
    assert load_config(str(tmp_path / "config.json"), {}) == cfg
