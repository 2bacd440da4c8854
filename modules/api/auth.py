"""HTTP Basic auth for API routes (``--api-auth``), compared in constant time."""

from __future__ import annotations

import secrets
from typing import Callable

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

_basic = HTTPBasic(auto_error=False)


def basic_auth_dependency(credentials: tuple[tuple[str, str], ...]) -> Callable[..., object] | None:
    """A FastAPI dependency that enforces ``credentials``; None when no auth is configured."""
    if not credentials:
        return None

    async def check(request: Request) -> str:
        given: HTTPBasicCredentials | None = await _basic(request)
        if given is not None:
            for user, password in credentials:
                user_ok = secrets.compare_digest(given.username.encode(), user.encode())
                pass_ok = secrets.compare_digest(given.password.encode(), password.encode())
                if user_ok and pass_ok:
                    return user
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED,
                            detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Basic"})

    return check
