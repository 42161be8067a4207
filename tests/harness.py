"""Shared test machinery: tiny models, in-process and multi-process fairseq-train,
checkpoint comparison. Reused by every method's tests."""

import contextlib
import dataclasses
import io
import logging
import os
import re
import runpy
import socket
import struct
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from typing import Dict, List, Sequence

import torch
from filelock import FileLock

from fairseq_maskplug import methods
from fairseq_maskplug.safe_loading import load_checkpoint
from maskplug_lab.corpus.sources import PACKAGED_BROWN
from maskplug_lab.experiments.configurations import TINY, method_flags

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO_ROOT / "fairseq_maskplug")
BROWN_ZIP = PACKAGED_BROWN  # the Brown corpus the package carries (corpus/brown/SOURCE.md)

TOKENS_PER_SAMPLE = TINY.tokens_per_sample

# the README and the pages its sections moved to: the commands in them are run by the tests
DOCUMENTED_PAGES = ["README.md", *(f"docs/{page}.md" for page in (
    "setup", "recipes", "options", "measuring", "study_script", "gpu", "hugging_face", "layout",
    "methods/fully_explored", "methods/time_variant", "methods/mapnet", "methods/mae_lm"))]  # fmt: skip

# Environment for child processes: one thread each (two ranks share 2 cores),
# and the repo importable whatever the caller's cwd.
CHILD_ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))


def train_args(
    data,
    save_dir,
    *,
    task: str = "masked_lm_plus",
    updates: int = 20,
    total_updates: int = None,
    batch_size: int = 8,
    seed: int = 1,
    cpu: bool = True,
    extra: Sequence[str] = (),
) -> List[str]:
    """fairseq-train arguments for the TINY configuration (2 layers, width 64)
    on the CPU.

    ``total_updates`` fixes the LR schedule's length independently of
    ``updates`` (the stopping point), as a resumed run needs; ``cpu=False``
    trains on a visible GPU.
    """
    total = total_updates or updates
    return [
        str(data), "--user-dir", USER_DIR, "--task", task, "--criterion", "masked_lm",
        *dataclasses.replace(TINY, batch_size=batch_size).flags(total, cpu=cpu), "--max-update", str(updates),
        "--seed", str(seed), "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--validate-interval-updates", str(total), "--log-format", "simple", "--log-interval", "5", *extra,
    ]  # fmt: skip


# Every method the cross-cutting tests (resume, data-parallel) run, as the
# flags that select it on top of train_args (later flags win): fully-explored
# with K = 4 to keep them fast, and the time-variant methods combined.
METHOD_FLAGS = {name: method_flags(name) for name in ("random", "fully_explored", "pos_cosine", "mapnet", "mae_lm")}
METHOD_FLAGS["fully_explored"] += ["--fe-segments", "4"]
POS_METHODS = set(METHOD_FLAGS) & methods.POS_METHODS


@contextlib.contextmanager
def as_a_new_process():
    """A training run in this process, starting from what a new process holds
    and ending as its exit would: fairseq keeps the best validation loss so
    far on ``save_checkpoint`` and ``should_stop_early`` (an earlier run's
    would decide whether this one writes checkpoint_best.pt), and one
    TensorBoard writer per tag for the process's life (closed at exit; a
    later run's events would go to this run's --tensorboard-logdir)."""
    from fairseq import checkpoint_utils
    from fairseq.logging import progress_bar
    from fairseq_cli import train

    for function, attribute in ((checkpoint_utils.save_checkpoint, "best"), (train.should_stop_early, "best"),
                                (train.should_stop_early, "num_runs")):  # fmt: skip
        if hasattr(function, attribute):
            delattr(function, attribute)
    try:
        yield
    finally:
        progress_bar._close_writers()
        progress_bar._tensorboard_writers.clear()


def train_in_process(args: Sequence[str]):
    """Run fairseq-train's main in this process (as ``fairseq-train ARGS``;
    see :func:`as_a_new_process`)."""
    from fairseq import distributed_utils, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import train

    namespace = options.parse_args_and_arch(options.get_training_parser(), input_args=list(args))
    with as_a_new_process():
        distributed_utils.call_main(convert_namespace_to_omegaconf(namespace), train.main)


@contextlib.contextmanager
def argv_and_root_logger(argv: Sequence[str]):
    """``sys.argv`` set to ``argv`` meanwhile; it, the root logger's handlers
    and level (the CLIs and scripts reconfigure them) and the working
    directory restored afterwards."""
    root = logging.getLogger()
    handlers, level, saved_argv, cwd = root.handlers[:], root.level, sys.argv, os.getcwd()
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved_argv
        os.chdir(cwd)
        root.handlers[:] = handlers
        root.setLevel(level)


def hydra_train_in_process(args: Sequence[str]) -> str:
    """Run ``fairseq-hydra-train ARGS`` (one run, not ``-m``; ARGS must set
    ``hydra.run.dir``) by its entry point in this process, as a new process
    would (:func:`as_a_new_process`; hydra's global state cleared;
    :func:`argv_and_root_logger`); returns its log (hydra's job
    log, RUN_DIR/hydra_train.log). Raises with the log's tail if it fails."""
    from fairseq_cli import hydra_train
    from hydra.core.global_hydra import GlobalHydra

    run_dir = Path(next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")))
    code = 0
    try:
        with argv_and_root_logger(["fairseq-hydra-train", *args]), as_a_new_process():
            hydra_train.cli_main()
    except SystemExit as exit:
        code = exit.code
    finally:
        GlobalHydra.instance().clear()
    log_file = run_dir / "hydra_train.log"
    log = log_file.read_text() if log_file.exists() else ""
    if code:
        raise AssertionError(f"fairseq-hydra-train failed ({code}):\n{log[-4000:]}")
    return log


@dataclasses.dataclass
class ScriptRun:
    """What ``python scripts/NAME ARGS`` showed: its exit status and output."""

    returncode: int
    stdout: str
    stderr: str


def run_script(name: str, args: Sequence[str]) -> ScriptRun:
    """``python scripts/NAME ARGS``, run in this process: see :func:`run_main`."""
    path = str(REPO_ROOT / "scripts" / name)
    return run_main(path, args, lambda: runpy.run_path(path, run_name="__main__"))


def run_module(module: str, args: Sequence[str]) -> ScriptRun:
    """``python -m MODULE ARGS``, run in this process: see :func:`run_main`."""

    def run():
        with warnings.catch_warnings():  # a module the tests imported already runs again as __main__: as intended
            warnings.filterwarnings("ignore", ".*found in sys.modules after import of package", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)

    return run_main(module, args, run)


def run_main(program: str, args: Sequence[str], run) -> ScriptRun:
    """``run()`` (a script or module executed as ``__main__``) with ``sys.argv``
    ``[program, *args]``, returning the exit status the interpreter would give
    it (``sys.exit("message")``: 1, the message on stderr; an uncaught
    exception: 1, its traceback on stderr) and what it printed; the child
    processes it starts are its own. Saves the ~4 s a new interpreter spends
    importing fairseq. See :func:`argv_and_root_logger` for what is restored."""
    stdout, stderr = io.StringIO(), io.StringIO()
    returncode = 0
    with argv_and_root_logger([program, *map(str, args)]):
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                run()
            except SystemExit as exit:
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
                returncode = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
            except Exception:
                traceback.print_exc()
                returncode = 1
    return ScriptRun(returncode, stdout.getvalue(), stderr.getvalue())


def fairseq_train_command(args: Sequence[str], preamble: str = "") -> List[str]:
    """``fairseq-train ARGS`` as a Python command; ``preamble`` is Python run
    before fairseq is imported (to block a module or record state, say)."""
    code = (
        preamble
        + "\nimport sys\nfrom fairseq_cli.train import cli_main\nsys.argv = ['fairseq-train'] + sys.argv[1:]\ncli_main()\n"
    )
    return [sys.executable, "-c", code, *args]


def kill_at_update_preamble(update: int) -> str:
    """A preamble that makes fairseq-train SIGKILL itself right after update
    ``update`` (no clean-up, no checkpoint: as if the machine died)."""
    return (
        "import os, signal\n"
        "from fairseq import trainer as _t\n"
        "_step = _t.Trainer.train_step\n"
        "def _train_step(self, *a, **k):\n"
        "    out = _step(self, *a, **k)\n"
        f"    if self.get_num_updates() == {update}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return out\n"
        "_t.Trainer.train_step = _train_step\n"
    )


def start_fairseq_train(args: Sequence[str], preamble: str = "") -> subprocess.Popen:
    """``fairseq-train ARGS`` started in a child process (output captured)."""
    return subprocess.Popen(
        fairseq_train_command(args, preamble), env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(args: Sequence[str], preambles: Sequence[str]) -> List[subprocess.Popen]:
    """One fairseq-train process per preamble, rank R running ``preambles[R]``,
    on the CPU with gloo (docs/gpu.md's flags for data-parallel on the CPU), output captured."""
    port = free_port()
    return [
        subprocess.Popen(
            fairseq_train_command(
                [
                    *args,
                    "--distributed-world-size",
                    str(len(preambles)),
                    "--distributed-backend",
                    "gloo",
                    "--distributed-no-spawn",
                    "--distributed-init-method",
                    f"tcp://127.0.0.1:{port}",
                    "--distributed-rank",
                    str(rank),
                    "--ddp-backend",
                    "legacy_ddp",
                ],  # fmt: skip
                preamble,
            ),
            env=CHILD_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank, preamble in enumerate(preambles)
    ]


def train_data_parallel(args: Sequence[str], world_size: int = 2, timeout: int = 300, preamble: str = "") -> List[str]:
    """Run ``world_size`` ranks of fairseq-train (:func:`start_ranks`);
    returns each rank's combined output. Raises if any fails."""
    procs = start_ranks(args, [preamble] * world_size)
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    failed = [
        f"rank {rank} failed ({proc.returncode}):\n{out[-4000:]}"
        for rank, (proc, out) in enumerate(zip(procs, outputs))
        if proc.returncode != 0
    ]
    if failed:
        raise AssertionError("\n\n".join(failed))
    return outputs


def dump_task_state_preamble(out_dir) -> str:
    """A preamble that makes each fairseq-train process write its task's
    ``state_dict()`` to OUT_DIR/rank{R}.pt when it exits (R from
    --distributed-rank, 0 without it): what every rank holds, not just the
    one that saves checkpoints."""
    return (
        "import atexit, sys, torch\n"
        "from fairseq_maskplug.tasks import masked_lm_plus as _m\n"
        "_tasks = []\n"
        "_init = _m.MaskedLMPlusTask.__init__\n"
        "def _record(self, *a, **k):\n"
        "    _init(self, *a, **k)\n"
        "    _tasks.append(self)\n"
        "_m.MaskedLMPlusTask.__init__ = _record\n"
        "_rank = sys.argv[sys.argv.index('--distributed-rank') + 1] if '--distributed-rank' in sys.argv else '0'\n"
        f"atexit.register(lambda: torch.save(_tasks[-1].state_dict(), {str(out_dir)!r} + f'/rank{{_rank}}.pt'))\n"
    )


def documented_block(marker: str, language: str = "bash") -> str:
    """The one ``language`` code block of the documented pages that contains
    ``marker`` (bash line continuations joined)."""
    found = []
    for page in DOCUMENTED_PAGES:
        text = (REPO_ROOT / page).read_text()
        blocks = [b.replace("\\\n", " ") for b in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)]
        found += [(page, b) for b in blocks if marker in b]
    assert len(found) == 1, f"the documented pages should hold exactly one {language} block with {marker!r}: {found}"
    return found[0][1]


def shared_dir(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this run shares (the run's own
    base folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory, name: str, build) -> Path:
    """SHARED/name, made by ``build(path)`` once per test run, by whichever
    pytest-xdist worker asks first (the others wait), then only read."""
    shared = shared_dir(tmp_path_factory)
    path, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            build(path)
            done.touch()
    return path


def tensorboard_tags(logdir) -> set:
    """Every scalar tag in the TensorBoard event files under ``logdir``
    (TFRecord: length, its CRC, an Event protobuf, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in Path(logdir).rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            offset += 12 + length + 4
    return tags


def checkpoint_state(path) -> Dict:
    return load_checkpoint(path)


def max_param_difference(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> float:
    """Largest absolute difference over all parameters; keys must match."""
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def logged_values(output: str, key: str, kind: str = "train_inner") -> List[float]:
    """Values of ``key=`` in fairseq's simple-format ``kind`` log lines (with
    fairseq's log format, Python's default one or pytest's ``caplog.text``)."""
    pattern = re.compile(rf"(?:\| {kind} \||INFO:{kind}:|INFO +{kind}:\S+ ).*?\b{key}=([-\d.e+inf]+)")
    return [float(m.group(1)) for m in pattern.finditer(output)]
