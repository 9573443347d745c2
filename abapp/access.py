"""Who may use the experimenter controls and the Results tab: locked unless the visitor proves it.

* ``--admin-password`` (or ``$AB_ADMIN_PASSWORD``) set: that password, for everyone.
* not set: connections from this machine (loopback, and not forwarded by a proxy) need none;
  everyone else needs a password generated at start and printed in the console. On a Hugging Face
  Space only the owner sees that console, but set the secret there anyway (README).

A proxy on the same machine (a Space's, a tunnel) makes every visitor look local, so a request
carrying a forwarding header never counts as local.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass

GENERATED_PASSWORD_BYTES = 12  # token_urlsafe: 16 characters
PROXY_HEADERS = ("x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-host")


@dataclass(frozen=True)
class AdminAccess:
    """The experimenter password and whether it was generated (then local visitors need none)."""

    password: str
    generated: bool

    @classmethod
    def from_setting(cls, configured: str | None) -> AdminAccess:
        if configured:
            return cls(configured, generated=False)
        return cls(secrets.token_urlsafe(GENERATED_PASSWORD_BYTES), generated=True)

    def allows(self, password: str | None, request) -> bool:
        """True when ``password`` is right, or (no password configured) the request is local."""
        if self.generated and is_local(request):
            return True
        return hmac.compare_digest((password or "").encode(), self.password.encode())

    def console_notice(self) -> str:
        """What the console shows at start when the password was generated ("" otherwise)."""
        if not self.generated:
            return ""
        return (
            "No --admin-password / AB_ADMIN_PASSWORD set: the experimenter controls and the Results tab "
            "are open to browsers on this machine only. From elsewhere, use this run's password: "
            f"{self.password}"
        )


def is_local(request) -> bool:
    """Whether a gradio request comes straight from this machine (loopback, no proxy headers)."""
    if request is None:
        return False
    headers = {str(k).lower() for k in dict(request.headers or {})}
    if headers & set(PROXY_HEADERS):
        return False
    client = request.client
    host = client.host if client is not None else None
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
