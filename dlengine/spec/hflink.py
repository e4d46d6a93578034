"""``hf://`` links: one file of a HuggingFace Hub repository.

::

    hf://[datasets/|models/]<org>/<name>[@<revision>]/<path in repo>
    hf://[datasets/|models/]<name>@<revision>/<path in repo>   (legacy ids without an org)

``datasets/`` selects a dataset repo (default: a model). The revision (a
branch, tag or commit; default ``main``) and the path are percent-encoded,
so ``refs/pr/1`` is written ``@refs%2Fpr%2F1`` and a ``#`` in a file name
``%23``. A legacy id has a single segment and must name its revision:
``hf://gpt2/config.json`` is the file ``config.json`` of the repo ``gpt2/...``
otherwise. The Hub reserves ``datasets`` and ``models``: no org has those names.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from dlengine.errors import SpecError
from dlengine.records import frozen

DEFAULT_REVISION = "main"
_TYPE_PREFIXES = {"datasets": "dataset", "models": "model"}
_URL_PREFIXES = {"dataset": "datasets/", "model": ""}


@frozen
class HubFile:
    """One file of a Hub repository at a revision."""

    repo_type: str  # "model" or "dataset"
    repo_id: str  # "org/name" (or a legacy "name")
    revision: str
    path: str

    def link(self) -> str:
        """The canonical ``hf://`` link (``@main`` left out)."""
        return make_link(self.repo_type, self.repo_id, self.revision, self.path)

    def resolve_url(self, endpoint: str) -> str:
        """``{endpoint}/[datasets/]{repo}/resolve/{revision}/{path}``, as
        huggingface_hub's ``hf_hub_url`` builds it."""
        prefix = _URL_PREFIXES[self.repo_type]
        revision = quote(self.revision, safe="")
        return f"{endpoint.rstrip('/')}/{prefix}{self.repo_id}/resolve/{revision}/{quote(self.path)}"


def make_link(repo_type: str, repo_id: str, revision: str, path: str) -> str:
    """``hf://`` link of ``path`` in a repo; ``path`` may be "" (the prefix
    of every link of that repo and revision)."""
    prefix = _URL_PREFIXES[repo_type]
    at = "" if revision == DEFAULT_REVISION and "/" in repo_id else "@" + quote(revision, safe="")
    return f"hf://{prefix}{repo_id}{at}/{quote(path)}"


def parse_link(link: str, field: str = "link") -> HubFile:
    """The repo, revision and file an ``hf://`` link names."""
    scheme, sep, rest = link.partition("://")
    if not sep or scheme.lower() != "hf":
        raise SpecError(field, f"{_show(link)} is not an hf:// link")
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    segments = rest.split("/")
    repo_type = _TYPE_PREFIXES.get(segments[0], "model")
    if segments[0] in _TYPE_PREFIXES:
        segments = segments[1:]
    repo_parts, revision, path_parts = _split_repo(segments)
    path = unquote("/".join(path_parts))
    if not repo_parts or not all(repo_parts) or any(p in ("", ".", "..") for p in path.split("/")):
        raise SpecError(field, f"{_show(link)}: expected hf://[datasets/]org/name[@revision]/path/to/file")
    return HubFile(repo_type, "/".join(repo_parts), revision, path)


def _split_repo(segments: list[str]) -> tuple[list[str], str, list[str]]:
    """(repo id segments, revision, path segments): the repo ends at the
    segment that carries ``@revision``, else after two segments."""
    for index, segment in enumerate(segments[:2]):
        if "@" in segment:
            name, _, revision = segment.partition("@")
            return [*segments[:index], name], unquote(revision) or DEFAULT_REVISION, segments[index + 1 :]
    return segments[:2], DEFAULT_REVISION, segments[2:]


def _show(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:200] + "...")
