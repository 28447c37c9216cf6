"""The demo: one partition end to end in this process, with plain progress lines, the asset
checks, and a summary to read at the end. Runs go to the persistent instance, so `dagster dev`
shows them afterwards."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable

import dagster as dg

from .checks import build_asset_checks
from .code_location import build_assets
from .config import ProjectConfig
from .partitions import partition_key
from .report import summary
from .store.store import ArtifactStore

STAGES = ["corpus", "sparse_coder", "activations", "latent_shards", "contexts", "explanations", "scores", "report"]
# What each stage's progress line shows, from its metadata (when present).
SHOWN = {
    "corpus": ("n_windows", "n_tokens", "n_documents"),
    "sparse_coder": ("n_latents", "fvu", "l0", "dead_fraction"),
    "activations": ("n_tokens", "nnz", "tok_per_s"),
    "latent_shards": ("n_rows", "n_dead", "mean_density"),
    "contexts": ("n_latents_sampled", "n_skipped", "estimated_llm_requests"),
    "explanations": ("n_explained", "n_failed", "n_skipped", "llm_requests", "llm_cache_hits"),
    "scores": ("n_scored", "n_failed_answers", "llm_requests", "llm_cache_hits"),
    "report": ("n_latents", "n_scored"),
}
# Progress lines instead of Dagster's events; its console log would also repeat every failure
# with its stack, where the demo prints the one line.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _stage_line(result: dg.ExecuteInProcessResult, stage: str) -> str:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == stage]
    if not events:
        return ""
    meta = events[-1].materialization.metadata
    return ", ".join(f"{k} {_value(meta[k].value)}" for k in SHOWN[stage] if k in meta)


def _checks_line(result: dg.ExecuteInProcessResult) -> str:
    evaluations = result.get_asset_check_evaluations()
    if not evaluations:
        return ""
    parts = []
    for e in sorted(evaluations, key=lambda e: e.check_name):
        state = "ok" if e.passed else ("FAILED" if e.severity == dg.AssetCheckSeverity.ERROR else "warn")
        parts.append(f"{e.check_name} {state}" + ("" if e.passed else f" ({e.description})"))
    return "checks: " + ", ".join(parts)


def failure_line(result: dg.ExecuteInProcessResult) -> str:
    """What failed and why, from a failed run: a user error's message alone, or a bug's message."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.event_specific_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            error = data.error.cause or data.error if data.error else None
            if error and error.cls_name == "DagsterAssetCheckFailedError":
                return (f"{error.message.strip()} (its metadata in the UI, `dagster dev`, says why; the thresholds "
                        "are under checks: in the config)")
            return (f"{error.cls_name}: {error.message.strip()} (a bug, not your input: the traceback is in the run "
                    "log, `dagster dev`)" if error else "see the run log in the Dagster UI (dagster dev)")
    return "see the run log in the Dagster UI (dagster dev)"


def _quiet_libraries() -> None:
    """No library progress bars between the progress lines (GGUF conversion, weight loading)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # transformers' GGUF loader draws its own tqdm bar, which no setting above reaches.
    from transformers import modeling_gguf_pytorch_utils as gguf

    gguf.tqdm = functools.partial(gguf.tqdm, disable=True)


def run_demo(cfg: ProjectConfig, instance: dg.DagsterInstance, layer: str, latent_range: str, through: str,
             max_latents: int | None = None, out: Callable[[str], None] = print) -> int:
    """`max_latents`: explain only the most frequently firing ones (a latent selection, stored
    for the partition like any other); None: all."""
    _quiet_libraries()
    assets = build_assets(cfg)
    checks = build_asset_checks(cfg.checks)
    from resources import build_resources

    resources = build_resources(cfg)
    key = partition_key(layer, latent_range)
    keys = {"corpus": None, "sparse_coder": layer, "activations": layer, "report": layer}
    stages = STAGES[: STAGES.index(through) + 1]
    out(f"autointerp demo: {key} through {through}, model {cfg.subject_model.id}, LLM {cfg.llm.model} "
        f"({cfg.llm.backend}); artefacts under {cfg.storage_root}/")
    started = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        partition = keys.get(stage, key)
        out(f"[{i}/{len(stages)}] {stage} [{partition or 'unpartitioned'}] …")
        t0 = time.perf_counter()
        run_config = QUIET
        if stage == "explanations" and max_latents:
            run_config = {**QUIET, "ops": {"explanations": {"config": {"max_latents": max_latents}}}}
        result = dg.materialize([*assets, *checks], selection=[stage], partition_key=partition, resources=resources,
                                instance=instance, raise_on_error=False, run_config=run_config,
                                tags={"autointerp/trigger": "demo"})
        if not result.success:
            out(f"      {stage} failed after {time.perf_counter() - t0:.0f} s (run {result.run_id}):\n"
                f"      {failure_line(result)}")
            return 1
        out(f"      done in {time.perf_counter() - t0:.0f} s: {_stage_line(result, stage)}")
        if line := _checks_line(result):
            out(f"      {line}")
    out(f"finished in {time.perf_counter() - started:.0f} s\n")
    store = resources["storage"].store()
    if STAGES.index(through) >= STAGES.index("explanations"):
        out(summary.partition_table(store, layer, latent_range))
        out("")
        out(summary.cost_line(store, layer, latent_range))
        if max_latents:
            out(f"(the {max_latents} most active latents were explained, to keep the demo short; the rest: "
                f".venv/bin/python -m autointerp_assets explain '{key}' --all)")
    out(next_steps(store, layer, latent_range, through))
    return 0


def next_steps(store: ArtifactStore, layer: str, latent_range: str, through: str) -> str:
    key = f"{layer}|{latent_range}"
    lines = ["", "Where to look next:",
             "  the UI:     DAGSTER_HOME=$PWD/dagster_home .venv/bin/dagster dev   (then http://127.0.0.1:3000)",
             f"  this range: http://127.0.0.1:3000/assets/scores?view=partitions&partition={key.replace('|', '%7C')}"]
    if through == "report":
        lines.append(f"  the report: http://127.0.0.1:3000/assets/report?view=partitions&partition={layer} "
                     f"(plots and tables); {store.uri(f'report/{layer}/summary.parquet')}")
    lines += [f"  review:     .venv/bin/python -m autointerp_assets review '{key}' LATENT accept|reject|edit",
              f"  files:      {store.uri('')}  (plain parquet: polars, duckdb)"]
    return "\n".join(lines)
