"""The UI in a real browser: `dagster dev` on 127.0.0.1 with a temp $DAGSTER_HOME (the repo's
dagster.yaml) and a temp storage root, driven by Debian's headless Chromium through Playwright.

Upstream of the partition under test is materialised in-process into the same instance, so
the UI only launches `contexts` (no LLM stage: those are slow on CPU). Screenshots go to
screenshots/ at the repo root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pytest
from support.project import on_disk_project
from support.transformers_server import free_port, stop_process_group

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

REPO = Path(__file__).parents[2]
SHOTS = REPO / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
LAYER, RANGE = "layers.3.mlp", "00000-00015"
PARTITION = f"{LAYER}|{RANGE}"  # Dagster orders dimensions by name: layer|range
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


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    root = tmp_path_factory.mktemp("ui")
    instance, env = on_disk_project(root, LAYER, [
        ("corpus", None), ("sparse_coder", LAYER), ("activations", LAYER),
        ("latent_shards", dg.MultiPartitionKey({"layer": LAYER, "range": RANGE}))])
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
        yield url
    finally:
        stop_process_group(proc, timeout_s=30)
        env.undo()


def _launch_contexts(page, url: str) -> str:
    """Launch contexts[PARTITION] the way the UI's launchpad does: one GraphQL mutation."""
    tags = [{"key": "dagster/partition", "value": PARTITION}, {"key": "dagster/partition/layer", "value": LAYER},
            {"key": "dagster/partition/range", "value": RANGE}]
    params = {"selector": {"repositoryLocationName": "autointerp_assets.definitions",
                           "repositoryName": "__repository__", "jobName": "latent_shards_to_scores_job",
                           "assetSelection": [{"path": ["contexts"]}]},
              "executionMetadata": {"tags": tags}}
    response = page.request.post(f"{url}/graphql", data=json.dumps({"query": LAUNCH, "variables": {"params": params}}),
                                 headers={"Content-Type": "application/json"})
    launched = response.json()["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def test_ui_materialises_a_partition_and_shows_its_metadata(ui):
    expect = sync_api.expect
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})

        page.goto(f"{ui}/asset-groups")  # the global asset graph, every group opened
        expect(page.get_by_text("Global asset lineage")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("data", exact=True).first).to_be_visible()
        page.keyboard.press("Alt+e")  # the graph's "Expand all groups" shortcut
        for asset in ("corpus", "activations", "latent_shards", "contexts", "scores", "report"):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        page.screenshot(path=SHOTS / "asset_graph.png")

        run_id = _launch_contexts(page, ui)
        page.goto(f"{ui}/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=240_000)
        expect(page.get_by_text("disjoint_splits").first).to_be_visible()
        page.screenshot(path=SHOTS / "contexts_run.png")

        page.goto(f"{ui}/assets/contexts?view=partitions&partition={quote(PARTITION)}")
        expect(page.get_by_text(PARTITION, exact=True).first).to_be_visible(timeout=60_000)
        for key in ("model_revision", "corpus_hash", "coder_hash", "sampling_config"):  # lineage
            expect(page.get_by_text(key, exact=True)).to_be_visible()
        page.get_by_text("examples_by_split_and_kind").scroll_into_view_if_needed()
        expect(page.get_by_text("hard_negative").first).to_be_visible()
        page.screenshot(path=SHOTS / "contexts_partition_metadata.png")

        page.goto(f"{ui}/automation")
        for name in ("hookpoint_partitions_sensor", "model_update_sensor", "refresh_latent_shards_to_scores_job"):
            expect(page.get_by_text(name)).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Standard sensor").first).to_be_visible(timeout=60_000)  # rows loaded
        expect(page.get_by_text("Scheduled At", exact=False).first).to_be_visible()
        page.screenshot(path=SHOTS / "automation.png")
        browser.close()
