"""Landing zones: where claims files arrive. One interface; local folder today."""

import os
from dataclasses import dataclass

import dagster as dg

from fraud_core.lakehouse import batch_id_for_file
from fraud_core.landing import DEFAULT_MAX_BYTES, FORMATS


@dataclass(frozen=True)
class LandedFile:
    """One file in the landing zone; ``version`` changes when the file is replaced."""

    name: str
    size: int
    modified: float

    @property
    def batch_id(self) -> str:
        return batch_id_for_file(self.name)

    @property
    def version(self) -> str:
        return f"{self.modified:.6f}-{self.size}"


class LocalLanding(dg.ConfigurableResource):
    """A local folder that a claims system drops files into."""

    path: str
    max_file_bytes: int = DEFAULT_MAX_BYTES

    def list_files(self) -> list[LandedFile]:
        """Claims files (by extension), oldest first; other files are ignored."""
        if not os.path.isdir(self.path):
            return []
        files = []
        for entry in os.scandir(self.path):
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in FORMATS:
                stat = entry.stat()
                files.append(LandedFile(entry.name, stat.st_size, stat.st_mtime))
        return sorted(files, key=lambda f: (f.modified, f.name))

    def find(self, batch_id: str) -> LandedFile:
        matches = [f for f in self.list_files() if f.batch_id == batch_id]
        if not matches:
            raise FileNotFoundError(
                f"no landing file for batch {batch_id!r} in {self.path}: the file was moved "
                "or renamed after its partition was added"
            )
        if len(matches) > 1:
            names = ", ".join(f.name for f in matches)
            raise ValueError(f"batch {batch_id!r} is ambiguous: {names}; keep one of them")
        return matches[0]

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.path, name), "rb") as fh:
            return fh.read()
