"""The token and the repository, checked before any upload work (and, in `gpt2zh run`, before training).

The token comes from HF_TOKEN or `hf auth login` (huggingface_hub.get_token), never from a config
file, and is never printed, logged or written anywhere.
"""

from dataclasses import dataclass

from pipeline.errors import UserError

TOKEN_FIX = "create a write token at https://huggingface.co/settings/tokens, then set HF_TOKEN or run `hf auth login`"


@dataclass(frozen=True)
class Access:
    user: str
    endpoint: str


def hub_api():
    from huggingface_hub import HfApi

    return HfApi()


def _unreachable(api, err) -> UserError:
    return UserError(f"cannot reach the Hub at {api.endpoint} ({type(err).__name__})",
                     "check the network (or HF_ENDPOINT), then retry")


def require_token(repo_id: str) -> None:
    """The token's presence only, without a request (checked before stage 1)."""
    from huggingface_hub import get_token

    if not get_token():
        raise UserError("no Hugging Face token found for --hub-repo-id " + repo_id, TOKEN_FIX)


def check_push_access(repo_id: str, private: bool) -> Access:
    """Token present and accepted, allowed to write into the namespace, repository created if missing."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    require_token(repo_id)
    api = hub_api()
    try:
        identity = api.whoami()
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise UserError(f"the Hugging Face token was rejected ({status})", TOKEN_FIX) from None
        raise _unreachable(api, err) from None
    except httpx2.TransportError as err:
        raise _unreachable(api, err) from None
    role = identity.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        raise UserError("the Hugging Face token is read-only", TOKEN_FIX)
    namespace = repo_id.split("/")[0]
    allowed = {identity.get("name")} | {org.get("name") for org in identity.get("orgs", [])}
    if namespace not in allowed:
        raise UserError(f"the token's user {identity.get('name')!r} cannot write to the namespace {namespace!r}",
                        f"use --hub-repo-id {identity.get('name')}/<name>, or a token of {namespace!r}")
    try:
        # (G8) create first, so the upload never meets RepositoryNotFoundError
        api.create_repo(repo_id, private=private, exist_ok=True)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise UserError(f"cannot create or use the repository {repo_id} ({status})",
                        "check the name and the token's permissions") from None
    except httpx2.TransportError as err:
        raise _unreachable(api, err) from None
    return Access(user=identity.get("name", "?"), endpoint=api.endpoint)
