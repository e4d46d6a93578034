"""hf:// links, repo ids as directories, the globs and the job split of
``download --hf-*``, in process (the Hub end to end: tests/e2e/test_hf.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlengine.cli.hf import split
from dlengine.errors import SpecError, UnsafeNameError
from dlengine.sources import hf
from dlengine.sources.base import ObjectInfo
from dlengine.spec import hflink, normalize_link
from dlengine.spec.uri import parse_bucket_uri
from dlengine.storage import layout


def test_split_puts_the_biggest_files_alone() -> None:
    files = [ObjectInfo(name, size) for name, size in (("c", 5), ("big", 100), ("a", 6), ("b", 4), ("huge", 300))]
    batches = [[f.key for f in batch] for batch in split(files, 10)]
    assert batches == [["huge"], ["big"], ["a", "b"], ["c"]]


def test_hf_links_round_trip_and_bad_ones_are_refused() -> None:
    ref = hflink.HubFile("dataset", "org/name", "refs/pr/1", "dir/a #b.txt")
    assert ref.link() == "hf://datasets/org/name@refs%2Fpr%2F1/dir/a%20%23b.txt"
    assert hflink.parse_link(ref.link()) == ref
    assert hflink.parse_link("hf://org/model@v1/x.bin") == hflink.HubFile("model", "org/model", "v1", "x.bin")
    assert hflink.parse_link("hf://gpt2@main/config.json").repo_id == "gpt2"
    assert ref.resolve_url("http://h/") == "http://h/datasets/org/name/resolve/refs%2Fpr%2F1/dir/a%20%23b.txt"
    for bad in ("hf://org/name", "hf://org/name/../x", "hf://../x/y", "hf://org/na--me/x"):
        with pytest.raises(SpecError):
            normalize_link(bad, "link")


def test_a_repo_id_is_two_directories_that_cannot_escape(tmp_path: Path) -> None:
    assert layout.bucket_dir(tmp_path, "hf", "", "org/name") == tmp_path / "hf" / "org" / "name"
    for bad in ("org/..", "../x", "a/b/c", "org/"):
        with pytest.raises(UnsafeNameError):
            layout.bucket_dir(tmp_path, "hf", "", bad)
    assert parse_bucket_uri("hf://datasets/org/name/sub/dir") == (parse_bucket_uri("hf://org/name")[0], "sub/dir")


def test_globs_select_like_huggingface_hub() -> None:
    def selected(*patterns: str, exclude: tuple[str, ...] = ()) -> list[str]:
        paths = ["README.md", "data/a.parquet", "data/sub/b.parquet", "x.json"]
        return [p for p in paths if hf.selects(p, "", "", patterns, exclude)]

    assert selected("*.parquet") == ["data/a.parquet", "data/sub/b.parquet"]  # * crosses /
    assert selected("data/") == ["data/a.parquet", "data/sub/b.parquet"]  # a folder
    assert selected(exclude=("*.md", "data/sub/*")) == ["data/a.parquet", "x.json"]
