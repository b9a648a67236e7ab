"""Fetch the first token before anything else, so a setup problem is one clear sentence.

A reconnecting session treats most token failures as transient (it retries, as it should
on a train); at start-up the same failures are usually configuration mistakes, and the user
deserves to hear which at once rather than after a minute of retries. The credential
fetched here is not wasted: :class:`FirstThen` hands it to the session's first attempt.
"""

from __future__ import annotations

from typing import Literal

from tunnelproof.protocol.close_codes import CloseVerdict
from tunnelproof.session.credentials import (
    Credential,
    TokenAuthError,
    TokenConfigError,
    TokenOffline,
    TokenRateLimited,
    TokenSource,
    TokenUnavailable,
)

SourceKind = Literal["service", "google", "emulator"]


class PreflightError(Exception):
    """The first token could not be had; ``str()`` says what to do, in one sentence."""


class FirstThen:
    """A token source that returns an already fetched credential first, then asks ``inner``."""

    def __init__(self, inner: TokenSource, first: Credential) -> None:
        self._inner = inner
        self._first: Credential | None = first

    async def __call__(self) -> Credential:
        """The prefetched credential once, then fresh ones."""
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await self._inner()


async def first_credential(source: TokenSource, *, where: str, kind: SourceKind) -> Credential:
    """One credential from ``source`` now, or :class:`PreflightError`.

    ``where`` names the source as a noun phrase ("the token service at http://…");
    ``kind`` picks the advice: a token service (``service``), Google minting with a key
    (``google``), or the local emulator.
    """
    try:
        return await source()
    except TokenAuthError as exc:
        raise PreflightError(
            f"{where} refused the user (HTTP {exc.status}): "
            "pass a valid --bearer (or set TUNNELPROOF_BEARER): the key or JWT itself, "
            "as the service was configured with it."
        ) from None
    except TokenOffline:
        if kind == "google":
            raise PreflightError(
                "cannot reach Google to mint a token: check the network (and any proxy)."
            ) from None
        raise PreflightError(
            f"cannot reach {where}: start it (`tunnelproof serve`) or fix --token-url."
        ) from None
    except TokenRateLimited as exc:
        wait = f" for {exc.retry_after:.0f} s" if exc.retry_after else ""
        raise PreflightError(f"{where} is rate limiting token requests{wait}; try later.") from None
    except TokenUnavailable as exc:
        if kind == "google":
            raise PreflightError(
                f"no token could be minted from Google ({exc}): check the network and "
                "that GEMINI_API_KEY is valid."
            ) from None
        if exc.status == 502 or exc.code == "upstream_unavailable":
            raise PreflightError(
                f"{where} could not mint a token upstream (HTTP {exc.status}): check its "
                "network and its GEMINI_API_KEY."
            ) from None
        raise PreflightError(
            f"{where} failed ({exc}); check its logs (a missing GEMINI_API_KEY there answers 500)."
        ) from None
    except TokenConfigError as exc:
        advice = "check GEMINI_API_KEY" if kind == "google" else "check the URL and settings"
        raise PreflightError(f"the token source is misconfigured ({exc}); {advice}.") from None


def failure_sentence(verdict: CloseVerdict) -> str:
    """A ``Failed`` verdict for a person: the advice, and what the server said if it adds.

    The advice is generic for some classes (1007 "invalid argument" covers many mistakes);
    the server's own reason names the one that happened (e.g. the model that answers in
    AUDIO only).
    """
    reason = " ".join(verdict.reason.split())
    if not reason or reason in verdict.advice:
        return verdict.advice
    code = f"{verdict.code} " if verdict.code is not None else ""
    return f"{verdict.advice} (the server said: {code}{reason})"
