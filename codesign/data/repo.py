"""Files of a public repository at one pinned commit, read from a local copy or, online, from GitHub.

DecodingTrust's data files and prompt code come from the fork the Decoding Compressed Trust study
ran, pinned to the commit the shared copies were made from. A local source may be a git
directory (bare or a clone: files are read at the pinned commit, exactly) or a plain folder laid
out like the repository (read as is: the caller vouches for its version).
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from codesign.config import ConfigError

DT_REPO = "decoding-comp-trust/DecodingTrust"
DT_COMMIT = "0cf3fc1e77c2c38bae358c57ff2efad76b396c7e"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
TIMEOUT_S = 30


def _git_dir(folder: Path) -> Path | None:
    """The git directory of ``folder`` (a bare repository or a clone), else None."""
    if (folder / "HEAD").is_file() and (folder / "objects").is_dir():
        return folder
    if (folder / ".git").is_dir():
        return folder / ".git"
    return None


class RepoFiles:
    """``read_bytes(path)`` of ``repo`` at ``commit``, from ``source`` (a folder) or GitHub."""

    def __init__(self, source: str | Path | None = None, repo: str = DT_REPO, commit: str = DT_COMMIT):
        self.repo, self.commit = repo, commit
        self.folder = Path(source) if source is not None else None
        self.git = None
        if self.folder is not None:
            if not self.folder.is_dir():
                raise ConfigError(f"--source: {self.folder} is not a folder (allowed: a clone or git directory of "
                                  f"{repo}, or a folder laid out like it)")
            self.git = _git_dir(self.folder)
            if self.git is not None and self._git("cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode:
                raise ConfigError(f"--source: {self.folder} does not hold commit {commit[:7]} of {repo} "
                                  "(allowed: a clone that includes it; git fetch first)")

    @property
    def label(self) -> str:
        """How ``source`` fields name this repository: ``owner/name@<short commit>``."""
        return f"{self.repo}@{self.commit[:7]}"

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "--git-dir", str(self.git), *args], capture_output=True, check=check)

    def read_bytes(self, path: str) -> bytes:
        if self.git is not None:
            r = self._git("show", f"{self.commit}:{path}", check=False)
            if r.returncode:
                raise ConfigError(f"{self.folder}: {path} does not exist at commit {self.commit[:7]}")
            return r.stdout
        if self.folder is not None:
            f = self.folder / path
            if not f.is_file():
                raise ConfigError(f"{self.folder}: {path} not found (the folder must be laid out like {self.repo})")
            return f.read_bytes()
        return fetch_url(RAW_URL.format(repo=self.repo, commit=self.commit, path=path),
                         hint=f"pass --source with a local clone of {self.repo}")

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")


def fetch_url(url: str, hint: str) -> bytes:
    """GET ``url``; an unreachable host (offline) is a :class:`ConfigError` saying what to use instead."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"cannot download {url} ({reason}): this machine looks offline; {hint}") from None
