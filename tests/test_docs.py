"""The README stays a five-minute read, every relative link in the documentation resolves, and every `make`
command the README shows names a target and variables that the Makefile has."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300
# [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# A fenced code block: its language and its text.
CODE_BLOCK = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=")


def documentation() -> list[Path]:
    """README.md, CHANGELOG.md and every page under docs/."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    """The link targets of a Markdown page that point into the repository (no URL, no in-page anchor)."""
    text = CODE_BLOCK.sub("", page.read_text(encoding="utf-8"))
    targets = [match.group(1) for match in LINK.finditer(text)]
    return [target for target in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", target)]


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file (anchor removed) does not exist, as they are written."""
    return [target for target in relative_links(page) if not (page.parent / target.split("#")[0]).exists()]


def makefile_interface() -> tuple[set[str], set[str]]:
    """The Makefile's targets (its .PHONY list) and the variables it reads (``VAR ?=`` or ``$(VAR)``)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    (phony,) = re.findall(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    variables = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*\?=", text, re.MULTILINE))
    variables |= set(re.findall(r"\$\(([A-Z_][A-Z0-9_]*)\)", text))
    return set(phony.split()), variables


def make_commands(page: Path) -> list[list[str]]:
    """The words after `make` of every `make ...` line in the page's bash blocks (also after srun or an environment
    assignment), its trailing comment removed."""
    commands = []
    for language, block in CODE_BLOCK.findall(page.read_text(encoding="utf-8")):
        for line in block.splitlines() if language.strip() == "bash" else []:
            if "make" in line.split():
                words = shlex.split(line, comments=True)
                commands.append(words[words.index("make") + 1 :])
    return commands


def test_the_readme_is_a_five_minute_read():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference text to docs/ (at most 300)"


@pytest.mark.parametrize("page", documentation(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert not broken_links(page), f"{page.relative_to(ROOT)} links to missing files: {broken_links(page)}"


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / target.split("#")[0]).resolve() for target in relative_links(ROOT / "README.md")}
    assert not [page.name for page in documentation()[1:] if page.resolve() not in linked]


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text(
        '[ok](there.md) [anchor](there.md#part) [web](https://example.org) [in](#top) [titled](there.md "t")\n'
        "![gone](pictures/missing.png) [gone too](../nowhere.md#part)\n```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page) == ["pictures/missing.png", "../nowhere.md#part"]


@pytest.mark.parametrize("page", documentation(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_make_command_uses_the_makefiles_targets_and_variables(page):
    targets, variables = makefile_interface()
    commands = make_commands(page)
    assert page.name != "README.md" or len(commands) >= 10, "the README's make commands were not found"
    for words in commands:
        named = [word for word in words if not ASSIGNMENT.match(word)]
        assigned = {ASSIGNMENT.match(word).group(1) for word in words if ASSIGNMENT.match(word)}
        assert len(named) == 1 and named[0] in targets, f"make {' '.join(words)}: no such target in the Makefile"
        assert assigned <= variables, f"make {' '.join(words)}: the Makefile reads no {sorted(assigned - variables)}"
