"""Inside Dagster, bad input found when a step starts is a dg.Failure whose description names the
fix, found before the model loads or anything is read or written, and never retried."""

from __future__ import annotations

import polars as pl
import pytest
from support.inputs import free_url
from support.project import LAYER, key, run, small_config

from resources.llm import LLMResource
from resources.subject_model import SubjectModel

pytestmark = pytest.mark.slow


class NoModel(SubjectModel):
    def load(self):  # type: ignore[override]
        raise AssertionError("the model must not load before the inputs are checked")


def failure(result) -> tuple[str, bool]:
    """(description, allow_retries) of the run's step failure."""
    (event,) = [e for e in result.all_events if e.is_step_failure]
    data = event.event_specific_data
    assert data.user_failure_data is not None, data.error
    return data.user_failure_data.description, data.error.cls_name == "Failure"


def test_unwritable_storage_fails_before_the_model_loads(instance):
    result = run(["corpus"], None, "/proc/autointerp-data", instance, raise_on_error=False,
                 subject_model=NoModel(model_id="smollm2-135m-instruct"))
    description, is_failure = failure(result)
    assert is_failure and "storage_root '/proc/autointerp-data' is not writable" in description


def test_a_range_the_coder_lacks_is_refused_with_the_valid_ones(data_root, instance):
    result = run(["contexts"], key(latent_range="00256-00271"), data_root, instance, raise_on_error=False,
                 subject_model=NoModel(model_id="smollm2-135m-instruct"))
    description, _ = failure(result)
    assert "latent range '00256-00271' is not a range of layers.3's coder (256 latents)" in description
    assert "00240-00255" in description
    assert not (data_root / "contexts" / LAYER / "00256-00271.parquet").exists()


def test_an_unreachable_endpoint_fails_the_step_naming_the_url_and_writes_nothing(data_root, instance, tmp_path):
    url = free_url()
    llm = LLMResource(backend="openai", base_url=url, model="m", max_retries=5)
    result = run(["explanations"], key(), tmp_path / "store", instance, raise_on_error=False, llm=llm)
    description, _ = failure(result)
    assert description.startswith(f"LLM endpoint {url} is unreachable") and "fix llm.base_url" in description
    assert not (tmp_path / "store").exists()


def test_corpus_skips_binary_documents_and_reports_them(tmp_path, instance):
    texts = tmp_path / "texts"
    texts.mkdir()
    prose = open(pl.__file__).read()  # a real text file, long enough for several windows
    (texts / "prose.txt").write_text(prose)
    (texts / "image.txt").write_bytes(bytes(range(256)) * 64)  # binary named like text
    (texts / "utf16.txt").write_bytes("text in UTF-16".encode("utf-16") * 100)
    small = small_config()
    corpus = small.corpus.model_copy(update={"source": "files", "paths": [str(texts / "*.txt")], "max_tokens": 2048})
    result = run(["corpus"], None, tmp_path / "store", instance, cfg=small.model_copy(update={"corpus": corpus}))
    (event,) = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["n_skipped_documents"] == 2
    assert "image.txt: not UTF-8 text" in metadata["skipped_documents"]
    assert "utf16.txt: " in metadata["skipped_documents"]
    windows = pl.read_parquet(tmp_path / "store" / "corpus" / "windows.parquet")
    assert set(windows["doc_id"]) == {str(texts / "prose.txt")}
