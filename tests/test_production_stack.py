"""The production stack run for real: deploy/dagster-postgres.yaml on Debian's PostgreSQL, runs
queued and launched by `dagster-daemon`, the `gpu` and `llm` pools limited with the README's
`dagster instance concurrency set`, and a run killed with kill -9 whose slot run monitoring
frees. The steps (tests/support/pools_location.py) hold their pool slot until released, so
every check below is of a state, never of a duration.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import yaml
from support.postgres import postgres_bin, temporary_postgres
from support.transformers_server import stop_process_group

from autointerp_assets.code_location import build_assets
from autointerp_assets.config_file import load_config

REPO = Path(__file__).parents[1]
INSTANCE = REPO / "deploy" / "dagster-postgres.yaml"
LIMITS = {"gpu": 1, "llm": 2}
BIN = Path(sys.executable).parent


def test_the_pipelines_gpu_and_llm_stages_are_in_their_pools():
    pools = {s.key.to_user_string(): a.op.pool for a in build_assets(load_config()) for s in a.specs}
    assert {k: v for k, v in pools.items() if v} == {"sparse_coder": "gpu", "activations": "gpu",
                                                     "intervention_scores": "gpu", "explanations": "llm",
                                                     "scores": "llm"}


@pytest.fixture(scope="module")
def postgres_url():
    if postgres_bin() is None:
        message = "needs Debian's postgresql (.ci/run installs it: apt-get install -y postgresql)"
        if os.environ.get("AUTOINTERP_REQUIRE_STACK"):
            pytest.fail(message)
        pytest.skip(message)
    with temporary_postgres() as url:
        yield url


def wait_for(what: str, ready: Callable[[], bool], log: Path, timeout_s: float = 240) -> None:
    """Poll until `ready()`; the timeout only turns a hang into a failure with the daemon's log."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}; daemon log:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


class Stack:
    """$DAGSTER_HOME with the deploy instance (monitoring polled every second for the test), the
    pool limits set through the CLI, and `dagster-daemon` serving the pools code location."""

    def __init__(self, root: Path):
        self.root, self.home, self.steps, self.log = root, root / "home", root / "steps", root / "daemon.log"
        self.home.mkdir()
        self.steps.mkdir()
        (root / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"python_file": {
            "relative_path": str(REPO / "tests" / "support" / "pools_location.py"), "location_name": "pools",
            "working_directory": str(REPO)}}]}))
        self.daemon: subprocess.Popen | None = None

    def configure(self, free_slots_after_s: int) -> None:
        config = yaml.safe_load(INSTANCE.read_text())
        config["run_monitoring"] |= {"poll_interval_seconds": 1, "free_slots_after_run_end_seconds": free_slots_after_s}
        config["run_coordinator"]["config"] = {"dequeue_interval_seconds": 1}
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(config))

    def start_daemon(self) -> None:
        with self.log.open("a") as out:
            self.daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(self.root / "workspace.yaml")], cwd=self.root,
                env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop_code_servers(self) -> None:
        """The daemon's code servers outlive it while they wait for their runs; ours carry this
        test's $DAGSTER_HOME in their command line, so they are found and stopped by pid."""
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if proc.name.isdigit() and b"api\x00grpc" in cmdline and str(self.home).encode() in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)

    def stop_daemon(self) -> None:
        """SIGTERM to the daemon alone: its code server finishes the runs it has, then exits."""
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        self.daemon.wait(timeout=60)


@pytest.fixture
def stack(postgres_url, tmp_path, monkeypatch):
    s = Stack(tmp_path)
    for name, value in {"DAGSTER_HOME": str(s.home), "DAGSTER_PG_URL": postgres_url,
                        "POOLS_TEST_DIR": str(s.steps)}.items():
        monkeypatch.setenv(name, value)
    s.configure(free_slots_after_s=3600)  # at first nothing gives a dead run's slot back
    for pool, limit in LIMITS.items():
        subprocess.run([str(BIN / "dagster"), "instance", "concurrency", "set", pool, str(limit)], check=True,
                       capture_output=True, env=os.environ.copy())
    s.start_daemon()
    instance = dg.DagsterInstance.get()
    try:
        yield s, instance
    finally:
        (s.steps / "release").touch()
        if s.daemon is not None and s.daemon.poll() is None:
            stop_process_group(s.daemon, timeout_s=30)
        s.stop_code_servers()
        instance.dispose()


def _runs(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs(dg.RunsFilter(job_name=job))]


def _started(steps: Path, pool: str) -> dict[str, int]:
    """run id -> pid of each step of `pool` that got its slot and started."""
    return {p.name.split("-", 1)[1].removesuffix(".started"): int(p.read_text())
            for p in steps.glob(f"{pool}-*.started")}


def _accounted(instance: dg.DagsterInstance, pool: str, job: str) -> bool:
    """Every run of the pool is holding a slot, waiting for one as a launched step, or queued."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    queued = [r for r in _runs(instance, job) if r.status == dg.DagsterRunStatus.QUEUED]
    return len(_runs(instance, job)) == 3 and info.active_slot_count + info.pending_step_count + len(queued) == 3


def _step_spans(instance: dg.DagsterInstance, job: str) -> list[tuple[float, float]]:
    """(step start, step end or run end) of every run of `job` whose step started, from the event log."""
    spans = []
    for run in _runs(instance, job):
        starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        if starts:
            ends = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
            end = ends[0].timestamp if ends else instance.get_run_record_by_id(run.run_id).end_time
            spans.append((starts[0].timestamp, end))
    return spans


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    moments = sorted(itertools.chain.from_iterable(((s, 1), (e, -1)) for s, e in spans), key=lambda m: (m[0], m[1]))
    return max(itertools.accumulate(m[1] for m in moments), default=0)


@pytest.mark.slow
def test_pools_hold_on_postgres_with_the_daemon_and_a_killed_run_frees_its_slot(stack):
    s, instance = stack
    steps, log = s.steps, s.log
    assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
    assert {p: instance.event_log_storage.get_concurrency_info(p).slot_count for p in LIMITS} == LIMITS

    # Six runs submitted at once: the pools let one gpu step and two llm steps hold a slot; every
    # other run waits for one, launched or still in the queue.
    wait_for("every run holding, waiting for, or queued behind a pool slot",
             lambda: _accounted(instance, "gpu", "gpu_job") and _accounted(instance, "llm", "llm_job")
             and len(_started(steps, "gpu")) == 1 and len(_started(steps, "llm")) == 2, log)
    assert len(_started(steps, "gpu")) == 1 and len(_started(steps, "llm")) == 2
    for pool, limit in LIMITS.items():
        assert instance.event_log_storage.get_concurrency_info(pool).active_slot_count == limit

    # kill -9 the run holding the gpu slot: the code server marks the run failed, but the dead
    # worker never gives its slot back, so the next gpu step keeps waiting ...
    (killed_run, pid), = _started(steps, "gpu").items()
    os.kill(pid, signal.SIGKILL)
    wait_for("the killed run to fail", lambda: instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE,
             log)
    gpu = instance.event_log_storage.get_concurrency_info("gpu")
    assert gpu.active_run_ids == {killed_run} and gpu.pending_step_count >= 1
    # ... until run monitoring frees the slots of runs that ended (after 1 s here, 30 s as shipped).
    s.stop_daemon()
    s.configure(free_slots_after_s=1)
    s.start_daemon()
    wait_for("the next gpu step to get the freed slot", lambda: len(_started(steps, "gpu")) == 2, log)
    assert killed_run not in instance.event_log_storage.get_concurrency_info("gpu").active_run_ids

    (steps / "release").touch()
    wait_for("every run to finish", lambda: all(r.is_finished for job in ("gpu_job", "llm_job")
                                                for r in _runs(instance, job)), log)
    statuses = sorted(r.status.value for job in ("gpu_job", "llm_job") for r in _runs(instance, job))
    assert statuses == ["FAILURE"] + ["SUCCESS"] * 5
    # Over the whole run, from the Postgres event log: never more steps in a pool than its limit.
    assert _most_at_once(_step_spans(instance, "gpu_job")) == 1
    assert _most_at_once(_step_spans(instance, "llm_job")) == 2
