"""The repository stands on its own: no tracked file cites the team's private notes.

Facts about the platform that the code relies on are written down in docs/platform-notes.md;
a comment or document that points outside the repository instead is an error. This file is the
only one allowed to spell the forbidden references, because it looks for them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

#: references to files that live outside the repository (matched without regard to case)
FORBIDDEN = ("FIELD-NOTES", "../shared/", "shared/DESIGN.md")


def tracked_files() -> list[str]:
    """Every path git tracks in this checkout, relative to the repository root."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True)
    return [name for name in listing.stdout.decode("utf-8").split("\0") if name]


def test_no_tracked_file_cites_private_notes() -> None:
    offenders = []
    for name in tracked_files():
        path = ROOT / name
        if name == THIS or not path.is_file():  # itself, or deleted in the working tree
            continue
        text = path.read_bytes().decode("utf-8", errors="replace").lower()
        for reference in FORBIDDEN:
            if reference.lower() in text:
                line = text[: text.index(reference.lower())].count("\n") + 1
                offenders.append(f"{name}:{line}: {reference}")
    assert not offenders, "cite docs/platform-notes.md instead:\n" + "\n".join(offenders)


def test_platform_notes_are_linked_from_readme() -> None:
    assert (ROOT / "docs/platform-notes.md").is_file()
    assert "(docs/platform-notes.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
