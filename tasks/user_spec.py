"""Users, tokens and the audit trail: their requests and answers, one schema
from the API's body to the OpenAPI document (strict, as ``run_spec.py``)."""

import datetime
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from .run_spec import OptionalJsonInt

#: A user's role: ``admin`` acts on everything and manages users;
#: ``member`` submits and moves their own runs; ``viewer`` reads.
ROLES = ("admin", "member", "viewer")
#: A user's name: their identity everywhere (a run's owner), never changed.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
#: The longest a token may live, in days (a token without expiry is asked for with null).
MAX_TOKEN_DAYS = 3650


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class TokenRequest(_Strict):
    """``POST /api/tunix/tokens``: a new token, shown once."""

    label: str = Field("", max_length=100, description="what the token is for (shown in listings)")
    expires_in_days: OptionalJsonInt = Field(None, ge=1, le=MAX_TOKEN_DAYS,
                                           description="days it lives; null: until revoked")
    user: Optional[str] = Field(None, pattern=NAME_PATTERN,
                                description="whose token (an admin's request only); null: the caller's")

    def expires_at(self):
        if self.expires_in_days is None:
            return None
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=self.expires_in_days)


class UserRequest(_Strict):
    """``POST /api/tunix/users``: a new user and their first token."""

    name: str = Field(pattern=NAME_PATTERN, description="lower-case letters, digits, '.', '_' and '-'; 1 to 63")
    role: Literal[ROLES] = "member"
    token_expires_in_days: OptionalJsonInt = Field(None, ge=1, le=MAX_TOKEN_DAYS,
                                                 description="days the first token lives; null: until revoked")


class UserUpdate(_Strict):
    """``PATCH /api/tunix/users/{name}``: a role changed, or the user
    disabled (their tokens stop at once) or enabled again."""

    role: Optional[Literal[ROLES]] = None
    disabled: Optional[bool] = None


# Answers.

class Token(BaseModel):
    token_id: str
    user: str
    label: str
    prefix: str = Field(description="the token's first characters, to tell it apart")
    created_at: str
    created_by: Optional[str]
    expires_at: Optional[str]
    revoked_at: Optional[str]
    last_used_at: Optional[str] = Field(description="to the minute")
    token: Optional[str] = Field(None, description="the token itself: in the answer that made it, and never again")


class User(BaseModel):
    name: str
    role: Literal[ROLES]
    created_at: str
    created_by: Optional[str]
    disabled_at: Optional[str]
    live_tokens: Optional[int] = None


class Me(BaseModel):
    """``GET /api/tunix/me``: who the token acts as."""

    name: Optional[str] = Field(description="null: no user (an open installation, or API_TOKEN)")
    role: Literal[ROLES]
    via: Literal["token", "API_TOKEN", "open"]
    token_id: Optional[str]
    auth: Literal["users", "token", "open"] = Field(description="the installation's mode: users and their tokens, "
                                                                "API_TOKEN alone, or open")


class AuditEntry(BaseModel):
    id: int
    at: str
    user: Optional[str]
    role: Optional[str]
    token_id: Optional[str]
    action: str = Field(description="the endpoint, e.g. runs.cancel")
    method: str
    path: str
    run_ids: list[str]
    status: int = Field(description="the answer's HTTP status")
    remote_addr: Optional[str]
    detail: Optional[dict]
