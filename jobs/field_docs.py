"""What each key of a config dataclass means, read from the code that defines it.

A field's description is its entry in the class docstring's ``Args:`` or ``Attributes:`` section (an
entry may name several fields: ``a / b / c:`` or ``rank, world_size:``), else the comment on the field's
line, else the comment lines right above it. ``reference_docs`` renders these into ``docs/*.md``; a field
with none of the three is an error there, so a new key cannot go undocumented.

Example::

    >>> from pyramid_mixer.embeddings.model_parallel import ScheduleConfig
    >>> field_descriptions(ScheduleConfig)["warmup_steps"]  # the comment on its line
    'steps of the linear warmup (0: none)'
    >>> from pyramid_mixer.jobs.bench.config import BenchConfig
    >>> field_descriptions(BenchConfig)["work_dir"]  # its docstring entry
    'data, per-trial run directories and the trial cache (a rerun skips finished trials).'
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
from typing import Dict, List

_SECTION = re.compile(r"^\s*(Args|Attributes):\s*$")
_ENTRY = re.compile(r"^(?P<names>[A-Za-z_][\w]*(?:\s*(?:/|,)\s*[A-Za-z_]\w*)*)(?:\s*\([^)]*\))?:\s*(?P<text>.*)$")


def docstring_entries(cls: type) -> Dict[str, str]:
    """``name -> text`` from the ``Args:`` / ``Attributes:`` sections of ``cls``'s own docstring: each entry
    at the section's first indent, its continuation lines deeper; a blank line ends the section."""
    lines = inspect.cleandoc(cls.__dict__.get("__doc__") or "").splitlines()
    out: Dict[str, str] = {}
    names: List[str] = []
    indent = None  # of the current section's entries; None: outside a section
    for line in lines:
        if _SECTION.match(line):
            indent, names = -1, []
            continue
        if indent is None:
            continue
        if not line.strip():
            indent = None
            continue
        here = len(line) - len(line.lstrip())
        if indent == -1:
            indent = here
        m = _ENTRY.match(line.strip()) if here == indent else None
        if m:
            names = [n.strip() for n in re.split(r"[/,]", m.group("names"))]
            for n in names:
                out[n] = m.group("text").strip()
        elif names and here > indent:
            for n in names:
                out[n] = f"{out[n]} {line.strip()}"
        else:
            indent = None
    return out


def comment_entries(cls: type) -> Dict[str, str]:
    """``name -> text`` from the comment on each field's line, else the comment lines right above it."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: Dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: Dict[str, str] = {}
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    for node in body.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        row = node.lineno
        if row in comments and lines[row - 1].split("#")[0].strip():
            out[node.target.id] = comments[row]
            continue
        above = []
        row -= 1
        while row in comments and not lines[row - 1].split("#")[0].strip():
            above.insert(0, comments[row])
            row -= 1
        if above:
            out[node.target.id] = " ".join(above)
    return out


def field_descriptions(cls: type) -> Dict[str, str]:
    """Every documented field of dataclass ``cls``: docstring entry first, then the field's comments."""
    entries, comments = docstring_entries(cls), comment_entries(cls)
    out = {}
    for f in dataclasses.fields(cls):
        text = entries.get(f.name) or comments.get(f.name)
        if text:
            out[f.name] = text
    return out


def class_summary(cls: type) -> str:
    """The docstring of ``cls`` up to its first section (``Args:``, ``Example::``...), as one paragraph."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclass writes for a class without a docstring
        return ""
    kept = []
    for line in doc.splitlines():
        if _SECTION.match(line) or line.strip().endswith("::") or line.strip().startswith(">>>"):
            break
        kept.append(line.strip())
    return " ".join(" ".join(kept).split())
