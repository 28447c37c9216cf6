"""The UI in a real browser: `dagster dev` on 127.0.0.1 with a temp $DAGSTER_HOME (the repo's
dagster.yaml) and a temp storage root, driven by Debian's headless Chromium through Playwright.

One partition is materialised in-process into the same instance through the report, its LLM
a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/support/fake_openai_server.py) so the
LLM stages take seconds. The UI then launches `contexts` and a review (the launchpad's GraphQL
mutation, with run config), and shows the report's plots. Screenshots go to screenshots/.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import polars as pl
import pytest
from support.fake_openai_server import FaultServer
from support.project import on_disk_project
from support.transformers_server import free_port, stop_process_group

from autointerp_assets.config_file import load_config
from autointerp_assets.partitions import register_partitions

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

REPO = Path(__file__).parents[2]
SHOTS = REPO / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
LAYER, RANGE = "layers.3.mlp", "00000-00015"
PARTITION = f"{LAYER}|{RANGE}"  # as an operator types it: Dagster orders dimensions by name, layer|range
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}"""


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    raise TimeoutError(f"dagster dev did not answer on {url} in {timeout_s} s:\n{log.read_text()[-3000:]}")


def _answer(body: dict) -> str:
    """An explanation, or a seeded 0/1 list of the asked length: scores spread around chance."""
    prompt = body["messages"][-1]["content"]
    wanted = re.search(r"list of exactly (\d+) values", prompt)
    if wanted:
        return "[" + ", ".join(random.Random(prompt).choice("01") for _ in range(int(wanted.group(1)))) + "]"
    return "Explanation: identifiers in Python source code"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    server = FaultServer()
    server.answer = _answer
    root = tmp_path_factory.mktemp("ui")
    key = dg.MultiPartitionKey({"layer": LAYER, "range": RANGE})
    instance, env = on_disk_project(root, LAYER, [
        ("corpus", None), ("sparse_coder", LAYER), ("activations", LAYER), ("latent_shards", key),
        ("contexts", key), ("explanations", key), ("scores", key), ("report", LAYER)],
        overrides={"llm": {"backend": "openai", "base_url": server.base_url, "model": "fault-model"},
                   "scorer": {"kinds": ["detection", "embedding"], "examples_per_prompt": 4}})
    register_partitions(instance, load_config(root / "autointerp.yaml"))  # every layer before automation starts
    instance.dispose()

    url = f"http://127.0.0.1:{free_port()}"
    log = root / "dagster-dev.log"
    with log.open("w") as out:
        # Its own session, so one signal to the group stops webserver, daemon and code server.
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-m", "autointerp_assets.definitions",
             "-h", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
            cwd=REPO, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_until_up(url, proc, log)
        yield url, root / "data"
    finally:
        stop_process_group(proc, timeout_s=30)
        env.undo()
        server.close()


def _launch(page, url: str, job: str, assets: list[str], run_config: dict | None = None) -> str:
    """Launch a run of PARTITION the way the UI's launchpad does: one GraphQL mutation."""
    tags = [{"key": "dagster/partition", "value": PARTITION}, {"key": "dagster/partition/layer", "value": LAYER},
            {"key": "dagster/partition/range", "value": RANGE}]
    params = {"selector": {"repositoryLocationName": "autointerp_assets.definitions",
                           "repositoryName": "__repository__", "jobName": job,
                           "assetSelection": [{"path": [a]} for a in assets]},
              "executionMetadata": {"tags": tags}, "runConfigData": run_config or {}}
    response = page.request.post(f"{url}/graphql", data=json.dumps({"query": LAUNCH, "variables": {"params": params}}),
                                 headers={"Content-Type": "application/json"})
    launched = response.json()["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def test_ui_materialises_a_partition_and_shows_its_metadata_and_the_reports_plots(ui):
    url, data = ui
    expect = sync_api.expect
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})

        page.goto(f"{url}/asset-groups")  # the global asset graph, every group opened
        expect(page.get_by_text("Global asset lineage")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("data", exact=True).first).to_be_visible()
        page.keyboard.press("Alt+e")  # the graph's "Expand all groups" shortcut
        for asset in ("corpus", "activations", "contexts", "reviews", "scores", "report"):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        page.screenshot(path=SHOTS / "asset_graph.png")

        run_id = _launch(page, url, "latent_shards_to_scores_job", ["contexts"])
        page.goto(f"{url}/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=240_000)
        expect(page.get_by_text("disjoint_splits").first).to_be_visible()
        page.screenshot(path=SHOTS / "contexts_run.png")

        # The key as typed (`|` unescaped) opens the partition.
        page.goto(f"{url}/assets/contexts?view=partitions&partition={PARTITION}")
        expect(page.get_by_text(PARTITION, exact=True).first).to_be_visible(timeout=60_000)
        for key in ("model_revision", "corpus_hash", "coder_hash", "sampling_config"):  # lineage
            expect(page.get_by_text(key, exact=True)).to_be_visible()
        page.get_by_text("examples_by_split_and_kind").scroll_into_view_if_needed()
        expect(page.get_by_text("hard_negative").first).to_be_visible()
        page.screenshot(path=SHOTS / "contexts_partition_metadata.png")

        # The report: plots as images, the latents as a typed table, each opened from its metadata row.
        page.goto(f"{url}/assets/report?view=partitions&partition={quote(LAYER)}")
        expect(page.get_by_text("score_distributions", exact=True).first).to_be_visible(timeout=60_000)
        for name in ("score_distributions", "score_vs_frequency"):
            row = page.locator("tr", has=page.get_by_text(name, exact=True))
            row.get_by_text("[Show Markdown]").click()
            image = page.get_by_role("dialog").locator('img[src^="data:image/png"]')
            expect(image).to_be_visible(timeout=30_000)
            assert image.evaluate("img => img.complete && img.naturalWidth") > 300  # decoded and drawn
            page.screenshot(path=SHOTS / f"report_{name}.png")
            page.keyboard.press("Escape")
            expect(page.get_by_role("dialog")).to_have_count(0)
        latents = page.locator("tr", has=page.get_by_text("latents", exact=True))  # a table, rendered in place
        latents.scroll_into_view_if_needed()
        for column in ("latent", "explanation", "detection_auroc", "n_firing"):  # the headline: AUROC first
            expect(latents.get_by_text(column, exact=True).first).to_be_visible(timeout=30_000)
        expect(latents.get_by_text("Show schema")).to_be_visible()  # typed columns
        page.screenshot(path=SHOTS / "report_latents_table.png")

        # A review from the launchpad: review_job with run config.
        explained = pl.read_parquet(data / "explanations" / LAYER / f"{RANGE}.parquet")
        latent = explained.filter(pl.col("status") == "ok")["latent"][0]
        review = {"latent": int(latent), "verdict": "accept", "reviewer": "ui-test"}
        run_id = _launch(page, url, "review_job", ["reviews"], {"ops": {"reviews": {"config": review}}})
        page.goto(f"{url}/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=240_000)
        page.goto(f"{url}/assets/reviews?view=partitions&partition={quote(PARTITION)}")
        expect(page.get_by_text("ui-test").first).to_be_visible(timeout=60_000)
        page.screenshot(path=SHOTS / "review_partition.png")

        page.goto(f"{url}/automation")
        for name in ("hookpoint_partitions_sensor", "gpu_automation"):
            expect(page.get_by_text(name)).to_be_visible(timeout=60_000)
        page.screenshot(path=SHOTS / "automation.png")
        browser.close()

    # The daemon of `dagster dev` evaluated the automation sensors in the code location: the
    # sources, never observed before, were observed, their revisions recorded as data versions.
    with dg.DagsterInstance.get() as instance:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(
                instance.fetch_observations(dg.AssetKey(k), limit=1).records
                for k in ("subject_model_source", "sparse_coder_source")):
            time.sleep(2)
        observed = instance.fetch_observations(dg.AssetKey("sparse_coder_source"), limit=5).records
        assert observed and observed[0].asset_observation.tags["dagster/data_version"]
        failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert not failed, [r.run_id for r in failed]  # nothing automation or the UI launched failed
