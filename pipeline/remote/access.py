"""The token and the repository, checked before any upload work (and, in `gpt2zh run`, before training).

The token comes from the hub's own place (HF_TOKEN or `hf auth login`; MODELSCOPE_API_TOKEN or the ModelScope
SDK's login), never from a config file, and is never printed, logged or written anywhere (HB2).
"""

from dataclasses import dataclass

from gpt2zh.errors import UserError
from gpt2zh.remote import Hub, open_hub


@dataclass(frozen=True)
class Access:
    user: str
    endpoint: str


def _unreachable(hub: Hub, err) -> UserError:
    return UserError(f"cannot reach {hub.label} at {hub.endpoint} ({type(err).__name__})",
                     f"check the network (or {hub.endpoint_variable}), then retry")


def require_token(repo_id: str, provider: str = "huggingface") -> None:
    """The token's presence only, without a request (checked before stage 1)."""
    hub = open_hub(provider)
    if not hub.has_token():
        raise UserError(f"no {hub.brand} token found for --hub-repo-id {repo_id}", hub.token_fix)


def _refusal(hub: Hub, err: Exception) -> UserError:
    """What the hub answered (a rejected token), or that it could not be reached, as one line."""
    status = hub.status_of(err)
    if status in (401, 403):
        return UserError(f"the {hub.brand} token was rejected ({status})", hub.token_fix)
    if status is None and not hub.transient(err) and hub.explain(err, "", "model", "", "") is None:
        raise err  # our own bug: keep its traceback
    return _unreachable(hub, err)


def check_push_access(repo_id: str, private: bool, provider: str = "huggingface") -> Access:
    """Token present and accepted, allowed to write into the namespace, repository created if missing."""
    require_token(repo_id, provider)
    hub = open_hub(provider)
    try:
        identity = hub.whoami()
    except Exception as err:
        raise _refusal(hub, err) from None
    if identity.read_only:
        raise UserError(f"the {hub.brand} token is read-only", hub.token_fix)
    namespace = repo_id.split("/")[0]
    if identity.namespaces is not None and namespace not in identity.namespaces:
        raise UserError(f"the token's user {identity.name!r} cannot write to the namespace {namespace!r}",
                        f"use --hub-repo-id {identity.name}/<name>, or a token of {namespace!r}")
    try:
        hub.create_repo(repo_id, private)  # (G8) create first, so the upload never meets a missing repository
    except Exception as err:
        if (status := hub.status_of(err)) is None:
            raise _refusal(hub, err) from None
        raise UserError(f"cannot create or use the repository {repo_id} ({status})",
                        f"check the name, and that the token of {identity.name!r} may write to {namespace!r}") from None
    return Access(user=identity.name, endpoint=hub.endpoint)
