import re

import pytest

from autointerp_assets.config_file import ConfigError, load_config, parse_config
from autointerp_assets.partitions import latent_range_keys, layer_ranges, parse_latent_range


def test_defaults_load_and_each_layer_has_only_its_coders_ranges():
    cfg = load_config(None)
    for layer, coder in cfg.hookpoints.items():
        ranges = [parse_latent_range(k) for k in layer_ranges(cfg, layer)]
        assert ranges[0].start == 0 and ranges[-1].stop == coder.n_latents
        assert all(a.stop == b.start for a, b in zip(ranges, ranges[1:]))


def test_invalid_field_names_the_field_and_fix():
    with pytest.raises(ConfigError) as err:
        parse_config({"corpus": {"ctx_len": 2}, "hookpoints": {"layers.1": {"kind": "topk"}}})
    text = str(err.value)
    assert "corpus.ctx_len" in text and "greater than or equal to 8" in text
    assert "hookpoints.layers.1.topk.path" in text


def test_unknown_field_is_rejected():
    with pytest.raises(ConfigError, match="storage_rot"):
        parse_config({"storage_rot": "x"})


def test_hookpoint_with_partition_separator_is_rejected():
    with pytest.raises(ConfigError, match="not allowed in partition keys"):
        parse_config({"hookpoints": {"layers|6": {"kind": "train_topk"}}})


def test_file_source_without_paths_is_rejected():
    with pytest.raises(ConfigError, match="corpus.paths"):
        parse_config({"corpus": {"source": "files"}})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_latent_ranges_are_padded_inclusive_and_cover_every_latent():
    keys = latent_range_keys(130, 64)
    assert keys == ["00000-00063", "00064-00127", "00128-00129"]
    covered = [i for k in keys for i in parse_latent_range(k)]
    assert covered == list(range(130))


@pytest.mark.parametrize("raw, expected", [
    ({"sampling": {"example_ctx_len": 128}}, "sampling.example_ctx_len=128 exceeds corpus.ctx_len=64"),
    ({"hookpoints": {"layers.6": {"kind": "train_topk", "n_latents": 16, "k": 32}}}, "k=32 exceeds n_latents=16"),
    ({"hookpoints": {"layers.6": {"kind": "train_topk", "batch_tokens": 4096, "train_tokens": 1024}}},
     "batch_tokens=4096 exceeds train_tokens=1024"),
    ({"hookpoints": {"layers.6.mlp": {"kind": "neurons", "n_latents": 8, "top_k": 9}}}, "top_k=9 exceeds n_latents=8"),
    ({"corpus": {"max_tokens": 1000}}, "raise corpus.max_tokens or corpus.sae_train_fraction"),
    ({"llm": {"backend": "openai"}}, "needs llm.base_url"),
    ({"llm": {"backend": "openai", "base_url": "ftp://x/v1"}}, "is not an http(s) URL"),
    ({"llm": {"backend": "openai", "base_url": "https://api.example.com/v1"}}, "is remote but llm.api_key_env"),
    ({"automation": {"observe_cron": "daily"}}, "not a 5-field cron string"),
    ({"storage_root": "s3://"}, "names no bucket"),
    ({"subject_model": {"batch_size": "sixteen"}}, "subject_model.batch_size: Input should be a valid integer"),
])
def test_rules_between_and_within_sections_fail_at_load(raw, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_config(raw)


def test_an_unknown_field_suggests_the_known_one():
    with pytest.raises(ConfigError, match=re.escape("storage_rot: unknown field; did you mean 'storage_root'?")):
        parse_config({"storage_rot": "x"})
    with pytest.raises(ConfigError, match=re.escape("hookpoints.layers.6.topk.pth: unknown field; did you mean 'path'")):
        parse_config({"hookpoints": {"layers.6": {"kind": "topk", "pth": "/x", "path": "/x", "n_latents": 4}}})


def test_a_key_pasted_as_the_variable_name_is_refused_and_never_echoed():
    secret = "sk-proj-abcdefghijklmnop0123456789"
    with pytest.raises(ConfigError) as err:
        parse_config({"llm": {"backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "api_key_env": secret}})
    assert "NAME of an environment variable" in str(err.value) and secret not in str(err.value)


def test_a_config_that_is_not_a_mapping(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping of sections"):
        load_config(tmp_path / "list.yaml")
