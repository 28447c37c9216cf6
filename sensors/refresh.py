"""Refresh schedules: on a cron, re-run what is stale or missing.

Stale: materialised before one of its upstream partitions was (storage ids from the
instance). Missing: never materialised, for every configured layer (registered as a
partition) and every latent range its coder has. `planner.plan` orders the work: a
partition is requested only once nothing upstream of it is still to run or in flight,
so one tick starts the first layer of work and the next ticks carry it down.

A schedule launches one job, so there is one schedule per stage job, all on the same
cron and the same plan; each requests its own stage's share, at most
`checks.refresh_max_runs` runs a tick. They start stopped: turning them on explains every
configured latent, which costs LLM calls.
"""

from collections.abc import Mapping

import dagster as dg

from autointerp_assets.config import ProjectConfig

from .planner import Graph, Group, plan
from .state import (
    AssetJob,
    in_flight_partitions,
    latest_storage_ids,
    registered_layers,
    run_key,
    run_request,
    scope_of,
)

TRIGGER = "refresh"


def refresh_requests(
    instance: dg.DagsterInstance, cfg: ProjectConfig, graph: Graph, group: Group
) -> list[dg.RunRequest] | dg.SkipReason:
    planned = plan(graph, scope_of(cfg, registered_layers(instance)), latest_storage_ids(instance, graph),
                   in_flight_partitions(instance), fill_missing=True)
    mine = [r for r in planned.requests if r.group == group][: cfg.checks.refresh_max_runs]
    if not mine:
        waits = [w for (name, _), w in planned.waiting.items() if graph.group(name) == group]
        return dg.SkipReason(f"up to date; {len(waits)} partition(s) wait upstream" if waits else "up to date")
    return [run_request(graph, r, run_key(TRIGGER, graph, r), TRIGGER) for r in mine]


def build_refresh_schedules(
    cfg: ProjectConfig, graph: Graph, jobs: Mapping[Group, AssetJob]
) -> list[dg.ScheduleDefinition]:
    def build(group: Group, job: AssetJob) -> dg.ScheduleDefinition:
        @dg.schedule(
            name=f"refresh_{job.name}", cron_schedule=cfg.checks.refresh_cron, target=job,
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description=f"Re-run stale or missing partitions of {job.name} (see sensors/refresh.py).",
        )
        def refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
            return refresh_requests(context.instance, cfg, graph, group)

        return refresh

    return [build(group, job) for group, job in jobs.items()]
