"""A subject model that cannot be loaded is named with the fix before transformers guesses."""

from __future__ import annotations

import pytest
import torch

from autointerp_assets.data.model_files import check_model_source
from autointerp_assets.data.subject import check_device, load_subject
from autointerp_assets.errors import ModelLoadError


def test_a_directory_without_config_json_says_so_not_sentencepiece(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelLoadError) as err:
        load_subject(str(tmp_path), None, "float32", "cpu")
    text = str(err.value)
    assert f"{tmp_path} has no config.json" in text and "found: tokenizer.json" in text
    assert "save_pretrained" in text and "sentencepiece" not in text


@pytest.mark.parametrize("model_id, expected", [
    ("{tmp}/missing", "does not exist"),
    ("{tmp}/model.gguf", "GGUF file {tmp}/model.gguf does not exist"),
    ("{tmp}/weights.bin", "is a file but not a .gguf"),
])
def test_local_paths_that_cannot_be_a_model(tmp_path, model_id, expected):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=expected.format(tmp=tmp_path)):
        check_model_source(model_id.format(tmp=tmp_path))


def test_hub_ids_and_the_builtin_default_pass():
    check_model_source("EleutherAI/pythia-70m")  # only the hub can tell; transformers' error is wrapped
    check_model_source("smollm2-135m-instruct")


def test_devices():
    check_device("cpu")
    with pytest.raises(ModelLoadError, match="not a torch device"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="set subject_model.device: cpu"):
            check_device("cuda:0")
