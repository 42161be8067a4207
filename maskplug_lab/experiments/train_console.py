"""The quickstart's console while it pre-trains: ``fairseq-train`` runs with
all of its own output in a log file, and the console shows a progress bar
over the updates with the training loss and, after each validation, the loss
at the ``<mask>`` positions against what ignoring context scores there (the
train unigram). Not on a terminal, a line per validation instead of a bar.

    python -m maskplug_lab.experiments.train_console LOG UPDATES -- fairseq-train DATA ... --log-format json

The command must log in fairseq's json format (``--log-format json``) to
standard output. Exits with its status; on a failure the log's last lines
are printed, with the log's path.
"""

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from tqdm import tqdm

RECORD = re.compile(r"\| (train_inner|valid) \| (\{.*\})")


def records(lines: List[str]) -> Iterator[Dict]:
    """The ``train_inner`` and ``valid`` records of json-format fairseq log lines."""
    for line in lines:
        match = RECORD.search(line)
        if match:
            yield {"kind": match.group(1), **json.loads(match.group(2))}


def at_mask(record: Dict) -> str:
    """A validation record's loss at ``<mask>`` against the unigram on its positions."""
    loss, unigram = float(record["valid_loss_at_mask"]), float(record["valid_unigram_at_mask"])
    side = "below" if loss <= unigram else "above"
    return f"loss at <mask> {loss:.3f} bits, {abs(unigram - loss):.2f} {side} the unigram ({unigram:.3f})"


class Progress:
    """A bar on a terminal; elsewhere, one line per validation."""

    def __init__(self, updates: int, terminal: bool):
        self.terminal, self.updates, self.done = terminal, updates, 0
        self.train_loss: Optional[str] = None
        self.last_valid: Optional[str] = None
        self.bar = tqdm(total=updates, unit="update", dynamic_ncols=True, file=sys.stdout) if terminal else None

    def show(self, record: Dict):
        if record["kind"] == "valid":
            update = int(record["valid_num_updates"])
            self.last_valid = at_mask(record)
            line = f"update {update:,}/{self.updates:,}: {self.last_valid}"
            self.bar.write(line) if self.bar else print(line, flush=True)
        else:
            update = int(record["num_updates"])
            self.train_loss = f"train loss {float(record['loss']):.2f} bits"
        if self.bar:
            self.bar.update(max(0, update - self.bar.n))
            self.bar.set_postfix_str(", ".join(filter(None, (self.train_loss, self.last_valid))), refresh=True)

    def close(self):
        if self.bar:
            self.bar.close()


def follow(command: List[str], log: Path, updates: int, terminal: bool, poll: float = 1.0) -> int:
    """Run ``command`` with its standard output and error appended to
    ``log``, showing its records as it writes them; its exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with log.open("a") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    progress = Progress(updates, terminal)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # stopped: stop the run too (finally)
    try:
        while True:
            status = process.poll()
            with log.open("rb") as source:
                source.seek(offset)
                text = source.read()
            complete = text[: text.rfind(b"\n") + 1]
            offset += len(complete)
            for record in records(complete.decode(errors="replace").splitlines()):
                progress.show(record)
            if status is not None:
                return status
            time.sleep(poll)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        progress.close()


def tail(log: Path, lines: int = 20) -> str:
    with log.open(errors="replace") as source:
        return "".join(deque(source, maxlen=lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="where the command's own output goes (appended)")
    parser.add_argument("updates", type=int, help="the run's --max-update")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    status = follow(command, args.log, args.updates, sys.stdout.isatty())
    if status:
        print(f"{command[0]} failed (exit status {status}); the end of its log, {args.log}:\n{tail(args.log)}",
              file=sys.stderr)  # fmt: skip
    sys.exit(status)


if __name__ == "__main__":
    main()
