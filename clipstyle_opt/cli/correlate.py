"""``clipstyle correlate``: which metric tracks what people rate (parse flags, call `sweeps.correlate`, print)."""
from __future__ import annotations

from typing import Optional

import click

from .common import handle_errors


@click.command("correlate")
@click.argument("ratings", type=click.Path(dir_okay=False))
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--metrics", "metric_list", default=None,
              help="Comma-separated result columns to correlate [default: every numeric column but the axes].")
@click.option("--bootstrap", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples (over outputs) for the 95 % intervals.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Also draw metric-vs-rating scatter plots into this directory.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also write the table as CSV.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --csv file and plots.")
@handle_errors
def correlate_command(ratings: str, results: str, metric_list: Optional[str], bootstrap: int, seed: int,
                      plot_dir: Optional[str], csv_path: Optional[str], overwrite: bool) -> None:
    """Which metric tracks what people see: RATINGS (the report page's CSV export, one or several raters,
    concatenated) against RESULTS (a sweep's results.csv or a `clipstyle eval --csv` table).

    For each metric: Spearman and Kendall correlation with the mean style and the mean content rating over
    the rated outputs, with bootstrap 95 % intervals; and the raters' agreement (Kendall's W and the mean
    pairwise Spearman). Outputs are matched by file path (as the report shows it), else by file name.
    """
    from ..sweeps.correlate import correlate, format_report, plot_correlations

    metrics = [m.strip() for m in metric_list.split(",") if m.strip()] if metric_list else None
    if csv_path:
        from ..imageio import check_output_file

        check_output_file(csv_path, overwrite, inputs=[ratings, results])
    report = correlate(ratings, results, metrics=metrics, n_boot=bootstrap, seed=seed)
    click.echo(format_report(report))
    if csv_path:
        report.write_csv(csv_path, overwrite=overwrite)
        click.echo(f"wrote {csv_path}", err=True)
    if plot_dir:
        for path in plot_correlations(report, plot_dir, overwrite=overwrite):
            click.echo(f"wrote {path}", err=True)


__all__ = ["correlate_command"]
