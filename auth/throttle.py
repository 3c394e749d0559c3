"""Sign-in throttling by account and by client address.

Each attempt is counted before the password is checked (so a refused attempt costs no argon2 hash):
once an account name, or a client address, has used up its attempts in the window, further attempts
get 429 with Retry-After, even with the right password. A successful sign-in clears the account's count.
Limits are HUIQI_SIGN_IN_ACCOUNT_LIMIT and HUIQI_SIGN_IN_CLIENT_LIMIT; counts live in HUIQI_RATE_LIMIT_STORAGE.
One-time SMS codes (auth.phone) are limited the same way, per number and per client (PhoneCodeThrottle).
"""

from __future__ import annotations

from limits.storage import Storage

from core.config import Settings
from core.errors import TooManyRequests
from core.ratelimit import RateLimiter

MESSAGE = "登录尝试过于频繁，请 {wait} 秒后再试"


class SignInThrottle:
    """Two moving-window limits: attempts per account name and attempts per client address."""

    def __init__(self, *, account_limit: str, client_limit: str, storage: Storage) -> None:
        self.by_account = RateLimiter(account_limit, storage=storage, namespace="sign-in-account", message=MESSAGE)
        self.by_client = RateLimiter(client_limit, storage=storage, namespace="sign-in-client", message=MESSAGE)

    @classmethod
    def from_settings(cls, settings: Settings, storage: Storage) -> SignInThrottle:
        """Build the throttle the settings describe."""
        return cls(
            account_limit=settings.sign_in_account_limit, client_limit=settings.sign_in_client_limit, storage=storage
        )

    @staticmethod
    def _account(username: str) -> str:
        return username.strip().casefold()[:120]

    def attempt(self, *, username: str, client: str) -> None:
        """Count a sign-in attempt; raise TooManyRequests (Retry-After set) when either limit is used up."""
        waits = []
        if not self.by_client.hit(client):
            waits.append(self.by_client.wait_seconds(client))
        account = self._account(username)
        if not self.by_account.hit(account):
            waits.append(self.by_account.wait_seconds(account))
        if waits:
            wait = max(1, *waits)
            raise TooManyRequests(
                MESSAGE.format(wait=wait), code="auth.sign_in_throttled", headers={"Retry-After": str(wait)}
            )

    def succeeded(self, *, username: str) -> None:
        """Forget the account's attempts after a successful sign-in."""
        self.by_account.clear(self._account(username))


CODE_MESSAGE = "获取验证码过于频繁，请 {wait} 秒后再试"


class PhoneCodeThrottle:
    """Two moving-window limits on sending one-time SMS codes: per mobile number and per client address."""

    def __init__(self, *, number_limit: str, client_limit: str, storage: Storage) -> None:
        self.by_number = RateLimiter(number_limit, storage=storage, namespace="phone-code-number", message=CODE_MESSAGE)
        self.by_client = RateLimiter(client_limit, storage=storage, namespace="phone-code-client", message=CODE_MESSAGE)

    @classmethod
    def from_settings(cls, settings: Settings, storage: Storage) -> PhoneCodeThrottle:
        """Build the throttle the settings describe."""
        return cls(
            number_limit=settings.phone_code_number_limit,
            client_limit=settings.phone_code_client_limit,
            storage=storage,
        )

    def attempt(self, *, phone: str, client: str) -> None:
        """Count a request for a code; raise TooManyRequests (Retry-After set) when either limit is used up."""
        waits = []
        if not self.by_client.hit(client):
            waits.append(self.by_client.wait_seconds(client))
        if not self.by_number.hit(phone):
            waits.append(self.by_number.wait_seconds(phone))
        if waits:
            wait = max(1, *waits)
            raise TooManyRequests(
                CODE_MESSAGE.format(wait=wait), code="auth.phone_code_throttled", headers={"Retry-After": str(wait)}
            )
