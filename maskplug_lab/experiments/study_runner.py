"""Running the study: its data and genre task, the jobs (one CPU thread
each, ``jobs`` at a time, finished ones skipped, killed ones resumed) with a
progress line per job, planned as results arrive (each arm's learning-rate
grid on seed 1, then its other seeds at the chosen rate: :func:`plan_jobs`),
the mechanisms re-measured on its checkpoints, and the report (tables,
verdicts, plots) in ``OUT``."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..corpus.genres import write_genre_task
from ..corpus.prepare import PrepareOptions, prepare_corpus, read_manifest
from ..corpus.sources import PACKAGED_BROWN
from ..paths import REPO_ROOT
from .configurations import STUDY_LR_GRID, STUDY_LR_LIMITS, STUDY_VOCABULARY
from .study import ARM_BY_NAME, PARITY_ARMS, Job, StudySettings, arm_dir, job_done, lr_label, parse_log
from .study_report import (
    headline_markdown,
    load_grid,
    markdown,
    parity_markdown,
    plot_curves,
    plot_probes,
    selection_bits,
    summarise,
    tries_markdown,
)

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


# the parity check's shared rate: the rate every arm of the first 3-seed study trained at
PARITY_LR = 3e-3


def job_name(job: Job) -> str:
    return f"{job.arm}{'' if job.lr is None else ' lr ' + lr_label(job.lr)} seed {job.seed}"


def progress(job: Job, settings: StudySettings, started: float) -> str:
    log = arm_dir(settings, job.arm, job.seed, job.lr) / "train.log"
    train, _ = parse_log(log) if log.exists() else ([], [])
    if not train:
        return f"{job_name(job)}: starting"
    last = train[-1]
    done, total = int(last["num_updates"]), settings.config.updates
    elapsed = time.time() - started
    eta = elapsed / max(done, 1) * (total - done)
    return f"{job_name(job)}: update {done}/{total}, train loss {last['loss']} bits, {elapsed:.0f} s, ETA {eta:.0f} s"


def run_jobs(jobs: Union[Sequence[Job], Callable[[], List[Job]]], settings: StudySettings, parallel: int,
             deadline: Optional[float] = None) -> Dict[str, List[Job]]:  # fmt: skip
    """Run the jobs, ``parallel`` at a time, printing a progress line per
    running job every half minute and one when each ends. ``jobs``: a list,
    or a planner called whenever a job ends, which returns every job still
    wanted (the finished ones are left out; see :func:`plan_jobs`).
    ``deadline`` (a ``time.time()``): jobs still running then are stopped
    (with their fairseq-train) and jobs not started are dropped. Returns the
    jobs that "failed" (their log named) and those "stopped" or never started."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    settings_json = dataclasses.asdict(settings)
    planner = jobs if callable(jobs) else (lambda listed=list(jobs): [j for j in listed if j not in finished])
    finished: List[Job] = []
    running: Dict[Job, tuple] = {}
    outcome: Dict[str, List[Job]] = {"failed": [], "stopped": []}
    study_start, last_report = time.time(), 0.0

    def wanted() -> List[Job]:
        return [j for j in planner() if j not in running and j not in outcome["failed"] and j not in finished]

    pending = wanted()
    while pending or running:
        if deadline is not None and time.time() > deadline:
            for job, (process, _, log) in running.items():
                os.killpg(process.pid, signal.SIGTERM)  # the job and its fairseq-train (one process group)
                process.wait()
                log.close()
                print(f"stopped {job_name(job)}: the time limit was reached", flush=True)
            outcome["stopped"] += list(running) + pending
            break
        while pending and len(running) < parallel:
            job = pending.pop(0)
            payload = json.dumps(dataclasses.asdict(job) | {"settings": settings_json})
            folder = arm_dir(settings, job.arm, job.seed, job.lr)
            folder.mkdir(parents=True, exist_ok=True)
            log = open(folder / "job.log", "a")
            process = subprocess.Popen([sys.executable, "-m", "maskplug_lab.experiments.study", payload], env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            running[job] = (process, time.time(), log)
        time.sleep(2)
        for job, (process, _, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[job]
            if process.returncode != 0:
                print(f"failed {job_name(job)} (exit {process.returncode}); see {log.name}", flush=True)
                outcome["failed"].append(job)
            else:
                finished.append(job)
                result = json.loads((arm_dir(settings, job.arm, job.seed, job.lr) / "result.json").read_text())
                scores = result["final_scores"]
                print(f"done {job_name(job)}: loss at <mask> {result['final_at_mask_bits']:.4f} bits (valid; train "
                      f"unigram {scores['unigram_at_mask_bits']:.4f}; spread {scores['spread_at_mask_bits']:.4f}"
                      f"{', COLLAPSED' if result['collapsed'] else ''}), trained {result['train_seconds']:.0f} s, "
                      f"evaluated {result['evaluation_seconds']:.0f} s | study {(time.time() - study_start) / 60:.1f} "
                      "min", flush=True)  # fmt: skip
            pending = wanted()
            if pending or running:
                cost = sum(COST.get(j.arm, 1.0) for j in pending + list(running))
                print(f"  {len(pending)} jobs known to be waiting, {len(running)} running (about {cost:.0f} arm-seed "
                      "units of work; later grid results may add more)", flush=True)  # fmt: skip
        if time.time() - last_report > 30:
            last_report = time.time()
            for job, (_, started, _) in running.items():
                print("  " + progress(job, settings, started), flush=True)
    return outcome


def grid_tried(grid: Dict[str, Dict[float, Dict[int, dict]]], arm: str, rates: Sequence[float]) -> Dict[float, dict]:
    """{rate: seed 1's result.json} of ``arm``'s grid so far: the parity runs
    share its folders but are part of it only where ``rates`` hold their rate."""
    return {lr: found[1] for lr, found in grid.get(arm, {}).items() if 1 in found and (lr != PARITY_LR or lr in rates)}


def chosen_rate(arm: str, tried: Dict[float, dict],
                limits: Tuple[float, float] = STUDY_LR_LIMITS) -> Tuple[Optional[float], Optional[float]]:  # fmt: skip
    """(the chosen learning rate, or None; the next rate to try, or None)
    from the seed-1 results ``tried`` {rate: result.json} of ``arm``: the rate
    of the lowest valid loss at ``<mask>`` (:func:`selection_bits`; a
    collapsed result only when every one collapsed); a winner at an edge of
    the rates tried is not chosen until the next rate past it (a factor 2,
    within ``limits``) has been tried too."""
    if not tried:
        return None, None
    healthy = {lr: r for lr, r in tried.items() if not r["collapsed"]} or tried
    best = min(healthy, key=lambda lr: selection_bits(arm, healthy[lr]))
    lowest, highest = limits
    if best == min(tried) and best / 2 >= lowest:
        return None, best / 2
    if best == max(tried) and best * 2 <= highest:
        return None, best * 2
    return best, None


def plan_jobs(settings: StudySettings, arms: List[str], seeds: List[int], parity: bool,
              rates: Sequence[float] = STUDY_LR_GRID, limits: Tuple[float, float] = STUDY_LR_LIMITS,
              tries: Sequence[Job] = ()) -> List[Job]:  # fmt: skip
    """Every job the study still needs, from its result files: the ``tries``
    (single jobs asked for by name), the parity runs (with ``parity``), then
    per arm the grid on seed 1 (no downstream probes), its extension past a
    winning edge, and once the rate is chosen the downstream probes of seed 1
    and the other ``seeds`` at that rate."""
    wanted = list(tries)
    if parity:
        wanted += [Job("random", seed, PARITY_LR, False) for seed in (1, 2, 3)]
        wanted += [Job("stock", 1, PARITY_LR, False), Job("random_never_bos_eos", 1, PARITY_LR, False)]
    grid = load_grid(Path(settings.out))
    for arm in arms:
        tried = grid_tried(grid, arm, rates)
        if any(lr not in tried for lr in rates):
            wanted += [Job(arm, 1, lr, False) for lr in rates]
            continue
        best, next_rate = chosen_rate(arm, tried, limits)
        if next_rate is not None:
            wanted.append(Job(arm, 1, next_rate, False))
        else:
            wanted += [Job(arm, seed, best, True) for seed in seeds]
    return [job for job in wanted if not job_done(settings, job.arm, job.seed, job.lr, job.downstream)]


def genre_baseline(settings: StudySettings, seeds: List[int]) -> List[float]:
    """The genre task from a randomly initialised encoder, fine-tuned exactly
    as the arms' are, one run per seed (read back when done)."""
    from .study import genre_accuracy

    accuracies = []
    for seed in seeds:
        out = Path(settings.out) / "genre_random_init" / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        record = out / "accuracy.json"
        if not record.exists():
            record.write_text(json.dumps({"accuracy": genre_accuracy(None, False, seed, settings, out)}))
        accuracies.append(json.loads(record.read_text())["accuracy"])
    return accuracies


def mechanisms(settings: StudySettings, out: Path, chosen: Dict[str, Optional[float]]) -> Dict[str, dict]:
    """Each paper's mechanism on each arm's lowest-seed checkpoint still there
    at its ``chosen`` rate: fully-explored against
    random_k with pure <mask> corruption and with 80/10/10, and the Hamming
    curve (random arm); MAPNet's estimators against the uniform-mask gradient
    (both MAPNet arms); effective rank, MAE-LM against RoBERTa; PTW's per-tag
    losses, bias-corrected, early and late. What OUT/mechanisms already holds
    is read back, checkpoints or not (a study continued from result.json files)."""
    found = {}
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    target = out / "mechanisms"
    target.mkdir(exist_ok=True)

    def checkpoint(arm):  # the lowest seed whose checkpoint is still there (a study continued across machines)
        if chosen.get(arm) is None:
            return None
        for seed_dir in sorted(arm_dir(settings, arm, 1, chosen[arm]).parent.glob("seed*"), key=lambda p: int(p.name[4:])):
            path = seed_dir / "checkpoints" / "checkpoint_last.pt"
            if path.exists():
                return str(path)
        return None

    def measure(name, command):
        if not (target / f"{name}.json").exists():
            subprocess.run([sys.executable, *command, "--json", str(target / f"{name}.json")], env=env, check=True,
                           capture_output=True)  # fmt: skip
        found[name] = json.loads((target / f"{name}.json").read_text())

    variance = ["-m", "maskplug_lab.diagnostics.measure_mask_variance", "--data", settings.data, "--draws", "32",
                "--batch-size", "16"]  # fmt: skip
    if checkpoint("random"):
        for corruption in ("mask_only", "80_10_10"):
            measure(f"fully_explored_{corruption}", variance + ["--checkpoint", checkpoint("random"), "--strategies",
                    "random,random_k,fully_explored", "--corruption", corruption, "--hamming-curve"])  # fmt: skip
    for arm in ("mapnet", "mapnet_reference"):
        if checkpoint(arm):
            measure(arm, variance + ["--checkpoint", checkpoint(arm), "--strategies", "random,mapnet"])
    encoders = [checkpoint(arm) for arm in ("random", "mae_lm", "mae_lm_decoder4") if checkpoint(arm)]
    if checkpoint("random") and len(encoders) > 1:
        measure("effective_rank", ["-m", "maskplug_lab.diagnostics.effective_rank", "--data", settings.data,
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
    from fairseq_maskplug.safe_loading import load_checkpoint

    paths = sorted(checkpoints.glob("checkpoint_*_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))
    found = {}
    for label, path in (("early", paths[0]), ("late", paths[-1])):
        state = load_checkpoint(path)
        momentum = state["cfg"]["task"]["pos_momentum"]
        tracker = state["task_state"]["pos_running_loss"]
        corrected = tracker["running"] / (1 - momentum ** tracker["observations"]).clamp(min=1e-12)
        updates = state["optimizer_history"][-1]["num_updates"]
        found[f"{label} (update {updates})"] = {tag: round(float(v) / math.log(2), 3)
                                                for tag, v in zip(state["task_state"]["pos_tags"], corrected)}  # fmt: skip
    return found


def probe_baselines(settings: StudySettings, out: Path, grid: Dict[str, Dict[float, Dict[int, dict]]]) -> Dict:
    """The POS probe's baselines: majority tag, each piece's majority tag and a
    randomly initialised encoder, built like any finished job whose
    checkpoint is still there; without one, the last report's."""
    from ..diagnostics.probes import random_init_probe

    checkpoints = [arm_dir(settings, arm, seed, lr) / "checkpoints" / "checkpoint_last.pt"
                   for arm, rates in grid.items() for lr, seeds in rates.items() for seed in seeds]  # fmt: skip
    existing = [path for path in checkpoints if path.exists()]
    if existing:
        probe = random_init_probe(str(existing[0]), settings.data, settings.probe_tokens)
        return {"majority": probe.majority, "piece_majority": probe.piece_majority, "random_init": probe.layer_accuracy}
    if (out / "study.json").exists():
        return json.loads((out / "study.json").read_text())["baselines"]
    raise SystemExit(f"{out}: no arm-seed checkpoint left to build the probe's random-encoder baseline from, "
                     "and no earlier study.json: copy docs/study/study.json there too")  # fmt: skip


def chosen_rates(grid: Dict[str, Dict[float, Dict[int, dict]]], arms: List[str], rates: Sequence[float],
                 limits: Tuple[float, float]) -> Dict[str, Optional[float]]:  # fmt: skip
    """Each arm's chosen rate (None while its grid is unfinished)."""
    chosen = {}
    for arm in arms:
        tried = grid_tried(grid, arm, rates)
        complete = all(lr in tried for lr in rates)
        chosen[arm] = chosen_rate(arm, tried, limits)[0] if complete else None
    return chosen


def report_markdown(grid: Dict[str, Dict[float, Dict[int, dict]]], arms: List[str], summary: Dict[str, Dict],
                    chosen: Dict[str, Optional[float]], baselines: Dict, genre_majority: Optional[float],
                    genre_random_init: List[float]) -> str:  # fmt: skip
    """OUT/study.md below its title: the parity runs and single tries (the
    result files' ``grid``), then the tables of ``summary`` (a study.json's
    ``summary``, ``chosen``, ``baselines`` and genre figures give the same
    text back: docs/study/study.md is checked so)."""
    parity = parity_markdown(grid, PARITY_LR) + tries_markdown(grid, [*arms, *(a.name for a in PARITY_ARMS)], chosen)
    return "\n".join(parity + ["", ""] if parity else []) + markdown(summary, grid, chosen, baselines, genre_majority,
                                                                       genre_random_init)  # fmt: skip


def report(settings: StudySettings, out: Path, arms: List[str], rates: Sequence[float], limits: Tuple[float, float],
           genre_majority, found_mechanisms: Dict) -> str:  # fmt: skip
    """Write OUT/study.json, OUT/study.md, OUT/headline.md (the README's
    summary), OUT/curves.png and OUT/probes.png; return the Markdown."""
    grid = load_grid(out, arms)
    chosen = chosen_rates(grid, arms, rates, limits)
    results = {arm: [found[seed] for seed in sorted(found)]
               for arm, lr in chosen.items() if lr is not None for found in [grid[arm][lr]]
               if all(r["test_scores"] and (r["pos_probe"] or not settings.probe_tokens) for r in found.values())}  # fmt: skip
    baselines = probe_baselines(settings, out, grid)
    genre_random_init = genre_baseline(settings, sorted({r["seed"] for found in results.values() for r in found}))
    summary = summarise(results, grid, baselines, genre_random_init)
    config = settings.config
    title = (f"STUDY: {config.encoder.layers} x {config.encoder.dim} encoder, {config.batch_size} x "
             f"{config.tokens_per_sample} tokens, {config.updates} updates, each arm at its chosen learning rate")  # fmt: skip
    if results:
        unigram = next(iter(results.values()))[0]["final_scores"]["unigram_at_mask_bits"]  # one reference: same positions
        plot_curves(results, unigram, out / "curves.png", title)
        plot_probes(summary, baselines, out / "probes.png")
    text = report_markdown(grid, arms, summary, chosen, baselines, genre_majority, genre_random_init)
    (out / "study.md").write_text(title + "\n\n" + text + "\n")
    study = {"configuration": dataclasses.asdict(config),
             "learning_rates": {"grid": list(rates), "limits": list(limits), "chosen": chosen},
             "summary": summary, "baselines": baselines, "genre_majority": genre_majority,
             "genre_random_init": genre_random_init, "mechanisms": found_mechanisms}  # fmt: skip
    (out / "study.json").write_text(json.dumps(study, indent=2, default=str))
    (out / "headline.md").write_text(headline_markdown(json.loads(json.dumps(study, default=str))) + "\n")
    return text


def run_study(data: Path, out: Path, arms: List[str], seeds: List[int], parallel: int, quick: bool,
              with_mechanisms: bool, report_only: bool = False, rates: Sequence[float] = STUDY_LR_GRID,
              limits: Tuple[float, float] = STUDY_LR_LIMITS, parity: bool = False,
              tries: Sequence[Job] = ()) -> str:  # fmt: skip
    unknown = [a for a in [*arms, *(job.arm for job in tries)] if a not in ARM_BY_NAME]
    if unknown:
        raise SystemExit(f"--arms: unknown {', '.join(unknown)}; valid: {', '.join(ARM_BY_NAME)}")
    if not rates or any(not limits[0] <= lr <= limits[1] for lr in rates):
        raise SystemExit(f"--lr-grid {','.join(map(lr_label, rates))}: give rates within --lr-limits "
                         f"{lr_label(limits[0])},{lr_label(limits[1])}")  # fmt: skip
    if report_only and not any((out / "runs").glob("*/lr*/seed*/result.json")):
        raise SystemExit(f"--report-only: no finished job (result.json) under {out / 'runs'}")
    out.mkdir(parents=True, exist_ok=True)
    data = ensure_data(data, quick)
    manifest = read_manifest(str(data))
    settings = StudySettings(data=str(data), out=str(out), configuration="study_quick" if quick else "study",
                             probe_tokens=2000 if quick else 20000, genre_epochs=1 if quick else 3)  # fmt: skip
    genre_dir, genre_majority = ensure_genre_task(settings, quick)
    settings.genre_dir = genre_dir

    def planner():
        return plan_jobs(settings, arms, seeds, parity, rates, limits, tries)

    done = len(list((out / "runs").glob("*/lr*/seed*/result.json")))
    waiting = planner()
    print(f"==> study: {len(arms)} arms, rates {','.join(map(lr_label, rates))} on seed 1, then seeds "
          f"{','.join(map(str, seeds))} at each arm's chosen rate, on {data} ({manifest.documents['train']} train "
          f"documents); {done} jobs done already, "
          + ("report only" if report_only else f"{len(waiting)} to run now, {parallel} at a time"), flush=True)  # fmt: skip
    if not report_only:
        failed = run_jobs(planner, settings, parallel)["failed"]
        if failed:
            raise SystemExit("study: " + ", ".join(map(job_name, failed)) + " failed; see their job.log under "
                             f"{out / 'runs'}")  # fmt: skip
    found = mechanisms(settings, out, chosen_rates(load_grid(out), arms, rates, limits)) if with_mechanisms else {}
    return report(settings, out, arms, rates, limits, genre_majority, found)
