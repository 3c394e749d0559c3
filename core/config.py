"""Application settings: one pydantic-settings object, every field prefixed HUIQI_."""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-only-insecure-secret-do-not-use-in-production"
# Secrets that were ever published (README, .env.example, old defaults): usable by the test suite only.
PUBLISHED_SECRETS = frozenset({DEV_SECRET_KEY})
SECRET_FILE = "secret_key"


class InsecureSettingsError(RuntimeError):
    """Raised when the process would start with a published or too short secret."""


def load_or_create_secret(var_dir: Path) -> str:
    """Return the secret kept in var_dir/secret_key, making a random one (mode 0600) on first start.

    Several processes may start at once (web workers, the worker): the file appears atomically,
    complete, through a hard link of a finished temporary file, so every process reads the same secret.
    """
    path = var_dir / SECRET_FILE
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        tmp = var_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_urlsafe(48) + "\n")
            with contextlib.suppress(FileExistsError):  # another process made it first; use theirs
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    value = path.read_text(encoding="ascii").strip()
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return value


class Settings(BaseSettings):
    """Every tunable of Huiqi; see .env.example and README for meanings."""

    model_config = SettingsConfigDict(env_prefix="HUIQI_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = Field(
        "development",
        description="Deployment environment: development creates the demo users; only test accepts the "
        "published test secret.",
    )
    var_dir: Path = Field(Path("var"), description="Where the SQLite file, indexes and caches live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default is a SQLite file under HUIQI_VAR_DIR.")
    secret_key: str = Field(
        "",
        description="Signs JWT tokens, CSRF tokens and unsubscribe links; empty = a random secret made on first "
        "start and kept in HUIQI_VAR_DIR/secret_key (mode 0600). Published secrets are refused outside tests.",
    )
    access_token_minutes: int = Field(480, description="Lifetime of a bearer token in minutes.")
    demo_users: bool = Field(True, description="Create the demo users with README passwords (development only).")
    host: str = Field("127.0.0.1", description="Address `huiqi serve` binds to.")
    port: int = Field(8000, description="Port `huiqi serve` listens on.")
    log_level: str = Field("INFO", description="Python logging level.")
    page_size_max: int = Field(200, description="Largest page a list endpoint returns.")
    upload_max_mb: int = Field(20, description="Largest import file accepted over HTTP, in MB.")
    attachment_max_mb: int = Field(
        10,
        ge=1,
        description="Largest attachment (policy guides, forms, case evidence) in MB; at most HUIQI_UPLOAD_MAX_MB, "
        "the request body limit every upload passes first.",
    )
    attachment_max_per_object: int = Field(
        20, ge=1, le=1000, description="Most attachments one policy or one case may carry."
    )
    attachment_storage: Literal["local", "s3"] = Field(
        "local",
        description="Where attachment files are kept: 'local' (a folder, HUIQI_ATTACHMENT_DIR) or 's3' (an "
        "S3-compatible store, HUIQI_S3_*).",
    )
    attachment_dir: Path | None = Field(
        None, description="Folder of the local attachment store; empty = HUIQI_VAR_DIR/attachments."
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint, e.g. https://oss-cn-shenzhen.aliyuncs.com; empty = AWS."
    )
    s3_bucket: str = Field("", description="Bucket of the S3 attachment store (must exist).")
    s3_prefix: str = Field("attachments/", description="Key prefix of attachment objects in the bucket.")
    s3_region: str | None = Field(None, description="Region of the S3 store, if it needs one.")
    s3_access_key_id: SecretStr | None = Field(None, description="Access key of the S3 store (never logged).")
    s3_secret_access_key: SecretStr | None = Field(None, description="Secret key of the S3 store (never logged).")
    import_max_rows: int = Field(50_000, description="Most data rows an import file may hold (more: refused, 422).")
    import_max_columns: int = Field(200, description="Most columns an import file may hold (more: refused, 422).")
    intake_max_mb: int = Field(20, description="Largest policy document (or zip batch) intake reads, in MB.")
    intake_max_unzipped_mb: int = Field(
        100, description="Most a DOCX or zip batch may inflate to during intake, in MB (zip bombs are refused)."
    )
    intake_max_members: int = Field(200, description="Most files a DOCX or zip batch may hold for intake.")
    intake_max_pages: int = Field(500, description="Most pages of a PDF that intake reads.")
    models_dir: Path = Field(
        Path("models"), description="Where trained models and their manifests are written and read."
    )
    embedder: str = Field(
        "e5",
        description="Embedding backend: 'e5' (bundled multilingual-e5-small) or "
        "'sentence-transformers:<local model dir>'; nothing is ever downloaded.",
    )
    embed_threads: int = Field(2, description="Threads the embedder may use.")
    embed_device: str = Field(
        "auto",
        description="Device of the sentence-transformers backend: 'auto' (a CUDA GPU when one is present, else "
        "Apple's MPS, else the CPU), or 'cpu', 'cuda', 'cuda:1', 'mps'. The bundled e5 always runs on the CPU.",
    )
    embed_batch_size: int = Field(
        64, ge=1, le=4096, description="Texts encoded per batch by batch embedding (larger suits a GPU)."
    )
    weight_rules: float = Field(0.25, description="Ranking weight of rule evidence (eligible > likely).")
    weight_tags: float = Field(0.15, description="Ranking weight of IDF-weighted shared tags.")
    weight_semantic: float = Field(0.55, description="Ranking weight of semantic similarity of needs and policy.")
    weight_urgency: float = Field(0.05, description="Ranking weight of a closing application window.")
    urgency_days: int = Field(30, description="Deadlines closer than this many days raise a policy's rank.")
    semantic_floor: float = Field(
        0.80, description="Cosine similarity mapped to 0 in the semantic score (the embedder's unrelated level)."
    )
    semantic_ceiling: float = Field(0.92, description="Cosine similarity mapped to 1 in the semantic score.")
    ranker_min_feedback: int = Field(
        200,
        description="Labelled feedback rows (latest per firm and policy) `huiqi train ranker` needs before its "
        "learned ranking may replace the hand-set weights.",
    )
    scheduler_enabled: bool = Field(
        False,
        description="Also run scheduled jobs inside the API process. Off: jobs run in `huiqi worker` (`huiqi run` "
        "starts both); a database lease lets exactly one process run them either way.",
    )
    web_workers: int = Field(2, ge=1, le=64, description="API worker processes `huiqi serve` starts.")
    warm_up: bool = Field(
        True,
        description="On start-up, load the embedder and build the policy index and the desk's knowledge base in a "
        "background thread, so the first search, recommendation or instant answer does not pay for it.",
    )
    match_chunk_width: int = Field(
        20_000,
        ge=1,
        le=1_000_000,
        description="Firm ids per chunk of a full re-match: one chunk is read, scored and written (and "
        "checkpointed) at a time; larger chunks are faster and use more memory.",
    )
    match_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes the nightly full re-match in `huiqi worker` scores chunks in (spawned, each with "
        "the run's policies; about 1.1 GB each at 10k policies). 1: in the worker itself. Use the machine's cores "
        "on PostgreSQL; on SQLite the chunks' writes take turns.",
    )
    match_wording: Literal["page", "all", "off"] = Field(
        "page",
        description="What a re-match stores with each firm's matches besides scores: worded verdicts of the first "
        "page of candidates and the change suggestions (page; pages read them instead of judging), of every "
        "stored candidate and near miss (all), or nothing (off: every page judges its cards, several ms of CPU "
        "per request, and the batch runs several times faster). See docs/performance.md.",
    )
    ray_workers: int = Field(
        2, ge=1, le=4096, description="Ray actors a `--engine ray` run uses (one CPU each; a cluster may have many)."
    )
    policy_lists_max_firms: int = Field(
        100_000,
        ge=0,
        description="Up to this many firms, every published policy keeps its full eligible list (staff lists, "
        "免申即享) current; above it, lists are made when a policy is published or edited, or when staff ask.",
    )
    scheduler_lease_ttl: float = Field(30.0, description="Seconds a scheduler lease lasts unless renewed.")
    timezone: str = Field(
        "Asia/Shanghai", description="IANA time zone of scheduled jobs, push quiet hours and local dates."
    )
    public_base_url: str = Field(
        "", description="Site address used to make links in pushes absolute, e.g. https://huiqi.example.gov.cn."
    )
    smtp_host: str | None = Field(
        None, description="SMTP server for email pushes; email is off until host and sender are set."
    )
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port (587 for STARTTLS, 465 for SSL).")
    smtp_sender: str | None = Field(None, description="From address, e.g. 惠企服务 <noreply@huiqi.example>.")
    smtp_username: str | None = Field(None, description="SMTP login, if the server needs one.")
    smtp_password: str | None = Field(None, description="SMTP password.")
    smtp_use_tls: bool = Field(False, description="Use STARTTLS.")
    smtp_use_ssl: bool = Field(False, description="Use SMTP over SSL.")
    sms_gateway_url: str | None = Field(
        None, description="SMS gateway endpoint; SMS is off until URL and secret are set."
    )
    sms_gateway_secret: str | None = Field(None, description="Secret that signs requests to the SMS gateway.")
    webhook_timeout: float = Field(5.0, gt=0, description="Seconds a webhook delivery may take.")
    webhook_allow_hosts: str = Field(
        "",
        description="Host names and/or CIDR networks (comma-separated) firm webhooks may reach although they are "
        "loopback, private or otherwise non-public, e.g. an intranet gateway; empty = public addresses only.",
    )
    calculator_per_minute: int = Field(30, description="Policy-calculator requests allowed per client per minute.")
    search_per_minute: int = Field(
        30, ge=1, description="Anonymous policy searches (API and policy library) allowed per client per minute."
    )
    trusted_proxies: str = Field(
        "",
        description="Addresses or CIDRs of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed "
        "(passed to uvicorn as forwarded_allow_ips by `huiqi serve` and `huiqi run`); empty = none, the client "
        "address is the connecting peer's. '*' trusts everyone (only behind a proxy that overwrites the header).",
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where rate-limit and sign-in counters live (a `limits` storage URI): memory:// counts in each "
        "process (several web workers each count apart); redis://host:6379 shares counts between processes.",
    )
    sign_in_account_limit: str = Field(
        "8/15 minutes",
        description="Sign-in attempts one account name may have in a moving window; a successful sign-in resets it.",
    )
    sign_in_client_limit: str = Field(
        "40/15 minutes", description="Sign-in attempts one client address may make in a moving window."
    )
    phone_code_minutes: int = Field(
        10, ge=1, le=60, description="Minutes a one-time SMS code (phone verification) stays valid."
    )
    phone_code_number_limit: str = Field(
        "3/10 minutes", description="One-time SMS codes one mobile number may be sent in a moving window."
    )
    phone_code_client_limit: str = Field(
        "10/hour", description="One-time SMS codes one client address may ask for in a moving window."
    )
    push_digest_time: str = Field(
        "09:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="Local time (HH:MM, HUIQI_TIMEZONE) from which digests, deadline reminders and profile reminders go out.",
    )
    push_weekly_digest_weekday: int = Field(
        0, ge=0, le=6, description="Weekday of the weekly digest: 0 Monday … 6 Sunday."
    )
    push_reminder_days: str = Field(
        "7,1", description="Days before an application deadline on which matched firms are reminded, comma-separated."
    )
    profile_freshness_months: int = Field(
        6,
        ge=1,
        description="A firm whose profile is older than this many months is asked to update it (monthly at most).",
    )
    home_region: str = Field(
        "442000",
        pattern=r"^(\d{6})?$",
        description="GB/T 2260 code of the city (or district) the platform serves first: department pickers "
        "list its departments first, and on equal relevance its own and nationwide policies rank first. Empty = none.",
    )
    desk_sla_profile: str = Field(
        "zhongshan",
        description="Desk time limits: a preset code (zhongshan, xuzhou_135, jiangmen) or a JSON profile "
        "(docs/calendar.md section 7).",
    )
    desk_calendar: str = Field(
        "",
        description="Desk working calendar as JSON (work_hours, extra_holidays, extra_workdays, tz); empty = defaults.",
    )
    desk_reopen_escalate_after: int = Field(
        2, description="A case reopened this many times (dissatisfied ratings) is escalated to supervisors."
    )
    desk_red_alert_email: str = Field(
        "",
        description="Discipline inspection (纪检监察) address(es) the SLA scan mails when a case turns red; "
        "several separated by commas; empty = none.",
    )
    desk_answer_threshold: float = Field(
        0.6253,
        ge=0,
        le=1,
        description="Confidence from which a consultation is answered instantly, used until `huiqi eval desk` "
        "stores a calibrated one in models/desk_answer/manifest.json.",
    )
    desk_route_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Routing confidence below which a case goes to the central dispatch queue (统一分拨); empty = "
        "the threshold cross-validation chose (models/desk_router/manifest.json, or the shipped history's).",
    )

    @model_validator(mode="after")
    def _secure_secret(self) -> Settings:
        if not self.secret_key:
            # Tests sign with the published key unless they set one; everything else gets its own.
            self.secret_key = DEV_SECRET_KEY if self.env == "test" else load_or_create_secret(self.var_dir)
        if self.env == "test":
            return self
        if self.secret_key in PUBLISHED_SECRETS:
            raise InsecureSettingsError(
                "HUIQI_SECRET_KEY is a published value; unset it (a random one is kept in HUIQI_VAR_DIR/secret_key) "
                "or set a private value of 32+ characters"
            )
        if len(self.secret_key) < 32:
            raise InsecureSettingsError("HUIQI_SECRET_KEY must be at least 32 characters outside tests")
        return self

    @model_validator(mode="after")
    def _attachment_limits(self) -> Settings:
        if self.attachment_max_mb > self.upload_max_mb:
            raise ValueError(
                f"HUIQI_ATTACHMENT_MAX_MB ({self.attachment_max_mb}) must not exceed HUIQI_UPLOAD_MAX_MB "
                f"({self.upload_max_mb}): every upload passes the request body limit first"
            )
        if self.attachment_storage == "s3" and not self.s3_bucket:
            raise ValueError("HUIQI_ATTACHMENT_STORAGE=s3 needs HUIQI_S3_BUCKET")
        return self

    @field_validator(
        "sign_in_account_limit", "sign_in_client_limit", "phone_code_number_limit", "phone_code_client_limit"
    )
    @classmethod
    def _check_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '8/15 minutes': {value}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError) as exc:
            raise ValueError(
                f"HUIQI_TIMEZONE must name an IANA time zone such as Asia/Shanghai, not {value!r}"
            ) from exc
        return value

    @field_validator("push_reminder_days")
    @classmethod
    def _check_reminder_days(cls, value: str) -> str:
        parts = [p.strip() for p in str(value).replace("，", ",").split(",") if p.strip()]
        if not all(p.isdigit() and int(p) <= 365 for p in parts):
            raise ValueError("HUIQI_PUSH_REMINDER_DAYS must be whole numbers of days (0–365), e.g. 7,1")
        return ",".join(parts)

    @property
    def reminder_days(self) -> list[int]:
        """Return the deadline reminder days, largest first, without duplicates."""
        return sorted({int(p) for p in self.push_reminder_days.split(",") if p}, reverse=True)

    @property
    def resolved_database_url(self) -> str:
        """Return the configured database URL, or the SQLite file under var_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'huiqi.db').as_posix()}"

    @property
    def resolved_attachment_dir(self) -> Path:
        """Return the folder of the local attachment store."""
        return self.attachment_dir or self.var_dir / "attachments"

    @property
    def is_development(self) -> bool:
        """Tell whether development conveniences (demo users) are allowed."""
        return self.env == "development"


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
