"""The Sphinx site (docs/conf.py): it builds with warnings as errors where Sphinx, MyST and
furo are installed (``tox -e docs``; skipped with the reason otherwise), and its check of
undocumented public names finds what it should."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
MISSING = [m for m in ("sphinx", "myst_parser", "furo") if importlib.util.find_spec(m) is None]


@pytest.fixture
def checker(monkeypatch):
    pytest.importorskip("sphinx", reason="sphinx is not installed (tox -e docs)")
    monkeypatch.syspath_prepend(str(DOCS / "_ext"))
    import greenres_undocumented

    return greenres_undocumented


def test_every_page_is_in_the_site():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    listed = {line.strip() for line in index.splitlines()}
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    assert pages <= listed, pages - listed


def test_the_check_finds_undocumented_names(checker, monkeypatch):
    module = types.ModuleType("greenres_fake_docs")
    module.__doc__ = "A module."

    def documented():
        """Says what it does."""

    def bare():
        pass

    class Value:
        """A class.

        Attributes:
            described: in the Attributes section.
        """

        def method(self):
            pass

        @property
        def prop(self):
            """A property."""

    Value.__module__ = "greenres_fake_docs"
    bare.__doc__ = "bare(x) -> int"  # only the signature Cython embeds
    Value.described = 1
    Value.undescribed_method = lambda self: None
    module.documented, module.bare, module.Value = documented, bare, Value
    module.__all__ = ["documented", "bare", "Value", "CONSTANT"]
    module.CONSTANT = 3
    monkeypatch.setitem(sys.modules, "greenres_fake_docs", module)
    assert checker.undocumented("greenres_fake_docs") == [
        "greenres_fake_docs.bare",
        "greenres_fake_docs.Value.method",
        "greenres_fake_docs.Value.undescribed_method",
    ]


def test_every_public_name_of_the_reference_is_documented(checker):
    namespace: dict = {"__file__": str(DOCS / "conf.py")}
    exec((DOCS / "conf.py").read_text(encoding="utf-8"), namespace)
    missing = [
        name
        for module in namespace["greenres_documented_modules"]
        for name in checker.undocumented(module)
    ]
    assert missing == []


@pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (tox -e docs)")
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-E",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    for name in (
        "greenres.Layout.create",
        "greenres.handoff",
        "greenres.distributed.create_layout",
        "greenres.svg.plan_svg",
        "greenres.plan.Plan.to_svg",
    ):
        assert f'id="{name}"' in api, name
