"""The study's figures in the docs, generated from its files.

A generated block sits between ``<!-- generated: SOURCE -->`` and
``<!-- end generated -->``: SOURCE ``headline`` is the README's summary
(:func:`study_report.headline_markdown` of docs/study/study.json),
``study.md: TABLE`` one table of docs/study/study.md with its caption
(TABLE one of :data:`TABLES`). A figure written in prose as "MEAN ± SD" must
appear in one of the reports it may quote (:data:`REPORTS`). The test suite
checks both (tests/test_study_docs.py); after a new report, rewrite the
blocks with

    python -m maskplug_lab.experiments.study_docs          (or --check: list what differs)
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List

from ..paths import REPO_ROOT
from .study_report import headline_markdown

STUDY_DIR = REPO_ROOT / "docs" / "study"
# the documents holding generated blocks or quoting the study's figures
DOCUMENTS = ("README.md", "docs/STUDY.md", "docs/RESULTS.md", "docs/methods/mae_lm.md", "docs/measuring.md")
# the reports a "MEAN ± SD" in prose may quote: the study, the same study at one rate, the first study
REPORTS = ("docs/study/study.md", "docs/study_fixed_lr/study.md", "docs/first_study/study.md")
# study.md's tables, by the start of their caption
TABLES = {
    "parity": "Parity at lr",
    "tries": "Single tries",
    "grid": "Learning-rate grid",
    "results": "At each arm's chosen rate",
    "downstream": "Downstream against",
    "verdicts": "Verdicts against random",
}
BLOCK = re.compile(r"(<!-- generated: (?P<source>[^>]+?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
MEAN_SD = re.compile(r"\d+\.\d+ ± \d+\.\d+")


def study_tables(study_md: str) -> Dict[str, str]:
    """study.md's tables by :data:`TABLES` name: each its caption, a blank
    line and the table (paragraphs are separated by blank lines)."""
    chunks = study_md.split("\n\n")
    tables = {}
    for caption, table in zip(chunks, chunks[1:]):
        name = next((name for name, start in TABLES.items() if caption.startswith(start)), None)
        if name and table.startswith("|"):
            tables[name] = f"{caption}\n\n{table.rstrip()}"
    return tables


def sources(study_dir: Path = STUDY_DIR) -> Dict[str, str]:
    """Each SOURCE a block may name, and its text."""
    found = {"headline": headline_markdown(json.loads((study_dir / "study.json").read_text()))}
    tables = study_tables((study_dir / "study.md").read_text())
    found.update({f"study.md: {name}": text for name, text in tables.items()})
    return found


def regenerate(text: str, generated: Dict[str, str], where: str) -> str:
    """``text`` with every generated block's body replaced by its source's
    (an unknown SOURCE is an error naming ``where`` and the valid ones)."""

    def body(match):
        source = match.group("source")
        if source not in generated:
            raise SystemExit(f"{where}: '<!-- generated: {source} -->' names no source; valid: {', '.join(generated)}")
        return f"{match.group(1)}{generated[source]}\n{match.group(4)}"

    return BLOCK.sub(body, text)


def rounded_to(figure: str, reported: str) -> bool:
    """Whether prose ``figure`` ("6.32 ± 0.22") is ``reported`` ("6.3198 ±
    0.2182") rounded to the prose's decimals (within half a unit of the
    last digit of each, the report's being rounded too)."""

    def near(short: str, full: str) -> bool:
        places = [len(number.split(".")[1]) for number in (short, full)]
        return places[0] <= places[1] and abs(float(short) - float(full)) <= sum(0.5 * 10**-p for p in places) + 1e-12

    (mean, sd), (full_mean, full_sd) = (text.split(" ± ") for text in (figure, reported))
    return near(mean, full_mean) and near(sd, full_sd)


def unsourced_figures(text: str, reports: List[str]) -> List[str]:
    """The "MEAN ± SD" figures of ``text`` outside its generated blocks that
    no report in ``reports`` holds (to the prose's decimals)."""
    reported = {figure for report in reports for figure in MEAN_SD.findall(report)}
    prose = BLOCK.sub("", text)
    return [figure for figure in MEAN_SD.findall(prose) if not any(rounded_to(figure, full) for full in reported)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing: list the documents that differ")
    args = parser.parse_args(argv)
    generated = sources()
    reports = [(REPO_ROOT / path).read_text() for path in REPORTS if (REPO_ROOT / path).exists()]
    stale = []
    for name in DOCUMENTS:
        path = REPO_ROOT / name
        text = path.read_text()
        new = regenerate(text, generated, name)
        for figure in unsourced_figures(new, reports):
            stale.append(f"{name}: '{figure}' is in no report ({', '.join(REPORTS)})")
        if new != text:
            stale.append(f"{name}: generated blocks differ from their sources")
            if not args.check:
                path.write_text(new)
    print("\n".join(stale) or "every generated block matches its source")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
