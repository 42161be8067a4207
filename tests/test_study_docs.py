"""The study's figures in the docs come from its files: docs/study/study.md
is what the report code writes from docs/study's result files and
study.json; the README's headline and docs/STUDY.md's tables are generated
from them; every "MEAN ± SD" in the prose is in a report; the chosen
learning rates in the configurations module are the study's."""

import json

import pytest

from maskplug_lab.experiments import study_docs
from maskplug_lab.experiments.configurations import STUDY_LEARNING_RATES
from maskplug_lab.experiments.study import ARMS
from maskplug_lab.experiments.study_report import load_grid
from maskplug_lab.experiments.study_runner import report_markdown
from maskplug_lab.paths import REPO_ROOT

STUDY_DIR = REPO_ROOT / "docs" / "study"


def test_study_md_is_the_report_of_its_files():
    report = json.loads((STUDY_DIR / "study.json").read_text())
    chosen = report["learning_rates"]["chosen"]
    grid = load_grid(STUDY_DIR, list(chosen))
    text = report_markdown(grid, list(chosen), report["summary"], chosen, report["baselines"],
                           report["genre_majority"], report["genre_random_init"])  # fmt: skip
    title, body = (STUDY_DIR / "study.md").read_text().split("\n\n", 1)
    assert title.startswith("STUDY: ") and body == text + "\n"


@pytest.mark.parametrize("document", study_docs.DOCUMENTS)
def test_generated_blocks_match_their_sources(document):
    text = (REPO_ROOT / document).read_text()
    assert study_docs.regenerate(text, study_docs.sources(), document) == text, (
        f"{document}: run python -m maskplug_lab.experiments.study_docs"
    )


def test_the_readme_and_study_page_hold_their_generated_tables():
    readme = (REPO_ROOT / "README.md").read_text()
    study_page = (REPO_ROOT / "docs" / "STUDY.md").read_text()
    assert "<!-- generated: headline -->" in readme
    for table in study_docs.TABLES:
        assert f"<!-- generated: study.md: {table} -->" in study_page


@pytest.mark.parametrize("document", study_docs.DOCUMENTS)
def test_every_mean_and_spread_in_prose_is_in_a_report(document):
    reports = [(REPO_ROOT / path).read_text() for path in study_docs.REPORTS]
    assert study_docs.unsourced_figures((REPO_ROOT / document).read_text(), reports) == []


def test_a_prose_figure_matches_a_report_only_when_it_rounds_from_it():
    assert study_docs.rounded_to("6.32 ± 0.22", "6.3198 ± 0.2182")
    assert study_docs.rounded_to("10.736 ± 0.135", "10.7361 ± 0.1355")
    assert not study_docs.rounded_to("6.33 ± 0.22", "6.3198 ± 0.2182")
    assert not study_docs.rounded_to("6.3198 ± 0.2182", "6.32 ± 0.22")  # more decimals than the source
    prose = "It ends 6.32 ± 0.22 bits, and 7.00 ± 0.10.\n<!-- generated: headline -->\n9.99 ± 0.01\n<!-- end generated -->"
    assert study_docs.unsourced_figures(prose, ["| 6.3198 ± 0.2182 |"]) == ["7.00 ± 0.10"]


def test_a_block_naming_no_source_is_an_error_naming_the_valid_ones():
    with pytest.raises(SystemExit, match=r"README.md: '<!-- generated: nope -->' names no source; valid: headline"):
        study_docs.regenerate("<!-- generated: nope -->\n<!-- end generated -->", {"headline": "x"}, "README.md")


def test_the_configured_learning_rates_are_the_studys():
    chosen = json.loads((STUDY_DIR / "study.json").read_text())["learning_rates"]["chosen"]
    assert STUDY_LEARNING_RATES == chosen
    assert set(STUDY_LEARNING_RATES) == {arm.name for arm in ARMS}
