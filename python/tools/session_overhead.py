"""What the Session adds per step around the telemetry the GPU bench times (the command queue, the eval and
checkpoint schedule): both called with nothing due, on the CPU. Run from python/ with PYTHONPATH=.:tests."""
import tempfile
import time

from srlora_torch.session import Session
from test_controller import build

model, layers, opt, ctl, shape, g = build()
s = Session(ctl, opt, tempfile.mkdtemp(), total_steps=10 ** 9, batch_size=16, env={}, importance_every=10 ** 9, eval_every=10 ** 9)
s.start()
n = 200_000
t = time.perf_counter()
for _ in range(n):
    s.telemetry.after_step(None)
telemetry_us = (time.perf_counter() - t) / n * 1e6
t = time.perf_counter()
for _ in range(n):
    s.after_step(None)
session_us = (time.perf_counter() - t) / n * 1e6
print(f"telemetry.after_step {telemetry_us:.2f} µs, session.after_step {session_us:.2f} µs: the session's own {session_us - telemetry_us:.2f} µs per step")
s.finish()
