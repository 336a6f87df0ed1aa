"""Model quality: how good the champion of an orchestrated run is, beside the tuned LightGBM
baseline and the Bayes-optimal ranking (the simulator's true fraud probability).

Figures (held-out claims of orchestrated runs with the default training config, early stopping):
  model_quality                 1M claims on a seed tests never use (--quick: 30k claims)
  model_quality_1m_seed11       1M claims on a second seed
  model_quality_demo_seed7      the demo's 120k claims on the demo's seed
  model_quality_demo_seed11     the demo's 120k claims on the second seed
each as ``_vs_bayes`` (champion AP / Bayes-optimal AP) and ``_vs_lightgbm`` (champion AP /
tuned LightGBM AP). Notes: both models' ROC-AUC, precision@k, recall at 1% FPR and AP per fraud
scenario, so the gap to the ceiling is visible where it sits.

The runs are bench/pipeline.py's (``once``): in one ``python -m bench.run``, the 1M run this
slot reads is the one the pipeline slot timed, not a second one. ``--only model_quality`` runs
only the runs these figures need.
"""

from __future__ import annotations

from typing import Any

from bench.common import failed, figure
from bench.pipeline import SEED, SIZES, once
from fraud_cli.demo import DemoOptions

OTHER_SEED = 11  # the second seed of the model-quality figures
DEMO = DemoOptions()  # the scale and seed of `make demo`


def _quality_figures(
    result: dict[str, Any],
    claims: int,
    seed: int,
    suffix: str,
    vs_bayes: float | None,
    vs_lgbm: float,
) -> list[dict[str, Any]]:
    """Champion AP over the Bayes-optimal AP and over the tuned LightGBM's, with both models'
    ROC-AUC, precision@k, recall at 1% FPR and AP per fraud scenario in the notes."""
    quality = result["test_metrics"]
    model, bayes, lgbm = quality["model"], quality["bayes_optimal"], quality["lightgbm"]

    def described(name: str, m: dict[str, Any]) -> str:
        by = ", ".join(f"{s} {ap:.3f}" for s, ap in result["by_scenario"][name].items())
        return (
            f"{name}: AP {m['average_precision']:.4f}, ROC-AUC {m['roc_auc']:.4f}, "
            f"P@{m['k']} {m['precision_at_k']:.3f}, recall@1%FPR {m['recall_at_1pct_fpr']:.3f}; "
            f"AP by scenario: {by}"
        )

    tuned = result["lightgbm_baseline"]
    held_out = (
        f"{claims:,} claims, seed {seed}; {model['n']:,} held-out claims "
        f"({model['positives']} frauds)"
    )
    return [
        figure(
            f"model_quality{suffix}_vs_bayes",
            [model["average_precision"] / bayes["average_precision"]],
            "x",
            goal=f">= {vs_bayes}" if vs_bayes else None,
            anchor=f"Bayes-optimal AP {bayes['average_precision']:.4f} (ties in random order)",
            notes=f"{held_out}; {described('model', model)}",
        ),
        figure(
            f"model_quality{suffix}_vs_lightgbm",
            [model["average_precision"] / lgbm["average_precision"]],
            "x",
            goal=f">= {vs_lgbm}",
            anchor=f"tuned LightGBM AP {lgbm['average_precision']:.4f}",
            notes=f"{held_out}; same features and split; LightGBM best of "
            f"{len(tuned['candidates'])} grid points by validation AP {tuned['params']}; "
            f"{described('lightgbm', lgbm)}",
        ),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    size = SIZES[quick]
    # (claims, seed, figure suffix, goal vs Bayes, goal vs LightGBM): issue #17's goals
    runs = (
        [(size, SEED, "", None, 0.9)]
        if quick
        else [
            (size, SEED, "", 0.95, 1.0),
            (size, OTHER_SEED, f"_1m_seed{OTHER_SEED}", 0.95, 1.0),
            (DEMO.claims, DEMO.seed, f"_demo_seed{DEMO.seed}", 0.85, 1.0),
            (DEMO.claims, OTHER_SEED, f"_demo_seed{OTHER_SEED}", 0.85, 1.0),
        ]
    )
    figures: list[dict[str, Any]] = []
    for claims, seed, suffix, vs_bayes, vs_lgbm in runs:
        try:
            result = once("orchestrated", claims, seed)
        except RuntimeError as exc:  # e.g. the gate refused the model: the graph stopped
            figures += [
                failed(f"model_quality{suffix}_vs_{ref}", exc) for ref in ("bayes", "lightgbm")
            ]
            continue
        figures += _quality_figures(result, claims, seed, suffix, vs_bayes, vs_lgbm)
    return figures
