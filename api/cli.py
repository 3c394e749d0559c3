"""The `huiqi` command line: serve, migrate, demo data, users, import/export, synthetic data."""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from core.config import get_settings
from core.db import get_database, session_scope

if TYPE_CHECKING:  # the commands import what they use when they run, to keep `huiqi --help` quick
    from core.tabular import ImportReport

app = typer.Typer(help="惠企 Huiqi：政策目录、企业画像、政策匹配与诉求服务", no_args_is_help=True, add_completion=False)
users_app = typer.Typer(help="用户管理", no_args_is_help=True)
app.add_typer(users_app, name="users")
train_app = typer.Typer(help="训练模型（写入 models/，附清单）", no_args_is_help=True)
app.add_typer(train_app, name="train")
eval_app = typer.Typer(help="评估匹配与服务台质量", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
desk_app = typer.Typer(help="企业诉求服务台：报表、模型训练", no_args_is_help=True)
app.add_typer(desk_app, name="desk")
console = Console()
err = Console(stderr=True)


class Kind(StrEnum):
    policies = "policies"
    enterprises = "enterprises"


class ImportKind(StrEnum):
    policies = "policies"
    enterprises = "enterprises"
    desk_12345 = "desk-12345"


class Fmt(StrEnum):
    csv = "csv"
    xlsx = "xlsx"


class RateColumn(ProgressColumn):
    """Items per second of a task, once rich has measured it."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f}/秒", style="progress.data.speed")


def progress() -> Progress:
    """Return a progress bar for long work: done / total, rate, elapsed and remaining time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )


def _fail(message: str) -> NoReturn:
    err.print(f"[red]错误：{message}[/red]")
    raise typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="监听地址")] = None,
    port: Annotated[int | None, typer.Option(help="监听端口")] = None,
    workers: Annotated[int | None, typer.Option(help="API 工作进程数（默认 HUIQI_WEB_WORKERS）")] = None,
    reload: Annotated[bool, typer.Option(help="代码变更时自动重启（开发用）")] = False,
) -> None:
    """Start the API server (uvloop + httptools, several worker processes); jobs run in `huiqi worker`."""
    import uvicorn

    settings = get_settings()
    # Forwarded headers are believed only from HUIQI_TRUSTED_PROXIES (none by default): otherwise any client
    # could pick its own address (and so its rate-limit key) with X-Forwarded-For.
    proxies = settings.trusted_proxies.strip()
    uvicorn.run(
        "api.main:app",
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or "",
        host=host or settings.host,
        port=port or settings.port,
        workers=None if reload else (workers or settings.web_workers),
        loop="uvloop",
        http="httptools",
        reload=reload,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,  # stop within 10 s of SIGTERM even with requests in flight
    )


@app.command()
def migrate(revision: Annotated[str, typer.Option(help="目标版本")] = "head") -> None:
    """Upgrade the database schema with Alembic."""
    from core import migrate as migrate_mod

    settings = get_settings()
    migrate_mod.upgrade(url=settings.resolved_database_url, revision=revision)
    err.print(f"数据库已迁移到 {revision}：{_safe_url(settings.resolved_database_url)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def demo(
    if_empty: Annotated[bool, typer.Option("--if-empty", help="数据库已有政策时跳过")] = False,
    enterprises: Annotated[int, typer.Option(help="演示企业数量")] = 2000,
) -> None:
    """Load the demo catalog, demo enterprises and (in development) demo users."""
    from catalog import demo as catalog_demo
    from profiles import demo as profiles_demo

    settings = get_settings()
    with session_scope(settings) as db:
        if if_empty and catalog_demo.has_catalog(db=db):
            err.print("数据库已有数据，跳过演示数据加载")
            return
        with progress() as bar:
            task = bar.add_task("加载演示政策", total=None)
            counts = catalog_demo.load_demo_catalog(db=db, actor=None)
            counts["attachments"] = catalog_demo.load_demo_attachments(db=db, settings=settings)
            bar.update(task, total=1, completed=1)
            task = bar.add_task("生成演示企业", total=None)
            n = profiles_demo.load_demo_enterprises(db=db, count=enterprises)
            bar.update(task, total=1, completed=1)
        created_users = []
        if settings.is_development and settings.demo_users:
            from auth import demo as auth_demo

            created_users = auth_demo.create_demo_users(
                db=db,
                department_ids=catalog_demo.department_ids(db=db),
                firm_id=profiles_demo.demo_firm_id(db=db),
            )
        else:
            err.print("[yellow]非开发环境：不创建演示用户（其口令公开在 README 中）[/yellow]")
        from desk import demo as desk_demo

        desk_counts = desk_demo.load_demo_desk(db=db, settings=settings)
        from applications import demo as applications_demo

        application_counts = applications_demo.load_demo_applications(db=db)
    labels = {
        "departments": "部门",
        "categories": "政策分类（含小类）",
        "tags": "标签",
        "topics": "专栏",
        "policies": "政策",
        "policies_published": "　其中发布",
        "expired": "　　其中已过期",
        "policies_draft": "　其中草稿",
        "policies_withdrawn": "　其中撤回",
        "attachments": "政策附件（演示申请表）",
        "enterprises": "企业",
        "users": "演示用户",
        "faq": "服务台常见问题",
        "cases": "服务台演示工单",
        "ratings": "企业政策评价",
        "applications": "演示申报",
        "exempt_paid": "免申即享兑现",
    }
    table = Table(title="演示数据")
    table.add_column("项目")
    table.add_column("数量", justify="right")
    values = {**counts, "enterprises": n, "users": len(created_users), **desk_counts, **application_counts}
    for key, label in labels.items():
        if key in values:
            table.add_row(label, str(values[key]))
    err.print(table)


@users_app.command("create")
def users_create(
    role: Annotated[str, typer.Option(help="admin / curator / desk / supervisor / enterprise")],
    username: Annotated[str, typer.Option(help="登录名")],
    password: Annotated[str, typer.Option(help="密码（至少10位，不能是常见密码或与登录名相同）")],
    display_name: Annotated[str | None, typer.Option(help="姓名")] = None,
    department: Annotated[str | None, typer.Option(help="业务专员所属部门编码")] = None,
    enterprise: Annotated[str | None, typer.Option(help="企业用户所属企业的统一社会信用代码")] = None,
) -> None:
    """Create a user."""
    from pydantic import ValidationError

    from auth import service as auth_service
    from auth.schemas import UserIn
    from catalog import service as catalog_service
    from core.errors import HuiqiError
    from profiles import service as profiles_service

    try:
        with session_scope() as db:
            dept_id = catalog_service.get_department_by_code(db=db, code=department).id if department else None
            ent_id = None
            if enterprise:
                ent = profiles_service.get_by_credit_code(db=db, credit_code=enterprise)
                if ent is None:
                    _fail(f"统一社会信用代码为 {enterprise} 的企业不存在")
                ent_id = ent.id
            user = auth_service.create_user(
                db=db,
                user_in=UserIn.model_validate(
                    {
                        "username": username,
                        "password": password,
                        "display_name": display_name or username,
                        "role": role,
                        "department_id": dept_id,
                        "enterprise_id": ent_id,
                    }
                ),
            )
            err.print(f"已创建用户 {user.username}（{user.role}），id={user.id}")
    except ValidationError as exc:
        from core.errors import pydantic_field_errors

        _fail("；".join(f"{e.field}：{e.reason}" for e in pydantic_field_errors(list(exc.errors()))))
    except HuiqiError as exc:
        details = "；".join(f"{e.field}：{e.reason}" for e in exc.errors)
        _fail(exc.message + (f"（{details}）" if details else ""))


@users_app.command("list")
def users_list() -> None:
    """List users."""
    from auth import service as auth_service

    with session_scope() as db:
        users, total = auth_service.list_users(db=db, limit=10_000)
        table = Table(title=f"用户（{total}）")
        for col in ("id", "登录名", "姓名", "角色", "部门", "企业"):
            table.add_column(col)
        for u in users:
            table.add_row(
                str(u.id), u.username, u.display_name, u.role, str(u.department_id or ""), str(u.enterprise_id or "")
            )
        console.print(table)


@app.command("import")
def import_(
    kind: Annotated[ImportKind, typer.Argument(help="policies、enterprises 或 desk-12345（12345 热线工单导出）")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV（UTF-8/GBK）或 XLSX 文件")],
    partial: Annotated[bool, typer.Option("--partial", help="写入正确的行，报告错误的行")] = False,
) -> None:
    """Import policies, enterprises or a 12345 hotline export (desk cases) from CSV/XLSX with a row-level report."""
    from catalog import io as catalog_io
    from profiles import io as profiles_io

    if kind == ImportKind.desk_12345:
        from desk import io as desk_io

        settings = get_settings()
        with session_scope(settings) as db:
            report = desk_io.import_12345(
                db=db, settings=settings, data=file.read_bytes(), filename=file.name, actor=None, partial=partial
            )
        _print_report(report)
        if report.rejected:
            raise typer.Exit(code=1)
        return
    fn = catalog_io.import_policies if kind == ImportKind.policies else profiles_io.import_enterprises
    with session_scope() as db:
        report = fn(db=db, data=file.read_bytes(), filename=file.name, actor=None, partial=partial)
    _print_report(report)
    if report.rejected:
        raise typer.Exit(code=1)


@app.command()
def intake(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="政策文件：PDF、DOCX、HTML、TXT 或 zip")
    ],
    department: Annotated[
        str | None, typer.Option("--department", help="发文部门编码；不填则按文中发文机关匹配")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出草稿与全部建议")] = False,
) -> None:
    """Read policy documents and create draft policies (never published) with proposed fields and conditions."""
    import json

    from catalog.intake import service as intake_service
    from core.errors import HuiqiError
    from matcher import intake as matcher_intake

    settings = get_settings()
    try:
        with session_scope(settings) as db:
            plans = matcher_intake.prepare(
                db=db, settings=settings, files=[(f.name, f.read_bytes()) for f in files], department=department
            )
            results = intake_service.store(db=db, plans=plans, actor=None, settings=settings)
            drafts = [r.as_dict() for r in results]
    except HuiqiError as exc:
        reasons = "；".join(e.reason for e in exc.errors if e.reason != exc.message)
        _fail(f"{exc.message}（{exc.code}）" + (f"：{reasons}" if reasons else ""))
    if as_json:
        typer.echo(json.dumps(drafts, ensure_ascii=False, indent=2))
        return
    for draft in drafts:
        fields = draft["fields"]
        title = fields.get("title", {}).get("value", draft["document"]["filename"])
        console.print(f"[bold]草稿 #{draft['policy_id']}[/bold] {title}（{draft['document']['filename']}）")
        table = Table("字段", "建议值", "置信度", "出处")
        for name, prop in fields.items():
            if name == "amount_text":
                continue
            table.add_row(name, str(prop["value"]), f"{prop['confidence']:.2f}", prop["source"][:60])
        console.print(table)
        table = Table("条件", "置信度", "出处")
        for cond in draft["conditions"]:
            rule = cond.get("rule")
            what = f"{rule['field']} {rule['op']} {rule['value']}" if rule else f"（人工确认）{cond['text']}"
            table.add_row(what, f"{cond['confidence']:.2f}", cond["source"][:60])
        console.print(table)
        if draft["tags"]:
            console.print("建议标签：" + "、".join(draft["tags"]))
        for dup in draft["duplicates"]:
            console.print(
                f"[yellow]可能重复：#{dup['policy_id']} {dup['title']}（{dup['reason']}，{dup['similarity']}）[/yellow]"
            )


@eval_app.command("intake")
def eval_intake(
    split: Annotated[str, typer.Option("--split", help="tune、test、fresh 或 all")] = "test",
) -> None:
    """Field accuracy and condition precision/recall of policy intake on tests/data/intake, against a keyword baseline."""
    from catalog.intake import evaluation

    if split not in ("tune", "test", "fresh", "all"):
        _fail("--split 应为 tune、test、fresh 或 all")
    result = evaluation.run(split=split)
    console.print(evaluation.format_report(result))


@desk_app.command("report")
def desk_report(
    month: Annotated[str, typer.Option("--month", help="月份，YYYY-MM，如 2026-11")],
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="输出的 XLSX 文件")],
    department: Annotated[str | None, typer.Option("--department", help="只统计此部门（部门编码）")] = None,
) -> None:
    """Write the month's desk report (XLSX: summary, per-department table, hot topics, policies drawing enquiries)."""
    from sqlalchemy import select

    from catalog.models import Department
    from core.errors import HuiqiError
    from desk import clock
    from desk import stats as desk_stats

    settings = get_settings()
    try:
        calendar = clock.site_calendar(settings)
        with session_scope(settings) as db:
            department_id = None
            if department:
                department_id = db.scalar(select(Department.id).where(Department.code == department))
                if department_id is None:
                    _fail(f"部门编码 {department} 不存在")
            data = desk_stats.monthly_report(
                db=db, calendar=calendar, month=month, department_id=department_id, tz=str(calendar.tz)
            )
    except HuiqiError as exc:
        _fail(exc.message)
        return
    out.write_bytes(data)
    err.print(f"已生成 {month} 诉求月报：{out}（{len(data)} 字节）")


@desk_app.command("train")
def desk_train(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="CSV（UTF-8/GBK）或 XLSX：内容,部门[,类型]，部门为部门编码"),
    ],
    seed: Annotated[int, typer.Option(help="随机种子（交叉验证划分）")] = 0,
    embeddings: Annotated[
        bool, typer.Option("--embeddings/--no-embeddings", help="候选模型中包含 e5 语义向量模型（需加载向量模型）")
    ] = True,
) -> None:
    """Select the routing model by cross-validation against the plain baseline; install it only when it wins."""
    from core.errors import HuiqiError
    from desk import routing

    settings = get_settings()
    matcher = None
    encode = None
    if embeddings:
        from matcher import engine as matcher_engine

        matcher = matcher_engine.Matcher(settings)
        encode = lambda texts: matcher.encode(list(texts), "query")  # noqa: E731
    try:
        with session_scope(settings) as db:
            manifest, report, reassigned = routing.train_from_file(
                db=db,
                data=file.read_bytes(),
                filename=file.name,
                models_dir=Path(settings.models_dir),
                seed=seed,
                encode=encode,
            )
    except routing.LosesToBaseline as exc:
        _print_candidates(exc.metrics)
        _fail(exc.message)
        return
    except HuiqiError as exc:
        details = "；".join(f"{e.field}：{e.reason}" for e in exc.errors)
        _fail(exc.message + (f"（{details}）" if details else ""))
        return
    finally:
        if matcher is not None:
            matcher.close()
    err.print(
        f"共 {report.total} 行：可用 {report.created}，有误未用 {report.failed}；另含人工改派的工单 {reassigned} 条"
    )
    if report.errors:
        table = Table(title="错误明细")
        for col in ("行号", "列", "值", "原因"):
            table.add_column(col)
        for e in report.errors:
            table.add_row(str(e.row), e.column or "", str(e.value or "")[:40], e.reason)
        err.print(table)
    if manifest is None:
        _fail("文件表头有误，未训练")
        return
    m = manifest["metrics"]
    _print_candidates(m)
    err.print(
        f"已安装分拨模型 {manifest['spec']}：样本 {manifest['n']} 条，部门 {len(manifest['classes'])} 个；"
        f"{m['cv_folds']} 折交叉验证 macro-F1 {m['macro_f1']}（基线 {m['baseline_macro_f1']}），准确率 {m['accuracy']}；"
        f"自动分拨阈值 {m['threshold']}（目标准确率 {m['target_precision']}，"
        f"{'已达到' if m['target_reached'] else '未达到'}），自动分拨占 {m['auto_routed_share']}，"
        f"其准确率 {m['auto_routed_precision']}；关键词规则{'参与' if m['keyword_fallback']['used'] else '不参与'}分拨"
    )
    if m.get("text_only"):
        t = m["text_only"]
        err.print(
            f"无向量模型时改用 {t['selected']}：阈值 {t['threshold']}，自动分拨占 {t['auto_routed_share']}，"
            f"准确率 {t['auto_routed_precision']}"
        )
    err.print(f"模型与清单：{Path(settings.models_dir) / routing.SUBDIR}")


def _print_candidates(metrics: dict[str, Any]) -> None:
    """Print every candidate's cross-validated macro-F1 next to the plain baseline's."""
    table = Table(title=f"候选模型（{metrics['cv_folds']} 折交叉验证）")
    for col in ("模型", "macro-F1", "准确率", "对比基线"):
        table.add_column(col)
    base = metrics["baseline_macro_f1"]
    for name, scores in metrics["candidates"].items():
        if "skipped" in scores:
            table.add_row(name, "-", "-", "未评估（无向量模型）")
            continue
        mark = "基线" if name == "baseline" else f"{scores['macro_f1'] - base:+.4f}"
        chosen = " ← 选中" if name == metrics["selected"] else ""
        table.add_row(name, str(scores["macro_f1"]), str(scores["accuracy"]), mark + chosen)
    err.print(table)


def _print_report(report: ImportReport) -> None:
    err.print(
        f"共 {report.total} 行：新增 {report.created}，更新 {report.updated}，未变 {report.unchanged}，失败 {report.failed}；"
        + ("已写入" if report.written else "[red]未写入任何数据[/red]")
    )
    if report.errors:
        table = Table(title="错误明细")
        for col in ("行号", "列", "值", "原因"):
            table.add_column(col)
        for e in report.errors:
            table.add_row(str(e.row), e.column or "", str(e.value or "")[:40], e.reason)
        err.print(table)


@app.command()
def export(
    kind: Annotated[Kind, typer.Argument(help="policies 或 enterprises")],
    file: Annotated[Path, typer.Argument(dir_okay=False, help="输出文件")],
    fmt: Annotated[Fmt | None, typer.Option("--format", help="csv 或 xlsx（默认按扩展名）")] = None,
) -> None:
    """Export policies or enterprises in the import layout."""
    from catalog import io as catalog_io
    from profiles import io as profiles_io

    fmt = fmt or (Fmt.xlsx if file.suffix.lower() == ".xlsx" else Fmt.csv)
    with session_scope() as db:
        data = (catalog_io.export_policies if kind == Kind.policies else profiles_io.export_enterprises)(
            db=db, fmt=fmt.value
        )
    file.write_bytes(data)
    err.print(f"已导出到 {file}（{len(data)} 字节）")


@app.command()
def synth(
    policies: Annotated[int, typer.Option(help="合成政策数量")] = 0,
    enterprises: Annotated[int, typer.Option(help="合成企业数量")] = 0,
    seed: Annotated[int, typer.Option(help="随机种子")] = 7,
) -> None:
    """Generate large synthetic policy and enterprise sets for benchmarks."""
    from catalog import synth as catalog_synth
    from profiles import synth as profiles_synth

    database = get_database()
    with progress() as bar:
        if policies:
            task = bar.add_task("合成政策", total=policies)
            with session_scope() as db:
                catalog_synth.synth_policies(db=db, count=policies, seed=seed, progress=lambda k: bar.advance(task, k))
        if enterprises:
            task = bar.add_task("合成企业", total=enterprises)
            profiles_synth.synth_enterprises(
                engine=database.engine, count=enterprises, seed=seed, progress=lambda k: bar.advance(task, k)
            )


class Engine(StrEnum):
    local = "local"
    ray = "ray"


@app.command()
def match(
    all_: Annotated[bool, typer.Option("--all", help="全部企业与全部政策重新匹配（可中断续跑）")] = False,
    changed: Annotated[bool, typer.Option("--changed", help="只重算有变动的企业和政策（默认）")] = False,
    engine: Annotated[Engine, typer.Option(help="在本机运行，或在 Ray 集群上运行（需 PostgreSQL）")] = Engine.local,
    address: Annotated[str | None, typer.Option(help="Ray 集群地址，如 ray://head:10001；缺省则启动本机 Ray")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="本机引擎并行进程数（仅 --all）")] = 1,
) -> None:
    """Match every firm against every open policy and store each firm's best (the worker also does this)."""
    from matcher import engine as matcher_engine
    from matcher import runs

    settings = get_settings()
    matcher = matcher_engine.Matcher(settings)
    database = get_database(settings)
    labels = {
        "embed": "向量化企业画像",
        "chunks": "匹配企业（分块）",
        "firms": "重算变动企业",
        "policies": "匹配变动政策",
    }
    try:
        with progress() as bar:
            tasks: dict[str, TaskID] = {}

            def step(kind: str, done: int, total: int) -> None:
                if kind not in tasks:
                    tasks[kind] = bar.add_task(labels.get(kind, kind), total=total)
                bar.update(tasks[kind], completed=done, total=total)

            if all_:
                chunk_engine: runs.ChunkEngine | None = None
                if engine == Engine.ray:
                    from matcher import ray_engine

                    chunk_engine = ray_engine.RayEngine(settings, address=address)
                elif workers > 1:
                    chunk_engine = runs.ProcessEngine(database, workers)
                report = runs.rematch_all(database, matcher, progress=step, engine=chunk_engine)
            else:
                report = runs.rematch_changed(database, matcher, progress=step)
    finally:
        matcher.close()
    err.print(
        f"完成（{report.kind}）：企业 {report.firms} 家，分块 {report.chunks} 个（续跑跳过 {report.resumed} 个），"
        f"新向量化 {report.embedded} 家，重新打标签 {report.tagged} 家，政策 {report.policies} 条，用时 {report.seconds} 秒"
        + ("；已中断，下次运行会从断点继续" if report.stopped else "")
    )
    if "chunk_cpu_s" in report.details:
        # Measured inside each worker (processes or Ray actors), so a bench can count where the work ran.
        err.print(
            f"分块计算 CPU 合计 {report.details['chunk_cpu_s']} 秒，单块最多 {report.details['chunk_cpu_max_s']} 秒"
        )


@app.command()
def embed(
    all_: Annotated[bool, typer.Option("--all", help="向量化所有缺少向量或向量已过期的企业画像")] = False,
    engine: Annotated[Engine, typer.Option(help="在本机运行，或在 Ray 集群上运行（需 PostgreSQL）")] = Engine.local,
    address: Annotated[str | None, typer.Option(help="Ray 集群地址，如 ray://head:10001；缺省则启动本机 Ray")] = None,
) -> None:
    """Embed every firm whose profile vector is missing or stale (the same chunk function `huiqi match` uses)."""
    import time

    from matcher import engine as matcher_engine
    from matcher import runs, vectors

    if not all_:
        _fail("请指定 --all：向量化所有缺少向量或向量已过期的企业（huiqi match 也会先做这一步）")
    settings = get_settings()
    database = get_database(settings)
    matcher = matcher_engine.Matcher(settings)
    started = time.perf_counter()
    try:
        with progress() as bar:
            if engine == Engine.local:
                task = bar.add_task("向量化企业画像", total=None)

                def step(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                embedded = runs.embed_firms(database, matcher, None, progress=step)
            else:
                from matcher import ray_engine

                with database.session() as db:
                    stale = vectors.stale_ids(db, model_id=matcher.embedder.model_id)
                task = bar.add_task("向量化企业画像（Ray）", total=len(stale))
                embedded = 0
                for count, batch in ray_engine.embed_on_ray(settings, stale, address=address):
                    embedded += count
                    bar.advance(task, batch)
    finally:
        matcher.close()
    seconds = time.perf_counter() - started
    rate = embedded / seconds if seconds and embedded else 0.0
    err.print(f"完成：新向量化 {embedded} 家企业，用时 {seconds:.1f} 秒（{rate:.1f} 家/秒）")


@train_app.command("tagger")
def train_tagger() -> None:
    """Train the multi-label policy tagger on the curated catalog; write it under models/ with a manifest."""
    from core.errors import HuiqiError
    from matcher import tagger

    settings = get_settings()
    try:
        with session_scope(settings) as db:
            manifest = tagger.train(db=db, models_dir=Path(settings.models_dir))
    except HuiqiError as exc:
        _fail(exc.message)
    metrics = manifest.get("metrics", {})
    err.print(
        f"已训练标签模型：政策 {manifest.get('n_policies')} 条，标签 {len(manifest.get('tags', []))} 个；"
        f"交叉验证 micro-F1 {metrics.get('micro_f1')}，macro-F1 {metrics.get('macro_f1')}，"
        f"precision@3 {metrics.get('precision_at_3')}，阈值 {manifest.get('threshold')}"
    )
    err.print(f"模型与清单：{Path(settings.models_dir) / 'tagger'}")


@train_app.command("ranker")
def train_ranker() -> None:
    """Learn the ranking from logged feedback; use it only when it beats the hand-set weights on held-out firms."""
    from matcher import ranker
    from matcher.ranking import Weights

    settings = get_settings()
    with session_scope(settings) as db:
        manifest = ranker.train(
            db=db,
            models_dir=Path(settings.models_dir),
            weights=Weights.from_settings(settings),
            min_feedback=settings.ranker_min_feedback,
        )
    err.print(
        f"有效反馈 {manifest['n_samples']} 条（感兴趣/已申报 {manifest['n_pos']}，不相关 {manifest['n_neg']}；"
        f"企业 {manifest['n_firms']} 家），特征：{'、'.join(manifest['features']) or '无'}"
    )
    if manifest["auc_model"] is None:
        err.print("留出集 AUC：无法评估")
    else:
        lo, hi = manifest["auc_gain_interval"] or (None, None)
        err.print(
            f"留出评估（按企业分 4 折，每条由未见过该企业的模型打分）AUC：学习模型 {manifest['auc_model']:.3f}，"
            f"人工权重 {manifest['auc_hand']:.3f}；差值 {manifest['auc_model'] - manifest['auc_hand']:+.3f}"
            + (f"（90% 区间 {lo:+.3f} ~ {hi:+.3f}）" if lo is not None and hi is not None else "")
        )
    err.print(
        ("[green]已启用学习排序[/green]：" if manifest["used"] else "[yellow]未启用学习排序[/yellow]：")
        + manifest["reason"]
    )
    err.print(f"模型与清单：{Path(settings.models_dir) / ranker.SUBDIR}")


@eval_app.command("matching")
def eval_matching() -> None:
    """Evaluate search and eligibility on the team's labelled set against the loaded catalog."""
    from matcher import engine as matcher_engine
    from matcher import evaluation

    settings = get_settings()
    matcher = matcher_engine.Matcher(settings)
    with session_scope(settings) as db:
        result = evaluation.run_matching_eval(db=db, matcher=matcher)
    matcher.close()
    console.print(evaluation.format_report(result))


@eval_app.command("desk")
def eval_desk(
    file: Annotated[
        Path | None,
        typer.Option("--file", exists=True, dir_okay=False, help="评测集（默认 tests/data/desk_eval.json）"),
    ] = None,
    target: Annotated[float, typer.Option(help="即时答复的目标准确率")] = 0.9,
    write: Annotated[bool, typer.Option("--write/--no-write", help="把校准后的阈值写入 models/desk_answer/")] = True,
    fit_half: Annotated[
        bool, typer.Option("--fit-half/--fit-all", help="只用一半问题校准，在另一半上评测（演示校准用此方式产生）")
    ] = False,
) -> None:
    """Calibrate and evaluate instant answers on the labelled questions against the loaded knowledge base."""
    from desk import evaluation
    from matcher import engine as matcher_engine

    settings = get_settings()
    matcher = matcher_engine.Matcher(settings)
    try:
        with session_scope(settings) as db:
            result = evaluation.run_desk_eval(
                db=db,
                matcher=matcher,
                path=file,
                target=target,
                write=write,
                models_dir=Path(settings.models_dir),
                fit_half=fit_half,
            )
    finally:
        matcher.close()
    console.print(evaluation.format_report(result))
    if not result["knowledge_base"]["faqs"]:
        err.print("[yellow]知识库中没有常见问题；请先运行 huiqi demo 加载演示数据[/yellow]")


@eval_app.command("answers")
def eval_answers(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="评测集 CSV/XLSX：问题(question),政策(policy，标题或文号，空=不可回答)，可选 split(tune/test)、evidence",
        ),
    ],
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", exists=True, dir_okay=False, help="用这份政策 JSON 建临时库评测（默认：当前数据库）"),
    ] = None,
    faq: Annotated[
        Path | None,
        typer.Option("--faq", exists=True, dir_okay=False, help="与 --catalog 一起用：载入这份常见问题 JSON"),
    ] = None,
    target: Annotated[float, typer.Option(help="即时答复的目标准确率")] = 0.9,
) -> None:
    """Measure instant answers (precision, coverage, top-1) against a char TF-IDF passage baseline, tuned on tune rows."""
    import tempfile

    from core.errors import HuiqiError
    from desk import answers_eval
    from matcher import engine as matcher_engine

    if faq is not None and catalog is None:
        _fail("--faq 需要与 --catalog 一起使用")
        return
    settings = get_settings()
    with tempfile.TemporaryDirectory(prefix="huiqi-eval-answers-") as tmp:
        database, settings = _eval_database(settings, Path(tmp), catalog, faq)
        matcher = matcher_engine.Matcher(settings)
        try:
            with database.session() as db:
                questions = answers_eval.read_labelled(file, db=db)
                result = answers_eval.evaluate_answers(
                    db=db, matcher=matcher, settings=settings, questions=questions, target=target
                )
        except HuiqiError as exc:
            _fail(exc.message)
            return
        finally:
            matcher.close()
            if catalog is not None:
                database.dispose()
    console.print(answers_eval.format_answers_report(result), highlight=False)


def _eval_database(settings: Any, tmp: Path, catalog: Path | None, faq: Path | None = None) -> tuple[Any, Any]:
    """Return (database, settings) to evaluate on: the live one, or a private one built from JSON files.

    A private database and index directory keep the live catalog, its index and its models untouched.
    """
    from core import migrate
    from core.db import Database
    from desk import answers_data
    from matcher import search_eval

    if catalog is None:
        return get_database(settings), settings
    settings = settings.model_copy(update={"var_dir": tmp, "database_url": None})
    database = Database(settings.resolved_database_url)
    with database.engine.connect() as conn:
        migrate.upgrade(connection=conn)
    with database.session() as db:
        search_eval.load_catalog(db, catalog)
        if faq is not None:
            answers_data.load_faq(db, faq)
    return database, settings


@eval_app.command("routing")
def eval_routing(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="评测集 CSV/XLSX：问题(question),部门(department)")
    ],
    train: Annotated[
        Path | None,
        typer.Option("--train", exists=True, dir_okay=False, help="训练集；不给则在评测集上做分折交叉验证"),
    ] = None,
    embeddings: Annotated[bool, typer.Option("--embeddings/--no-embeddings", help="候选模型中包含 e5 向量模型")] = True,
    seed: Annotated[int, typer.Option(help="随机种子")] = 0,
) -> None:
    """Measure routing (macro-F1, accuracy, auto-route share and precision) against the plain baseline."""
    from core.errors import HuiqiError
    from desk import routing_eval

    settings = get_settings()
    matcher = None
    encode = None
    if embeddings:
        from matcher import engine as matcher_engine

        matcher = matcher_engine.Matcher(settings)
        encode = lambda texts: matcher.encode(list(texts), "query")  # noqa: E731
    try:
        test = routing_eval.read_labelled(file)
        result = routing_eval.evaluate_routing(
            test, train=routing_eval.read_labelled(train) if train else None, encode=encode, seed=seed
        )
    except HuiqiError as exc:
        _fail(exc.message)
        return
    finally:
        if matcher is not None:
            matcher.close()
    console.print(routing_eval.format_routing_report(result))


@app.command()
def worker() -> None:
    """Run scheduled and queued jobs until stopped; one process at a time holds the lease.

    On start it queues the matching catch-up (new or changed firms and policies), so a fresh
    database gets its matches without anyone asking.
    """
    from core import scheduler
    from matcher.jobs import QUEUED_REMATCH_ID, REMATCH_JOB

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Routine runs of every job would bury what matters; APScheduler speaks only when something goes wrong.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler.enqueue(REMATCH_JOB, db=get_database(settings).engine, job_id=QUEUED_REMATCH_ID)
    scheduler.run_worker(settings)


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="监听地址")] = None,
    port: Annotated[int | None, typer.Option(help="监听端口")] = None,
) -> None:
    """Start the API and the worker together; Ctrl-C (or SIGTERM) stops both."""
    from api import supervisor

    settings = get_settings()
    raise typer.Exit(code=supervisor.run(settings, host=host or settings.host, port=port or settings.port))


@eval_app.command("search")
def eval_search(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="评测文件（CSV/XLSX，列 query、expected）")],
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", exists=True, dir_okay=False, help="用这份政策 JSON 建临时库评测（默认：当前数据库）"),
    ] = None,
    split: Annotated[str | None, typer.Option(help="只用 split 列为此值的行（tune / test）")] = None,
) -> None:
    """Evaluate need → policy search (Hit@1, R@5, MRR) beside the bare e5 and char TF-IDF baselines."""
    import tempfile

    from matcher import engine as matcher_engine
    from matcher import search_eval

    try:
        cases = search_eval.load_cases(file, split=split)
    except search_eval.EvalFileError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    settings = get_settings()
    with tempfile.TemporaryDirectory(prefix="huiqi-eval-search-") as tmp:
        database, settings = _eval_database(settings, Path(tmp), catalog)
        matcher = matcher_engine.Matcher(settings)
        try:
            with database.session() as db:
                result = search_eval.evaluate(db=db, matcher=matcher, cases=cases)
        finally:
            matcher.close()
            if catalog is not None:
                database.dispose()
    console.print(search_eval.format_report(result), highlight=False)


def main() -> None:
    """Run the CLI with logging configured."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app()


if __name__ == "__main__":
    main()
