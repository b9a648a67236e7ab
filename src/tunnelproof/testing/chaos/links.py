"""Each chaos session's network path to the emulator.

Every session has its own :class:`~tunnelproof.testing.tunnel.TunnelProxy` (resets,
blackholes and its 100-500 ms latency hit one conversation). Some sessions' links also
cross a network namespace so a kernel blackhole can cut them::

    LiveSession (host) ── veth ──> [namespace] TunnelProxy listening here ──> emulator
                                   (upstream socket on host loopback)

The proxy's listening socket is created inside the namespace, so the client's packets
cross the veth, where :meth:`NetnsTunnel.blackhole` drops them: the client's own kernel
retransmits into the void, as in a train tunnel, unlike the proxy's blackhole where the
proxy's kernel keeps ACKing. Needs root, ``ip`` and ``nft``; without them those sessions
use a plain proxy and their kernel steps are reported as not run, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from tunnelproof.testing.netns import NetnsError, NetnsTunnel, netns_available
from tunnelproof.testing.tunnel import TunnelProxy

log = logging.getLogger("tunnelproof.chaos")


@dataclass(slots=True)
class SessionLink:
    """One session's path: its proxy, and the namespace it listens in (if any)."""

    proxy: TunnelProxy
    kernel: NetnsTunnel | None = None


@dataclass(slots=True)
class Links:
    """Opens and closes the sessions' links (see the module docstring)."""

    upstream_port: int
    kernel_every: int = 10
    """Session ``i`` gets a kernel path when ``i % kernel_every == 0`` (0: none)."""
    links: list[SessionLink] = field(default_factory=list)
    kernel_unavailable: str | None = None

    def wants_kernel(self, index: int) -> bool:
        """Whether session ``index``'s plan may hold kernel blackholes."""
        if self.kernel_every <= 0 or index % self.kernel_every != 0:
            return False
        if self.kernel_unavailable is None:
            ok, reason = netns_available()
            self.kernel_unavailable = None if ok else reason
            if not ok:
                log.warning("kernel blackholes not run: %s", reason)
        return self.kernel_unavailable is None

    async def open(self, index: int) -> SessionLink:
        """The link of session ``index``: a loopback proxy, or one inside a namespace."""
        loop = asyncio.get_running_loop()
        if self.wants_kernel(index):
            ns = NetnsTunnel()
            try:
                await loop.run_in_executor(None, ns.start)
                listener = ns.create_socket()
                listener.bind((ns.ns_address, 0))
                listener.listen(64)
                listener.setblocking(False)
                proxy = await TunnelProxy("127.0.0.1", self.upstream_port).start(sock=listener)
            except (NetnsError, OSError) as exc:
                await loop.run_in_executor(None, ns.stop)
                self.kernel_unavailable = f"namespace setup failed: {exc}"
                log.warning("kernel path of session %d failed: %s", index, exc)
            else:
                link = SessionLink(proxy, ns)
                self.links.append(link)
                return link
        link = SessionLink(await TunnelProxy("127.0.0.1", self.upstream_port).start())
        self.links.append(link)
        return link

    async def close(self) -> None:
        """Stop every proxy and remove every namespace (blackholes included)."""
        loop = asyncio.get_running_loop()
        for link in self.links:
            await link.proxy.stop()
            if link.kernel is not None:
                with contextlib.suppress(NetnsError, OSError):
                    await loop.run_in_executor(None, link.kernel.stop)
        self.links.clear()
