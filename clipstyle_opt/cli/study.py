"""``clipstyle study create|serve|export|analyze``: a served blind user study (parse flags, call
`clipstyle_opt.study`, print). Needs the study extra: pip install 'clipstyle_opt[study]'."""
from __future__ import annotations

from typing import Optional

import click

from .common import handle_errors

DB_HELP = ("The study database: a SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db) or a file path for "
           "SQLite (WAL mode).")
db_option = click.option("--db", default="study.sqlite", show_default=True, envvar="CLIPSTYLE_STUDY_DB",
                         help=DB_HELP + " Also: CLIPSTYLE_STUDY_DB.")


@click.group("study")
def study_command() -> None:
    """A served, blind user study of outputs with its ratings in a database.

    \b
    clipstyle study create NAME DIR... : items from sweep, report or eval folders
    clipstyle study serve              : the participant and admin pages and the JSON API
    clipstyle study export NAME -o ratings.csv
    clipstyle study analyze NAME       : MOS, preferences, agreement, exclusions, plots
    """


@study_command.command("create")
@click.argument("name")
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False))
@db_option
@click.option("--design", type=click.Choice(["mos", "pairwise"]), default="mos", show_default=True,
              help="mos: style and content on 1-5 per output; pairwise: two outputs of one photo and prompt.")
@click.option("--per-item", type=click.IntRange(min=1), default=5, show_default=True, help="Ratings each item gets.")
@click.option("--per-rater", type=click.IntRange(min=1), default=None,
              help="Items each rater rates [default: all].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the assignment.")
@click.option("--label-from", default=None, metavar="KEY|dir",
              help="Method label: a sidecar, config or sweep-axis KEY, or 'dir' (the folder's name) "
                   "[default: the sidecar's method or label, else the folder's name].")
@click.option("--checks/--no-checks", default=True, show_default=True,
              help="Attention checks per rater: one repeated item and one control (the photo itself).")
@click.option("--completion-code", default=None, help="One code shown to every rater at the end "
                                                      "[default: a random code per rater].")
@click.option("--max-side", type=int, default=1024, show_default=True,
              help="Images longer than this (px) are stored shrunk.")
@click.option("--url", "base_url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the study will be served, for the printed links.")
@handle_errors
def create_command(name: str, directories: tuple[str, ...], db: str, design: str, per_item: int,
                   per_rater: Optional[int], seed: int, label_from: Optional[str], checks: bool,
                   completion_code: Optional[str], max_side: int, base_url: str) -> None:
    """Create study NAME (letters, digits, _ and -) from the outputs under DIRECTORIES, copying their images
    into the database. Prints the participant link and the admin token (shown only now)."""
    from ..study.create import create_study

    made = create_study(db, name, directories, design=design, per_item=per_item, per_rater=per_rater, seed=seed,
                        label_from=label_from, checks=checks, completion_code=completion_code, max_side=max_side)
    base = base_url.rstrip("/")
    click.echo(f"study {made.name}: {made.items} items from {made.outputs} outputs, {made.sheets} rater sheets")
    click.echo(f"participant link: {base}/s/{made.name}   (add ?pid=ID to store a recruiting site's id)")
    click.echo(f"admin page:       {base}/s/{made.name}/admin#token={made.admin_token}")
    click.echo(f"admin token:      {made.admin_token}   (keep it: it is stored only hashed)")


@study_command.command("serve")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@handle_errors
def serve_command(db: str, host: str, port: int) -> None:
    """Serve every study in the database: /s/NAME for raters, /s/NAME/admin for the admin, /api/... (JSON)."""
    from ..study.schema import open_engine
    from ..study.server import serve

    engine = open_engine(db)  # the schema version is checked here, before listening
    from sqlalchemy import select

    from ..study.schema import Study

    with engine.connect() as conn:
        names = list(conn.execute(select(Study.name)).scalars())
    engine.dispose()
    for name in names:
        click.echo(f"study {name}: http://{host}:{port}/s/{name}  (admin: http://{host}:{port}/s/{name}/admin)")
    click.echo("serving; Ctrl-C stops", err=True)
    try:
        serve(db, host, port)
    except KeyboardInterrupt:  # uvicorn has shut down cleanly; every answer it acknowledged is committed
        click.echo("stopped; every acknowledged rating is stored", err=True)


@study_command.command("export")
@click.argument("name")
@db_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The CSV file to write.")
@click.option("--with-checks", is_flag=True, help="Also the attention-check screens (column check).")
@click.option("--drop-excluded", is_flag=True, help="Leave out raters failing an attention check.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@handle_errors
def export_command(name: str, db: str, output: str, with_checks: bool, drop_excluded: bool, overwrite: bool) -> None:
    """Write study NAME's ratings as CSV: for mos, the rating export `clipstyle correlate` reads."""
    from ..study.export import export_rows, write_export
    from ..study.records import load_records
    from ..study.schema import open_engine

    engine = open_engine(db)
    records = load_records(engine, name)
    engine.dispose()
    path = write_export(records, output, with_checks=with_checks, drop_excluded=drop_excluded, overwrite=overwrite)
    rows = len(export_rows(records, with_checks=with_checks, drop_excluded=drop_excluded))
    click.echo(f"wrote {path} ({rows} rated screens)", err=True)


@study_command.command("analyze")
@click.argument("name")
@db_option
@click.option("--metrics", "metrics_file", type=click.Path(dir_okay=False), default=None,
              help="Also correlate each metric with the ratings: a sweep's results.csv or a `clipstyle eval` "
                   "--csv/--json file.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the tables and plots [default: NAME-analysis].")
@click.option("--bootstrap", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples for the 95 % intervals.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--keep-inconsistent", is_flag=True,
              help="Exclude raters only for a failed control, not for an inconsistent repeat.")
@click.option("--overwrite", is_flag=True, help="Replace existing files in the folder.")
@handle_errors
def analyze_command(name: str, db: str, metrics_file: Optional[str], out_dir: Optional[str], bootstrap: int,
                    seed: int, keep_inconsistent: bool, overwrite: bool) -> None:
    """Analyze study NAME: MOS per method with bootstrap 95 % intervals (mos), preference rates with Wilson
    intervals and a Bradley-Terry ranking (pairwise), Krippendorff's alpha, the raters the attention checks
    exclude and why, and with --metrics the correlation of each metric with the ratings."""
    from ..study.analyze import analyze_study
    from ..study.records import load_records
    from ..study.schema import open_engine

    engine = open_engine(db)
    records = load_records(engine, name)
    engine.dispose()
    if not records.ratings:
        raise click.ClickException(f"study {name} has no ratings yet")
    result = analyze_study(records, out_dir or f"{name}-analysis", metrics_file=metrics_file, n_boot=bootstrap,
                           seed=seed, keep_inconsistent=keep_inconsistent, overwrite=overwrite)
    click.echo(result.markdown)
    for path in result.files:
        click.echo(f"wrote {path}", err=True)


__all__ = ["study_command"]
