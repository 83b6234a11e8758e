"""Re-measures every number of issue 18 on the lent GPU in one run (for the lead; ~6 minutes on an H200):

    cd python && python3 tools/issue18_device.py --out "$OUT"

1. `python -m srlora_torch.bench` → OUT/gpu-h200.json (and bench/results/gpu-h200.json in this copy of the tree);
   its log → OUT/bench.log. The JSON is rewritten after each section, so a run cut short keeps what it measured.
2. The tests that need CUDA (compiled step vs eager over 300 steps, the recomposition graph, the golden cases on
   CUDA) → OUT/pytest-cuda.txt.
3. A summary of the goals on stdout: srloraCompiledOverPeftEager ≤ 0.25, srloraCompiledOverPeftCompiled ≤ 1.05,
   fractionOfCeilingLargeBatch ≥ 0.30, recompositionOverCompiledStep ≤ 1, telemetryOnOverOff ≥ 0.99, and which
   attention kernels the compiled large-batch step ran.

`--toy` runs the same on the CPU with a tiny model (numbers meaningless): it checks this script end to end.
Previous results (run 8) stay in bench/results/gpu-h200-run8.json.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.dirname(HERE)  # python/
ROOT = os.path.dirname(PY)
GOALS = [("srloraCompiledOverPeftEager", "<=", 0.25), ("srloraCompiledOverPeftCompiled", "<=", 1.05),
         ("fractionOfCeilingLargeBatch", ">=", 0.30), ("recompositionOverCompiledStep", "<=", 1.0),
         ("telemetryOnOverOff", ">=", 0.99)]
CUDA_TESTS = ["tests/test_recompose.py", "tests/test_conformance.py", "tests/test_compiled.py", "tests/test_snapshot.py",
              "tests/test_session.py", "tests/test_telemetry.py"]  # session: the snapshot after a recomposition on CUDA


def run(cmd, log_path, timeout):
    t = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run(cmd, cwd=PY, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    print(f"[{time.perf_counter() - t:.0f} s] {' '.join(cmd[2:])}: rc={rc}", flush=True)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--bench-timeout", type=int, default=360)
    ap.add_argument("--test-timeout", type=int, default=160)
    ap.add_argument("--big", action="store_true", help="then tools/issue18_big.py (batch 128: top kernels, candidate changes; ~4 min)")
    ap.add_argument("--big-variants", nargs="*", default=[], help="variants for --big (default: issue18_big.py's own)")
    ap.add_argument("--no-tests", action="store_true", help="skip the CUDA tests (to fit bench + --big in one 10-minute call)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    result = os.path.join(a.out, "gpu-h200.json" if not a.toy else "toy-bench.json")
    bench = [sys.executable, "-m", "srlora_torch.bench", "--out", result] + (["--toy", "--steps", "1"] if a.toy else [])
    run(bench, os.path.join(a.out, "bench.log"), a.bench_timeout)
    repo_copy = os.path.join(ROOT, "bench", "results", "gpu-h200.json")
    if not a.toy and os.path.exists(result) and os.path.abspath(result) != os.path.abspath(repo_copy):
        shutil.copyfile(result, repo_copy)
    tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_TESTS,
             "-k", "not trainer_compiles and not text_task" if not a.toy else "fixed_program or fused_gpu_kernels"]
    if not a.no_tests:
        run(tests, os.path.join(a.out, "pytest-cuda.txt"), a.test_timeout)

    d = json.load(open(result)) if os.path.exists(result) else {}
    print(json.dumps({"device": d.get("device"), "benchSeconds": d.get("benchSeconds")}))
    for key, op, goal in GOALS:
        v = d.get(key)
        met = None if v is None else (v <= goal if op == "<=" else v >= goal)
        print(f"{key} = {v} (goal {op} {goal}: {'met' if met else 'NOT met' if met is False else 'not measured'})")
    lb = d.get("largeBatch", {})
    print("telemetry:", json.dumps(d.get("telemetryCompiled")))
    print("recomposition in a run (ms), step in block (ms), synced ratio:", d.get("srlora", {}).get("recompositionCostInRunMs (blocks of consecutive steps with one full recomposition − without, medians of 10)"),
          d.get("srlora", {}).get("compiledStepInBlockMs"), d.get("recompositionSyncedOverCompiledStep"))
    print("largeBatch ms/step:", lb.get("msPerStep"), "fraction of ceiling:", lb.get("fractionOfCeiling"))
    print("GPU kernel ms:", d.get("gpuKernelMsPerStep"))
    print("kernel launches per call:", d.get("kernelLaunchesPerCall"))
    att = d.get("attentionKernels (ms, launches per step)", {})
    for k in ("srloraCompiledLargeBatch", "srloraCompiled", "srloraEager"):
        print(f"attention kernels, {k}:", json.dumps(att.get(k))[:600])
    print("sdpa:", json.dumps(d.get("sdpa (batch BIG: backend chosen per mask kind; dropout under graph capture)")))
    print("compiled step log:", (d.get("compiled", {}).get("srlora", {}).get("log") or [])[-3:])
    sr = d.get("srlora", {})
    print("recomposition ms (first, captured, steady):", sr.get("firstRecompositionMs"),
          sr.get("secondRecompositionMs (captured as a CUDA graph, then replayed)"), sr.get("fullRecompositionMs"),
          "captures:", sr.get("recompositionGraphCaptures"), "max preservation error:", sr.get("maxPreservationError"))
    print("recomposition host parts ms:", next((v for k, v in sr.items() if k.startswith("recompositionHostParts")), None))
    print("telemetry:", json.dumps(d.get("telemetryCompiled")))
    if not a.no_tests:
        tail = open(os.path.join(a.out, "pytest-cuda.txt")).read().strip().splitlines()[-3:]
        print("pytest:", " | ".join(tail))
    if a.big and not a.toy:
        big = os.path.join(a.out, "gpu-h200-batch128-variants.json")
        run([sys.executable, os.path.join(HERE, "issue18_big.py"), big, *a.big_variants], os.path.join(a.out, "big.log"), 330)
        for v, r in (json.load(open(big))["variants"] if os.path.exists(big) else {}).items():
            print(f"batch 128, {v}:", {k: r.get(k) for k in ("msPerStep", "fractionOfCeiling", "kernelMsPerStep", "error")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
