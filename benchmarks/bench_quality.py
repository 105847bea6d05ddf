"""Quality per second: candidate training schedules against the reference schedule, in one run.

For every photo x prompt, each schedule trains from the same seed with one loaded `Stylizer`, and
its final output (at the output size, 8-bit as saved) is scored with the evaluation code: patch CLIP
score and directional similarity (higher is better) and LPIPS-VGG to the photo (lower keeps more).
The reference schedule is also scored at checkpoints during training (its training-size output,
which at the reference settings is the output size), giving a quality-against-seconds curve. Prints
a table (per schedule: mean wall time and its ratio to the reference, mean scores and their change
against the reference) and writes a plot and the raw rows.

The bar (issues 15 and 38): within 2 % of the reference's final patch CLIP score, direction and LPIPS,
in at most a quarter of its wall time, judged on the held-out photos (any photo that is not one of
examples/*.png: give a path; the bundled photos are training data of the identity start). The CLIP used for training and for the patch score is the same model
(the micro CLIP offline), so a schedule is judged by the encoder it optimizes; say so with figures.

    python benchmarks/bench_quality.py                                 # 512 px, micro CLIP, 3 photos x 2 prompts
    python benchmarks/bench_quality.py --photos chelsea --prompts "blue stripes" --size 128 --steps 20  # smoke
    python benchmarks/bench_quality.py --photos chelsea,/tmp/heldout/rocket.jpg --schedules fast,identity,identity-quarter
    python benchmarks/bench_quality.py --merge a/rows.json,b/rows.json --out merged   # one table from parallel runs
    python benchmarks/bench_quality.py --variant "iq-lc50=identity-quarter lambda_c=50 lr=2e-3"   # a schedule of your own

Time: each run's wall time and its process CPU time (``time.process_time()``; with one torch thread the
figure to compare on a shared machine, where wall time depends on the other processes). The tables and the
ratio to the reference use the CPU time when every row has one (rows of older runs have only wall time).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt import StyleConfig, Stylizer  # noqa: E402
from clipstyle_opt.config import PRESETS  # noqa: E402
from clipstyle_opt.devices import cpu_model  # noqa: E402
from clipstyle_opt.evaluate import Evaluator  # noqa: E402
from clipstyle_opt.imageio import load_image, to_pil  # noqa: E402

METRICS = ("patch_clip_score", "clip_direction", "lpips_vgg")


def schedules(size: int, steps: int) -> dict[str, dict[str, Any]]:
    """Candidate schedules as overrides of the reference settings at ``size`` px and ``steps`` steps.

    The reference decays the learning rate at half the steps; candidates that cut steps move it to
    match. ``half-size`` trains at half the size (the ``preview`` preset's idea) and renders at full size;
    it is left out when half the size is under 64 px.
    """
    half = max(steps // 2, 1)
    quarter = max(steps // 4, 1)
    crop = max(8, round(128 * size / 512))  # the reference's crop-to-photo ratio (128 of 512 px)
    eighth = max(steps // 8, 1)
    out = {
        "reference": {},
        "early-stop-30": {"early_stop": 30},
        "half-steps": {"steps": half, "lr_decay_every": max(half // 2, 1)},
        "quarter-steps": {"steps": quarter, "lr_decay_every": max(quarter // 2, 1)},
        "16-crops": {"n_crops": 16},
        "16-crops-half-steps": {"n_crops": 16, "steps": half, "lr_decay_every": max(half // 2, 1)},
        "half-size": {"size": size // 2, "crop_size": max(8, crop // 2), "output_size": size},
        # the `fast` preset (coarse-to-fine), its coarse size scaled with the reference size
        # (and its step counts scaled with the reference's when that is not 200 steps, for reduced runs)
        "fast": {**PRESETS["fast"], "coarse_size": max(64, PRESETS["fast"]["coarse_size"] * size // 512),
                 **({} if steps == 200 else {key: max(1, PRESETS["fast"][key] * steps // 200)
                                             for key in ("coarse_steps", "steps", "lr_decay_every")})},
        # issue 38: the same schedules started from the shipped identity weights (--init identity)
        "identity": {"init": "identity"},
        "identity-half": {"init": "identity", "steps": half, "lr_decay_every": max(half // 2, 1)},
        "identity-quarter": {"init": "identity", "steps": quarter, "lr_decay_every": max(quarter // 2, 1)},
        "identity-eighth": {"init": "identity", "steps": eighth, "lr_decay_every": max(eighth // 2, 1)},
    }
    if size // 2 < 64:  # StyleConfig's smallest training size
        del out["half-size"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="chelsea,astronaut,coffee",
                        help="Names in examples/ (no .png), or paths to other photos (marked held-out).")
    parser.add_argument("--prompts", default="blue stripes,red dots", help="Comma-separated prompts.")
    parser.add_argument("--clip-model", default=str(ROOT / "tests" / "data" / "micro_clip.pt"))
    parser.add_argument("--size", type=int, default=512, help="Training and output size of the reference.")
    parser.add_argument("--steps", type=int, default=200, help="Steps of the reference schedule.")
    parser.add_argument("--schedules", default=None, help="Comma-separated subset (default: all); with --merge, the "
                        "schedules to keep from the files.")
    parser.add_argument("--checkpoints", type=int, default=8, help="Reference checkpoints scored along the way.")
    parser.add_argument("--threshold", type=float, default=None, help="Override the patch threshold (all runs).")
    parser.add_argument("--n-crops", type=int, default=None, help="Override the crops per step (all runs; a "
                        "reduced benchmark).")
    parser.add_argument("--lambda-c", type=float, default=None, help="Override the content weight (all runs).")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=BASE KEY=VALUE ...",
                        help="Add a schedule: BASE (a schedule above) with settings overridden, e.g. "
                        "\"iq-lc50=identity-quarter lambda_c=50 lr=2e-3\" (values read as JSON, else text). Repeatable.")
    parser.add_argument("--skip-reference", action="store_true", help="Do not run the reference: for rows merged "
                        "(--merge) with an earlier run's reference rows on the same photos, prompts and settings.")
    parser.add_argument("--curves", default=",".join(CURVES), help="Schedules also scored at checkpoints.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench_quality")
    parser.add_argument("--merge", default=None, help="Comma-separated rows.json files of earlier runs: print and "
                        "plot their rows together (nothing is trained).")
    args = parser.parse_args()
    if args.merge:
        keep = {"reference", *args.schedules.split(",")} if args.schedules else None  # with --merge: a selection
        merge([Path(p) for p in args.merge.split(",") if p.strip()], args.out, keep)
        return

    base: dict[str, Any] = {"clip_model": args.clip_model, "size": args.size, "steps": args.steps,
                            "lr_decay_every": max(args.steps // 2, 1), "output_size": args.size, "device": args.device,
                            # the reference's crop-to-photo ratio (128 of 512 px) at any size
                            "crop_size": max(8, round(128 * args.size / 512))}
    if args.threshold is not None:
        base["threshold"] = args.threshold
    if args.n_crops is not None:
        base["n_crops"] = args.n_crops
    if args.lambda_c is not None:
        base["lambda_c"] = args.lambda_c
    candidates = schedules(args.size, args.steps)
    try:
        extra = dict(parse_variant(spec, candidates) for spec in args.variant)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    curves = tuple(c.strip() for c in args.curves.split(",") if c.strip())
    if args.schedules:
        wanted = ["reference", *[s for s in args.schedules.split(",") if s != "reference"]]
        unknown = [s for s in wanted if s not in candidates]
        if unknown:
            sys.exit(f"error: unknown schedule(s) {', '.join(unknown)}; choose from {', '.join(candidates)}")
        candidates = {name: candidates[name] for name in wanted}
    candidates.update(extra)  # the --variant schedules always run
    if args.skip_reference:
        candidates.pop("reference")
    stylizer = Stylizer(StyleConfig(**base))
    evaluator = Evaluator(clip_model=args.clip_model, device=str(stylizer.device), metrics=METRICS, size=None,
                          clip=[encoder for encoder, _ in stylizer.encoders])
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    photos = [p.strip() for p in args.photos.split(",") if p.strip()]
    prompts = [p.strip() for p in args.prompts.split(",") if p.strip()]
    every = max(args.steps // max(args.checkpoints, 1), 1)
    print(f"{cpu_model()}; {len(photos)} photo(s) x {len(prompts)} prompt(s) x {len(candidates)} schedule(s) "
          f"at {args.size} px, reference {args.steps} steps", flush=True)
    for photo_spec in photos:
        photo_path, held_out = photo_file(photo_spec)
        photo_name = photo_path.stem
        photo = load_image(photo_path, "photo")
        for prompt in prompts:
            for name, overrides in candidates.items():
                snapshots: list[tuple[int, float, Any]] = []
                started, cpu_started = time.perf_counter(), time.process_time()

                def keep(info: Any, _name: str = name, _started: float = cpu_started) -> None:
                    if _name in curves and (info.step % every == 0 or info.step == info.steps):
                        snapshots.append((info.step, time.process_time() - _started, info.output.clone()))

                result = stylizer.stylize(photo_path, prompt, callback=keep, **{**base, **overrides})
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
                saved = to_pil(result.tensor)  # scored as saved (8-bit), as `clipstyle eval` reads it
                scores = evaluator.score(load_image(saved), photo, prompt, content_key=photo_name)
                steps_done = int(result.extra.get("steps_done", len(result.history)))
                rows.append({"photo": photo_name, "held_out": held_out, "prompt": prompt, "schedule": name,
                             "steps": steps_done,
                             "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "train_s": result.timings["train_s"], **scores})
                saved.save(args.out / f"{photo_name}_{prompt.replace(' ', '_')}_{name}.png")
                print(f"{photo_name:10s} {prompt:14s} {name:20s} {steps_done:4d} steps {cpu:7.1f} s cpu  "
                      + "  ".join(f"{m} {scores[m]:.4f}" for m in METRICS), flush=True)
                for step, seconds, output in snapshots:
                    point = evaluator.score(load_image(to_pil(output)), photo, prompt, content_key=photo_name)
                    curve.append({"photo": photo_name, "held_out": held_out, "prompt": prompt, "schedule": name,
                                  "step": step, "seconds": round(seconds, 2), "clock": "cpu", **point})
    report(rows, curve, args.out, {"cpu": cpu_model(), "args": vars(args) | {"out": str(args.out)}})


CURVES = ("reference", "identity")
"""Schedules also scored at checkpoints during training (quality against seconds)."""


def parse_variant(spec: str, known: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """``"NAME=BASE key=value ..."`` -> (NAME, BASE's overrides updated with the settings); ValueError if malformed."""
    head, *pairs = spec.split()
    name, _, base = head.partition("=")
    if not name or base not in known:
        raise ValueError(f"--variant {spec!r}: write NAME=BASE KEY=VALUE ..., BASE one of {', '.join(known)}")
    overrides = dict(known[base])
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in StyleConfig.__dataclass_fields__:
            raise ValueError(f"--variant {spec!r}: {pair!r} is not SETTING=VALUE")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return name, overrides


def photo_file(spec: str) -> tuple[Path, bool]:
    """(path, held out?) of a ``--photos`` entry: a name in examples/ (training data of the identity start), or
    a path to any other photo (held out)."""
    bundled = ROOT / "examples" / f"{spec}.png"
    if "/" not in spec and "." not in spec:
        return bundled, False
    path = Path(spec).expanduser()
    return path, path.resolve().parent != (ROOT / "examples").resolve()


def report(rows: list[dict[str, Any]], curve: list[dict[str, Any]], out: Path, about: dict[str, Any]) -> None:
    """Print the tables (all photos; held-out photos only), write rows.json and the plot into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if not any(r["schedule"] == "reference" for r in rows):  # a --skip-reference run: merge it to compare
        (out / "rows.json").write_text(json.dumps({**about, "rows": rows, "curve": curve}, indent=1))
        print(f"wrote {out / 'rows.json'} (no reference rows: merge it with a run that has them)")
        return
    summary = summarize(rows)
    print("\nall photos")
    print_table(summary)
    held = [row for row in rows if row.get("held_out")]
    held_summary = summarize(held) if any(r["schedule"] == "reference" for r in held) else []
    if held_summary:
        print("\nheld-out photos only (the bar is judged here)")
        print_table(held_summary)
    (out / "rows.json").write_text(json.dumps({**about, "rows": rows, "curve": curve, "summary": summary,
                                               "summary_held_out": held_summary}, indent=1))
    panels = [(summary, curve, "all photos")]
    if held_summary:  # a second row: the held-out photos alone, on which the bar is judged
        panels.append((held_summary, [c for c in curve if c.get("held_out")], "held-out photos"))
    plot(panels, out / "quality_vs_seconds.png")
    print(f"wrote {out / 'rows.json'} and {out / 'quality_vs_seconds.png'}")


def merge(files: list[Path], out: Path, keep: set[str] | None = None) -> None:
    """One report from the rows of several runs (e.g. photos split over parallel processes); ``keep``: only
    these schedules (and their curves)."""
    rows: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    abouts = []
    for path in files:
        data = json.loads(path.read_text())
        rows += [r for r in data["rows"] if keep is None or r["schedule"] in keep]
        curve += [c for c in data["curve"] if keep is None or c.get("schedule", "reference") in keep]
        abouts.append({"cpu": data.get("cpu"), "args": data.get("args"), "file": str(path)})
    report(rows, curve, out, {"cpu": abouts[0]["cpu"] if abouts else None, "merged": abouts})


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per schedule: means over photo x prompt, and each mean's change against the reference's (in %)."""
    names = list(dict.fromkeys(row["schedule"] for row in rows))
    clock = "cpu_s" if all("cpu_s" in r for r in rows) else "wall_s"  # CPU time where every row has it
    means = {name: {key: statistics.fmean(r[key] for r in rows if r["schedule"] == name)
                    for key in ("wall_s", "steps", *METRICS)} for name in names}
    for name in names:
        means[name]["seconds"] = statistics.fmean(r[clock] for r in rows if r["schedule"] == name)
    reference = means["reference"]
    out = []
    for name in names:
        item = {"schedule": name, **{k: round(v, 4) for k, v in means[name].items()}, "clock": clock,
                "time_ratio": round(means[name]["seconds"] / reference["seconds"], 3)}
        for metric in METRICS:
            item[f"{metric}_change_pct"] = round(100 * (means[name][metric] / reference[metric] - 1), 2)
        # The bar: patch CLIP and direction not more than 2 % lower, LPIPS not more than 2 % higher, at most
        # 1/4 of the time.
        item["meets_bar"] = bool(item["patch_clip_score_change_pct"] >= -2 and item["lpips_vgg_change_pct"] <= 2
                                 and item["clip_direction_change_pct"] >= -2 and item["time_ratio"] <= 0.25)
        out.append(item)
    return out


def print_table(summary: list[dict[str, Any]]) -> None:
    clock = "cpu s" if summary and summary[0].get("clock") == "cpu_s" else "wall s"
    print(f"\n{'schedule':20s} {'steps':>6s} {clock:>8s} {'x ref':>6s} {'patch CLIP':>11s} {'chg %':>7s} "
          f"{'direction':>10s} {'chg %':>7s} {'LPIPS':>7s} {'chg %':>7s}  bar")
    for item in summary:
        print(f"{item['schedule']:20s} {item['steps']:6.0f} {item.get('seconds', item['wall_s']):8.1f} {item['time_ratio']:6.2f} "
              f"{item['patch_clip_score']:11.4f} {item['patch_clip_score_change_pct']:+7.1f} "
              f"{item['clip_direction']:10.4f} {item['clip_direction_change_pct']:+7.1f} "
              f"{item['lpips_vgg']:7.4f} {item['lpips_vgg_change_pct']:+7.1f}  {'met' if item['meets_bar'] else '-'}")


def plot(panels: list[tuple[list[dict[str, Any]], list[dict[str, Any]], str]], path: Path) -> None:
    """Patch CLIP score, direction and LPIPS against seconds, a row per (summary, curve, which photos) panel:
    the mean curves during training and each schedule's final point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4 * len(panels)), layout="constrained")
    FigureCanvasAgg(figure)
    for row, (summary, curve, which) in enumerate(panels):
        for index, metric in enumerate(("patch_clip_score", "clip_direction", "lpips_vgg")):
            ax = figure.add_subplot(len(panels), 3, row * 3 + index + 1)
            for name, colour in zip(dict.fromkeys(c.get("schedule", "reference") for c in curve),
                                    ("grey", "black", "tab:red", "tab:blue", "tab:green")):
                mine = [c for c in curve if c.get("schedule", "reference") == name]
                steps = sorted({c["step"] for c in mine})
                if steps:
                    xs = [statistics.fmean(c["seconds"] for c in mine if c["step"] == s) for s in steps]
                    ys = [statistics.fmean(c[metric] for c in mine if c["step"] == s) for s in steps]
                    ax.plot(xs, ys, "-", color=colour, label=f"{name}, during training")
            for number, item in enumerate(summary):  # past matplotlib's 10 colours, another marker
                ax.plot(item.get("seconds", item["wall_s"]), item[metric], "osD^v"[number // 10 % 5],
                        label=item["schedule"])
            clock = "process CPU s, 1 thread" if summary and summary[0].get("clock") == "cpu_s" else "wall s"
            ax.set_xlabel(f"{clock} (mean over {which})")
            ax.set_title(f"{which}: " + metric + (" (lower keeps more)" if metric == "lpips_vgg" else
                                                   " (higher is better)"))
            ax.grid(alpha=0.3)
            if index == 0:
                ax.legend(fontsize=7)
    figure.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
