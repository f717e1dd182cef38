"""The APEX study's rows (benchmarks/apex_study.md): each a label, a method and its overrides of the
Fashion-MNIST job's settings, with the seeds and update budgets it runs at; ``ROWS`` groups them as
``apex_study.py --rows`` names them."""

from __future__ import annotations

from dataclasses import dataclass

from apexgen.objectives.base import BudgetCount

PRIVATE = ["methods.apex.fake_network=private", "methods.apex.slices.fake=0", "methods.apex.slices.generator=1"]
LAG = ["methods.apex.lag_every=100"]
# The APEX form of benchmarks/t2i_fashion_mnist.md before this study, spelled out so that a row means the same
# whatever the ``ours`` preset becomes; an APEX row starts from it unless it names a preset.
TODAY = ("methods.apex.weight_generator=4", "methods.apex.fake_warmup=50", "methods.apex.weight_regression=0")
# The real-branch CFG of every APEX row that names none: 3, the job's value when the study ran (the job's
# APEX_GUIDANCE, chosen by this study: 1.5, then 2), so that a row means the same whatever the default becomes.
STUDY_GUIDANCE = "methods.apex.real_guidance=3"


@dataclass(frozen=True)
class Row:
    label: str
    method: str  # a student method, or "teacher"
    overrides: tuple[str, ...] = ()
    nfe: int = 1
    seeds: tuple[int, ...] = (0,)
    budgets: tuple[int, ...] = (600,)
    count: BudgetCount = "total"  # which updates the budget counts

    def jobs(self) -> list[Job]:
        return [Job(self, seed, budget) for seed in self.seeds for budget in self.budgets]


@dataclass(frozen=True)
class Job:
    row: Row
    seed: int
    budget: int

    @property
    def name(self) -> str:
        if self.row.method == "teacher":
            return self.row.label
        return f"{self.row.label}_u{self.budget}_s{self.seed}"


def row(label: str, *overrides: str, method: str = "apex", **options) -> Row:
    names_preset = any(o.startswith("methods.apex.preset=") for o in overrides)
    base = TODAY if method == "apex" and not names_preset else ()
    names_guidance = any(o.startswith("methods.apex.real_guidance=") for o in overrides)
    guidance = (STUDY_GUIDANCE,) if method == "apex" and not names_guidance else ()
    return Row(label, method, (*base, *guidance, *overrides), **options)


ROWS: dict[str, list[Row]] = {
    "teacher": [row(f"teacher_cfg{g:g}", f"eval.guidance={g}", method="teacher", nfe=50) for g in (1.0, 1.5, 2.0, 3.0)],
    "core": [
        row("apex_today", *LAG),
        row("apex_paper", "methods.apex.preset=paper"),
        row("apex_released", "methods.apex.preset=released", *LAG),
        row("dmd2", method="dmd2"),
        row("regression", method="regression"),
        row("apex_private_k5", *PRIVATE, "methods.apex.fake_updates=5", "methods.apex.fake_warmup=0", *LAG),
        row(
            "apex_private_k5_nokey",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            "methods.apex.fake_key=none",
        ),
        row("twinflow", method="twinflow"),
    ],
    "levers": [
        row("apex_guidance1.5", "methods.apex.real_guidance=1.5"),
        row("apex_guidance2", "methods.apex.real_guidance=2"),
        row("apex_shift_-0.5_1", "methods.apex.condition_shift.a=-0.5", "methods.apex.condition_shift.b=1"),
        row("apex_fake_t_max0.8", "methods.apex.fake_time.t_max=0.8"),
        row("apex_slices_fake0.25", "methods.apex.slices.fake=0.25", "methods.apex.slices.generator=0.75"),
        row(
            "apex_anchor0.25",
            "methods.apex.slices.anchor=0.25",
            "methods.apex.slices.generator=0.375",
            "methods.apex.slices.fake=0.375",
        ),
        row("apex_private_k2", *PRIVATE, "methods.apex.fake_updates=2", "methods.apex.fake_warmup=0"),
        row(
            "apex_private_k5_guidance2",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            "methods.apex.real_guidance=2",
        ),
    ],
    "anchors": [
        row("apex_regression1", "methods.apex.weight_regression=1"),
        row("apex_regression4", "methods.apex.weight_regression=4"),
        row(
            "apex_private_k5_regression1",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            "methods.apex.weight_regression=1",
        ),
    ],
    "long": [
        row("regression", method="regression", budgets=(3000,)),
        row("apex_regression4", "methods.apex.weight_regression=4", *LAG, budgets=(3000,)),
        row("dmd2", method="dmd2", budgets=(3000,)),
        row(
            "apex_private_k5",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            *LAG,
            budgets=(3000,),
        ),
        row("apex_today", *LAG, budgets=(3000,)),
    ],
    "combinations": [
        row("apex_regression4_guidance1.5", "methods.apex.weight_regression=4", "methods.apex.real_guidance=1.5"),
        # between the CFG-1.5 row's FID and diversity and `ours`' accuracy (CFG 3)
        row("apex_regression4_guidance2", "methods.apex.weight_regression=4", "methods.apex.real_guidance=2"),
        row("apex_regression4_nowarmup", "methods.apex.weight_regression=4", "methods.apex.fake_warmup=0"),
        row("apex_regression8", "methods.apex.weight_regression=8"),
        # the fake-only warm-up at `ours`' guidance: 50 warm-up updates contract the one-step map (issue 11)
        row(
            "apex_regression4_guidance2_nowarmup",
            "methods.apex.weight_regression=4",
            "methods.apex.real_guidance=2",
            "methods.apex.fake_warmup=0",
        ),
        # the anchor's weight at `ours`' guidance: weight 8 had fewer near-duplicates than 4 at CFG 3, 600 updates
        row("apex_regression8_guidance2", "methods.apex.weight_regression=8", "methods.apex.real_guidance=2"),
        # the fairness check of the CFG-1.5 row: the best rival with the same lower guidance
        row("regression_guidance1.5", "methods.regression.guidance=1.5", method="regression"),
        row("dmd2_guidance1.5", "methods.dmd2.guidance=1.5", method="dmd2"),
        # the same check at `ours`' guidance in the Fashion-MNIST job (CFG 2)
        row("regression_guidance2", "methods.regression.guidance=2", method="regression"),
        row("dmd2_guidance2", "methods.dmd2.guidance=2", method="dmd2"),
        # the toy benchmark's finding (benchmarks/toy.md, "The anchor's pool"): a larger pool of more exact
        # endpoints for `ours`' anchor, and for regression itself, the fairness check (4x the pool's cost)
        row(
            "apex_regression4_guidance2_pool4096",
            "methods.apex.weight_regression=4",
            "methods.apex.real_guidance=2",
            "methods.apex.regression_pairs=4096",
            "methods.apex.regression_steps=50",
        ),
        row(
            "regression_guidance2_pool4096",
            "methods.regression.guidance=2",
            "methods.regression.pairs=4096",
            "methods.regression.teacher_steps=50",
            method="regression",
        ),
        # the toy's second pool finding (benchmarks/toy.md: 65,536 pairs beat 4,096 on orbit for both): more
        # pairs at the same 25 Euler steps, separating the pool's size from its steps (4,096 x 50 above)
        row(
            "apex_regression4_guidance2_pool8192",
            "methods.apex.weight_regression=4",
            "methods.apex.real_guidance=2",
            "methods.apex.regression_pairs=8192",
        ),
        row(
            "regression_guidance2_pool8192",
            "methods.regression.guidance=2",
            "methods.regression.pairs=8192",
            method="regression",
        ),
    ],
    # Equal generator updates: the budget counts only the updates that move the generator, so DMD2 (five
    # critic updates per generator update) and the private adapter (five fake updates) get as many
    # generator updates as `ours` has at 600 total (550, after its 50 fake-only warm-up updates).
    "equal_generator": [
        row("dmd2_generator550", method="dmd2", budgets=(550,), count="generator"),
        row(
            "apex_private_k5_generator550",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            budgets=(550,),
            count="generator",
        ),
        # the private adapter with `ours`' anchor and guidance: the best equal-generator row plus ours' levers
        row(
            "apex_private_k5_regression4_guidance2_generator550",
            *PRIVATE,
            "methods.apex.fake_updates=5",
            "methods.apex.fake_warmup=0",
            "methods.apex.weight_regression=4",
            "methods.apex.real_guidance=2",
            budgets=(550,),
            count="generator",
        ),
    ],
    "table6": [
        row("paper_fake_only", "methods.apex.preset=paper", "methods.apex.weight_anchor=0"),
        row("paper_mix_only", "methods.apex.preset=paper", "methods.apex.weight_fake=0"),
        row("paper_1_0.5", "methods.apex.preset=paper", "methods.apex.weight_anchor=0.5"),
        row("paper_1_2", "methods.apex.preset=paper", "methods.apex.weight_anchor=2"),
    ],
    "table7": [
        row(
            f"paper_a{a:g}_b{b:g}",
            "methods.apex.preset=paper",
            f"methods.apex.condition_shift.a={a}",
            f"methods.apex.condition_shift.b={b}",
        )
        for a in (-1.0, -0.5, 0.5)
        for b in (0.0, 1.0)
        if (a, b) != (-0.5, 1.0)
    ],
    "table7_embeds": [
        row(
            f"paper_embeds_a{a:g}_b{b:g}",
            "methods.apex.preset=paper",
            "methods.apex.condition_shift.where=embeds",
            f"methods.apex.condition_shift.a={a}",
            f"methods.apex.condition_shift.b={b}",
        )
        for a in (-1.0, -0.5, 0.5)
        for b in (0.0, 1.0)
    ],
    "paper_options": [
        row("paper_nograd", "methods.apex.preset=paper", "methods.apex.paper.fake_gradient=false"),
        row(
            "paper_fresh",
            "methods.apex.preset=paper",
            "methods.apex.paper.fake_noise=fresh",
            "methods.apex.paper.fake_time=fresh",
        ),
        row("paper_cap100", "methods.apex.preset=paper", "methods.apex.mix_weight_cap=100"),
        row("paper_uniform", "methods.apex.preset=paper", "methods.apex.mix_weighting=uniform"),
    ],
}
