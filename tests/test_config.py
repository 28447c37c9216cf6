import pytest

from autointerp_assets.config import ConfigError, load_config, parse_config
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
