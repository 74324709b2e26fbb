"""Is INT8 still the faster precision without AVX-512 VNNI (issue 19: AVX2-only CPUs)? The first-stage network alone,
FP32 against INT8, under OpenVINO with its oneDNN kernels capped to an instruction set (ONEDNN_MAX_CPU_ISA), each
in its own process, on this machine; onnxruntime uncapped beside it (it has no such switch).

    python -m lab.studies.isa_probe FP32.onnx INT8.onnx OUT.json
"""
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, time, statistics, numpy as np
from pathlib import Path
from sdk.backends import open_backend
b = open_backend(Path(sys.argv[1]), sys.argv[2], 2)
x = np.random.default_rng(0).standard_normal((1, b.meta.channels, *b.meta.input_hw)).astype(np.float32)
for _ in range(3):
    b.run(x)
t = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter(); b.run(x); t.append((time.perf_counter() - t0) * 1e3)
print(statistics.median(t))
"""


def p50(path: str, backend: str, isa: str = "", runs: int = 20) -> float:
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa) if isa else dict(os.environ)
    out = subprocess.run([sys.executable, "-c", CHILD, path, backend, str(runs)], env=env, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return round(float(out), 1)


def main(fp32: str, int8: str, out: Path) -> None:
    rows = []
    for isa in ("", "AVX512_CORE_VNNI", "AVX512_CORE", "AVX2"):
        rows.append({"runtime": "openvino", "isa_cap": isa or "none", "fp32_ms": p50(fp32, "openvino", isa),
                     "int8_ms": p50(int8, "openvino", isa)})
        print(rows[-1], flush=True)
    rows.append({"runtime": "onnxruntime", "isa_cap": "none", "fp32_ms": p50(fp32, "onnxruntime"),
                 "int8_ms": p50(int8, "onnxruntime")})
    print(rows[-1])
    out.write_text(json.dumps({"cpu": platform.processor() or platform.machine(), "threads": 2,
                               "when": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
