"""Can this machine reach the hubs? Facts for `gpt2zh doctor` (CN4), collected apart from the checks.

From mainland China huggingface.co often does not answer at all (a connect that hangs until a timeout), so
each hub gets one cheap request with a timeout of a few seconds, all at once: doctor waits for the slowest
probe, not the sum. Any HTTP answer, 401 or 404 included, proves the host is reachable; no answer (DNS
failure, refused, timeout) is what a download would meet. Proxies are honoured (HTTPS_PROXY), as the hubs'
own clients honour them. Standard library only: nothing here imports an HF library.
"""

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from gpt2zh.hf_env import hub_endpoint

MODELSCOPE_DEFAULT = "https://www.modelscope.cn"
PROBE_TIMEOUT_S = 3.0  # per probe; every probe runs at once, so doctor waits about this long at worst


@dataclass(frozen=True)
class Endpoint:
    name: str  # as the report shows it: "Hugging Face", "ModelScope"
    variable: str  # the environment variable that moves it: HF_ENDPOINT, MODELSCOPE_ENDPOINT
    url: str  # the endpoint in force, without a trailing '/'
    probe_path: str  # a cheap API path: each SDK's own "who am I", which answers 401 without a token


@dataclass(frozen=True)
class Reachability:
    name: str
    variable: str
    url: str
    reachable: bool
    detail: str  # "answered in 0.21 s (HTTP 401 …)", "connection refused", "no answer within 3 s", ...


def endpoints_in_force(environ: Mapping[str, str]) -> list[Endpoint]:
    """The endpoints the hubs' clients would use: HF_ENDPOINT or huggingface.co, MODELSCOPE_ENDPOINT or
    www.modelscope.cn."""
    modelscope = (environ.get("MODELSCOPE_ENDPOINT") or MODELSCOPE_DEFAULT).strip().rstrip("/")
    return [Endpoint("Hugging Face", "HF_ENDPOINT", hub_endpoint(environ), "/api/whoami-v2"),
            Endpoint("ModelScope", "MODELSCOPE_ENDPOINT", modelscope, "/openapi/v1/users/me")]


def _no_answer(err: BaseException, timeout: float) -> str:
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, socket.gaierror):
        return f"DNS cannot resolve the host ({reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    return f"{type(reason).__name__}: {reason}"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """One GET; (True, 'answered in <s> (HTTP <status> …)') for any HTTP answer, else (False, why)."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "gpt2zh-doctor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as err:  # an answer: the host is there
        status = err.code
    except (urllib.error.URLError, OSError, ValueError) as err:
        return False, _no_answer(err, timeout)
    # the probe carries no token on purpose: a 401 says the host answered, not that the user's token is wrong
    return True, f"answered in {time.monotonic() - started:.2f} s (HTTP {status} to a request without a token)"


def collect_reachability(endpoints: list[Endpoint], timeout: float = PROBE_TIMEOUT_S) -> list[Reachability]:
    """Probe every endpoint at once; returns within about `timeout` seconds whatever the network does.

    The socket timeout does not bound a DNS lookup, so a probe still running at the deadline counts as no
    answer; its daemon thread is left behind rather than waited for.
    """
    results: dict[int, tuple[bool, str]] = {}
    threads = []
    for index, endpoint in enumerate(endpoints):
        def run(index=index, url=endpoint.url + endpoint.probe_path):
            results[index] = probe(url, timeout)

        thread = threading.Thread(target=run, name=f"probe {endpoint.name}", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout + 0.5
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [Reachability(endpoint.name, endpoint.variable, endpoint.url,
                         *results.get(index, (False, f"no answer within {timeout:g} s")))
            for index, endpoint in enumerate(endpoints)]
