import json
import shutil

import pytest

from suggest import artifact as artifact_module
from suggest.artifact import FORMAT_VERSION, build_artifact, load_artifact
from suggest.cli import main
from suggest.errors import ArtifactError
from suggest.pipeline import Pipeline


def _answers(path):
    p = Pipeline.from_artifact(load_artifact(path))
    return [p.suggest(p.make_query(q, k=10, hour=8)) for q in ["", "b", "yog", "bananna", "greek yo"]]


def test_round_trip_is_deterministic(world, artifact_path, tmp_path):
    again = build_artifact(world, tmp_path / "again", progress=False)
    assert _answers(again) == _answers(artifact_path)
    m1 = json.loads((artifact_path / "manifest.json").read_text())
    m2 = json.loads((again / "manifest.json").read_text())
    assert m1["files"] == m2["files"]              # byte-identical index files for the same data
    assert m1["format_version"] == FORMAT_VERSION
    assert m1["counts"]["products"] == len(world.catalog) and m1["counts"]["phrases"] > 0
    assert m1["data"]["checksums"] and m1["built_at"]


@pytest.fixture
def copy(artifact_path, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(artifact_path, dst)
    return dst


def test_corrupt_file_is_refused(copy):
    f = copy / "prefix" / "prefix.npz"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"corrupt: checksum of prefix/prefix.npz"):
        load_artifact(copy)


def test_missing_file_is_refused(copy):
    (copy / "typo" / "trie.npz").unlink()
    with pytest.raises(ArtifactError, match="incomplete: typo/trie.npz is missing"):
        load_artifact(copy)


def test_other_format_version_is_refused(copy):
    m = json.loads((copy / "manifest.json").read_text())
    m["format_version"] = FORMAT_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="format version"):
        load_artifact(copy)


def test_garbled_manifest_and_missing_artifact(copy, tmp_path):
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="manifest.json is corrupt"):
        load_artifact(copy)
    with pytest.raises(ArtifactError, match="not an artifact"):
        load_artifact(tmp_path / "nothing-here")


def test_failed_build_leaves_the_old_artifact_and_no_debris(world, copy, monkeypatch):
    before = _answers(copy)

    class Broken:
        name = "broken"

        @classmethod
        def build(cls, table, data):
            raise RuntimeError("disk full")

    monkeypatch.setattr(artifact_module, "SOURCES", artifact_module.SOURCES + (Broken,))
    with pytest.raises(RuntimeError, match="disk full"):
        build_artifact(world, copy, progress=False)
    assert _answers(copy) == before                         # the previous artifact is still served
    assert [p.name for p in copy.parent.iterdir() if p.name.startswith(".")] == []  # no half-built folder


def test_cli_refuses_a_corrupt_artifact_before_serving(copy, capsys):
    (copy / "phrases" / "texts.txt").write_text("tampered")
    assert main(["serve", "--artifact", str(copy), "--port", "1"]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_cli_build_and_suggest(tmp_path, capsys):
    assert main(["build", "--demo", "--seed", "5", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["suggest", str(tmp_path / "a"), "yog", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "built a@" in out and "yogurt" in out
    assert main(["suggest", str(tmp_path / "a"), "yog", "-k", "0"]) == 2
