"""The documentation: a short README front page, pages under docs/ that build as a site, a LICENSE."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for target in re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png))(?:#[\w-]+)?\)", readme):
        assert (ROOT / target).is_file(), target
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_the_docs_site_builds_strictly(tmp_path):
    """mkdocs with the API reference from docstrings; a broken link or anchor fails the build."""
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").read_text().count("GenerationSettings") >= 1
