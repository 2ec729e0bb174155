"""Bad input: each case exits non-zero with one `error:` line that names the problem.

Most cases call `sinklab.train.run` in-process, exactly as Hydra calls it after composing the
config (same validation, same `fail()`, same exit codes); cases that only the real command line
can hit (an output folder Hydra cannot create, a full disk) run the CLI in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from sinklab.analysis.records import read_rows
from sinklab.runs.checkpoints import load_checkpoint_state
from tests.reliability.helpers import error_line, run_cli, run_in_process, tiny


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["+bogus=1"], "error: bogus: unknown top-level key"),
        (["+model.colour=red"], "error: model.colour"),
        (["+trainer.speed=9"], "error: trainer.speed"),
        (["model.pos=spiral"], "error: model.pos: 'spiral' is not allowed; choose one of: rope"),
        (["model.attention=magic"], "error: model.attention: 'magic' is not allowed"),
        (["model.norm=batchnorm"], "error: model.norm: 'batchnorm' is not allowed"),
        (["model.mlp=moe"], "error: model.mlp: 'moe' is not allowed"),
        (["model.d_model=30"], "error: model.n_heads: n_heads=4 does not divide d_model=30"),
        (
            ["model.n_kv_heads=3"],
            "error: model.n_kv_heads: n_heads=4 is not divisible by n_kv_heads=3",
        ),
        (
            ["model.d_model=36", "model.pos=rope"],
            "error: model.head_dim: RoPE needs an even head_dim, got 9",
        ),
        (
            ["data.seq_len=128"],
            "error: data.seq_len: seq_len=128 (+0 sink tokens) is above model.max_seq_len=64",
        ),
        (["data.min_context=32"], "error: data.min_context: must be < max_context (or seq_len"),
        (["trainer.on_nonfinite=ignore"], "error: trainer.on_nonfinite: 'ignore' is not allowed"),
        # A wrong type reads like a wrong value: one line, the key named.
        (["optim.lr=abc"], "error: optim.lr: must be a number, got 'abc'"),
        (["data.batch_size=2.5"], "error: data.batch_size: must be an integer, got 2.5"),
        (
            ["data.tokenizer.kind=x"],
            "error: data.tokenizer.kind: 'x' is not allowed; choose one of: bpe, byte, char, file",
        ),
        (["trainer.compile=yes"], "error: trainer.compile: must be true or false, got 'yes'"),
        (["optim.grad_clip=big"], "error: optim.grad_clip: must be a number or null, got 'big'"),
        (["seed=abc"], "error: seed: must be an integer, got 'abc'"),
        (["+callbacks.colour=red"], "error: callbacks.colour: unknown key"),
        (
            ["+callbacks.probe.metrics.eps=2.0"],
            "error: callbacks.probe.metrics.eps: must be in (0, 1), got 2.0",
        ),
        (["logger.mode=loud"], "error: logger.mode: 'loud' is not allowed"),
        (
            ["data=text_files", "data.text_files.paths=[/nonexistent/corpus.txt]"],
            "error: data.text_files.paths: no file matches",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith("error") else None,
)
def test_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], expected: str
) -> None:
    run_dir = tmp_path / "run"
    code, line = run_in_process(tiny(tmp_path) + overrides, run_dir, capsys)
    assert code == 2
    assert line.startswith(expected), line
    assert not run_dir.exists(), "nothing is left in outputs/ but the error"


def test_empty_corpus_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n   \n\t\n")
    overrides = ["data=text_files", f"data.text_files.paths=[{corpus}]", "data.bos=none"]
    code, line = run_in_process(tiny(tmp_path) + overrides, tmp_path / "run", capsys)
    assert code == 2
    assert line.startswith("error: data.text_files.paths: empty corpus")


def test_corrupted_tokenizer_and_token_caches_are_rebuilt_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n\n".join(
            f"paragraph {i}: the quick brown fox jumps over the lazy dog {i}." for i in range(60)
        )
    )
    overrides = tiny(tmp_path, steps=1) + [
        "data=text_files",
        f"data.text_files.paths=[{corpus}]",
        "data.text_files.sample_by=paragraph",
        "data.tokenizer.vocab_size=300",
        "data.bos=document_start",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    code, _ = run_in_process(overrides, tmp_path / "first", capsys)
    assert code == 0
    cache = tmp_path / "cache"
    (tokenizer_json,) = cache.rglob("tokenizer.json")
    (train_npy,) = cache.rglob("train.npy")
    good_tokens = train_npy.read_bytes()
    tokenizer_json.write_text('{"version": "1.0", "truncated')
    train_npy.write_bytes(b"\x93NUMPY garbage")
    with pytest.warns(UserWarning) as warned:
        code, _ = run_in_process(overrides, tmp_path / "second", capsys)
    assert code == 0
    messages = [str(w.message) for w in warned]
    assert any("tokenizer cache" in m and "rebuilding it" in m for m in messages), messages
    assert any("token cache" in m and "rebuilding it" in m for m in messages), messages
    json.loads(tokenizer_json.read_text())  # valid again
    assert train_npy.read_bytes() == good_tokens


def test_unwritable_checkpoint_folder_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path the run must write to is blocked (a file where its folder should be)."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").parent.mkdir(parents=True)
    (run_dir / "checkpoints").write_text("not a folder")
    code, line = run_in_process(tiny(tmp_path), run_dir, capsys)
    assert code == 4
    assert (
        line.startswith("error: cannot write output")
        and "checkpoints" in line
        and "not writable" in line
    )


def test_cli_output_folder_that_cannot_be_created_exits_4(tmp_path: Path) -> None:
    """A read-only output folder: tests run as root, where chmod does not stop writes, so the
    output folder is put under a regular file, which no user can create folders in."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    proc = run_cli(tiny(tmp_path) + [f"paths.output_dir={blocker / 'sub'}"], tmp_path)
    assert proc.returncode == 4, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    assert (
        line.startswith("error: cannot write output")
        and "file.txt/sub" in line
        and "Not a directory" in line
    )
    assert "Traceback" not in proc.stderr


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):  # noqa: ANN201
    """A 192 KiB tmpfs: Hydra's files, the first probe rows and a checkpoint or two fit."""
    mount = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({made.stderr.decode().strip()}); test_full_disk_simulated covers it"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_cli_full_disk_exits_4_and_leaves_no_torn_checkpoint(
    tmp_path: Path, tiny_tmpfs: Path
) -> None:
    run_dir = tiny_tmpfs / "run"
    proc = run_cli(tiny(tmp_path) + [f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 4, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    assert line.startswith("error: cannot write output") and "No space left on device" in line, line
    # Whatever made it to disk under a final name is whole; the failed write left nothing.
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        load_checkpoint_state(ckpt)
    assert not list(run_dir.rglob(".*.tmp")), "the failed temporary file is removed"
    read_rows(run_dir / "metrics" / "probes.parquet")


def test_full_disk_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same guarantee where no tmpfs can be mounted: the step-2 checkpoint write fails
    half-way with ENOSPC. The earlier checkpoints and last.ckpt stay whole; the partial file is
    removed."""
    import errno

    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    original = TorchCheckpointIO.save_checkpoint

    def save_checkpoint(self, checkpoint, path, storage_options=None):  # noqa: ANN001, ANN202
        if "step0000002" not in Path(path).name:
            return original(self, checkpoint, path, storage_options)
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", save_checkpoint)
    run_dir = tmp_path / "run"
    code, line = run_in_process(tiny(tmp_path), run_dir, capsys)
    assert code == 4
    assert (
        line.startswith("error: cannot write output") and "No space left on device [ENOSPC]" in line
    )
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name[:11] for p in ckpts.glob("step*.ckpt")) == ["step0000000", "step0000001"]
    assert load_checkpoint_state(ckpts / "last.ckpt")["global_step"] == 0  # full_every: 250
    assert not list(ckpts.glob(".*.tmp"))
