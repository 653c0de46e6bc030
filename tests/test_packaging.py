"""The built package carries what the installed service needs (migrations, templates, catalogues)
and builds without setuptools warnings (issue 14: migrations found through the installed package)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_migrations_templates_and_catalogues(tmp_path: Path) -> None:
    # a copy: pip builds in the source tree (build/, *.egg-info), which must stay as the checkout has it
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "var", "build", "dist", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", "results"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
                            str(source)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    assert "warning" not in build.stderr.lower(), build.stderr
    (wheel,) = tmp_path.glob("tessera-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "store/migrations").rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    assert migrations and "store/migrations/script.py.mako" in migrations
    assert set(migrations) <= names, set(migrations) - names
    assert "store/schema.py" in names
    assert {"idp/templates/login.html", "idp/translations/zh_Hans_CN/LC_MESSAGES/messages.mo"} <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
