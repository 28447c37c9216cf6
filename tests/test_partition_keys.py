"""Partition keys checked against the project, and Dagster's own key and EnvVar errors rendered
as one line that lists what is valid."""

import dagster as dg
import pytest
from support.project import small_config

from autointerp_assets.errors import PartitionKeyError
from autointerp_assets.partition_keys import check_layer_and_range, check_partition_key
from autointerp_assets.user_errors import message

CFG = small_config()  # layers.3: 256 latents; layers.3.mlp: 1536; ranges 16 wide


def test_valid_keys_pass():
    assert check_partition_key(CFG, "layers.3") == ("layers.3", None)
    assert check_partition_key(CFG, "layers.3|00240-00255") == ("layers.3", "00240-00255")
    assert check_layer_and_range(CFG, "layers.3.mlp", "01520-01535") == ("layers.3.mlp", "01520-01535")


@pytest.mark.parametrize("key, expected", [
    ("abc", "layer 'abc' is not a hookpoint of the project config; valid layers: layers.3, layers.3.mlp"),
    ("00000-00015", "'00000-00015' is a latent range, not a layer"),
    ("00000-00015|layers.3", "dimensions swapped; the layer comes first: 'layers.3|00000-00015'"),
    ("layers.3|abc", "a range reads LO-HI, zero-padded and inclusive, 16 latents wide, e.g. 00000-00015"),
    ("layers.3|00256-00271", "not a range of layers.3's coder (256 latents)"),
    ("layers.3|00000-00031", "valid ranges: 00000-00015, 00016-00031, 00032-00047, …, 00208-00223, 00224-00239, "
                             "00240-00255 (16 ranges)"),
    ("layers.9|00000-00015", "partition key 'layers.9|00000-00015': layer 'layers.9' is not a hookpoint"),
    ("layers.3|layers.3.mlp", "'layers.3.mlp' is a layer, not a latent range"),
])
def test_bad_keys_name_the_valid_ones(key, expected):
    with pytest.raises(PartitionKeyError) as err:
        check_partition_key(CFG, key)
    assert expected in str(err.value)


def test_swapped_cli_options_are_named():
    with pytest.raises(PartitionKeyError, match="swapped.*--layer layers.3 --range 00000-00015"):
        check_layer_and_range(CFG, "00000-00015", "layers.3")


def test_dagster_errors_from_bad_input_become_one_line(monkeypatch, tmp_path):
    from support.project import SMALL_CONFIG

    monkeypatch.setenv("AUTOINTERP_CONFIG", str(SMALL_CONFIG))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    subset = dg.DagsterInvalidSubsetError("All selected assets must have a PartitionsDefinition containing the "
                                          "passed partition key `layers.3|abc` or have no PartitionsDefinition.")
    assert "latent range 'abc'" in message(subset) and "take LAYER|RANGE" in message(subset)
    unregistered = dg.DagsterInvalidSubsetError("... containing the passed partition key `layers.3` or ...")
    assert "not registered in this Dagster instance" in message(unregistered)
    assert "add-layer layers.3" in message(unregistered)
    monkeypatch.delenv("AUTOINTERP_UNSET_KEY", raising=False)

    class Keyed(dg.ConfigurableResource):
        api_key: str

    @dg.asset
    def needs_key(keyed: Keyed) -> None: ...

    with pytest.raises(dg.DagsterInvalidConfigError) as unset:
        dg.materialize([needs_key], resources={"keyed": Keyed(api_key=dg.EnvVar("AUTOINTERP_UNSET_KEY"))})
    assert message(unset.value) == ("$AUTOINTERP_UNSET_KEY is not set (the project config names it in "
                                    "llm.api_key_env, or a resource reads it); export AUTOINTERP_UNSET_KEY=<value> "
                                    "before running")
    assert message(RuntimeError("a bug")) is None  # bugs keep their traceback
    wrapped = RuntimeError("loading failed")
    wrapped.__cause__ = PartitionKeyError("layer 'x' is not a hookpoint")
    assert message(wrapped) == "layer 'x' is not a hookpoint"
