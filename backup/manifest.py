"""The manifest of a backup: what it holds (every file's SHA-256 and size), where each part came
from, and what the deployment had published when it was copied. It is the archive's first member,
so it is encrypted and authenticated with the rest (backup.archive)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from backup.errors import ArchiveDamaged

FORMAT = "tessera-backup-manifest-v1"
NAME = "manifest.json"
#: a manifest larger than this is not one (a million files would be about 130 MB)
MAX_SIZE = 256 * 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass
class Manifest:
    """``created``: when the copy was taken (UTC, ISO 8601); ``database``: ``sqlite`` or
    ``postgresql``; ``sources``: each part's folder on the backed-up host (restore points the
    configuration files at the new ones); ``state``: the audit head, last checkpoint, CRL numbers and
    counts in the copied database; ``left_out``: parts the backup does not hold, and why."""

    created: str
    database: str
    sources: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)
    #: every folder, empty ones too (a SoftHSM2 token folder before its first token)
    folders: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, "created": self.created, "database": self.database,
                           "sources": self.sources, "state": self.state, "left_out": self.left_out,
                           "files": {name: {"sha256": f.sha256, "size": f.size}
                                     for name, f in sorted(self.files.items())}, "folders": sorted(self.folders)},
                          indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise ValueError("format")
            files = {str(name): FileEntry(str(f["sha256"]), int(f["size"])) for name, f in raw["files"].items()}
            folders = [str(name) for name in raw.get("folders", [])]
            return cls(str(raw["created"]), str(raw["database"]), dict(raw.get("sources", {})),
                       dict(raw.get("state", {})), dict(raw.get("left_out", {})), files, folders)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ArchiveDamaged("the archive's manifest is not a Tessera backup manifest") from None

    def summary(self) -> dict[str, Any]:
        """What a person or a script wants to know about the backup (no secrets, no file list)."""
        return {"created": self.created, "database": self.database, "files": len(self.files),
                "bytes": sum(f.size for f in self.files.values()), "state": self.state, "left_out": self.left_out,
                "parts": sorted({name.split("/", 1)[0] for name in self.files})}
