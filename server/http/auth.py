"""Who may read the dashboard and ``/metrics``: the Control service's rule.

With an admin token (``--admin-token``, ``$EDGEBED_ADMIN_TOKEN``) a request
must carry it, as ``Authorization: Bearer TOKEN`` (Prometheus, curl), or
the cookie a browser gets from the login form (``POST /login``): an HMAC of
the token, so the browser never stores the token itself; HttpOnly and
SameSite=Strict, so other sites' pages cannot use it. Without one, only
loopback callers are answered, exactly as the Control service does, so a
listener on a lab address never serves the fleet by accident. Refusals are
401 with a message saying why; a wrong token costs a short delay.

A reverse proxy on the same host makes every caller loopback: put one in
front only with an admin token set.
"""
import asyncio
import hashlib
import hmac
import html
import ipaddress
import secrets
from typing import Optional

from aiohttp import web

COOKIE = "edgebed_admin"
WRONG_TOKEN_DELAY_S = 0.25
PUBLIC_PATHS = ("/login", "/healthz")


def is_loopback(remote: Optional[str]) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def session_cookie(admin_token: str) -> str:
    """What the login cookie holds: proof of the token, not the token."""
    return hmac.new(admin_token.encode(), b"edgebed dashboard session",
                    hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def refusal(admin_token: Optional[str], request: web.Request) -> Optional[str]:
    """Why ``request`` may not be answered, or None when it may."""
    if admin_token:
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and bearer.strip():
            return None if _same(bearer.strip(), admin_token) else "wrong admin token"
        cookie = request.cookies.get(COOKIE)
        if cookie:
            return None if _same(cookie, session_cookie(admin_token)) else "wrong admin token"
        return ("missing admin token: send 'Authorization: Bearer TOKEN' or log in at /login "
                "with the server's --admin-token")
    if not is_loopback(request.remote):
        return ("this server has no --admin-token: its dashboard and /metrics answer loopback "
                "callers only")
    return None


def wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgebed: log in</title>
<style>body{{font:15px system-ui,sans-serif;margin:4em auto;max-width:28em;color:#222}}
input{{font:inherit;padding:.3em;width:100%;box-sizing:border-box;margin:.5em 0}}
p.why{{color:#a00}}</style></head>
<body><h1>edgebed</h1><p class="why">{why}</p>
<form method="post" action="/login"><label>Admin token
<input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">Log in</button></form></body></html>
"""


def unauthorized(request: web.Request, why: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="edgebed"'}
    if wants_html(request):
        return web.Response(status=401, text=LOGIN_PAGE.format(why=html.escape(why)),
                            content_type="text/html", headers=headers)
    return web.json_response({"error": why}, status=401, headers=headers)


def guard(admin_token: Optional[str]):
    """The middleware that answers 401 before any handler runs."""

    @web.middleware
    async def check(request: web.Request, handler):
        if request.path not in PUBLIC_PATHS:
            why = refusal(admin_token, request)
            if why is not None:
                if why == "wrong admin token":
                    await asyncio.sleep(WRONG_TOKEN_DELAY_S)
                return unauthorized(request, why)
        return await handler(request)

    return check


def login_handler(admin_token: Optional[str]):
    async def login(request: web.Request) -> web.Response:
        if not admin_token:
            return web.json_response({"error": "this server has no --admin-token: there is "
                                               "nothing to log in with (loopback callers are "
                                               "answered without one)"}, status=400)
        if request.method == "GET":
            return unauthorized(request, "log in with the server's admin token")
        form = await request.post()
        token = str(form.get("token", ""))
        if not token or not _same(token, admin_token):
            await asyncio.sleep(WRONG_TOKEN_DELAY_S)
            return unauthorized(request, "wrong admin token")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, session_cookie(admin_token), httponly=True, samesite="Strict", path="/",
                            secure=request.secure)
        raise response

    return login
