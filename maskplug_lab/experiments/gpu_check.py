"""The summary of ``scripts/gpu_check.sh``: the CUDA tests' outcomes (from
pytest's JUnit XML, with the fp32/fp16/bf16 losses the tests print) and the GPU
benchmark's ratios and masking cost, as one Markdown table; both are also
added to the benchmark's JSON.

    python -m maskplug_lab.experiments.gpu_check --junit XML --benchmark JSON
"""

import argparse
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List

import torch

HALF_PRECISION_LINE = re.compile(r"(\w+): valid loss fp32 ([\d.]+), fp16 ([\d.]+), bf16 ([\d.]+) bits")


def test_outcomes(junit: Path) -> List[Dict]:
    """One record per test case: name, outcome, seconds, and what it printed
    about fp16 and bf16 against fp32."""
    records = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[kind]
                message = (element.get("message") or "").splitlines()
                outcome += f": {message[0][:120]}" if message and kind != "skipped" else ""
        printed = "".join(out.text or "" for out in case.iter("system-out"))
        record = {"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0))}
        match = HALF_PRECISION_LINE.search(printed)
        if match:
            record.update(fp32_valid_bits=float(match.group(2)), fp16_valid_bits=float(match.group(3)),
                          bf16_valid_bits=float(match.group(4)))  # fmt: skip
        records.append(record)
    return records


def environment() -> Dict[str, str]:
    return {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "torch": torch.__version__, "cuda": str(torch.version.cuda)}  # fmt: skip


def markdown(tests: List[Dict], benchmark: Dict, env: Dict[str, str]) -> str:
    lines = [f"GPU check on {env['gpu']} (torch {env['torch']}, CUDA {env['cuda']})", "",
             "| CUDA test | outcome | s | fp32 / fp16 / bf16 valid bits |", "|---|---|---:|---|"]  # fmt: skip
    for record in tests:
        losses = ""
        if "fp16_valid_bits" in record:
            losses = f"{record['fp32_valid_bits']:.5f} / {record['fp16_valid_bits']:.5f} / {record['bf16_valid_bits']:.5f}"
        lines.append(f"| {record['test']} | {record['outcome']} | {record['seconds']:.1f} | {losses} |")
    passed = sum(r["outcome"] == "passed" for r in tests)
    lines += ["", f"{passed} of {len(tests)} CUDA tests passed.", ""]
    if benchmark:
        settings = benchmark["settings"]
        precision = "fp16" if settings["fp16"] else "fp32"
        lines += [
            f"Benchmark: encoder {settings['encoder']}, {settings['batch_size']} × {settings['tokens_per_sample']} "
            f"tokens, {precision}, {settings['device']}",
            "",
            "| arm | text tok/s | × stock | s/update | peak MiB | target met |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for arm, summary in benchmark["arms"].items():
            ratio = benchmark["ratios_to_stock"][arm]
            met = {True: "yes", False: "**no**"}.get(ratio.get("meets_target"), "")
            lines.append(f"| {arm} | {summary['text_tokens_per_s']:,.0f} | {ratio['text_tokens_per_s']:.3f} | "
                         f"{summary['s_per_update']:.3f} | {summary['peak_memory_mib']:,.0f} | {met} |")  # fmt: skip
        cost = benchmark["masking_cost"]
        stock = cost["stock_seconds"] * 1e6 / cost["sequences"]
        lines += ["", f"Masking cost on {cost['device']}, µs per {cost['length']}-token sequence: stock {stock:.1f} (CPU)"]
        for batch, seconds in sorted(cost["seconds_by_batch"].items(), key=lambda item: int(item[0])):
            ours = seconds * 1e6 / cost["sequences"]
            lines.append(f"- batches of {batch}: {ours:.2f} ({stock / ours:.0f}× cheaper)")
    else:
        lines.append("No benchmark: it failed or did not run (runs/gpu_check/benchmark.md says why).")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--junit", type=Path, required=True, help="pytest's --junitxml of the CUDA tests")
    parser.add_argument("--benchmark", type=Path, required=True, help="the GPU benchmark's JSON (updated in place)")
    args = parser.parse_args(argv)
    tests = test_outcomes(args.junit) if args.junit.exists() else []
    benchmark = json.loads(args.benchmark.read_text()) if args.benchmark.exists() else {}
    env = environment()
    if benchmark:
        args.benchmark.write_text(json.dumps(benchmark | {"environment": env, "cuda_tests": tests}, indent=2))
    print(markdown(tests, benchmark, env))


if __name__ == "__main__":
    main()
