"""The hub link without optional packages (issue 12.5): with jsonschema not importable the link still connects,
streams every line of events.jsonl, takes commands and acknowledges them. A stand-in hub (websockets) plays the hub's
side of docs/protocol.md; validation of what the trainer sends is the hub's job, and the tests' (check=True)."""
import asyncio
import json
import sys
import threading
import time

import pytest
import websockets

from srlora_torch.session import Session
from test_controller import build, train
from test_session import strict


class StandInHub:
    """Accepts one trainer: welcome {received: 0}, stores frames, sends the commands it is given after the hello."""

    def __init__(self, commands):
        self.frames, self.commands, self.headers = [], commands, None
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self):
        async def handler(ws):
            self.headers = dict(ws.request.headers)
            hello = strict(await ws.recv())
            self.frames.append(hello)
            env = {"v": 1, "runId": hello["runId"], "time": 0}
            await ws.send(json.dumps({**env, "type": "welcome", "seq": 1, "protocol": {"major": 1, "minor": 1}, "received": 0}))
            for i, body in enumerate(self.commands):
                await ws.send(json.dumps({**env, "type": "command", "seq": 2 + i, "id": f"c{i}", "command": body}))
            await ws.send("not json {")  # a bad frame is logged and ignored, not fatal
            async for raw in ws:
                m = strict(raw)
                self.frames.append(m)
                await ws.send(json.dumps({**env, "type": "received", "seq": 99, "received": m["seq"]}))

        async with websockets.serve(handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await asyncio.Future()


@pytest.fixture
def no_jsonschema(monkeypatch):
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # `import jsonschema` raises ImportError
    with pytest.raises(ImportError):
        import jsonschema  # noqa: F401


def test_the_link_connects_streams_and_obeys_without_jsonschema(tmp_path, no_jsonschema):
    hub = StandInHub([{"kind": "set", "fusionRatio": 0.25}, {"kind": "set", "fusionRatio": 7}, {"kind": "stop"}])
    model, layers, opt, ctl, shape, g = build()
    s = Session(ctl, opt, str(tmp_path / "run"), total_steps=100, batch_size=16, env={"SRLORA_HUB_URL": f"ws://127.0.0.1:{hub.port}",
                "SRLORA_TOKEN": "tok"}, handle_signals=False)
    s.start()
    deadline = time.time() + 60
    while not s.stop_reason and time.time() < deadline:
        s.after_step(train(model, opt, ctl, shape, g, 1))
    assert s.stop_reason == "stopped by the user"
    assert s.finish() == "stopped"
    lines = [strict(l) for l in open(tmp_path / "run" / "events.jsonl")]
    assert hub.headers["authorization"] == "Bearer tok"
    assert [m["seq"] for m in hub.frames] == [m["seq"] for m in lines]  # every line reached the hub, in order
    acks = {m["commandId"]: m for m in lines if m["type"] == "ack" and m["status"] != "received"}
    assert acks["c0"]["status"] == "applied" and acks["c0"]["settings"]["fusionRatio"] == 0.25
    assert acks["c0"]["settings"]["minSlotAge"] == ctl.min_slot_age
    assert acks["c1"]["status"] == "rejected" and "/fusionRatio" in acks["c1"]["reason"]
    assert lines[-1]["state"] == "stopped"


def test_validation_needs_no_optional_package(no_jsonschema):
    from srlora_torch.protocol import validate, validate_command
    assert validate_command({"kind": "set", "fusionRatio": 2}) == "command /command/fusionRatio: must be ≤ 1, got 2"
    assert validate_command({"kind": "set", "fusionRatoi": 0.5}).endswith("/command/fusionRatoi: unknown field (did you mean fusionRatio?)")
    assert validate({"v": 1, "type": "received", "runId": "r", "seq": 1, "time": 0, "received": -1})


def test_our_validator_agrees_with_jsonschema_on_every_protocol_vector():
    jsonschema = pytest.importorskip("jsonschema")
    import os

    from conftest import VECTORS
    from srlora_torch.protocol import _SCHEMA, HUB_TYPES, TRAINER_TYPES, validate
    n = 0
    for kind in ("valid", "invalid"):
        d = os.path.join(VECTORS, "protocol", kind)
        for f in sorted(os.listdir(d)):
            msg = json.load(open(os.path.join(d, f)))
            t = msg.get("type") if isinstance(msg, dict) else None
            if t in TRAINER_TYPES or t in HUB_TYPES:
                theirs = jsonschema.Draft7Validator({"$defs": _SCHEMA["$defs"], "$ref": f"#/$defs/{t}"}).is_valid(msg)
                ours = validate(msg) is None
                assert ours == theirs or (theirs and not ours and kind == "invalid"), f  # semantic checks reject more
                n += 1
    assert n > 40
