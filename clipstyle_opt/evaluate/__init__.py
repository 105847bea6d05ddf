"""Objective evaluation of outputs on disk: what `clipstyle eval` runs, usable from Python.

>>> from clipstyle_opt.evaluate import evaluate
>>> result = evaluate(["out/cat_fire.png"], clip_model="ViT-B/32")  # doctest: +SKIP

Modules: `metrics` (the scores themselves), `perceptual` (LPIPS, DISTS), `evaluator` (jobs from
sidecars, `Evaluator`, `evaluate`) and `results` (tables and files).
"""
from .evaluator import DEFAULT_CLIP_MODEL, EvalJob, Evaluation, Evaluator, check_metrics, evaluate, resolve_job
from .results import (CLIP_METRICS, DEFAULT_SIZE, EVAL_FORMAT, HIGHER_IS_BETTER, METRICS, check_outputs, csv_text,
                      format_table, higher_is_better, metric_names, read_results, summarize, write_csv, write_json)

__all__ = ["evaluate", "Evaluator", "Evaluation", "EvalJob", "resolve_job", "check_metrics", "check_outputs",
           "METRICS", "CLIP_METRICS", "HIGHER_IS_BETTER", "DEFAULT_SIZE", "DEFAULT_CLIP_MODEL", "EVAL_FORMAT",
           "higher_is_better", "metric_names", "summarize", "csv_text", "write_csv", "write_json", "read_results",
           "format_table"]
