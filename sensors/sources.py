"""What the model-update sensor watches, and which layers a change affects. No Dagster here.

Sources: the subject model (every layer depends on it) and each configured coder that is
loaded from a path (kind topk/jumprelu). Trained (`train_topk`) and `neurons` coders have
no source of their own: they change only with the subject model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping

from autointerp_assets.config import JumpReLUCoderConfig, ProjectConfig, TopKCoderConfig
from autointerp_assets.data.model_files import revision_source
from autointerp_assets.data.revisions import revision_of

SUBJECT = "subject_model"
CODER_PREFIX = "coder:"

ReadRevision = Callable[[str, dict | None, str | None], str]


def subject_source(cfg: ProjectConfig) -> str:
    """The path or hub id whose revision is the subject model's (as `load_subject` resolves it)."""
    return revision_source(cfg.subject_model.id)


def coder_sources(cfg: ProjectConfig) -> dict[str, str]:
    """layer -> path of every coder loaded from files; a hub id loses its '#subfolder'."""
    return {
        layer: coder.path if "://" in coder.path else coder.path.split("#", 1)[0]
        for layer, coder in cfg.hookpoints.items()
        if isinstance(coder, TopKCoderConfig | JumpReLUCoderConfig)
    }


def read_revisions(
    cfg: ProjectConfig, storage_options: dict | None = None, read: ReadRevision = revision_of
) -> tuple[dict[str, str], dict[str, str]]:
    """({source key: revision}, {source key: error}). An unreadable source (hub offline, path
    gone) is reported, not raised, so one bad coder does not stop the others being watched."""
    wanted = {SUBJECT: (subject_source(cfg), cfg.subject_model.revision)}
    wanted |= {CODER_PREFIX + layer: (path, None) for layer, path in coder_sources(cfg).items()}
    revisions, errors = {}, {}
    for key, (source, hint) in wanted.items():
        try:
            revisions[key] = read(source, storage_options, hint)
        except Exception as e:  # noqa: BLE001 - any failure to read a revision is reported per source
            errors[key] = f"{source}: {type(e).__name__}: {e}"
    return revisions, errors


def changed_layers(old: Mapping[str, str], new: Mapping[str, str], layers: Iterable[str]) -> list[str]:
    """Layers whose inputs changed between two readings. A source seen for the first time is
    not a change: there is nothing built from an earlier revision of it to redo."""

    def moved(key: str) -> bool:
        return key in old and key in new and old[key] != new[key]

    return [layer for layer in layers if moved(SUBJECT) or moved(CODER_PREFIX + layer)]


def layer_revision(revisions: Mapping[str, str], layer: str) -> str:
    """A short key for everything a layer's coder and activations are built from."""
    parts = f"{revisions.get(SUBJECT, '')}\n{revisions.get(CODER_PREFIX + layer, '')}"
    return hashlib.sha256(parts.encode()).hexdigest()[:12]
