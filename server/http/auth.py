"""Who may read the dashboard and ``/metrics``: the Control service's rule
(``edgebed.server.identity.admin_identity``, one function for both), over HTTP.

- An admin proves it with the server's admin token (``--admin-token``,
  ``$EDGEBED_ADMIN_TOKEN``) or an enrolled admin credential (``edgebed-server
  enroll NAME --role admin``), sent as ``Authorization: Bearer SECRET``
  (Prometheus, curl), or through the login form (``POST /login``), which
  gives the browser a random session cookie (HttpOnly, SameSite=Strict: other
  sites' pages cannot use it); the server keeps the secret and checks it
  again at every request, so a revoked credential stops working at once.
- A device's credential is refused (403): boards never read the experiment
  plane.
- A server with no admin token and no enrolled admin answers loopback
  callers only, so a listener on a lab address never serves the fleet by
  accident.

Refusals are 401 (403) with a message saying why; a wrong secret costs a
short delay. A reverse proxy on the same host makes every caller loopback:
put one in front only with admins configured.
"""
import asyncio
import html
import secrets
from collections import OrderedDict
from typing import Optional, Tuple

from aiohttp import web

from edgebed.argtypes import is_loopback_host
from edgebed.server.errors import PermissionDenied, Unauthenticated
from edgebed.server.identity import WRONG_ADMIN, CredentialStore, admin_identity, has_admins

COOKIE = "edgebed_session"
SESSIONS = 256          # browsers logged in at once; the oldest is logged out first
WRONG_SECRET_DELAY_S = 0.25
PUBLIC_PATHS = ("/login", "/healthz")
MISSING = ("missing admin credential: send 'Authorization: Bearer SECRET' (the server's "
           "--admin-token or an enrolled admin credential), or log in at /login")
WRONG = WRONG_ADMIN
LOOPBACK_ONLY = ("this server has no admin credential: its dashboard and /metrics answer "
                 "loopback callers only")


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgebed: log in</title>
<style>body{{font:15px system-ui,sans-serif;margin:4em auto;max-width:28em;color:#222}}
input{{font:inherit;padding:.3em;width:100%;box-sizing:border-box;margin:.5em 0}}
p.why{{color:#a00}}</style></head>
<body><h1>edgebed</h1><p class="why">{why}</p>
<form method="post" action="/login"><label>Admin token or credential
<input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">Log in</button></form></body></html>
"""


def refused(request: web.Request, status: int, why: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="edgebed"'} if status == 401 else {}
    if wants_html(request):
        return web.Response(status=status, text=LOGIN_PAGE.format(why=html.escape(why)),
                            content_type="text/html", headers=headers)
    return web.json_response({"error": why}, status=status, headers=headers)


class DashboardAuth:
    def __init__(self, admin_token: Optional[str], store: Optional[CredentialStore]) -> None:
        self.admin_token = admin_token or None
        self.store = store
        self._sessions: "OrderedDict[str, str]" = OrderedDict()  # cookie -> the secret given

    def has_admins(self) -> bool:
        return has_admins(self.admin_token, self.store)

    def _verdict(self, secret: Optional[str], loopback: bool) -> Optional[Tuple[int, str]]:
        """The Control service's rule (identity.admin_identity) as HTTP: None
        when the caller is an admin, else (401 or 403, why)."""
        try:
            admin_identity(secret, self.admin_token, self.store, loopback=loopback,
                           what="the dashboard", missing=MISSING, loopback_only=LOOPBACK_ONLY)
        except PermissionDenied as exc:
            return 403, str(exc)
        except Unauthenticated as exc:
            return 401, str(exc)
        return None

    def check_secret(self, secret: str) -> Optional[Tuple[int, str]]:
        """None when ``secret`` proves an admin; else (status, why)."""
        return self._verdict(secret, loopback=False)

    def refusal(self, request: web.Request) -> Optional[Tuple[int, str]]:
        """Why ``request`` may not be answered, as (status, message); None when it may."""
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and bearer.strip():
            return self.check_secret(bearer.strip())
        cookie = request.cookies.get(COOKIE)
        if cookie:
            secret = self._sessions.get(cookie)
            return (401, "session expired: log in again at /login") if secret is None \
                else self.check_secret(secret)
        return self._verdict(None, loopback=is_loopback_host(request.remote))

    def middleware(self):
        @web.middleware
        async def guard(request: web.Request, handler):
            if request.path not in PUBLIC_PATHS:
                why = self.refusal(request)
                if why is not None:
                    if why[1] == WRONG:
                        await asyncio.sleep(WRONG_SECRET_DELAY_S)
                    return refused(request, *why)
            return await handler(request)

        return guard

    async def login(self, request: web.Request) -> web.Response:
        if not self.has_admins():
            return web.json_response({"error": "this server has no admin credential: there is "
                                               "nothing to log in with (loopback callers are "
                                               "answered without one)"}, status=400)
        if request.method == "GET":
            return refused(request, 401, "log in with the server's admin token or an enrolled "
                                         "admin credential")
        form = await request.post()
        secret = str(form.get("token", ""))
        why = self.check_secret(secret) if secret else (401, WRONG)
        if why is not None:
            if why[1] == WRONG:
                await asyncio.sleep(WRONG_SECRET_DELAY_S)
            return refused(request, *why)
        cookie = secrets.token_urlsafe(32)
        self._sessions[cookie] = secret
        while len(self._sessions) > SESSIONS:
            self._sessions.popitem(last=False)
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="Strict", path="/",
                            secure=request.secure)
        raise response
