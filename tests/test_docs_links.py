"""Every relative link in the README and docs points at a file the repository
holds, and every #section at a heading of that file (GitHub's anchors)."""

import re

import pytest

from harness import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md")), *sorted(REPO_ROOT.glob("maskplug_lab/**/*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page) -> set:
    """GitHub's anchors of a Markdown file's headings (outside code blocks)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(re.sub(r"```.*?```", "", page.read_text(), flags=re.S)):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, section = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no {file.relative_to(REPO_ROOT) if REPO_ROOT in file.parents else file}")
        elif section and file.suffix == ".md" and section not in anchors(file):
            broken.append(f"{target}: no section '{section}' in {file.name}")
    assert not broken, broken
