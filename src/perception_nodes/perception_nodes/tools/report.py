"""``report.html``: one self-contained page (inline CSS, images as data URIs, no script) that shows
the state of a replayed stack: a summary table, the nodes' own views at sample frames, and plots —
PR curves, confusion matrix, depth colour maps and error, trajectory against ground truth,
latency histograms and timelines, CPU and memory per node, throughput.

Plots need matplotlib (in the models' requirements; a nodes-only image without it gets the
tables and the sample frames, and the page says the plots were left out).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

# recorded views the nodes draw themselves, by their topic's last name, in display order
VIEW_TOPICS = ("image_annotated", "overlay", "depth_colored", "matches_image")
SAMPLE_FRAMES = 4
THUMB_WIDTH = 400

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;color:#222}
h1{font-size:24px;margin-bottom:4px} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:8px 0 16px} td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child,td.t{text-align:left}
.ok{color:#17803d;font-weight:600} .bad{color:#b42318;font-weight:600} .muted{color:#777}
.grid{display:flex;flex-wrap:wrap;gap:8px} figure{margin:0} figcaption{font-size:12px;color:#555}
img{max-width:100%;border:1px solid #ddd}
"""


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _jpeg(rgb: np.ndarray, width: int = THUMB_WIDTH) -> str:
    import cv2

    h, w = rgb.shape[:2]
    if w > width:
        rgb = cv2.resize(rgb, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode()


def _img(src: str, caption: str) -> str:
    return (
        f'<figure><img src="{src}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if not np.isfinite(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v) if str(v).startswith("<span") else html.escape(str(v))

    def td(v: Any) -> str:  # numbers right-aligned, text left
        return f"<td>{cell(v)}</td>" if isinstance(v, (int, float)) else f"<td class='t'>{cell(v)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(td(v) for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _flag(good: bool, text: str) -> str:
    return f'<span class="{"ok" if good else "bad"}">{html.escape(text)}</span>'


# ----------------------------------------------------------------------------- sample frames
def _sample_views(recording: Path, frame_topic: str) -> list[tuple[int, float, list[tuple[str, np.ndarray]]]]:
    """Up to SAMPLE_FRAMES evenly spaced input frames (index, seconds from the first), each with the
    input and every recorded view."""
    from ..bag_io import bag_info, header_stamp_ns, read_messages, typestore
    from ..image_conversion import ImageConversionError, image_to_rgb

    topics = bag_info(recording).topics
    views = [t for name in VIEW_TOPICS for t in sorted(topics) if t.endswith("/" + name)]
    stamps = sorted({header_stamp_ns(raw) for _t, _m, _l, raw in read_messages(recording, [frame_topic])})
    if not stamps:
        return []
    index = np.unique(np.linspace(0, len(stamps) - 1, SAMPLE_FRAMES).round().astype(int))
    chosen = [stamps[i] for i in index]
    wanted = set(chosen)
    store = typestore(recording)
    got: dict[int, dict[str, np.ndarray]] = {s: {} for s in chosen}
    for topic, msgtype, _l, raw in read_messages(recording, [frame_topic, *views]):
        s = header_stamp_ns(raw)
        if s in wanted and topic not in got[s]:
            try:
                got[s][topic] = np.asarray(image_to_rgb(store.deserialize_cdr(raw, msgtype)))
            except ImageConversionError:
                continue
    return [
        (int(i), (s - stamps[0]) * 1e-9, [(t, got[s][t]) for t in [frame_topic, *views] if t in got[s]])
        for i, s in zip(index, chosen)
    ]


# ----------------------------------------------------------------------------- plots
def _plot_latency(series: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 3.8))
    for topic, s in series.items():
        lat = np.asarray(s["latency_ms"])
        a.hist(lat, bins=30, histtype="step", linewidth=1.6, label=topic)
        b.plot(s["t_s"], lat, ".-", markersize=3, linewidth=0.8, label=topic)
    a.set(xlabel="latency (ms)", ylabel="results", title="latency histogram")
    b.set(xlabel="time since the first frame (s)", ylabel="latency (ms)", title="latency timeline")
    a.legend(fontsize=7)
    b.grid(alpha=0.3)
    return _png(fig)


def _plot_resources(resources: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 3.5))
    for name, r in resources.items():
        tl = r["timeline"]
        a.plot(tl["t_s"], tl["cpu_percent"], linewidth=1, label=name)
        b.plot(tl["t_s"], tl["rss_mib"], linewidth=1.2, label=name)
    a.set(xlabel="time (s)", ylabel="CPU (% of one core)", title="CPU per node process")
    b.set(xlabel="time (s)", ylabel="RSS (MiB)", title="memory per node process")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    b.grid(alpha=0.3)
    return _png(fig)


def _plot_pr(curves: dict[str, Any], per_class: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, c in curves.items():
        ap = (per_class.get(name) or {}).get("AP50", float("nan"))
        ax.plot(c["recall"], c["precision"], linewidth=1.5, label=f"{name} (AP50 {ap:.2f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_confusion(seg: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    cm = np.asarray(seg["confusion_matrix"], dtype=np.float64)
    names = list(seg["per_class_iou"])
    keep = cm.sum(1) + cm.sum(0) > 0  # classes absent from both truth and prediction say nothing
    cm, names = cm[keep][:, keep], [n for n, k in zip(names, keep) if k]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    im = a.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    a.set_xticks(range(len(names)), names, rotation=45, ha="right")
    a.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if norm[i, j] >= 0.01:
                a.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    a.set(xlabel="predicted", ylabel="ground truth", title="confusion matrix (rows normalised)")
    fig.colorbar(im, ax=a, fraction=0.046)
    iou = [v if v is not None else np.nan for v in seg["per_class_iou"].values()]
    all_names = list(seg["per_class_iou"])
    b.barh(all_names, iou, color="#4c78a8")
    b.set(xlim=(0, 1), xlabel="IoU", title=f"per-class IoU (mIoU {seg['mIoU']:.3f})")
    b.invert_yaxis()
    b.grid(alpha=0.3, axis="x")
    return _png(fig)


def _plot_depth(maps: list[tuple[int, np.ndarray, np.ndarray]], depth: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    rows = len(maps) + 1
    t0 = depth["stamps"][0]
    fig, axes = plt.subplots(rows, 3, figsize=(13, 3.3 * rows), squeeze=False)
    for r, (stamp, est, gt) in enumerate(maps):
        valid = np.isfinite(gt) & (gt > 0.1) & (gt < 60)
        hi = float(np.percentile(gt[valid], 95)) if valid.any() else 50.0
        for c, (img, title) in enumerate(((gt, "ground truth (m)"), (est, "estimate (m)"))):
            im = axes[r, c].imshow(np.where(np.isfinite(img), img, np.nan), cmap="turbo_r", vmin=0, vmax=hi)
            axes[r, c].set_title(f"{title}, t = {(stamp - t0) * 1e-9:.2f} s", fontsize=9)
            fig.colorbar(im, ax=axes[r, c], fraction=0.035)
        err = np.full(gt.shape, np.nan)
        err[valid] = np.abs(est[valid] - gt[valid]) / gt[valid]
        im = axes[r, 2].imshow(err, cmap="magma", vmin=0, vmax=0.5)
        axes[r, 2].set_title("|estimate - truth| / truth (AbsRel per pixel)", fontsize=9)
        fig.colorbar(im, ax=axes[r, 2], fraction=0.035)
        for a in axes[r]:
            a.axis("off")
    bottom = plt.subplot2grid((rows, 3), (rows - 1, 0), colspan=3, fig=fig)
    for a in axes[rows - 1]:
        a.remove()
    bottom.plot((np.asarray(depth["stamps"]) - t0) * 1e-9, depth["abs_rel"], ".-", linewidth=1)
    bottom.set(xlabel="t (s from the first frame)", ylabel="AbsRel", title="AbsRel per frame")
    bottom.grid(alpha=0.3)
    return _png(fig)


def _plot_trajectory(traj: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    est = np.asarray(traj["estimate"]).reshape(-1, 3)
    ref = np.asarray(traj["reference"]).reshape(-1, 3) if "reference" in traj else None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    a = axes[0]
    if ref is not None:
        a.plot(ref[:, 0], ref[:, 1], "k-", linewidth=2, label="ground truth")
        a.plot(ref[0, 0], ref[0, 1], "go", label="start")
    a.plot(
        est[:, 0],
        est[:, 1],
        ".-" if len(est) < 50 else "-",
        color="#e45756",
        linewidth=1.5,
        label="odometry (SE(3)-aligned)" if ref is not None else "odometry (no ground truth in the bag)",
    )
    a.set(xlabel="x (m)", ylabel="y (m)", title="trajectory, top view (odom frame)")
    a.axis("equal")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    b = axes[1]
    if "ate_m" in traj:
        b.plot(np.arange(len(traj["ate_m"])), traj["ate_m"], linewidth=1.2)
        b.set(xlabel="frame", ylabel="position error (m)", title="absolute trajectory error per frame")
    else:
        b.plot(est[:, 0], est[:, 2], ".-", color="#e45756")
        b.set(xlabel="x (m)", ylabel="z (m)", title="trajectory, side view")
        b.axis("equal")
    b.grid(alpha=0.3)
    return _png(fig)


def _plot_matching(m: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 3))
    x = np.arange(len(m["matches"]))
    ax.plot(x, m["matches"], label="matches")
    ax.plot(x, m["inliers"], label="geometric inliers")
    ax.set(xlabel="frame", ylabel="count", title="matches per frame")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_throughput(tp: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    probes = sorted(tp["probes"], key=lambda p: p["rate_hz"])
    nodes = sorted({n for p in probes for n in p["drops"]})
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 3.8))
    rates = [p["rate_hz"] for p in probes]
    for n in nodes:
        a.plot(rates, [p["drops"][n]["percent"] for p in probes], "o-", label=n)
        b.plot(rates, [p["latency_ms"].get(n, np.nan) for p in probes], "o-", label=n)
    a.axhline(
        tp["max_drop_percent"], color="k", linestyle="--", linewidth=1, label=f"{tp['max_drop_percent']:g} % limit"
    )
    a.set(xlabel="input rate (Hz)", ylabel="frames dropped (%)", title="drops against input rate")
    b.set(xlabel="input rate (Hz)", ylabel="median latency (ms)", title="latency against input rate")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


# ----------------------------------------------------------------------------- page
def _summary_rows(report: dict[str, Any]) -> tuple[str, str]:
    m = report.get("metrics", {})
    acc = []
    if "detection" in m:
        gp = m["detection"].get("ground_position")
        acc.append(
            [
                "detection",
                f"mAP@[.5:.95] {m['detection']['mAP']:.3f}, mAP@0.5 {m['detection']['mAP50']:.3f}"
                + (
                    f"; where they stand: distance error median {gp['median_distance_error_m']:.2f} m "
                    f"({100 * gp['median_relative_error']:.0f} %), {100 * gp['within_10_percent']:.0f} % within 10 %"
                    if gp
                    else ""
                ),
                m["detection"]["images"],
            ]
        )
    if "segmentation" in m:
        acc.append(
            [
                "segmentation",
                f"mIoU {m['segmentation']['mIoU']:.3f}, pixel accuracy {m['segmentation']['pixel_accuracy']:.3f}",
                m["segmentation"].get("images", ""),
            ]
        )
    if "depth" in m:
        a, s = m["depth"]["absolute"], m["depth"]["median_scaled"]
        acc.append(
            [
                "depth",
                f"AbsRel {a['abs_rel']:.3f}, RMSE {a['rmse']:.2f} m, δ<1.25 {a['a1']:.3f} "
                f"(median-scaled AbsRel {s['abs_rel']:.3f})",
                m["depth"]["images"],
            ]
        )
    if "odometry" in m:
        o = m["odometry"]
        acc.append(
            [
                "odometry",
                f"ATE {o['ate_rmse_m']:.2f} m = {o['ate_percent_of_path']:.1f} % of "
                f"{o['path_length_m']:.1f} m (SE(3)), RPE {o['rpe_trans_rmse_m']:.3f} m / {o['rpe_rot_rmse_deg']:.2f}°"
                if "ate_rmse_m" in o
                else o.get("failed", ""),
                o.get("frames", ""),
            ]
        )
    if "matching" in m:
        g = m["matching"].get("geometry")
        acc.append(
            [
                "matching",
                f"{m['matching']['matches_per_frame']:.0f} matches/frame, inlier ratio "
                f"{m['matching']['inlier_ratio']:.2f}"
                + (
                    f"; relative pose vs ground truth: rotation {g['rotation_error_deg_median']:.2f}°, translation "
                    f"direction {g['translation_direction_error_deg_median']:.1f}° (medians), AUC@10° "
                    f"{g['pose_auc']['@10deg']:.2f}"
                    if g
                    else ""
                ),
                m["matching"]["frames"],
            ]
        )
    accuracy = (
        _table(["task", "result", "frames"], acc)
        if acc
        else '<p class="muted">No ground truth in this bag (or perception_models not installed): latency and '
        "samples only.</p>"
    )
    res, drops = report.get("resources", {}), report.get("drops", {})
    rows = []
    for topic, st in report.get("latency", {}).items():
        node = next((n for n, d in drops.items() if d.get("topic") == topic), None)
        r = res.get(node or "", {})
        d = drops.get(node or "")
        rows.append(
            [
                topic,
                st["median_ms"],
                st["p95_ms"],
                st["p99_ms"],
                st["fps"],
                _flag(d["dropped"] == 0, f"{d['dropped']} ({d['percent']:.1f} %)") if d else "",
                r["cpu_percent_mean"] if r else "",
                r["rss_mib_peak"] if r else "",
            ]
        )
    nodes = _table(
        ["output", "median ms", "p95 ms", "p99 ms", "fps", "dropped", "CPU % (mean)", "RSS MiB (peak)"], rows
    )
    return accuracy, nodes


def write_report(
    report: dict[str, Any],
    series: dict[str, Any],
    path: Path,
    recording: Path | None = None,
    frame_topic: str = "/camera/image_raw",
) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        plots = True
    except ImportError:
        plots = False
    p = report.get("player", {})
    lost = p.get("frames_lost")
    verdict = (
        _flag(not lost, f"{p.get('frames', '?')} frames, {lost} lost")
        if report.get("mode") == "lockstep"
        else f"{p.get('frames', '?')} frames at rate {report.get('rate', 1.0)}"
    )
    parts = [
        f"<h1>Perception stack replay: {html.escape(str(report.get('profile')))}</h1>",
        f"<p>bag <code>{html.escape(str(report.get('bag')))}</code> · mode "
        f"<b>{html.escape(str(report.get('mode')))}</b>"
        f" · {verdict} · wall time {p.get('wall_time_s', '?')} s</p>",
    ]
    if not plots:
        parts.append('<p class="bad">matplotlib is not installed: plots left out (pip install matplotlib).</p>')
    accuracy, nodes = _summary_rows(report)
    models = report.get("models", {})
    if models:
        accuracy += (
            "<p class='muted'>The models' own held-out numbers (their cards), to hold this replay against:</p>"
            + _table(
                ["node", "model", "task", "card: held-out", "sha256"],
                [
                    [n, Path(v["model"]).name, v["task"], v["card_metrics"] or "-", v["sha256"]]
                    for n, v in models.items()
                ],
            )
        )
    parts += [
        "<h2>Accuracy</h2>",
        accuracy,
        "<h2>Nodes: latency, drops, CPU, memory</h2>",
        '<p class="muted">latency: input frame published (player) → output received (recorder), one system '
        "clock; CPU in % of one core; "
        "dropped: input frames without a result (0 in lockstep).</p>",
        nodes,
    ]
    if recording is not None:
        samples = _sample_views(recording, frame_topic)
        if samples:
            parts.append("<h2>Sample frames</h2>")
            for i, t, views in samples:
                parts.append(
                    f"<h3>frame {i} (t = {t:.2f} s)</h3><div class='grid'>"
                    + "".join(_img(_jpeg(img), topic) for topic, img in views)
                    + "</div>"
                )
    m = report.get("metrics", {})
    if "detection" in m:
        per = m["detection"]["per_class"]
        parts += [
            "<h2>Detection</h2>",
            _table(
                ["class", "AP", "AP50", "AP75", "ground truth"],
                [[c, v["AP"], v["AP50"], v["AP75"], v["ground_truth"]] for c, v in per.items() if v],
            ),
            f"<p class='muted'>{html.escape(m['detection'].get('protocol', ''))}</p>",
        ]
        if plots and series.get("pr_curves"):
            parts.append(_img(_plot_pr(series["pr_curves"], per), "precision-recall curves"))
    if "segmentation" in m:
        parts.append("<h2>Segmentation</h2>")
        if plots:
            parts.append(_img(_plot_confusion(m["segmentation"]), "confusion matrix and per-class IoU"))
    if "depth" in m:
        d = m["depth"]
        parts += [
            "<h2>Depth</h2>",
            _table(
                ["scaling", "AbsRel", "SqRel", "RMSE", "RMSE log", "δ<1.25", "δ<1.25²", "δ<1.25³"],
                [
                    [
                        k,
                        d[k]["abs_rel"],
                        d[k]["sq_rel"],
                        d[k]["rmse"],
                        d[k]["rmse_log"],
                        d[k]["a1"],
                        d[k]["a2"],
                        d[k]["a3"],
                    ]
                    for k in ("absolute", "median_scaled")
                    if k in d
                ],
            ),
        ]
        if plots and series.get("depth"):
            parts.append(_img(_plot_depth(series["depth"]["maps"], series["depth"]), "depth against ground truth"))
    if "odometry" in m or series.get("trajectory"):
        parts.append("<h2>Odometry</h2>")
        if "odometry" in m:
            parts.append(_table(["metric", "value"], [[k, v] for k, v in m["odometry"].items()]))
        if plots and series.get("trajectory"):
            parts.append(
                _img(
                    _plot_trajectory(series["trajectory"]),
                    "trajectory against ground truth"
                    if "reference" in series["trajectory"]
                    else "trajectory (no ground truth)",
                )
            )
    if "matching" in m:
        parts.append("<h2>Matching</h2>")
        if plots and series.get("matching"):
            parts.append(_img(_plot_matching(series["matching"]), "matches per frame"))
    if plots and series.get("latency"):
        parts += ["<h2>Latency</h2>", _img(_plot_latency(series["latency"]), "latency")]
    if plots and report.get("resources"):
        parts += ["<h2>CPU and memory</h2>", _img(_plot_resources(report["resources"]), "resources")]
    tp = report.get("throughput")
    if tp:
        parts += [
            "<h2>Throughput</h2>",
            f"<p>highest input rate with &lt; {tp['max_drop_percent']:g} % dropped frames: "
            f"<b>{tp['max_rate_hz']:.1f} Hz</b> (limited by {html.escape(str(tp.get('bottleneck')))}); probes "
            "recorded "
            + (
                "every output (the nodes drew their pictures)"
                if tp.get("visual_outputs")
                else "the per-frame outputs only (no drawn pictures)"
            )
            + ".</p>",
            _table(
                ["input Hz", "worst node drop %", "median latency ms (per node)"],
                [
                    [
                        f"{pr['rate_hz']:.2f}",
                        f"{max(d['percent'] for d in pr['drops'].values()):.1f}",
                        ", ".join(f"{n} {v:.0f}" for n, v in pr["latency_ms"].items()),
                    ]
                    for pr in sorted(tp["probes"], key=lambda p: p["rate_hz"])
                ],
            ),
        ]
        if plots:
            parts.append(_img(_plot_throughput(tp), "throughput"))
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>perception report: "
        f"{html.escape(str(report.get('profile')))}</title><style>{CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path
