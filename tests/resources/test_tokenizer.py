"""The tokenizer resource: corpus and contexts need only the tokenizer, so with `device` set to
a device that does not exist here they still run (and never load the model); only the GPU
stages fail."""

from __future__ import annotations

import shutil

import pytest
from support.project import LAYER, RANGE, key, run, small_config

import resources.subject_model
from autointerp_assets.data import model_files
from autointerp_assets.data.subject import load_tokenizer
from autointerp_assets.store import layout
from autointerp_assets.store.store import ArtifactStore

pytestmark = pytest.mark.slow
NO_SUCH_DEVICE = "cuda:7"


def test_tokenizer_from_the_gguf_and_from_the_converted_copy_agree(subject):
    gguf_dir, gguf_file = model_files.resolve_model_source("smollm2-135m-instruct")
    from transformers import AutoTokenizer

    text = "def forward(self, x):\n    return self.linear(x)  # éß 漢字"
    from_gguf = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    assert from_gguf(text)["input_ids"] == load_tokenizer("smollm2-135m-instruct")(text)["input_ids"] \
        == subject.tokenizer(text)["input_ids"]


def test_only_gpu_stages_fail_on_a_device_that_does_not_exist(data_root, instance, tmp_path, monkeypatch):
    def no_model(*args):
        raise AssertionError("a tokenizer-only step loaded the subject model")

    cfg = small_config()
    cfg = cfg.model_copy(update={"subject_model": cfg.subject_model.model_copy(update={"device": NO_SUCH_DEVICE})})
    root = tmp_path / "store"
    shutil.copytree(data_root, root)
    monkeypatch.setattr(resources.subject_model, "_load", no_model)
    assert run(["corpus"], None, root, instance, cfg=cfg).success
    assert run(["contexts"], key(), root, instance, cfg=cfg).success
    assert layout.read_partition(ArtifactStore(str(root)), "contexts", LAYER, RANGE).equals(
        layout.read_partition(ArtifactStore(str(data_root)), "contexts", LAYER, RANGE))
    monkeypatch.undo()

    failed = run(["activations"], LAYER, root, instance, cfg=cfg, raise_on_error=False)
    assert not failed.success
    errors = " ".join(str(e.event_specific_data.error) for e in failed.all_events if e.is_step_failure)
    assert "CUDA" in errors or "cuda" in errors
