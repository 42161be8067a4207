"""The corpora the quickstart and the study can use without a user's: the Brown
corpus this package carries, NLTK's copy, the standard library's docstrings."""

import ast
import os
import sys
import sysconfig
from pathlib import Path
from typing import List, Optional

from .readers import is_brown

# the Brown corpus this package carries (NLTK's packaging, with its tag map; see brown/SOURCE.md)
PACKAGED_BROWN = Path(__file__).resolve().parent / "brown" / "brown.zip"


def nltk_data_dirs() -> List[Path]:
    """The folders NLTK searches for its data, in NLTK's order."""
    dirs = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    dirs.append(Path.home() / "nltk_data")
    for prefix in (sys.prefix, sys.base_prefix):
        dirs += [Path(prefix) / "nltk_data", Path(prefix) / "share" / "nltk_data", Path(prefix) / "lib" / "nltk_data"]
    dirs += [
        Path(p)
        for p in ("/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/lib/nltk_data", "/usr/local/lib/nltk_data")
    ]
    return dirs


def find_nltk_brown() -> Optional[Path]:
    """NLTK's Brown corpus (zip or folder) in NLTK's data folders, or None."""
    for base in nltk_data_dirs():
        for candidate in (base / "corpora" / "brown.zip", base / "corpora" / "brown"):
            if candidate.exists() and is_brown(str(candidate)):
                return candidate
    return None


def stdlib_docstring_documents() -> List[List[str]]:
    """English text present on every Python install: the module, class and
    function docstrings of the standard library, one document per module
    (paragraphs joined into lines), in sorted path order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if any(part in {"test", "tests", "idlelib", "site-packages"} for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        lines = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    lines += [" ".join(p.split()) for p in doc.split("\n\n") if len(p.split()) >= 4]
        if lines:
            documents.append(lines)
    return documents


def write_stdlib_corpus(path: Path) -> int:
    """Write :func:`stdlib_docstring_documents` as a blank-line separated text
    file; returns the number of documents."""
    documents = stdlib_docstring_documents()
    path.write_text("\n\n".join("\n".join(doc) for doc in documents) + "\n", encoding="utf-8")
    return len(documents)
