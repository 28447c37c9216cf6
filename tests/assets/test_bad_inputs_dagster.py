"""Bad input through `dagster asset materialize`, as an operator runs it.

What Dagster checks before our code runs (partition keys, EnvVars) and what the code location
checks when it loads (config, local files, storage) ends the command with one `autointerp:`
line naming the fix and no Python traceback. A problem only a running step can see (here an
endpoint that is down) fails that step with a dg.Failure whose description names the fix;
Dagster's event log prints its own frames beneath it. Nothing is written under the storage
root and no partition is registered either way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from support.inputs import free_url, sae_dir, truncate
from support.project import SMALL_CONFIG

from autointerp_assets.config_file import load_config
from autointerp_assets.partitions import register_partitions

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]
KEY = "layers.3|00000-00015"


def configure(raw: dict, tmp: Path, case: str) -> tuple[str, str]:
    """Spoil the config for `case`; return (--select, --partition)."""
    if case == "config_typo":
        raw["storage_rot"] = "x"
    elif case == "coder_truncated":
        directory = sae_dir(tmp)
        truncate(directory / "sae.safetensors")
        raw["hookpoints"]["layers.3"] = {"kind": "topk", "path": str(directory), "n_latents": 64}
    elif case == "storage_unwritable":
        raw["storage_root"] = "/proc/autointerp-data"
    elif case in ("api_key_unset", "endpoint_down"):
        raw["llm"] = {"backend": "openai", "model": "m", "base_url": free_url()}
        if case == "api_key_unset":
            raw["llm"]["api_key_env"] = "AUTOINTERP_TEST_UNSET_KEY"
        return "explanations", KEY
    partitions = {"key_not_a_layer": "abc", "key_unregistered": "layers.3"}
    return ("sparse_coder", partitions[case]) if case in partitions else ("corpus", "")


CASES = {  # case -> what the output must say
    "config_typo": ["autointerp: invalid autointerp config", "did you mean 'storage_root'"],
    "coder_truncated": ["autointerp: ", "sae.safetensors is truncated", "re-download"],
    "storage_unwritable": ["autointerp: storage_root '/proc/autointerp-data' is not writable"],
    "key_not_a_layer": ["autointerp: layer 'abc' is not a hookpoint", "valid layers: layers.3, layers.3.mlp"],
    "key_unregistered": ["autointerp: partition key 'layers.3' fits the project config but is not registered",
                         "python -m autointerp_assets add-layer layers.3"],
    "api_key_unset": ["autointerp: $AUTOINTERP_TEST_UNSET_KEY is not set", "export AUTOINTERP_TEST_UNSET_KEY="],
    "endpoint_down": ["Failure: LLM endpoint http://127.0.0.1:", "is unreachable", "fix llm.base_url"],
}


def home_instance(home: Path) -> dg.DagsterInstance:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        return dg.DagsterInstance.get()


def test_bad_input_through_dagster_asset_materialize(tmp_path: Path):
    runs = {}
    for case in CASES:
        tmp = tmp_path / case
        (tmp / "dagster_home").mkdir(parents=True)
        shutil.copy(REPO / "dagster.yaml", tmp / "dagster_home")
        raw = yaml.safe_load(SMALL_CONFIG.read_text()) | {"storage_root": str(tmp / "data")}
        select, partition = configure(raw, tmp, case)
        (tmp / "autointerp.yaml").write_text(yaml.safe_dump(raw))
        if case in ("api_key_unset", "endpoint_down"):  # registered, as the hookpoint sensor would
            with home_instance(tmp / "dagster_home") as instance:
                register_partitions(instance, load_config(tmp / "autointerp.yaml"), ["layers.3"])
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "DAGSTER_HOME": str(tmp / "dagster_home"),
               "AUTOINTERP_CONFIG": str(tmp / "autointerp.yaml"), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "AUTOINTERP_CACHE": str(Path.home() / ".cache" / "autointerp")}
        command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "autointerp_assets.definitions",
                   "--select", select] + (["--partition", partition] if partition else [])
        runs[case] = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
    for case, proc in runs.items():
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode != 0, (case, output[-2000:])
        for expected in CASES[case]:
            assert expected in output, (case, expected, output[-3000:])
        assert "Traceback (most recent call last)" not in output, (case, output[-3000:])
        tmp = tmp_path / case
        assert not (tmp / "data").exists(), case
        with home_instance(tmp / "dagster_home") as instance:
            registered = instance.get_dynamic_partitions("layer")
        assert registered == (["layers.3"] if case in ("api_key_unset", "endpoint_down") else []), case
