"""Protocol 1.3 `evaluating`: a real model's eval set can take a minute, which must not look like a stuck run. Every eval
is announced first (same step, before the eval's own message, after the rows before it), as the built-in trainer
does (test/evaluating.test.ts holds it to the same)."""
from srlora_torch.session import Session
from test_controller import build, train
from test_session import events


def test_every_eval_is_announced_before_it_runs(tmp_path):
    model, layers, opt, ctl, shape, g = build()
    seen_at_eval = []

    def evaluate():  # what the record holds while the eval runs: the announcement is already written and streamed
        seen_at_eval.append(ctl.step)
        return {"loss": 0.5, "metrics": {"accuracy": 0.75}}

    s = Session(ctl, opt, str(tmp_path / "run"), total_steps=12, batch_size=16, env={}, handle_signals=False,
                eval_every=5, evaluate=evaluate)
    s.start()
    while ctl.step < 12:
        s.after_step(train(model, opt, ctl, shape, g, 1))
    assert s.finish() == "finished"
    msgs = events(tmp_path / "run")
    evals = [i for i, m in enumerate(msgs) if m["type"] == "eval"]
    assert [msgs[i]["step"] for i in evals] == [0, 5, 10, 12] == seen_at_eval
    for i in evals:
        assert msgs[i - 1]["type"] == "evaluating" and msgs[i - 1]["step"] == msgs[i]["step"], msgs[i - 1]
        rows = [r["step"] for m in msgs[:i] if m["type"] == "metrics" for r in m["rows"]]
        assert rows == list(range(1, msgs[i]["step"] + 1)), "the rows before the eval are out before it is announced"
    assert sum(m["type"] == "evaluating" for m in msgs) == len(evals)
