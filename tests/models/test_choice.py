"""``auto``: the purchase model with the lowest BIC, recovered on data generated from each model."""

from __future__ import annotations

import numpy as np
import pytest

from userstrata.errors import InputError
from userstrata.models.btyd import BetaGeo, ModifiedBetaGeo, ParetoNBD, simulate_bgnbd, simulate_mbgnbd, simulate_paretonbd
from userstrata.models.choice import choose_purchase_model

# Parameters in days under which the three processes differ visibly: BG/NBD's dropout comes
# only right after a repeat purchase, MBG/NBD's also right after the first one, Pareto/NBD's
# at any time (exponential lifetimes, here with a mean of about 100 days).
PROCESSES = {
    "bgnbd": (simulate_bgnbd, dict(r=0.243, alpha=30.9, a=0.793, b=2.426)),
    "pareto": (simulate_paretonbd, dict(r=0.8, alpha=40.0, s=1.5, beta=150.0)),
    "mbgnbd": (simulate_mbgnbd, dict(r=0.525, alpha=43.3, a=0.891, b=1.614)),
}
CLASSES = {"bgnbd": BetaGeo, "pareto": ParetoNBD, "mbgnbd": ModifiedBetaGeo}


def _shop(process: str, seed: int, n: int = 3000):
    simulate, params = PROCESSES[process]
    rng = np.random.default_rng(seed)
    T = rng.uniform(30, 540, n).round()  # buyers acquired over a year and a half, in whole days
    return simulate(n, params, T, random_state=seed, resolution=1.0)


@pytest.mark.parametrize("process", list(PROCESSES))
def test_auto_recovers_the_generating_model_more_often_than_not(process):
    chosen = [choose_purchase_model(*_shop(process, seed)).name for seed in range(5)]
    assert chosen.count(process) >= 3, chosen


def test_the_choice_is_the_lowest_bic_of_independent_fits_and_says_so():
    x, t_x, T = _shop("pareto", 11)
    choice = choose_purchase_model(x, t_x, T)
    n = int((T > 0).sum())
    # each model fitted on its own: BIC = 4 ln n - 2 LL, the lowest wins
    bic = {name: 4 * np.log(n) - 2 * cls().fit(x, t_x, T).log_likelihood_ for name, cls in CLASSES.items()}
    best = min(bic, key=bic.get)
    assert choice.name == best and isinstance(choice.model, CLASSES[best])
    table = choice.candidates.set_index("model")
    for name, value in bic.items():
        assert table.loc[name, "bic"] == pytest.approx(value, rel=1e-9)
    assert list(choice.candidates.bic) == sorted(bic.values())
    runner_up = sorted(bic.values())[1]
    assert f"lowest BIC ({bic[best]:,.1f})" in choice.reason_en
    assert f"(+{runner_up - bic[best]:,.1f})" in choice.reason_en
    assert f"BIC 最低（{bic[best]:,.1f}）" in choice.reason_zh and choice.reason("zh") == choice.reason_zh


def test_a_model_that_fails_drops_out_and_is_named(monkeypatch):
    import userstrata.models.choice as choice_module

    class Broken(BetaGeo):
        def fit(self, *args, **kwargs):
            raise InputError("cannot fit")

    monkeypatch.setitem(choice_module.PURCHASE_MODELS, "bgnbd", Broken)
    choice = choose_purchase_model(*_shop("bgnbd", 3))
    assert choice.name in ("pareto", "mbgnbd")
    assert "BG/NBD could not be fitted" in choice.reason_en and "BG/NBD 无法拟合" in choice.reason_zh
    monkeypatch.setitem(choice_module.PURCHASE_MODELS, "pareto", Broken)
    monkeypatch.setitem(choice_module.PURCHASE_MODELS, "mbgnbd", Broken)
    with pytest.raises(InputError, match="no purchase model could be fitted: BG/NBD: cannot fit"):
        choose_purchase_model(*_shop("bgnbd", 3))


def test_a_large_base_chooses_on_a_sample_and_fits_the_winner_on_everyone():
    x, t_x, T = _shop("mbgnbd", 4, n=6000)
    choice = choose_purchase_model(x, t_x, T, sample=3000)
    assert choice.name == "mbgnbd"
    whole = ModifiedBetaGeo().fit(x, t_x, T)  # the winner, refitted on all 6,000
    for k, v in whole.params_.items():
        assert choice.model.params_[k] == pytest.approx(v, rel=1e-9)
    assert "on a random 3,000 of 6,000 buyers" in choice.reason_en
    assert "随机抽取的 3,000 位（共 6,000 位）" in choice.reason_zh
    n = 3000  # the BIC shown is the sample's
    sample_ll = choice.candidates.set_index("model").loc["mbgnbd", "log_likelihood"]
    assert choice.candidates.set_index("model").loc["mbgnbd", "bic"] == pytest.approx(4 * np.log(n) - 2 * sample_ll)
