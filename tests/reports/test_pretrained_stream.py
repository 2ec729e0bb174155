"""The pretrained streaming table: every column on one set of positions, the stride-1 oracle
run in resumable interleaved parts, and the doc block it writes (issue 31 item 5)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sinklab.analysis.streaming import StreamConfig, StreamNLL, recompute_nll, stream_nll
from sinklab.errors import ConfigError
from sinklab.model import build_model
from sinklab.reports.pretrained import (
    condition_label,
    interleaved_offsets,
    load_stream_nll,
    oracle_by_parts,
    replace_block,
    save_stream_nll,
    shared_positions,
    stream_markdown,
    stream_table,
)
from tests.model.helpers import tiny

T, C = 40, 8


def _model():
    torch.manual_seed(0)
    return build_model(tiny(max_seq_len=32)).eval()


def _ids() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(0, 32, (T,))


def _cfg(**kw) -> StreamConfig:
    return StreamConfig(stream_len=T, cache_len=C, sink_counts=(1,), **kw)


def _ppl(nll: torch.Tensor) -> float:
    return math.exp(float(nll.double().mean()))


def test_every_row_of_the_table_uses_all_positions_after_the_cache_fills() -> None:
    result = stream_nll(_model(), _ids(), _cfg())
    rows = stream_table(result, subset_stride=4)
    assert [r.positions for r in rows] == [T - 1 - C] * len(result.nll)
    # the every-4th subset: t = C - 1 + 4k with C <= t <= T - 2, i.e. 11, 15, ..., 35
    assert [r.subset_positions for r in rows] == [len(range(11, T - 1, 4))] * len(rows)
    oracle = result.nll["recompute"]
    for r in rows:
        nll = result.nll[r.condition]
        assert r.ppl == pytest.approx(_ppl(nll[C:]), rel=1e-9)
        assert r.ratio == pytest.approx(_ppl(nll[C:]) / _ppl(oracle[C:]), rel=1e-9)
        sub = torch.arange(11, T - 1, 4)
        assert r.subset_ratio == pytest.approx(_ppl(nll[sub]) / _ppl(oracle[sub]), rel=1e-9)
    assert {r.condition: r.ratio for r in rows}["recompute"] == 1.0


def test_a_strided_oracle_confines_every_column_to_its_positions() -> None:
    result = stream_nll(_model(), _ids(), _cfg(recompute_stride=3))
    ran = result.nll["recompute"][C:].isfinite()
    rows = stream_table(result)
    assert {r.positions for r in rows} == {int(ran.sum())} and int(ran.sum()) < T - 1 - C
    dense = next(r for r in rows if r.condition == "dense")
    assert dense.ppl == pytest.approx(_ppl(result.nll["dense"][C:][ran]), rel=1e-9)
    assert torch.equal(shared_positions(result)[C:], ran)


def test_the_table_needs_the_oracle() -> None:
    result = stream_nll(_model(), _ids(), _cfg(conditions=("window",)))
    with pytest.raises(ConfigError) as err:
        stream_table(result)
    assert str(err.value) == "stream.conditions: the table needs the recompute oracle; add it"


def test_interleaved_offsets_halve_the_gap_after_each_power_of_two_passes() -> None:
    order = interleaved_offsets(16)
    assert order == [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15]
    for n in (1, 2, 4, 8, 16):  # after n passes: every (16 / n)th position
        assert sorted(order[:n]) == list(range(0, 16, 16 // n))
    assert interleaved_offsets(1) == [0]
    with pytest.raises(ConfigError) as err:
        interleaved_offsets(12)
    assert str(err.value) == "parts: 12 is not a power of 2"


def test_the_oracle_by_parts_equals_the_stride_1_oracle_and_resumes(tmp_path: Path) -> None:
    model, ids, cfg = _model(), _ids(), _cfg(recompute_batch_size=3).resolve(16)
    with torch.no_grad():
        full = recompute_nll(model, ids, C)
    seen: list[tuple[int, list[int]]] = []
    got = oracle_by_parts(
        model, ids, cfg, 4, lambda o, done: seen.append((int(o.isfinite().sum()), list(done)))
    )
    torch.testing.assert_close(got.float(), full, rtol=0, atol=0)
    # after pass 1 every 4th position from t = C - 1, after 2 every 2nd, then all
    tail = T - 1 - (C - 1)
    assert seen[0] == (C - 1 + len(range(0, tail, 4)), [0])
    assert seen[1] == (C - 1 + len(range(0, tail, 2)), [0, 2])
    assert seen[-1] == (T - 1, [0, 2, 1, 3])

    # a run stopped after two passes resumes from its saved NLL and ends equal
    partial: dict[str, torch.Tensor] = {}
    oracle_by_parts(model, ids, cfg, 4, lambda o, done: partial.setdefault(str(len(done)), o))
    halfway = partial["2"]
    calls: list[list[int]] = []
    resumed = oracle_by_parts(
        model, ids, cfg, 4, lambda o, done: calls.append(list(done)), (halfway, [0, 2])
    )
    assert calls == [[0, 2, 1], [0, 2, 1, 3]]  # only the two missing passes ran
    torch.testing.assert_close(resumed.float(), full, rtol=0, atol=0)


def test_saved_nll_round_trips_with_its_oracle_progress(tmp_path: Path) -> None:
    result = stream_nll(_model(), _ids(), _cfg(recompute_stride=2))
    path = tmp_path / "sub" / "nll.npz"
    save_stream_nll(result, path, (16, [0, 8]))
    loaded, parts = load_stream_nll(path)
    assert parts == (16, [0, 8])
    assert (loaded.stream_len, loaded.cache_len) == (T, C)
    assert set(loaded.nll) == set(result.nll)
    for name, nll in result.nll.items():
        torch.testing.assert_close(loaded.nll[name], nll.double(), rtol=0, atol=0, equal_nan=True)
    assert stream_markdown(loaded) == stream_markdown(result)


def test_the_markdown_states_the_shared_positions_once_and_labels_each_condition() -> None:
    result = stream_nll(_model(), _ids(), _cfg())
    text = stream_markdown(result, subset_stride=4)
    lines = text.splitlines()
    assert lines[0].startswith(
        f"All columns but the last use the same {T - 1 - C} query positions, t = 8 .. 38"
    )
    assert "the last uses the 7 of them at every 4th position" in lines[0]
    body = [ln for ln in lines if ln.startswith("| ") and "---" not in ln][1:]
    assert len(body) == len(result.nll)
    assert body[-1].startswith("| sliding-window recompute (oracle) |") and body[-1].endswith(
        "| 1.000 | 1.000 |"
    )


@pytest.mark.parametrize(
    "name,label",
    [
        ("dense", "dense (no eviction)"),
        ("window", "window 0 + 256"),
        ("window_shift", "window 0 + 256, shift"),
        ("sinks1", "1 sink + 255 recent"),
        ("sinks4_shift", "4 sinks + 252 recent, shift"),
        ("recompute", "sliding-window recompute (oracle)"),
    ],
)
def test_condition_labels(name: str, label: str) -> None:
    assert condition_label(name, 256) == label


def test_replace_block_rewrites_only_between_its_markers() -> None:
    text = "a\n<!-- pretrained:s -->\nold\n<!-- /pretrained:s -->\nb\n"
    assert (
        replace_block(text, "s", "new\n")
        == "a\n<!-- pretrained:s -->\nnew\n<!-- /pretrained:s -->\nb\n"
    )
    with pytest.raises(ConfigError) as err:
        replace_block("a\n", "s", "new")
    assert str(err.value) == (
        "doc: no <!-- pretrained:s --> ... <!-- /pretrained:s --> block; add the two markers where it goes"
    )


def test_an_oracle_gap_is_left_out_of_every_column_not_filled() -> None:
    """A hand-made result: position t = 3 has no oracle NLL, so no column counts it."""
    nan = float("nan")
    nll = {
        "window": torch.tensor([1.0, 1.0, 2.0, 4.0, 6.0]),
        "recompute": torch.tensor([1.0, 1.0, 1.0, nan, 3.0]),
    }
    result = StreamNLL(nll, {}, stream_len=6, cache_len=2)
    rows = {r.condition: r for r in stream_table(result, subset_stride=1)}
    assert rows["window"].positions == 2  # t = 2 and 4; t = 3 has no oracle value
    assert rows["window"].ppl == pytest.approx(math.exp((2.0 + 6.0) / 2))
    assert rows["window"].ratio == pytest.approx(math.exp((2.0 + 6.0) / 2 - (1.0 + 3.0) / 2))


def _script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "pretrained_report.py"
    spec = importlib.util.spec_from_file_location("pretrained_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_renders_a_saved_nll_into_the_doc_block(tmp_path: Path, capsys) -> None:
    result = stream_nll(_model(), _ids(), _cfg())
    saved = tmp_path / "nll.npz"
    save_stream_nll(result, saved)
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n<!-- pretrained:x -->\nstale\n<!-- /pretrained:x -->\nafter\n")
    args = ["--stream", "--from-nll", str(saved), "--write-doc", str(doc), "--block", "x"]
    assert _script().main(args) == 0
    table = stream_markdown(result)
    assert capsys.readouterr().out.strip() == table
    assert (
        doc.read_text() == f"# t\n<!-- pretrained:x -->\n{table}\n<!-- /pretrained:x -->\nafter\n"
    )
