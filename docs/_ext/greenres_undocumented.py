"""A Sphinx extension: the build fails (with -W) on a public name without documentation.

After the sources are read, every module of ``greenres_documented_modules`` (conf.py) is
walked: each name of its ``__all__``, and each public member of each class there
(methods, properties, attributes), must have a docstring of its own, beyond the
signature Cython embeds, or, for an attribute, an entry in its class's ``Attributes:``
section (where napoleon documents attrs fields and Cython's ``cdef readonly``
attributes). Each miss is a warning naming it. The check reads the installed package,
as autodoc does, so what is documented is what users import.
"""

from __future__ import annotations

import importlib
import inspect
import re

from sphinx.util import logging

logger = logging.getLogger(__name__)

_SECTION = re.compile(r"^(\s*)Attributes:\s*$")
_ENTRY = re.compile(r"^\s+([A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?:")
_HEADER = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")


def documented_attributes(cls) -> set[str]:
    """The names of the ``Attributes:`` section of ``cls``'s docstring."""
    names: set[str] = set()
    inside = None
    for line in (inspect.getdoc(cls) or "").splitlines():
        start = _SECTION.match(line)
        if start:
            inside = len(start.group(1))
            continue
        if inside is None:
            continue
        indent = len(line) - len(line.lstrip())
        if line.strip() and indent <= inside and _HEADER.match(line):
            inside = None
            continue
        entry = _ENTRY.match(line)
        if entry and indent == inside + 4:
            names.add(entry.group(1))
    return names


def own_text(name: str, obj) -> str:
    """``obj``'s docstring without a first line that is only the signature Cython embeds
    (``name(self, x)``, ``name(self, x) -> int``)."""
    doc = inspect.getdoc(obj) or ""
    lines = doc.splitlines()
    if lines and re.match(rf"^{re.escape(name)}\(.*\)(\s*->.*)?$", lines[0].strip()):
        lines = lines[1:]
    return "\n".join(lines).strip()


def _cached_properties(cls) -> dict:
    """The functions of an attrs slotted class's ``cached_property`` members: attrs turns
    them into slots and keeps each function as a default of the ``__getattr__`` it adds."""
    getter = vars(cls).get("__getattr__")
    if getter is None:
        return {}
    try:
        parameter = inspect.signature(getter).parameters.get("cached_properties")
    except (TypeError, ValueError):
        return {}
    default = parameter.default if parameter is not None else None
    return dict(default) if isinstance(default, dict) else {}


def undocumented(module_name: str) -> list[str]:
    """The public names of ``module_name`` (and of its classes) without documentation."""
    module = importlib.import_module(module_name)
    missing = []
    if not (module.__doc__ or "").strip():
        missing.append(module_name)
    for name in getattr(module, "__all__", ()):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if not inspect.isclass(obj) and not inspect.isroutine(obj):
            continue  # constants and type aliases are described where they are used
        if not own_text(name, obj):
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj) and getattr(obj, "__module__", "").startswith("greenres"):
            attributes = documented_attributes(obj)
            cached = _cached_properties(obj)
            for member, value in vars(obj).items():
                if member.startswith("_") or member in attributes:
                    continue
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                value = cached.get(member, value)
                if not own_text(member, value):
                    missing.append(f"{module_name}.{name}.{member}")
    return missing


def _check(app, env):
    for module_name in app.config.greenres_documented_modules:
        for name in undocumented(module_name):
            logger.warning(f"undocumented public name: {name}", type="greenres", subtype="docs")


def setup(app):
    app.add_config_value("greenres_documented_modules", [], "env")
    app.connect("env-check-consistency", _check)
    return {"parallel_read_safe": True, "version": "1"}
