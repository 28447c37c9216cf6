"""A code location for the production-stack test: steps in the `gpu` and `llm` pools that hold
their slot until the test releases them, and a sensor that submits three runs of each through
the instance's queued run coordinator, as automation would.

Each step writes `<pool>-<run id>.started` (its pid) into $POOLS_TEST_DIR, then waits for a
`release` file there. Steps run in the run worker itself (in-process executor), so killing
that process kills the step holding the slot.
"""

import os
import time
from pathlib import Path

import dagster as dg

RUNS_PER_POOL = 3


def _hold(context: dg.OpExecutionContext, pool: str) -> None:
    folder = Path(os.environ["POOLS_TEST_DIR"])
    (folder / f"{pool}-{context.run_id}.started").write_text(str(os.getpid()))
    while not (folder / "release").exists():
        time.sleep(0.2)
    (folder / f"{pool}-{context.run_id}.done").write_text("")


@dg.op(pool="gpu")
def gpu_step(context: dg.OpExecutionContext) -> None:
    _hold(context, "gpu")


@dg.op(pool="llm")
def llm_step(context: dg.OpExecutionContext) -> None:
    _hold(context, "llm")


@dg.job(executor_def=dg.in_process_executor)
def gpu_job():
    gpu_step()


@dg.job(executor_def=dg.in_process_executor)
def llm_job():
    llm_step()


@dg.sensor(jobs=[gpu_job, llm_job], minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def submit_all(context: dg.SensorEvaluationContext):
    for job in ("gpu_job", "llm_job"):
        for i in range(RUNS_PER_POOL):
            yield dg.RunRequest(run_key=f"{job}-{i}", job_name=job)  # run keys: submitted once


defs = dg.Definitions(jobs=[gpu_job, llm_job], sensors=[submit_all])
