"""Password policy: long enough, not the login name, not a common or easily guessed password.

The guessability check is zxcvbn (a maintained port of Dropbox's estimator with its bundled lists of
common passwords, names and keyboard patterns); a password needs an estimated 10^8 guesses or more
(score 3 of 4), which refuses `12345678`, `password123!`, `qwertyuiop`, `1qaz2wsx3edc` and the like.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

from core.errors import FieldError, ValidationFailed

MIN_LENGTH = 10
MIN_SCORE = 3
# zxcvbn's cost grows with length; anything longer is judged on its first 100 characters (still strong).
_SCORED_PREFIX = 100


def password_problem(password: str, *, username: str | None = None) -> tuple[str, str] | None:
    """Return (Chinese reason, code) when a password breaks the policy, else None."""
    if len(password) < MIN_LENGTH:
        return f"密码至少需要 {MIN_LENGTH} 位", "too_short"
    if password.strip() == "":
        return "密码不能全为空格", "blank"
    if username and password.strip().casefold() == username.strip().casefold():
        return "密码不能与登录名相同", "same_as_username"
    inputs = [username] if username else []
    result = zxcvbn(password[:_SCORED_PREFIX], user_inputs=inputs)
    if result["score"] < MIN_SCORE:
        return "密码过于常见或容易被猜到，请混合使用字母、数字和符号，避免连续数字、键盘顺序和常用词", "too_common"
    return None


def check_password_policy(password: str, *, username: str | None = None, field: str = "password") -> None:
    """Raise ValidationFailed naming `field` when the password breaks the policy."""
    problem = password_problem(password, username=username)
    if problem is not None:
        reason, code = problem
        raise ValidationFailed(
            f"密码不符合要求：{reason}", code="auth.weak_password", errors=[FieldError(field, reason, code)]
        )
