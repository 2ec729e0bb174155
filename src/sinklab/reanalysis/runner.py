"""Re-measure runs and pretrained models with the probe callback's own code path.

Every checkpoint goes through the callback's probe pass (`analysis.probe_pass.run_probe_pass`)
with the run's saved probe set, metric thresholds and probe batch size, and the run's
evaluations on their saved inputs (stream, W8A8 windows) and schedules, so a checkpoint
re-measured here gives bit-for-bit the rows the callback logged at that step. One checkpoint
is loaded at a time and dropped before the next, so memory stays flat however long the run
was; the table is appended after every checkpoint, so an interrupted analysis keeps its
progress. A run saved before `callbacks.probe.quant` had its nested sections is read through
`nest_quant`, so it re-measures identically. A Hub model's revisions (`revisions=`) are
measured the same way, one model at a time, as a run's checkpoints (`analyze_trajectory`;
which revisions: `trajectory.py`; fetching them: `hub.py`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from sinklab.analysis.config import GROUPS, MetricsConfig
from sinklab.analysis.interventions import InterventionConfig
from sinklab.analysis.pipeline import head_averaged_patterns
from sinklab.analysis.probe_pass import (
    Evaluation,
    always,
    intervention_evaluation,
    on_schedule,
    quant_evaluation,
    run_probe_pass,
    stream_evaluation,
)
from sinklab.analysis.quant import QUANT_CAUSAL_ONLY, check_causal
from sinklab.analysis.quant_eval import ProbeQuantConfig, merge, nest_quant
from sinklab.analysis.records import read_rows
from sinklab.analysis.streaming import StreamConfig, streams_at
from sinklab.data.probe_set import load_probe_set, save_probe_set
from sinklab.data.run_data import load_stream_ids, save_quant_ids, save_stream_ids
from sinklab.errors import ConfigError
from sinklab.reanalysis import hub, tables
from sinklab.reanalysis.config import AnalyzeConfig
from sinklab.reanalysis.memory import release_memory
from sinklab.reanalysis.targets import (
    HubTarget,
    PretrainedTarget,
    RunTarget,
    resolve,
    select_steps,
)
from sinklab.reanalysis.trajectory import (
    chosen_revisions,
    known_weights,
    moved,
    other_windows,
    recorded_commits,
    same_weights,
)
from sinklab.runs.checkpoints import (
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    checkpoint_name,
    list_checkpoints,
    load_checkpoint_model,
    parse_checkpoint,
)
from sinklab.runs.layout import REANALYSIS_TABLE, RunLayout


class ReanalysisWarning(UserWarning):
    """A checkpoint was skipped (unreadable, unsafe) or an asked-for step does not exist."""


@dataclass
class Report:
    """What one target's analysis did; `table` is the parquet file holding its rows."""

    name: str
    table: Path
    measured: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # already in the table
    failed: list[str] = field(default_factory=list)  # unreadable files
    attention_maps: dict[int, Any] = field(
        default_factory=dict
    )  # layer -> head-averaged map, when asked


def _saved_section(run_dir: Path, key: str) -> Any:
    """One section or value of the run's saved config (.hydra/config.yaml), or None.

    Resolved where possible: the saved file also holds `${hydra:...}` interpolations that
    only resolve inside Hydra, so only this section is resolved.
    """
    path = RunLayout(run_dir).hydra_config
    if not path.is_file():
        return None
    node = OmegaConf.select(
        OmegaConf.load(path), key, default=None, throw_on_resolution_failure=False
    )
    if node is None or not OmegaConf.is_config(node):
        return node
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception:  # an interpolation that needs Hydra: keep the literal values
        return OmegaConf.to_container(node, resolve=False)


def _probe_config(run_dir: Path) -> dict[str, Any]:
    """The run's `callbacks.probe` section (thresholds, batch size, stream settings)."""
    return dict(_saved_section(run_dir, "callbacks.probe") or {})


def stream_config(
    run_section: dict[str, Any] | None, cfg: AnalyzeConfig, window: int
) -> StreamConfig | None:
    """The streaming evaluation to run: the run's `callbacks.probe.stream` (or, for a
    pretrained model, StreamConfig's defaults) with the `stream.*` overrides on top, resolved
    for `window`; None when it is off (see `config.stream_overrides`)."""
    values = dict(run_section or {})
    ran = bool(values.pop("enabled", False)) if run_section is not None else True
    overrides = dict(cfg.stream)
    enabled = overrides.pop("enabled", None)
    if enabled is None:
        enabled = ran and cfg.groups is None
    if not enabled:
        return None
    values.update(overrides)
    values.pop("every_n_probes", None)  # a training schedule, not a measurement setting
    if run_section is None and "sink_counts" not in values:  # StreamConfig's k that fit in C
        cache_len = values.get("cache_len") or window // 2
        fits = [k for k in StreamConfig.sink_counts if k < cache_len]
        values["sink_counts"] = fits or [1]
    return StreamConfig.from_dict(values).resolve(window)


def _run_stream(
    run_dir: Path, probe_cfg: dict[str, Any], cfg: AnalyzeConfig
) -> tuple[StreamConfig, Any] | None:
    """(resolved StreamConfig, the run's saved stream) or None; the stream is built (and
    saved) from the run's data config when a run predates it."""
    section = probe_cfg.get("stream")
    if section is None and cfg.stream.get("enabled") is None:
        return None  # a run from before the streaming evaluation: nothing to reproduce
    window = _saved_section(run_dir, "data.seq_len")
    if not isinstance(window, int):
        _warn(f"{run_dir.name}: no data.seq_len in the saved config; streaming evaluation skipped")
        return None
    scfg = stream_config(section, cfg, window)
    if scfg is None:
        return None
    if RunLayout(run_dir).stream_ids.is_file():
        ids = load_stream_ids(run_dir)
    else:
        from sinklab.data.run_data import RunData

        ids = RunData(_saved_section(run_dir, "data"), run_dir).stream_ids(scfg.stream_len)
    if len(ids) < (scfg.stream_len or 0) and cfg.stream.get("stream_len") is None:
        scfg = replace(scfg, stream_len=len(ids))  # a short validation split, as in training
    if len(ids) != scfg.stream_len:
        raise ConfigError(
            "stream.stream_len",
            f"{scfg.stream_len}: the run's saved stream ({RunLayout(run_dir).stream_ids}) has "
            f"{len(ids)} tokens; keep the run's stream length",
        )
    return scfg, ids


def _stream_schedule(
    run_dir: Path, probe_cfg: dict[str, Any], cfg: AnalyzeConfig
) -> Callable[[int], bool]:
    """step -> whether to stream there: where the run's callback did (its every_n_probes on
    its probe schedule), or at every checkpoint when `stream.enabled=true` is asked for."""
    run_every_n = (probe_cfg.get("stream") or {}).get("every_n_probes")
    every_n = int(cfg.stream.get("every_n_probes", run_every_n) or 1)
    max_steps = _saved_section(run_dir, "trainer.max_steps")
    until, every = probe_cfg.get("log_spaced_until"), probe_cfg.get("every")
    known = all(isinstance(v, int) for v in (max_steps, until, every))
    if cfg.stream.get("enabled") or every_n == 1 or not known:
        return lambda step: True
    from sinklab.runs.schedule import log_spaced_steps  # Lightning-free

    steps = log_spaced_steps(max_steps, until, every)
    return lambda step: streams_at(step, steps, every_n, max_steps)


def quant_config(run_section: dict[str, Any] | None, cfg: AnalyzeConfig) -> ProbeQuantConfig | None:
    """The W8A8 evaluation to run: the run's `callbacks.probe.quant` (either layout; a
    pretrained model: ProbeQuantConfig's defaults) with the `quant.*` overrides on top; None
    when it is off (see `config.quant_overrides`)."""
    values = nest_quant(run_section or {})
    ran = bool(values.get("enabled", False))
    enabled = cfg.quant.get("enabled")
    if enabled is None:
        enabled = ran and cfg.groups is None
    if not enabled:
        return None
    return ProbeQuantConfig.from_dict(merge(values, {**cfg.quant, "enabled": True}), "quant")


def _run_quant(
    run_dir: Path, probe_cfg: dict[str, Any], cfg: AnalyzeConfig
) -> tuple[ProbeQuantConfig, Any, Callable[[int], bool]] | None:
    """(config, the run's saved windows, step -> due) or None. The windows are built (and
    saved) from the run's data config when the run did not save them; the schedule is the
    callback's, or every checkpoint when `quant.enabled=true` is asked for."""
    qcfg = quant_config(probe_cfg.get("quant"), cfg)
    if qcfg is None:
        return None
    refuse_encoder_quant(run_dir)
    from sinklab.data.run_data import RunData

    data = RunData(_saved_section(run_dir, "data"), run_dir)
    ids = data.quant_ids(qcfg.eval_windows, qcfg.quantizer.calibration_batches)
    limit = _saved_section(run_dir, "model.max_seq_len")
    sinks = _saved_section(run_dir, "model.n_sink_tokens") or 0
    room = limit - sinks if isinstance(limit, int) and isinstance(sinks, int) else None
    check_quant_inputs(qcfg, ids.eval_ids.shape[1], room, ids.bos_id)
    max_steps = _saved_section(run_dir, "trainer.max_steps")
    until, every = probe_cfg.get("log_spaced_until"), probe_cfg.get("every")
    known = all(isinstance(v, int) for v in (max_steps, until, every))
    if cfg.quant.get("enabled") or not known:
        return qcfg, ids, lambda step: True
    return qcfg, ids, lambda step: qcfg.due(step, max_steps, until, every)


def check_quant_inputs(
    qcfg: ProbeQuantConfig, window: int, room: int | None, bos_id: int | None
) -> None:
    """Before any work: the prefixes fit the model's window (`room` positions) and the `bos`
    prefix has a BOS token; one-line errors naming `quant.prefix.<key>`."""
    qcfg.check_fits(window, room, key="quant")
    qcfg.check_bos(bos_id, key="quant")


def refuse_encoder_quant(run_dir: Path) -> None:
    """The W8A8 evaluation asked for on an encoder run: one line naming `quant.enabled`,
    before any checkpoint is loaded (the saved config says what the run trained)."""
    if _saved_section(run_dir, "model.causal") is False:
        raise ConfigError(
            "quant.enabled",
            f"{QUANT_CAUSAL_ONLY}; {run_dir.name} is an encoder (model.causal=false)",
        )


def intervention_config(
    run_section: dict[str, Any] | None, cfg: AnalyzeConfig
) -> InterventionConfig | None:
    """The interventions to run: the run's `callbacks.probe.interventions` (a pretrained
    model: InterventionConfig's defaults) with the `interventions.*` overrides on top; None when
    they are off (see `config.intervention_overrides`)."""
    values = dict(run_section or {})
    enabled = cfg.interventions.get("enabled")
    if enabled is None and cfg.groups is not None:
        enabled = "interventions" in cfg.groups
    elif enabled is None:
        enabled = bool(values.get("enabled", False))
    if not enabled:
        return None
    merged = {**values, **cfg.interventions, "enabled": True}
    return InterventionConfig.from_dict(merged, "interventions")


def _intervention_schedule(
    run_dir: Path, probe_cfg: dict[str, Any], icfg: InterventionConfig, cfg: AnalyzeConfig
) -> Callable[[int], bool]:
    """step -> whether the interventions run there: the callback's schedule when the run's
    own setting decides, every selected checkpoint when they are asked for."""
    max_steps = _saved_section(run_dir, "trainer.max_steps")
    until, every = probe_cfg.get("log_spaced_until"), probe_cfg.get("every")
    known = all(isinstance(v, int) for v in (max_steps, until, every))
    if cfg.interventions.get("enabled") or cfg.groups is not None or not known:
        return always
    return on_schedule(icfg, max_steps, until, every)


def metrics_config(base: dict[str, Any], cfg: AnalyzeConfig) -> MetricsConfig:
    """The run's thresholds (`base`), then `metrics=` overrides, then the `groups=` switch."""
    values = {**base, **cfg.metrics}
    if cfg.groups is not None:
        values.update({g: g in cfg.groups for g in GROUPS})
    try:
        return MetricsConfig.from_dict(values)
    except TypeError as err:
        from sinklab.errors import ConfigError

        raise ConfigError("metrics", str(err)) from None


def run_evaluations(
    run_dir: Path, probe_cfg: dict[str, Any], cfg: AnalyzeConfig
) -> list[Evaluation]:
    """The run's evaluations to repeat (as its callback's `probe_evaluations`, on the saved
    inputs and schedules), with the `stream.*` and `quant.*` overrides."""
    out = []
    stream = _run_stream(run_dir, probe_cfg, cfg)
    stream_due = _stream_schedule(run_dir, probe_cfg, cfg)
    if stream is not None:
        out.append(stream_evaluation(*stream, stream_due))
    quant = _run_quant(run_dir, probe_cfg, cfg)
    if quant is not None:
        out.append(quant_evaluation(*quant, key="quant"))
    icfg = intervention_config(probe_cfg.get("interventions"), cfg)
    if icfg is not None:
        mcfg = metrics_config(dict(probe_cfg.get("metrics") or {}), cfg)
        due = _intervention_schedule(run_dir, probe_cfg, icfg, cfg)
        out.append(intervention_evaluation(icfg, mcfg, due))
    return out


def _config_hash(run_dir: Path) -> str:
    """The hash the callback stamped on its rows, else a hash of the saved config file."""
    probes = RunLayout(run_dir).probes_table
    if probes.is_file():
        hashes = read_rows(probes)["config_hash"].dropna()
        if len(hashes):
            return str(hashes.iloc[0])
    cfg = RunLayout(run_dir).hydra_config
    return hashlib.sha256(cfg.read_bytes()).hexdigest()[:12] if cfg.is_file() else ""


def table_path(run_dir: Path, cfg: AnalyzeConfig, n_runs: int) -> Path:
    """`<run>/metrics/reanalysis.parquet`, or under out_dir (one subfolder per job of a sweep)."""
    if cfg.out_dir is None:
        return RunLayout(run_dir).reanalysis_table
    out = Path(cfg.out_dir)
    return (out / run_dir.name if n_runs > 1 else out) / REANALYSIS_TABLE


def _warn(message: str) -> None:
    warnings.warn(message, ReanalysisWarning, stacklevel=3)


def analyze_run(target: RunTarget, cfg: AnalyzeConfig, n_runs: int = 1) -> Report:
    """Measure the selected checkpoints of one run; already measured ones are skipped."""
    run_dir = target.run_dir
    probe_cfg = _probe_config(run_dir)
    mcfg = metrics_config(dict(probe_cfg.get("metrics") or {}), cfg)
    batch_size = cfg.batch_size or int(probe_cfg.get("batch_size") or 25)
    probe_set = load_probe_set(run_dir)
    evaluations = run_evaluations(run_dir, probe_cfg, cfg)
    run_id, config_hash = run_dir.name, _config_hash(run_dir)
    out = table_path(run_dir, cfg, n_runs)
    report = Report(run_id, out)

    if target.only is not None:
        chosen = []
        for p in target.only:
            chosen.append(parse_checkpoint(p))
    else:
        chosen, missing = select_steps(list_checkpoints(run_dir), cfg.steps)
        if missing:
            _warn(f"{run_id}: no checkpoint for steps {missing}")
    names = {checkpoint_name(c.step, c.tokens_seen) for c in chosen if c.step >= 0}
    if cfg.force:
        tables.drop_checkpoints(out, run_id, names)
    done = set() if cfg.force else tables.measured_checkpoints(out, run_id)

    bar = tqdm(chosen, desc=f"analyze {run_id}", unit="ckpt", disable=not cfg.progress)
    for ckpt in bar:
        name = checkpoint_name(ckpt.step, ckpt.tokens_seen) if ckpt.step >= 0 else None
        if name in done:
            report.skipped.append(ckpt.step)
            continue
        try:
            model, info = load_checkpoint_model(ckpt.path)
        except (UnreadableCheckpointError, UnsafeCheckpointError) as err:
            _warn(f"skipping checkpoint: {err}")
            report.failed.append(str(ckpt.path))
            continue
        name = checkpoint_name(info.step, info.tokens_seen)
        if name in done and ckpt.step < 0:  # last.ckpt named a step measured before
            report.skipped.append(info.step)
            del model
            continue
        if cfg.force and ckpt.step < 0:
            tables.drop_checkpoints(out, run_id, {name})
        model.to(cfg.device)
        result = run_probe_pass(
            model,
            probe_set,
            mcfg,
            evaluations,
            step=info.step,
            batch_size=batch_size,
            device=cfg.device,
            measure_on=cfg.measure_on,
            tags={
                "run_id": run_id,
                "step": info.step,
                "tokens_seen": info.tokens_seen,
                "config_hash": config_hash,
                "checkpoint": name,
            },
        )
        tables.append_rows(out, result.rows)
        done.add(name)
        report.measured.append(info.step)
        del model, result, info
        release_memory()
    if out.exists():
        tables.write_csv(out)
    return report


def analyze_pretrained(
    target: PretrainedTarget,
    cfg: AnalyzeConfig,
    map_layers: tuple[int, ...] = (),
    source: str | None = None,
) -> Report:
    """Measure an imported model on a probe set cut from `cfg.corpus` with its own tokenizer.

    Rows get step = tokens_seen = -1 (no training step) and checkpoint = the model source
    (`source`, default `<kind>:<path>`; a Hub model: `hf:<repo>@<revision>:<commit>`).
    The probe set is saved beside the table, so the numbers can be checked later. With the
    streaming evaluation on (`stream.*`), its rows come from the first T tokens of the same
    corpus (saved as probe/stream_ids.npy beside the table), tagged with its own checkpoint
    string so that changing the stream settings measures again. With `quant.enabled=true`
    the W8A8 evaluation runs likewise on windows and calibration batches of the corpus
    (`build_quant_ids`, saved as probe/quant_ids.npz), tagged with its settings. All in one
    probe pass (`run_probe_pass`), as the callback's.
    `map_layers`: also keep those layers' head-averaged attention maps (from the same capture,
    so a report needs no second load and forward of the model).
    """
    from sinklab.reanalysis.corpus_probe import corpus_documents, load_pretrained

    folder = pretrained_folder(target.name, cfg)
    out = folder / REANALYSIS_TABLE
    if source is None:
        source = target.kind if target.path is None else f"{target.kind}:{target.path}"
    report = Report(target.name, out)
    plan = pretrained_plan(source, cfg)
    if cfg.force:
        tables.drop_checkpoints(out, target.name, plan.tags)
    todo = plan.tags - tables.measured_checkpoints(out, target.name)
    if not todo:
        report.skipped.append(-1)
        return report
    docs = corpus_documents(cfg.corpus, cfg.cache_dir)
    model, tokenizer = load_pretrained(target.kind, target.path, cfg.cache_dir)
    tags = {"run_id": target.name, "step": -1, "tokens_seen": -1, "config_hash": ""}
    rows, report.attention_maps, _ = measure_pretrained(
        model, tokenizer, docs, plan, todo, cfg, folder, tags, map_layers
    )
    tables.append_rows(out, rows)
    tables.write_csv(out)
    report.measured.append(-1)
    return report


def pretrained_folder(name: str, cfg: AnalyzeConfig) -> Path:
    """Where a pretrained model's table and probe inputs go: out_dir, else
    <paths.output_dir>/analysis/<name>."""
    return Path(cfg.out_dir) if cfg.out_dir else Path(cfg.output_dir) / "analysis" / name


@dataclass(frozen=True)
class PretrainedPlan:
    """What one pretrained model gets measured with, and the checkpoint string each part's
    rows carry (the source and the settings), so a changed setting measures again."""

    mcfg: MetricsConfig
    probe_tag: str
    scfg: StreamConfig | None
    stream_tag: str
    qcfg: ProbeQuantConfig | None
    quant_tag: str
    icfg: InterventionConfig | None
    edit_tag: str
    tags: frozenset[str]  # the parts to measure


def pretrained_plan(source: str, cfg: AnalyzeConfig) -> PretrainedPlan:
    """The measurements `cfg` asks of a pretrained model named `source`, and their tags."""
    probe_tag = f"{source}|{cfg.corpus}|{cfg.n_windows}x{cfg.seq_len}|bos={cfg.bos}"
    scfg = stream_config(None, cfg, cfg.seq_len)
    stream_tag = f"{source}|{cfg.corpus}|stream {stream_tag_of(scfg)}|bos={cfg.bos}" if scfg else ""
    qcfg = quant_config(None, cfg)
    quant_tag = f"{source}|{cfg.corpus}|quant {quant_tag_of(qcfg, cfg.seq_len)}|bos={cfg.bos}"
    icfg = intervention_config(None, cfg)
    kinds = ",".join(icfg.kinds) if icfg else ""
    edit_tag = f"{source}|{cfg.corpus}|{cfg.n_windows}x{cfg.seq_len}|interventions [{kinds}]"
    edit_tag += f"|bos={cfg.bos}"
    mcfg = metrics_config({}, cfg)
    # groups=[interventions] alone measures nothing else: no probe rows to tag as measured
    measuring = bool(set(mcfg.groups()) - {"interventions"})
    tags = {probe_tag} if measuring else set()
    tags |= ({stream_tag} if scfg else set()) | ({quant_tag} if qcfg else set())
    tags |= {edit_tag} if icfg else set()
    return PretrainedPlan(
        mcfg, probe_tag, scfg, stream_tag, qcfg, quant_tag, icfg, edit_tag, frozenset(tags)
    )


def measure_pretrained(
    model: Any,
    tokenizer: Any,
    docs: list[str],
    plan: PretrainedPlan,
    todo: set[str] | frozenset[str],
    cfg: AnalyzeConfig,
    folder: Path,
    tags: dict[str, object],
    map_layers: tuple[int, ...] = (),
) -> tuple[pd.DataFrame, dict[int, Any], Any]:
    """One probe pass over a loaded pretrained model: the parts of `plan` whose tags are in
    `todo`, on inputs cut from `docs` with its tokenizer (saved in `folder`). Returns the
    rows tagged with `tags` (run_id, step, ...), the attention maps of `map_layers` and the
    probe windows' token ids."""
    from sinklab.reanalysis.corpus_probe import build_probe_set

    qcfg, icfg = plan.qcfg, plan.icfg
    if qcfg is not None:  # before any measuring or writing
        check_causal(model, "quant.enabled")
        arch = getattr(model, "cfg", None)  # not `mcfg`: the metric thresholds keep that name
        limit = getattr(arch, "max_seq_len", None)
        room = None if limit is None else limit - (getattr(arch, "n_sink_tokens", 0) or 0)
        check_quant_inputs(qcfg, cfg.seq_len, room, getattr(tokenizer, "bos_token_id", None))
    model.to(cfg.device)
    probe_set = build_probe_set(tokenizer, docs, cfg.n_windows, cfg.seq_len, cfg.bos)
    if plan.probe_tag in todo or plan.edit_tag in todo:  # the windows the rows were measured on
        save_probe_set(probe_set, folder)
    scfg = plan.scfg
    stream = (scfg, plan.stream_tag) if scfg is not None and plan.stream_tag in todo else None
    quant = (qcfg, plan.quant_tag) if qcfg is not None and plan.quant_tag in todo else None
    evaluations = pretrained_evaluations(tokenizer, docs, folder, cfg, stream, quant)
    if icfg is not None and plan.edit_tag in todo:
        evaluations.append(
            intervention_evaluation(icfg, plan.mcfg, tags={"checkpoint": plan.edit_tag})
        )
    step = int(tags.get("step", -1))  # type: ignore[call-overload]
    result = run_probe_pass(
        model,
        probe_set,
        plan.mcfg,
        evaluations,
        step=step,
        batch_size=cfg.batch_size or 25,
        device=cfg.device,
        measure_on=cfg.measure_on,
        measure=plan.probe_tag in todo,
        measure_tags={"checkpoint": plan.probe_tag},
        tags=tags,
    )
    maps: dict[int, Any] = {}
    if result.probe is not None and map_layers:
        kept = [i for i in map_layers if i < result.probe.n_layers]
        maps = dict(zip(kept, head_averaged_patterns(result.probe, kept), strict=True))
    return result.rows, maps, probe_set.input_ids


def pretrained_evaluations(
    tokenizer: Any,
    docs: list[str],
    folder: Path,
    cfg: AnalyzeConfig,
    stream: tuple[StreamConfig, str] | None,
    quant: tuple[ProbeQuantConfig, str] | None,
) -> list[Evaluation]:
    """A pretrained model's evaluations (each None: not to run), on inputs cut from the corpus
    with its tokenizer and saved in `folder`; each tags its rows with its own checkpoint
    string (its settings), so that changing them measures again."""
    from sinklab.reanalysis.corpus_probe import build_quant_ids, build_stream

    out = []
    if stream is not None:
        scfg, tag = stream
        assert scfg.stream_len is not None
        ids = build_stream(tokenizer, docs, scfg.stream_len, cfg.bos)
        save_stream_ids(ids, folder)
        out.append(stream_evaluation(scfg, ids, tags={"checkpoint": tag}))
    if quant is not None:
        qcfg, tag = quant
        shape = (qcfg.quantizer.calibration_batches, qcfg.quantizer.batch_size)
        qids = build_quant_ids(tokenizer, docs, qcfg.eval_windows, shape, cfg.seq_len, cfg.bos)
        save_quant_ids(qids, folder)
        out.append(quant_evaluation(qcfg, qids, key="quant", tags={"checkpoint": tag}))
    return out


def stream_tag_of(cfg: StreamConfig | None) -> str:
    """The settings that change a stream measurement, in a short readable form."""
    if cfg is None:
        return ""
    names = ",".join(c.name for c in cfg.condition_list())
    return (
        f"T={cfg.stream_len} C={cfg.cache_len} [{names}] stride={cfg.recompute_stride} "
        f"bucket={cfg.bucket_len}"
    )


def quant_tag_of(cfg: ProbeQuantConfig | None, seq_len: int) -> str:
    """The settings that change a W8A8 measurement of a pretrained model, short and readable."""
    if cfg is None:
        return ""
    q, p = cfg.quantizer, cfg.prefix
    tag = (
        f"{cfg.eval_windows}x{seq_len} calib {q.calibration_batches}x{q.batch_size} "
        f"W{q.bits}A{q.bits} {q.weight_granularity} [{','.join(q.modes)}]"
    )
    if p.prefixes:
        tag += (
            f" prefixes [{','.join(p.prefixes)}] max_len={p.max_len} eta={p.eta:g} "
            f"candidates={p.n_candidates} min_gain={p.min_gain:g} "
            f"search={p.search_batches}"
        )
    return tag


def analyze(cfg: AnalyzeConfig) -> list[Report]:
    """Resolve `cfg.target` and measure every run (or the pretrained model) it names."""
    targets = resolve(cfg.target)
    for target in targets:  # an encoder in a sweep is refused before any job is measured
        if isinstance(target, RunTarget) and quant_config(
            _probe_config(target.run_dir).get("quant"), cfg
        ):
            refuse_encoder_quant(target.run_dir)
    reports = []
    for target in targets:
        if isinstance(target, HubTarget):
            reports.append(analyze_hub(target, cfg))
        elif isinstance(target, PretrainedTarget):
            reports.append(analyze_pretrained(target, cfg))
        else:
            reports.append(analyze_run(target, cfg, n_runs=len(targets)))
    return reports


def analyze_hub(target: HubTarget, cfg: AnalyzeConfig) -> Report:
    """A Hub model: with `revisions`, its trajectory (`analyze_trajectory`); else
    its main revision fetched into the HF cache and measured as a local folder, the rows'
    checkpoint naming the repo and the commit read."""
    if cfg.revisions is not None:
        return analyze_trajectory(target.repo_id, cfg)
    local, source = hub_main(target, cfg.progress)
    return analyze_pretrained(local, cfg, source=source)


def hub_main(target: HubTarget, progress: bool = True) -> tuple[PretrainedTarget, str]:
    """A Hub model's main revision fetched into the HF cache, as a local pretrained target
    named after the repo, and the source its rows' checkpoint carries
    (`hf:<repo>@main:<commit>`); a revision that cannot be fetched is a ConfigError."""
    try:
        snap = hub.fetch(target.repo_id, None, progress=progress)
    except hub.RevisionUnavailable as err:
        raise ConfigError("target", str(err)) from None
    local = PretrainedTarget("hf", snap.folder, label=target.name)
    return local, f"hf:{target.repo_id}@{snap.revision}:{snap.commit}"


def analyze_trajectory(repo_id: str, cfg: AnalyzeConfig) -> Report:
    """Measure the revisions `cfg.revisions` of a Hub repo, one row set per revision, as a
    run's checkpoints (see `trajectory.py`): skipped when their pinned commit is in the table,
    one line for each that cannot be fetched or loaded, one model in memory at a time."""
    from sinklab.reanalysis.corpus_probe import corpus_documents, load_pretrained

    assert cfg.revisions is not None
    name = hub.model_name(repo_id)
    folder = pretrained_folder(name, cfg)
    out = RunLayout(folder).reanalysis_table
    report = Report(name, out)
    refs = hub.list_refs(repo_id)
    wanted = chosen_revisions(repo_id, cfg.revisions, refs)
    weights = known_weights(out, name)
    recorded = recorded_commits(out, name, repo_id)
    measured = tables.measured_checkpoints(out, name)
    docs: list[str] | None = None
    windows: tuple[str, Any] | None = None  # whose windows the others are compared with
    if RunLayout(folder).probe_ids.is_file():
        windows = ("the revisions measured before", load_probe_set(folder).input_ids)

    def todo_of(revision: str, commit: str) -> tuple[PretrainedPlan, set[str]]:
        plan = pretrained_plan(f"hf:{repo_id}@{revision}:{commit}", cfg)
        if cfg.force:
            tables.drop_checkpoints(out, name, set(plan.tags))
            measured.difference_update(plan.tags)
        return plan, set(plan.tags) - measured

    bar = tqdm(wanted, desc=f"analyze {name}", unit="rev", disable=not cfg.progress)
    for revision in bar:
        step = hub.parse_revision(revision)[0]
        assert step is not None  # chosen_revisions refuses a name without one
        pinned = recorded.get(revision) if cfg.force else None  # re-measure the same bytes
        commit = pinned or refs.get(revision)
        if commit is not None and not todo_of(revision, commit)[1]:
            report.skipped.append(step)  # this commit is already measured: no download
            continue
        try:
            snap = hub.fetch(repo_id, revision, progress=cfg.progress, commit=pinned)
        except hub.RevisionUnavailable as err:
            _warn(f"skipping revision {revision}: {err}")
            report.failed.append(revision)
            continue
        if recorded.get(revision, snap.commit) != snap.commit:
            _warn(moved(name, revision, recorded[revision], snap.commit))
        plan, todo = todo_of(revision, snap.commit)  # the commit read, should the ref have moved
        if not todo:
            report.skipped.append(step)
            continue
        sha = hub.weights_sha256(snap.folder)
        if sha in weights and weights[sha] != revision:
            _warn(same_weights(name, revision, weights[sha], sha))
        try:
            model, tokenizer = load_pretrained("hf", snap.folder, cfg.cache_dir)
        except ConfigError:
            raise  # refused architecture or remote code: every revision would be
        except Exception as err:  # a torn or unreadable weight file: this revision only
            _warn(f"skipping revision {revision}: {type(err).__name__}: {err}".splitlines()[0])
            report.failed.append(revision)
            continue
        if docs is None:
            docs = corpus_documents(cfg.corpus, cfg.cache_dir)
        tags = {
            "run_id": name,
            "step": step,
            "tokens_seen": hub.tokens_seen(repo_id, revision),
            "config_hash": "",
            "revision": revision,
            "weights_sha256": sha,
        }
        rows, _, ids = measure_pretrained(model, tokenizer, docs, plan, todo, cfg, folder, tags)
        if windows is not None and not torch.equal(windows[1], ids):
            _warn(other_windows(name, revision, windows[0]))
        windows = windows or (revision, ids)
        tables.append_rows(out, rows)
        measured |= todo
        weights.setdefault(sha, revision)
        report.measured.append(step)
        del model, tokenizer, rows
        release_memory()
    if out.exists():
        tables.write_csv(out)
    return report


def with_options(cfg: AnalyzeConfig, **changes: Any) -> AnalyzeConfig:
    """A copy of `cfg` with some fields changed (tests and scripts)."""
    return replace(cfg, **changes)


def load_table(path: Path) -> pd.DataFrame:
    return read_rows(path)
