"""Model hubs behind one interface (contract.py): which one a setting or a path names."""

from gpt2zh.errors import UserError
from gpt2zh.remote.contract import Commit, Hub, Identity, Kind, MissingOnHub, RemoteFile

PROVIDERS = ("huggingface", "modelscope")
SCHEMES = {"hf://": "huggingface", "ms://": "modelscope"}

__all__ = ["PROVIDERS", "SCHEMES", "Commit", "Hub", "Identity", "Kind", "MissingOnHub", "RemoteFile", "open_hub",
           "provider_of_path"]


def open_hub(provider: str) -> Hub:
    """The hub a --hub-provider value names (the SDK itself is imported only when a method needs it)."""
    if provider == "huggingface":
        from gpt2zh.remote.huggingface import HuggingFaceHub

        return HuggingFaceHub()
    if provider == "modelscope":
        from gpt2zh.remote.modelscope import ModelScopeHub

        return ModelScopeHub()
    raise UserError(f"--hub-provider {provider!r} is not a hub gpt2zh knows", f"use one of {', '.join(PROVIDERS)}")


def provider_of_path(path: str) -> str | None:
    """`hf://…` and `ms://…` paths name their hub; anything else is a local path (None)."""
    return next((provider for scheme, provider in SCHEMES.items() if path.startswith(scheme)), None)
