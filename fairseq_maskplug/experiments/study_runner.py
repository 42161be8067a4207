"""Running the study: its data and genre task, the arm-seed jobs (one CPU
thread each, ``jobs`` at a time, finished ones skipped, killed ones resumed)
with a progress line per arm-seed, the mechanisms re-measured on its
checkpoints, and the report (tables, verdicts, plots) in ``OUT``."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..corpus.genres import write_genre_task
from ..corpus.prepare import PrepareOptions, prepare_corpus, read_manifest
from ..corpus.sources import PACKAGED_BROWN
from .configurations import STUDY_VOCABULARY
from .study import ARM_BY_NAME, PACKAGE_DIR, StudySettings, arm_dir, parse_log
from .study_report import load_results, markdown, plot_curves, plot_probes, summarise

# relative cost of an arm-seed (for the ETA): fully-explored at equal updates trains on K copies
COST = {"fully_explored": 6.0, "mapnet": 1.3, "mapnet_reference": 1.3, "mae_lm": 1.2, "mae_lm_decoder4": 1.6,
        "cosine_mae_lm": 1.6, "fully_explored_mae_lm": 1.6}  # fmt: skip


def ensure_data(data: Path, quick: bool, vocabulary: int = STUDY_VOCABULARY) -> Path:
    """The study's corpus: Brown at ``vocabulary`` pieces with the POS side
    input, prepared when missing (quick: the first 60 documents, 1,000 pieces)."""
    if (data / "pos" / "dict.txt").exists():
        return data
    vocabulary = 1000 if quick else vocabulary
    print(f"==> preparing {data} from {PACKAGED_BROWN} ({vocabulary} pieces, POS side input)", flush=True)
    prepare_corpus(PrepareOptions(input=str(PACKAGED_BROWN), out=str(data), vocab_size=vocabulary, pos=True,
                                  max_documents=60 if quick else None, workers=2))  # fmt: skip
    return data


def ensure_genre_task(settings: StudySettings, quick: bool) -> Tuple[str, float]:
    path = Path(settings.out) / "genre"
    info = path / "task.json"
    if not info.exists():
        task = write_genre_task(settings.data, str(path), max_pieces=settings.config.tokens_per_sample - 2,
                                train_examples=300 if quick else 3000)  # fmt: skip
        info.write_text(json.dumps(dataclasses.asdict(task), indent=2))
    return str(path), json.loads(info.read_text())["majority_share"]


def progress(arm: str, seed: int, settings: StudySettings, started: float) -> str:
    log = arm_dir(settings, arm, seed) / "train.log"
    train, _ = parse_log(log) if log.exists() else ([], [])
    if not train:
        return f"{arm} seed {seed}: starting"
    last = train[-1]
    done, total = int(last["num_updates"]), settings.config.updates
    elapsed = time.time() - started
    eta = elapsed / max(done, 1) * (total - done)
    return f"{arm} seed {seed}: update {done}/{total}, train loss {last['loss']} bits, {elapsed:.0f} s, ETA {eta:.0f} s"


def run_jobs(jobs: List[Tuple[str, int]], settings: StudySettings, parallel: int,
             deadline: Optional[float] = None) -> Dict[str, List[Tuple[str, int]]]:  # fmt: skip
    """Run the arm-seed jobs, ``parallel`` at a time, printing a progress line
    per running job every half minute and one when each ends. ``deadline``
    (a ``time.time()``): jobs still running then are stopped (with their
    fairseq-train) and jobs not started are dropped. Returns the jobs that
    "failed" (their log named) and those "stopped" or never started."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(PACKAGE_DIR.parent))
    settings_json = dataclasses.asdict(settings)
    total_cost = sum(COST.get(arm, 1.0) for arm, _ in jobs)
    pending, running, done_cost, study_start, last_report = list(jobs), {}, 0.0, time.time(), 0.0
    outcome: Dict[str, List[Tuple[str, int]]] = {"failed": [], "stopped": []}
    while pending or running:
        if deadline is not None and time.time() > deadline:
            for (arm, seed), (process, _, log) in running.items():
                os.killpg(process.pid, signal.SIGTERM)  # the job and its fairseq-train (one process group)
                process.wait()
                log.close()
                print(f"stopped {arm} seed {seed}: the time limit was reached", flush=True)
            outcome["stopped"] += list(running) + pending
            break
        while pending and len(running) < parallel:
            arm, seed = pending.pop(0)
            job = json.dumps({"arm": arm, "seed": seed, "settings": settings_json})
            arm_dir(settings, arm, seed).mkdir(parents=True, exist_ok=True)
            log = open(arm_dir(settings, arm, seed) / "job.log", "a")
            process = subprocess.Popen([sys.executable, "-m", "fairseq_maskplug.experiments.study", job], env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            running[(arm, seed)] = (process, time.time(), log)
        time.sleep(2)
        for (arm, seed), (process, _, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[(arm, seed)]
            if process.returncode != 0:
                print(f"failed {arm} seed {seed} (exit {process.returncode}); see {log.name}", flush=True)
                outcome["failed"].append((arm, seed))
                continue
            done_cost += COST.get(arm, 1.0)
            result = json.loads((arm_dir(settings, arm, seed) / "result.json").read_text())
            elapsed = time.time() - study_start
            eta = elapsed / done_cost * (total_cost - done_cost)
            scores = result["final_scores"]
            print(f"done {arm} seed {seed}: loss at <mask> {result['final_at_mask_bits']:.4f} bits (train unigram "
                  f"{scores['unigram_at_mask_bits']:.4f}), trained "
                  f"{result['train_seconds']:.0f} s, evaluated {result['evaluation_seconds']:.0f} s | study "
                  f"{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min", flush=True)  # fmt: skip
        if time.time() - last_report > 30:
            last_report = time.time()
            for (arm, seed), (_, started, _) in running.items():
                print("  " + progress(arm, seed, settings, started), flush=True)
    return outcome


def mechanisms(settings: StudySettings, out: Path) -> Dict[str, dict]:
    """Each paper's mechanism on each arm's lowest-seed checkpoint still there: fully-explored against
    random_k with pure <mask> corruption and with 80/10/10, and the Hamming
    curve (random arm); MAPNet's estimators against the uniform-mask gradient
    (both MAPNet arms); effective rank, MAE-LM against RoBERTa; PTW's per-tag
    losses, bias-corrected, early and late. What OUT/mechanisms already holds
    is read back, checkpoints or not (a study continued from result.json files)."""
    found = {}
    scripts, env = PACKAGE_DIR.parent / "scripts", dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent))
    target = out / "mechanisms"
    target.mkdir(exist_ok=True)

    def checkpoint(arm):  # the lowest seed whose checkpoint is still there (a study continued across machines)
        for seed_dir in sorted((out / "runs" / arm).glob("seed*"), key=lambda p: int(p.name[4:])):
            path = seed_dir / "checkpoints" / "checkpoint_last.pt"
            if path.exists():
                return str(path)
        return None

    def measure(name, command):
        if not (target / f"{name}.json").exists():
            subprocess.run([sys.executable, *command, "--json", str(target / f"{name}.json")], env=env, check=True,
                           capture_output=True)  # fmt: skip
        found[name] = json.loads((target / f"{name}.json").read_text())

    variance = [str(scripts / "measure_mask_variance.py"), "--data", settings.data, "--draws", "32", "--batch-size", "16"]
    if checkpoint("random"):
        for corruption in ("mask_only", "80_10_10"):
            measure(f"fully_explored_{corruption}", variance + ["--checkpoint", checkpoint("random"), "--strategies",
                    "random,random_k,fully_explored", "--corruption", corruption, "--hamming-curve"])  # fmt: skip
    for arm in ("mapnet", "mapnet_reference"):
        if checkpoint(arm):
            measure(arm, variance + ["--checkpoint", checkpoint(arm), "--strategies", "random,mapnet"])
    encoders = [checkpoint(arm) for arm in ("random", "mae_lm", "mae_lm_decoder4") if checkpoint(arm)]
    if checkpoint("random") and len(encoders) > 1:
        measure("effective_rank", [str(scripts / "effective_rank.py"), "--data", settings.data,
                                   *[flag for path in encoders for flag in ("--checkpoint", path)]])  # fmt: skip
    if checkpoint("pos"):
        found["pos_losses"] = pos_losses(Path(checkpoint("pos")).parent)
        (target / "pos_losses.json").write_text(json.dumps(found["pos_losses"], indent=2))
    for path in sorted(target.glob("*.json")):
        found.setdefault(path.stem, json.loads(path.read_text()))
    return found


def pos_losses(checkpoints: Path) -> Dict[str, Dict[str, float]]:
    """Bias-corrected running loss per tag (bits) at the first interval
    checkpoint and the last: s / (1 − μ^n), n the updates that saw the tag."""
    import torch

    paths = sorted(checkpoints.glob("checkpoint_*_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))
    found = {}
    for label, path in (("early", paths[0]), ("late", paths[-1])):
        state = torch.load(path, map_location="cpu", weights_only=False)
        momentum = state["cfg"]["task"]["pos_momentum"]
        tracker = state["task_state"]["pos_running_loss"]
        corrected = tracker["running"] / (1 - momentum ** tracker["observations"]).clamp(min=1e-12)
        updates = state["optimizer_history"][-1]["num_updates"]
        found[f"{label} (update {updates})"] = {tag: round(float(v) / math.log(2), 3)
                                                for tag, v in zip(state["task_state"]["pos_tags"], corrected)}  # fmt: skip
    return found


def probe_baselines(settings: StudySettings, out: Path, results: Dict[str, List[dict]]) -> Dict:
    """The POS probe's baselines: majority tag, each piece's majority tag and a
    randomly initialised encoder, built like any finished arm-seed whose
    checkpoint is still there; without one, the last report's."""
    from ..diagnostics.probes import random_init_probe

    checkpoints = [arm_dir(settings, arm, r["seed"]) / "checkpoints" / "checkpoint_last.pt"
                   for arm, seeds in results.items() for r in seeds]  # fmt: skip
    existing = [path for path in checkpoints if path.exists()]
    if existing:
        probe = random_init_probe(str(existing[0]), settings.data, settings.probe_tokens)
        return {"majority": probe.majority, "piece_majority": probe.piece_majority, "random_init": probe.layer_accuracy}
    if (out / "study.json").exists():
        return json.loads((out / "study.json").read_text())["baselines"]
    raise SystemExit(f"{out}: no arm-seed checkpoint left to build the probe's random-encoder baseline from, "
                     "and no earlier study.json: copy docs/study/study.json there too")  # fmt: skip


def report(settings: StudySettings, out: Path, genre_majority, found_mechanisms: Dict) -> str:
    """Write OUT/study.json, OUT/study.md, OUT/curves.png and OUT/probes.png; return the Markdown."""
    results = load_results(out, list(ARM_BY_NAME))
    # every arm is scored on the same <mask> positions, so on the same reference
    unigram = next(iter(results.values()))[0]["final_scores"]["unigram_at_mask_bits"]
    summary = summarise(results)
    baselines = probe_baselines(settings, out, results)
    config = settings.config
    title = (f"STUDY: {config.encoder.layers} x {config.encoder.dim} encoder, {config.batch_size} x "
             f"{config.tokens_per_sample} tokens, {config.updates} updates, lr {config.optimizer.lr}")  # fmt: skip
    plot_curves(results, unigram, out / "curves.png", title)
    plot_probes(summary, baselines, out / "probes.png")
    text = markdown(summary, unigram, baselines, genre_majority)
    (out / "study.md").write_text(title + "\n\n" + text + "\n")
    (out / "study.json").write_text(json.dumps({"configuration": dataclasses.asdict(config), "unigram_bits": unigram,
                                                "summary": summary, "baselines": baselines,
                                                "genre_majority": genre_majority, "mechanisms": found_mechanisms},
                                               indent=2, default=str))  # fmt: skip
    return text


def run_study(data: Path, out: Path, arms: List[str], seeds: List[int], parallel: int, quick: bool,
              with_mechanisms: bool, report_only: bool = False) -> str:  # fmt: skip
    unknown = [a for a in arms if a not in ARM_BY_NAME]
    if unknown:
        raise SystemExit(f"--arms: unknown {', '.join(unknown)}; valid: {', '.join(ARM_BY_NAME)}")
    if report_only and not any((out / "runs").glob("*/seed*/result.json")):
        raise SystemExit(f"--report-only: no finished arm-seed (result.json) under {out / 'runs'}")
    out.mkdir(parents=True, exist_ok=True)
    data = ensure_data(data, quick)
    manifest = read_manifest(str(data))
    settings = StudySettings(data=str(data), out=str(out), configuration="study_quick" if quick else "study",
                             probe_tokens=2000 if quick else 20000, genre_epochs=1 if quick else 3)  # fmt: skip
    genre_dir, genre_majority = ensure_genre_task(settings, quick)
    settings.genre_dir = genre_dir
    jobs = [(arm, seed) for seed in seeds for arm in arms if not (arm_dir(settings, arm, seed) / "result.json").exists()]
    skipped = len(arms) * len(seeds) - len(jobs)
    print(f"==> study: {len(arms)} arms x {len(seeds)} seeds on {data} ({manifest.documents['train']} train documents); "
          f"{skipped} done already, " + ("report only" if report_only else f"{len(jobs)} to run, {parallel} at a time"),
          flush=True)  # fmt: skip
    if not report_only:
        failed = run_jobs(jobs, settings, parallel)["failed"]
        if failed:
            raise SystemExit("study: " + ", ".join(f"{arm} seed {seed}" for arm, seed in failed) + " failed; see their "
                             f"job.log under {out / 'runs'}")  # fmt: skip
    found = mechanisms(settings, out) if with_mechanisms else {}
    return report(settings, out, genre_majority, found)
