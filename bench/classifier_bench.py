"""Benchmark the classifier's inference paths on CLINC150.

    .venv/bin/python bench/classifier_bench.py results/classifier_bench.json

Measures, for a model fitted on the CLINC150 training set (151 classes):
  * single-message latency p50/p99: compiled fast path vs the scikit-learn
    pipeline (IntentClassifier.predict_proba on a one-element list);
  * batch throughput at batch size 32 for both;
  * resident memory added by loading the saved model artifact (measured in a
    fresh subprocess, so the training process's memory does not count).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from classifier.artifact import save_model  # noqa: E402
from classifier.calibration import ConfidenceCalibration  # noqa: E402
from classifier.datasets import load_clinc150  # noqa: E402
from classifier.fast import CompiledClassifier  # noqa: E402
from classifier.knowledge_base import Intent, KnowledgeBase  # noqa: E402
from classifier.model import IntentClassifier  # noqa: E402
from classifier.service import FaqModel  # noqa: E402
from classifier.thresholds import Thresholds  # noqa: E402

_RSS_PROBE = r"""
import json, sys
def rss_kib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
sys.path.insert(0, sys.argv[2])
from classifier.artifact import load_model
import numpy, scipy.sparse
before = rss_kib()
loaded = load_model(sys.argv[1])
loaded.compiled.predict_proba_one("warm up the model")
after = rss_kib()
print(json.dumps({"rss_before_kib": before, "rss_after_kib": after}))
"""


def percentiles(samples: list[float], cpu_samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1e3
    cpu = np.asarray(cpu_samples) * 1e3
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "mean_ms": float(arr.mean()),
        # CPU time of this thread only: on a shared machine wall-clock p99 is
        # dominated by preemption, CPU time shows the code's own cost.
        "cpu_p50_ms": float(np.percentile(cpu, 50)),
        "cpu_p99_ms": float(np.percentile(cpu, 99)),
        "n": len(samples),
    }


def time_single(fn, texts: list[str], repeats: int = 1) -> dict[str, float]:
    for text in texts[:50]:
        fn(text)
    samples = []
    cpu_samples = []
    gc.disable()  # a collection landing inside one call would dominate p99
    try:
        for _ in range(repeats):
            for text in texts:
                start_cpu = time.thread_time()
                start = time.perf_counter()
                fn(text)
                samples.append(time.perf_counter() - start)
                cpu_samples.append(time.thread_time() - start_cpu)
    finally:
        gc.enable()
    return percentiles(samples, cpu_samples)


def time_batches(fn, texts: list[str], batch: int, min_seconds: float = 2.0) -> dict[str, float]:
    batches = [texts[i : i + batch] for i in range(0, len(texts) - batch + 1, batch)]
    fn(batches[0])
    done = 0
    start = time.perf_counter()
    while True:
        for b in batches:
            fn(b)
            done += len(b)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    return {"messages_per_second": done / elapsed, "batch": batch, "messages": done}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("out", type=Path, help="where to write the JSON results")
    parser.add_argument("--datasets-dir", type=Path, default=None)
    parser.add_argument("--sklearn-samples", type=int, default=1000,
                        help="single-message calls timed for the slow scikit-learn path")
    args = parser.parse_args(argv)

    data = load_clinc150(args.datasets_dir)
    texts, labels = zip(*data.train)
    print(f"fitting IntentClassifier on {len(texts)} CLINC150 examples …", flush=True)
    started = time.perf_counter()
    model = IntentClassifier().fit(list(texts), list(labels))
    fit_seconds = time.perf_counter() - started
    # `faq train` ships a confidence calibration, so the served path reads
    # confidence from it; its values do not change the cost.
    compiled = CompiledClassifier.from_fitted(model, ConfidenceCalibration(1.0, 1.0, 1.0, 1.0, 0.0))
    queries = [t for t, _ in data.test]

    # A knowledge base whose intents are the CLINC classes, so the service
    # layer (FaqModel) can be timed too.
    kb = KnowledgeBase(
        tuple(
            Intent(c, ("x", "y", "z"), answer=f"answer {c}", out_of_scope=(c == "oos"))
            for c in compiled.classes_
        )
    )
    faq = FaqModel(compiled, kb, Thresholds(0.5))

    print("timing single-message latency …", flush=True)
    results: dict[str, object] = {
        "dataset": "clinc150",
        "n_classes": int(len(compiled.classes_)),
        "n_features": compiled.n_features,
        "fit_seconds": round(fit_seconds, 1),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
        "single": {
            "fast_predict_proba_one": time_single(compiled.predict_proba_one, queries),
            "faq_model_predict": time_single(faq.predict, queries),
            "sklearn_predict_proba": time_single(
                lambda t: model.predict_proba([t]), queries[: args.sklearn_samples]
            ),
        },
    }
    print("timing batch throughput …", flush=True)
    results["batch32"] = {
        "fast_predict_proba_many": time_batches(compiled.predict_proba_many, queries, 32),
        "faq_model_predict_many": time_batches(faq.predict_many, queries, 32),
        "sklearn_predict_proba": time_batches(model.predict_proba, queries, 32),
    }

    print("measuring memory of the loaded artifact …", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(compiled, kb, tmp, "bench", Thresholds(0.5))
        size = sum(p.stat().st_size for p in path.iterdir())
        probe = subprocess.run(
            [sys.executable, "-c", _RSS_PROBE, str(path), str(ROOT)],
            capture_output=True, text=True, check=True,
        )
        rss = json.loads(probe.stdout)
        started = time.perf_counter()
        from classifier.artifact import load_model

        load_model(path)
        load_seconds = time.perf_counter() - started
    results["artifact"] = {
        "bytes_on_disk": size,
        "load_seconds": round(load_seconds, 3),
        "rss_added_mib": round((rss["rss_after_kib"] - rss["rss_before_kib"]) / 1024, 1),
        "rss_total_mib": round(rss["rss_after_kib"] / 1024, 1),
    }

    single = results["single"]
    batch = results["batch32"]
    rows = [
        ("fast path (CompiledClassifier)", single["fast_predict_proba_one"], batch["fast_predict_proba_many"]),
        ("FaqModel (fast path + KB)", single["faq_model_predict"], batch["faq_model_predict_many"]),
        ("scikit-learn pipeline", single["sklearn_predict_proba"], batch["sklearn_predict_proba"]),
    ]
    print()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    print(f"{'path':<32} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'cpu p99':>8} {'batch32 msg/s':>14}")
    for name, s, b in rows:
        print(
            f"{name:<32} {s['p50_ms']:8.3f} {s['p99_ms']:8.3f} {s['cpu_p50_ms']:8.3f} "
            f"{s['cpu_p99_ms']:8.3f} {b['messages_per_second']:14.0f}"
        )
    print(f"load average: start {results['machine']['load_average_at_start']}, "
          f"end {results['machine']['load_average_at_end']} on {os.cpu_count()} CPUs")
    art = results["artifact"]
    print(
        f"\nartifact: {art['bytes_on_disk'] / 2**20:.1f} MiB on disk, loads in "
        f"{art['load_seconds']:.2f} s, +{art['rss_added_mib']} MiB RSS "
        f"({art['rss_total_mib']} MiB process total)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
