"""Checkpoints by Hugging Face Hub id: `AnyMAL.from_pretrained("org/name")`, `anymal chat --model
org/name`, and `anymal push CHECKPOINT org/name` (`model.push_to_hub`).

Downloads go through huggingface_hub's own cache (`HF_HOME`, `HF_HUB_CACHE`): a model fetched once
loads again without network, `HF_HUB_OFFLINE=1` never touches the network, and `revision` pins a
branch, tag or commit. A path that exists locally is always the local directory.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CheckpointError
from .checkpoint import read_manifest

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_checkpoint(path: str | Path, revision: str | None = None) -> Path:
    """The local directory of checkpoint `path`: itself when it exists, else a Hub id's snapshot in
    the Hugging Face cache (downloaded unless offline)."""
    p = Path(path)
    if p.exists() or not _REPO_ID.match(str(path)):
        if revision:
            raise CheckpointError(f"{path}: --revision applies to Hugging Face Hub ids, not local directories")
        return p
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(path), revision=revision))
    except LocalEntryNotFoundError:
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else " and the Hub could not be reached"
        raise CheckpointError(f"{path}: no such local directory, and as a Hugging Face Hub id it is not in the cache "
                              f"({constants.HF_HUB_CACHE}){offline}") from None
    except (HfHubHTTPError, HFValidationError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: no such local directory, and the Hugging Face Hub says: {first}") from None


def push_checkpoint(path: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                    message: str | None = None) -> str:
    """Upload checkpoint directory `path` to Hub repo `repo_id` (created if missing); the commit's URL."""
    from huggingface_hub import HfApi

    manifest = read_manifest(path)  # only a readable checkpoint goes up
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(path), revision=revision,
                             commit_message=message or f"anymal checkpoint (stage {manifest['stage']})")
    return str(getattr(info, "commit_url", info))
