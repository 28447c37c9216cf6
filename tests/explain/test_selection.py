"""Latent selections: chosen, stored per partition, respected later; explanations already paid
for are kept by a narrower run. A scripted LLM behind the real response cache and store."""

import polars as pl

from autointerp_assets.config import ExplainerConfig, SamplingConfig
from autointerp_assets.data.sampling import CONTEXT_SCHEMA, SKIPPED_SCHEMA
from autointerp_assets.explain import selection
from autointerp_assets.explain.explainer import explain_latents
from autointerp_assets.llm.api import Completion, Usage
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.store.store import ArtifactStore

LAYER, RANGE = "layers.3", "00000-00015"


def contexts_for(latents):
    rows = [{"latent": lat, "split": "explain", "kind": "top", "quantile": -1, "seq": i, "start": 0, "peak_index": 0,
             "tokens": [1], "token_strs": [f"tok{lat}"], "acts": [1.0], "max_act": 1.0, "activating": True}
            for i, lat in enumerate(latents)]
    return pl.DataFrame(rows, schema=CONTEXT_SCHEMA)


STATS = pl.DataFrame({"latent": [0, 1, 2, 3], "n_firing": [5, 50, 20, 0]})
SKIPPED = pl.DataFrame({"latent": [3], "reason": ["dead"]}, schema=SKIPPED_SCHEMA)
CONTEXTS = contexts_for([0, 1, 2])


class ScriptedLLM:
    """Answers every request, caching it like the real backends; counts what it was sent."""

    model_name = "scripted"
    supports_logprobs = False

    def __init__(self, cache: ResponseCache):
        self.cache, self.usage, self.sent = cache, Usage(), 0

    def complete_many(self, requests):
        out = []
        for request in requests:
            hit = self.cache.get(self.model_name, request)
            if hit is None:
                self.sent += 1
                content = request.messages[-1]["content"]
                token = content.split("tok")[1][:1] if "tok" in content else "other"
                hit = Completion(text=f"Explanation: the token {token}")
                self.cache.put(self.model_name, request, hit)
            out.append(hit)
        return out


def test_split_keeps_the_chosen_and_records_the_rest_as_skipped():
    chosen = selection.Selection(selection.choose(STATS, {0, 1, 2}, [0, 2], None), "run config")
    contexts, skipped = selection.split(CONTEXTS, SKIPPED, chosen)
    assert sorted(contexts["latent"].unique()) == [0, 2]
    assert dict(skipped.iter_rows()) == {3: "dead", 1: selection.NOT_SELECTED}


def test_max_latents_takes_the_most_frequent_first():
    assert selection.choose(STATS, {0, 1, 2}, [], 2) == (1, 2)


def test_no_selection_changes_nothing():
    contexts, skipped = selection.split(CONTEXTS, SKIPPED, selection.Selection(None, "default"))
    assert contexts.height == 3 and skipped.equals(SKIPPED)


def test_a_selection_is_stored_and_used_by_runs_without_one(tmp_path):
    store = ArtifactStore(str(tmp_path))
    assert selection.resolve(store, LAYER, RANGE, CONTEXTS, STATS, [], None, False) == selection.Selection(None, "default")
    chosen = selection.resolve(store, LAYER, RANGE, CONTEXTS, STATS, [2, 0, 7], None, False)
    assert chosen == selection.Selection((0, 2), "run config")  # 7 has no contexts: not a latent to explain
    selection.remember(store, LAYER, RANGE, chosen, "run-1")
    assert selection.resolve(store, LAYER, RANGE, CONTEXTS, STATS, [], None, False) == selection.Selection((0, 2), "stored")
    everything = selection.resolve(store, LAYER, RANGE, CONTEXTS, STATS, [], None, True)
    selection.remember(store, LAYER, RANGE, everything, "run-2")
    assert selection.resolve(store, LAYER, RANGE, CONTEXTS, STATS, [], None, False) == selection.Selection(None, "stored")


def test_a_narrower_run_keeps_what_was_paid_for_and_pays_for_nothing_left_out(tmp_path):
    store = ArtifactStore(str(tmp_path))
    llm = ScriptedLLM(ResponseCache(store))
    cfg, sampling = ExplainerConfig(), SamplingConfig()

    def run(chosen):
        table = explain_latents(*selection.split(CONTEXTS, SKIPPED, chosen), llm, cfg, sampling)
        return selection.keep_paid_for(table, CONTEXTS, llm, cfg, sampling)

    wide, _ = run(selection.Selection((0, 1), "run config"))
    assert llm.sent == 2 and wide.filter(pl.col("status") == "ok")["latent"].to_list() == [0, 1]
    narrow, kept = run(selection.Selection((2,), "run config"))
    assert llm.sent == 3  # only latent 2 was sent
    assert kept == 2 and narrow.filter(pl.col("status") == "ok")["latent"].to_list() == [0, 1, 2]
    assert narrow.filter(pl.col("latent") == 0)["explanation"].item() == wide.filter(pl.col("latent") == 0)["explanation"].item()
    assert dict(narrow.filter(pl.col("status") == "skipped").select("latent", "reason").iter_rows()) == {3: "dead"}

    changed = contexts_for([0, 1, 2]).with_columns(  # new evidence for every latent
        pl.col("latent").map_elements(lambda lat: [f"new{lat}"], return_dtype=pl.List(pl.Utf8)).alias("token_strs"))
    table = explain_latents(*selection.split(changed, SKIPPED, selection.Selection((2,), "stored")), llm, cfg, sampling)
    table, kept = selection.keep_paid_for(table, changed, llm, cfg, sampling)
    assert kept == 0  # explanations of other examples are not reused for these ones
    assert table.filter(pl.col("status") == "skipped")["latent"].to_list() == [0, 1, 3]
