"""The `LLM` Dagster resource: settings in, a `ChatLLM` out.

All behaviour lives in `autointerp_assets.llm`: `client` (HTTP) and `local` (in-process); this only validates settings and builds one.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

import dagster as dg

from autointerp_assets.config_file import ConfigError
from autointerp_assets.llm.api import ChatLLM
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.llm.client import OpenAICompatibleLLM
from autointerp_assets.store.store import ArtifactStore


def is_local_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LLMResource(dg.ConfigurableResource):
    """The chat model that writes explanations and scores them."""

    backend: Literal["local", "openai"] = "local"
    base_url: str | None = None
    model: str = "smollm2-135m-instruct"
    # Pass dg.EnvVar("OPENAI_API_KEY"): the key then never enters run config or the UI.
    api_key: str | None = None
    max_concurrency: int = 8
    requests_per_minute: int | None = None
    timeout_s: float = 60.0
    max_retries: int = 5
    price_per_million_input: float = 0.0
    price_per_million_output: float = 0.0

    def build(self, store: ArtifactStore, scope: str = "shared") -> ChatLLM:
        """The client; its response cache holds `scope` (one partition, e.g. 'scores/layers.6/00000-00063')."""
        cache = ResponseCache(store, scope=scope)
        if self.backend == "local":
            from autointerp_assets.llm.local import LocalChatLLM  # torch only when used

            return LocalChatLLM(self.model, cache=cache)
        return self._openai_client(cache)

    def check_reachable(self) -> None:
        """Raise `EndpointError` naming the URL if the endpoint does not answer or refuses the key;
        the LLM assets call it before any work (the local backend needs nothing)."""
        if self.backend == "openai":
            self._openai_client(cache=None).check_reachable()

    def _openai_client(self, cache: ResponseCache | None) -> OpenAICompatibleLLM:
        if not self.base_url:
            raise ConfigError(
                "LLM backend 'openai' needs base_url, e.g. base_url='http://127.0.0.1:8000/v1' for a "
                "local server or 'https://openrouter.ai/api/v1'; or use backend='local'"
            )
        if not self.api_key and not is_local_url(self.base_url):
            raise ConfigError(
                f"LLM endpoint {self.base_url} is remote but no api_key is set: export OPENAI_API_KEY and "
                "pass api_key=dg.EnvVar('OPENAI_API_KEY') (or set llm.api_key_env in the config); any placeholder "
                "value works for a remote server without auth"
            )
        return OpenAICompatibleLLM(
            self.base_url,
            self.model,
            self.api_key,
            max_concurrency=self.max_concurrency,
            requests_per_minute=self.requests_per_minute,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            price_per_million_input=self.price_per_million_input,
            price_per_million_output=self.price_per_million_output,
            cache=cache,
        )
