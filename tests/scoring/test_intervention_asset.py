"""The `intervention_scores` table and asset: statuses, n, chance baseline and failures with a
scripted LLM; then known answers on the real SmolLM2 (latents planted to promote one word each),
through the pure table builder and through the materialised asset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import torch
import yaml

from autointerp_assets.code_location import build_assets
from autointerp_assets.coders import TopKSAE
from autointerp_assets.coders.topk import save_topk_sae
from autointerp_assets.config_file import load_config
from autointerp_assets.errors import UserError
from autointerp_assets.llm.api import PromptScore, PromptToken, ScoreRequest, Usage, failed_score
from autointerp_assets.partitions import partition_key, register_partitions
from autointerp_assets.scoring import chance, intervention_scores
from autointerp_assets.scoring.intervention import Continuation
from autointerp_assets.scoring.intervention_scores import DEAD, score_interventions
from autointerp_assets.store.store import ArtifactStore, partition_path
from resources import build_resources


class ScriptedLLM:
    """log P(explanation | text) = -5 + 3 per occurrence of the explanation's word in the text.
    Explanation "broken" always fails; "Paris" fails on the clean continuation of prompt 1."""

    model_name, supports_logprobs, supports_prompt_logprobs = "scripted", False, True

    def __init__(self) -> None:
        self.usage = Usage()
        self.calls: list[int] = []

    def complete_many(self, requests):
        raise AssertionError("intervention scoring only scores prompts")

    def score_prompts(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        self.calls.append(len(requests))
        out = []
        for r in requests:
            text, word = r.prompt[: r.score_from], r.prompt[r.score_from :].strip()
            if word == "broken" or (word == "Paris" and text.startswith("p1 the end")):
                out.append(failed_score("server_error", "scripted failure"))
            else:
                out.append(PromptScore((PromptToken(word, r.score_from, -5.0 + 3.0 * text.count(word)),)))
        return out


WORDS = {0: "music", 1: "water", 2: "Paris", 3: "broken"}


def scripted_inputs() -> tuple[pl.DataFrame, list[Continuation]]:
    """Latents 0-3 steered (3's explanation always fails), 4's explanation failed, 5 dead."""
    explanations = pl.DataFrame({
        "latent": [0, 1, 2, 3, 4, 5], "status": ["ok"] * 4 + ["failed", "ok"],
        "explanation": [*WORDS.values(), None, "dogs"], "reason": [None] * 4 + ["too long", None]})
    continuations = [Continuation(None, 0.0, p, f"p{p} the end") for p in (0, 1)]
    continuations += [Continuation(latent, m, p, f"p{p} {word}", kl=0.9) for latent, word in WORDS.items()
                      for m in (1.0, 2.0) for p in (0, 1)]
    return explanations, continuations


def test_table_has_ok_unscored_failed_rows_with_n_chance_and_failures_counted():
    explanations, continuations = scripted_inputs()
    explained = dict(WORDS) | {5: "dogs"}
    # A seed whose chance draw lends the always-failing explanation to latent 0 (a failed chance run),
    # a working one to latent 1, and steered donors to both latents with a fixed negative count below.
    seed = next(s for s in range(500) if (d := chance.donors(explained, s))[0] == 3 and d[1] in (0, 5) and d[2] != 5)
    donors = chance.donors(explained, seed)
    n_broken = 2 + 4 + 4 * len({0, 1, 2} - {donors[3]})  # clean + own + negatives' requests of latent 3
    llm = ScriptedLLM()
    table = score_interventions(explanations, continuations, llm, seed=seed, negative_latents=8, min_auroc_n=10)
    rows = {r["latent"]: r for r in table.iter_rows(named=True)}

    assert len(llm.calls) == 1  # every request of the partition in one call
    assert {k: r["status"] for k, r in rows.items()} == {0: "ok", 1: "ok", 2: "ok", 3: "failed", 4: "unscored",
                                                        5: "unscored"}
    assert rows[4]["reason"] == "explanation failed: too long" and rows[5]["reason"] == DEAD
    assert f"explanation run: {n_broken}/{n_broken} requests failed, e.g. server_error" in rows[3]["reason"]
    assert rows[3]["n_failed"] == n_broken and rows[3]["intervention_score"] is None

    for latent in (0, 1, 2):
        r = rows[latent]
        assert r["chance_latent"] == donors[latent]
        assert r["negative_latents"] == sorted({0, 1, 2, 3} - {latent, donors[latent]})  # the donor is never one
        assert r["steering_kl"] == 0.9 and r["scorer_model"] == "scripted"
    music = rows[0]  # own continuations say "music" once, clean ones and negatives never
    assert music["intervention_score"] == 3.0 and music["intervention_score_n"] == 4
    assert music["intervention_auroc"] == 1.0 and music["intervention_auroc_n"] == 4 + 4 * 2 and music["n_failed"] == 0
    assert music["intervention_auroc_chance"] is None and music["intervention_auroc_lift"] is None
    assert music["n_failed_chance"] == 14 and "chance run: 14/14 requests failed" in music["reason"]  # 2 + 4 + 2 x 4

    water = rows[1]  # a working shuffled explanation: no word of it in water's continuations or negatives
    assert water["intervention_score_chance"] == 0.0 and water["intervention_auroc_chance"] == 0.5
    assert water["intervention_auroc_lift"] == 0.5 and water["intervention_score_lift"] == 3.0
    assert water["intervention_auroc_chance_n"] == water["intervention_auroc_n"]  # the same continuations

    paris = rows[2]  # the clean continuation of prompt 1 failed: everything steered from prompt 1 is lost
    assert paris["n_failed"] == 1 and paris["intervention_score_n"] == 2 and paris["intervention_auroc"] is None
    assert "explanation run: 1/" in paris["reason"]
    assert "intervention_auroc null: 6 continuations scored < scorer.min_auroc_n=10" in paris["reason"]
    assert list(table.columns) == list(intervention_scores.schema())


def test_without_a_chance_baseline_the_chance_columns_are_null():
    explanations, continuations = scripted_inputs()
    table = score_interventions(explanations, continuations, ScriptedLLM(), seed=0, chance_baseline=False,
                                min_auroc_n=10)
    ok = table.filter(pl.col("status") == "ok")
    # Paris lost prompt 1 to a failure: 2 own + 3 x 2 negatives < 10 continuations
    assert ok.height == 3 and ok["intervention_auroc"].is_not_null().sum() == 2
    assert ok["chance_latent"].null_count() == 3 and ok["intervention_auroc_chance"].null_count() == 3
    assert (ok["n_failed_chance"] == 0).all() and not ok["reason"].str.contains("chance").any()


def test_bad_inputs_fail_before_any_generation_naming_the_fix():
    with pytest.raises(UserError, match="no decoder directions.*topk, jumprelu, relu or neurons"):
        intervention_scores.check_steerable(object(), [0])
    coder = TopKSAE(torch.zeros(4, 8), torch.zeros(4), torch.ones(4, 8), torch.zeros(8), k=1)
    with pytest.raises(UserError, match="beyond the coder's 4 latents"):
        intervention_scores.check_steerable(coder, [3, 4, 5])
    with pytest.raises(UserError, match="lower intervention.n_prompts"):
        intervention_scores.corpus_prompts(np.zeros((2, 16), dtype=np.int32), n=3, length=8)
    prompts = intervention_scores.corpus_prompts(np.arange(64).reshape(4, 16), n=2, length=3)
    assert prompts == [[0, 1, 2], [16, 17, 18]]


# -- known answers on the real SmolLM2 ---------------------------------------------------------------

PLANTED = {0: " music", 1: " water", 2: " Paris"}  # latent 3: a dead (zero) decoder row
TRUE = ["music and musical instruments", "water and rivers", "Paris and France", "cats and dogs"]
HOOKPOINT = "layers.20"


def planted_coder(subject) -> TopKSAE:
    """Decoder rows that promote one word each (least-norm logit directions through the final norm,
    written into the residual stream after layer 20), plus one zero row."""
    unembedding = subject.model.get_output_embeddings().weight.detach().float()  # [vocab, d]
    ids = [subject.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in PLANTED.values()]
    directions = torch.linalg.pinv(unembedding)[:, ids].T / subject.model.model.norm.weight.detach().float()  # [3, d]
    d = subject.d_model
    w_dec = torch.cat([directions, torch.zeros(1, d)])  # [4, d]
    return TopKSAE(torch.zeros(4, d), torch.zeros(4), w_dec, torch.zeros(d), k=1)


def explanations_of(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"latent": range(len(texts)), "status": ["ok"] * len(texts), "explanation": texts,
                         "reason": [None] * len(texts)})


def check_known_answers(table: pl.DataFrame) -> pl.DataFrame:
    rows = table.sort("latent")
    assert rows["status"].to_list() == ["ok", "ok", "ok", "unscored"] and rows["reason"][3] == DEAD
    scored = rows.head(3)
    assert (scored["n_failed"] == 0).all() and (scored["n_failed_chance"] == 0).all()
    assert scored["intervention_auroc_chance"].null_count() == 0
    assert (scored["intervention_auroc_n"] == scored["intervention_auroc_chance_n"]).all()
    # The true explanation picks out its latent's continuations; a shuffled one does not.
    assert scored["intervention_auroc"].mean() >= 0.75, scored
    assert scored["intervention_auroc_lift"].mean() >= 0.3, scored
    assert scored["intervention_score_lift"].mean() > 0, scored  # the paper's score, over its chance
    return scored


@pytest.mark.slow
def test_the_asset_scores_a_partition_from_corpus_prompts(subject, tmp_path: Path):
    """The project's own path: a planted coder configured at layers.20, corpus, imported
    explanations, then `intervention_scores` materialised with the project's resources."""
    save_topk_sae(planted_coder(subject), tmp_path / "coder")
    pl.DataFrame({"latent": range(4), "explanation": TRUE}).write_csv(tmp_path / "explanations.csv")
    raw = {
        "subject_model": {"id": "smollm2-135m-instruct", "dtype": "bfloat16"},
        "hookpoints": {HOOKPOINT: {"kind": "topk", "path": str(tmp_path / "coder"), "n_latents": 4}},
        "latent_range_width": 4,
        "corpus": {"source": "stdlib", "ctx_len": 64, "max_tokens": 4096, "sae_train_fraction": 0.0},
        "intervention": {"n_prompts": 3, "prompt_tokens": 8, "multipliers": [1.0, 2.0], "max_new_tokens": 8},
        "llm": {"backend": "local"},
        "storage_root": str(tmp_path / "data"),
    }
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "project.yaml")
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, cfg)
    key = partition_key(HOOKPOINT, "00000-00003")

    def materialise(asset: str, partition=None, run_config=None):
        return dg.materialize(build_assets(cfg), selection=[asset], partition_key=partition, run_config=run_config,
                              resources=build_resources(cfg), instance=instance)

    materialise("corpus")
    materialise("explanations", key, {"ops": {"explanations": {"config": {
        "import_from": str(tmp_path / "explanations.csv"), "imported_by": "test"}}}})
    result = materialise("intervention_scores", key)

    store = ArtifactStore(str(tmp_path / "data"))
    table = store.read_parquet(partition_path("intervention_scores", HOOKPOINT, "00000-00003"))
    continuations = store.read_parquet(partition_path("intervention_scores", HOOKPOINT, "00000-00003.continuations"))
    assert continuations.height == 3 + 3 * 2 * 3 and continuations["latent"].null_count() == 3
    meta = result.asset_materializations_for_node("intervention_scores")[0].metadata
    assert meta["n_scored"].value == 3 and meta["n_dead"].value == 1 and meta["llm_requests"].value > 0
    assert len(meta["prompts"].value) == 3
    scored = check_known_answers(table)
    print("asset: intervention AUROC true", scored["intervention_auroc"].round(2).to_list(),
          "chance", scored["intervention_auroc_chance"].round(2).to_list(),
          "score lift", scored["intervention_score_lift"].round(2).to_list())


def test_the_scores_table_carries_a_steered_ranges_intervention_columns():
    from autointerp_assets.scoring.scores import score_schema, with_intervention

    explanations, continuations = scripted_inputs()
    steered = score_interventions(explanations, continuations, ScriptedLLM(), seed=0, min_auroc_n=2)
    scores = pl.DataFrame({"latent": explanations["latent"]}, schema={"latent": pl.Int64()}).join(
        pl.DataFrame(schema=score_schema()), on="latent", how="left").select(list(score_schema()))
    joined = with_intervention(scores, steered)
    assert joined.schema == scores.schema
    for column in intervention_scores.JOINED:
        source = "n_failed" if column == "intervention_n_failed" else column
        assert joined[column].to_list() == steered.sort("latent")[source].to_list()
