"""Behaviour clusters: known groups are found, described in the right direction, stably."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from rich.cells import cell_len
from sklearn.metrics import adjusted_rand_score, silhouette_score
from typer.testing import CliRunner

import userstrata.cli.clusters  # noqa: F401  (registers `userstrata clusters`)
from userstrata.cli import app
from userstrata.config import Settings
from userstrata.datasets import simulate_shop
from userstrata.errors import InputError
from userstrata.schema import CANONICAL
from userstrata.segments.clusters import FEATURES, PHRASES, _phrases, behaviour_clusters, silhouettes
from userstrata.workspace import Workspace

END = dt.date(2024, 6, 30)
SIZES = {"community": 70, "big_basket": 50, "never": 30}


def blobs(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A profile of three obvious groups and each user's group.

    - community (70): about 21 orders of about 10 each, about 30 community actions;
    - big_basket (50): one order of about 210, no community actions;
    - never (30): never bought, no community actions.
    Spend (210 for every buyer), recency, tenure, visit days and interactions are the same
    for everyone, so the groups differ only where stated
    (standardising would blow noise in a shared feature up to the scale of the real differences).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for group, size in SIZES.items():
        for _ in range(size):
            if group == "community":
                orders, aov, community = int(rng.integers(19, 24)), rng.uniform(9, 11), int(rng.integers(27, 34))
            elif group == "big_basket":
                orders, aov, community = 1, rng.uniform(200, 220), 0
            else:
                orders, aov, community = 0, np.nan, 0
            bought = orders > 0
            rows.append({
                "group": group,
                "orders": orders,
                "frequency": max(orders - 1, 0),
                "monetary": 210.0 if bought else 0.0,
                "aov": aov,
                "recency_days": 25.0 if bought else np.nan,
                "tenure_days": 300.0,
                "inactive_days": 11.0,
                "interaction_depth": 60,
                "community_actions": community,
                "event_days": 21,
                "refund_rate": 0.0 if bought else np.nan,
                "category_share": 0.55 if bought else np.nan,
                "top_category": "课程" if bought else None,
            })  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.insert(0, "user_id", [f"u{i:04d}" for i in rng.permutation(len(frame))])
    return frame.drop(columns="group"), frame["group"].to_numpy()


def words(description: str, lang: str) -> set[str]:
    return set(description.split("，" if lang == "zh" else ", "))


def phrase(feature: str, direction: str, lang: str) -> str:
    return PHRASES[feature][direction][0 if lang == "zh" else 1]


def test_three_obvious_groups_are_found_and_k_is_three():
    profile, truth = blobs()
    result = behaviour_clusters(profile, k_range=(2, 6))
    assert result.k == 3
    assert list(result.silhouette.index) == [2, 3, 4, 5, 6]
    assert result.silhouette.idxmax() == 3
    got = result.labels.reindex(profile["user_id"]).to_numpy()
    assert adjusted_rand_score(truth, got) == 1.0
    # ids by size: the 70 community users are cluster 0, the 30 never-buyers cluster 2
    for cluster, group in enumerate(SIZES):
        assert set(got[truth == group]) == {cluster}
    assert result.clusters["size"].tolist() == list(SIZES.values())
    assert result.clusters["share"].tolist() == pytest.approx([70 / 150, 50 / 150, 30 / 150])
    assert "k = 3" in result.reason_en and "k = 3" in result.reason_zh


def test_cluster_means_are_the_groups_raw_means():
    profile, truth = blobs()
    table = behaviour_clusters(profile, k_range=(2, 6)).clusters.set_index("cluster")
    for cluster, group in enumerate(SIZES):
        members = profile[truth == group]
        assert table.loc[cluster, "community_actions"] == pytest.approx(members["community_actions"].mean())
        assert table.loc[cluster, "tenure_days"] == pytest.approx(members["tenure_days"].mean())
    # purchase features are means over buyers; a cluster of never-buyers has none
    assert table.loc[1, "aov"] == pytest.approx(profile.loc[truth == "big_basket", "aov"].mean())
    assert np.isnan(table.loc[2, "aov"]) and table.loc[2, "buyer_share"] == 0.0


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_descriptions_name_what_sets_each_group_apart(lang):
    profile, _ = blobs()
    table = behaviour_clusters(profile, k_range=(2, 6), lang=lang).clusters
    got = [words(d, lang) for d in table["description"]]
    # among buyers, the community group has the high frequency and the low basket; its community
    # actions are high against everyone (the others have none: "quiet" is as distinct for them)
    assert got[0] == {phrase("community_actions", "high", lang), phrase("frequency", "high", lang),
                      phrase("aov", "low", lang)}
    assert got[1] == {phrase("community_actions", "low", lang), phrase("frequency", "low", lang),
                      phrase("aov", "high", lang)}
    assert table["description"][2].startswith(phrase("has_bought", "low", lang))
    assert got[2] == {phrase("has_bought", "low", lang), phrase("community_actions", "low", lang)}
    assert table["description"].is_unique
    assert (table[f"description_{lang}"] == table["description"]).all()


def test_equal_descriptions_get_a_distinguishing_word():
    z = np.zeros((3, len(FEATURES)))
    freq, aov, refund = (FEATURES.index(f) for f in ("frequency", "aov", "refund_rate"))
    z[0, freq], z[0, aov] = 2.0, -0.2
    z[1, freq], z[1, aov] = 2.0, 0.3  # the same strong word; the weak basket tells it apart
    z[2, refund] = 0.1  # nothing strong
    ranked = [[(FEATURES[j], "high" if c[j] > 0 else "low") for j in np.argsort(-np.abs(c), kind="stable")
               if FEATURES[j] != "has_bought"] for c in z]  # buyers: has_bought is no word (as in _describe)
    got = _phrases(ranked, z)
    assert got[0] == ("高频", "frequent")
    assert got[1] == ("高频，高客单", "frequent, high basket")
    assert got[2] == ("接近平均", "close to average")


def test_silhouettes_agree_with_scikit_learn():
    """One pass over the distances for several labellings = scikit-learn's pairwise one, each
    (a singleton cluster included: its point scores 0, Rousseeuw 1987)."""
    rng = np.random.default_rng(7)
    x = np.vstack([rng.normal(c, 1.0, size=(200, 4)) for c in (0.0, 3.0, 6.0)])
    labelings = [np.repeat([0, 1, 2], 200), rng.integers(0, 4, size=600), np.r_[np.zeros(599, int), 1]]
    got = silhouettes(x, labelings, chunk=97)  # a block size that does not divide the rows
    assert got == pytest.approx([silhouette_score(x, labels) for labels in labelings], abs=1e-10)


def test_same_data_same_labels_and_row_order_is_no_input():
    profile, _ = blobs()
    first = behaviour_clusters(profile, random_state=3)
    again = behaviour_clusters(profile, random_state=3)
    shuffled = behaviour_clusters(profile.sample(frac=1.0, random_state=1), random_state=3)
    pd.testing.assert_series_equal(first.labels, again.labels)
    pd.testing.assert_series_equal(first.labels, shuffled.labels)
    pd.testing.assert_frame_equal(first.clusters, shuffled.clusters)


def test_other_random_state_gives_the_same_partition():
    profile, _ = blobs()
    first = behaviour_clusters(profile, k=3, random_state=0)
    other = behaviour_clusters(profile, k=3, random_state=12345)
    # ids are ordered by size, so on separated groups even the ids agree
    pd.testing.assert_series_equal(first.labels, other.labels)


def test_a_sample_smaller_than_the_users_still_finds_the_groups():
    profile, truth = blobs()
    result = behaviour_clusters(profile, k_range=(2, 6), sample=60)
    assert result.k == 3
    assert "60" in result.reason_en
    assert adjusted_rand_score(truth, result.labels.reindex(profile["user_id"]).to_numpy()) == 1.0


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"k": 1}, "k = 1"),
        ({"k": 150}, "k = 150"),
        ({"k": 2.5}, "k = 2.5"),
        ({"k_range": (1, 4)}, "k_range"),
        ({"k_range": (5, 3)}, "k_range"),
        ({"sample": 2}, "sample"),
        ({"k": 5, "sample": 5}, "sample = 5"),
        ({"lang": "fr"}, "lang"),
    ],
)
def test_bad_arguments_are_named(options, argument):
    profile, _ = blobs()
    with pytest.raises(InputError, match=argument):
        behaviour_clusters(profile, **options)


def test_no_users_or_missing_columns_are_refused():
    profile, _ = blobs()
    with pytest.raises(InputError, match="profile has 0 users"):
        behaviour_clusters(profile.iloc[:0])
    with pytest.raises(InputError, match="community_actions"):
        behaviour_clusters(profile.drop(columns="community_actions"))


# -- the simulated shop: archetypes with known membership --------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clusters")
    files = simulate_shop(4000, folder / "files", seed=1, end=END)
    path = folder / "shop.duckdb"
    with Workspace.open(path, settings=Settings()) as ws:
        for name, file in files.items():
            if name in CANONICAL:
                ws.load(name, file)
    truth = pd.read_parquet(files["truth"]).set_index("user_id")["archetype"]
    return path, truth


@pytest.mark.slow
def test_clusters_recover_the_simulated_archetypes(shop):
    """ARI against the six archetypes: 0.417, 0.401, 0.415 for simulator seeds 1, 2, 3 (4000
    users, random_state 0, k chosen = 7); the bar, 0.30, holds with a margin of 0.1."""
    path, truth = shop
    with Workspace.open(path, settings=Settings(), create=False) as ws:
        result = ws.clusters(END)
    ari = adjusted_rand_score(truth.reindex(result.labels.index), result.labels)
    assert ari > 0.30, f"ARI {ari:.3f}"
    # the browsers (never buy) are one cluster, described as never-buyers
    clusters = result.labels[truth.reindex(result.labels.index) == "browser"]
    main = clusters.value_counts().idxmax()
    assert (clusters == main).mean() > 0.9
    assert result.clusters.loc[main, "description_en"].startswith("never bought")
    assert result.clusters["description_en"].is_unique and result.clusters["description_zh"].is_unique


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_each_users_cluster(shop, tmp_path):
    path, truth = shop
    out = tmp_path / "聚类.xlsx"
    got = CliRunner().invoke(app, ["clusters", "--workspace", str(path), "--k", "4", "--lang", "zh",
                                   "--out", str(out)], catch_exceptions=False)  # fmt: skip
    assert got.exit_code == 0, got.output
    assert "行为聚类" in got.output and "k = 4" in got.output
    shown = [line for line in got.output.splitlines() if str(out) not in line]
    assert max(cell_len(line) for line in shown) <= 80  # display cells: a Chinese character is two
    written = pd.read_excel(out, engine="openpyxl")
    assert list(written.columns) == ["用户ID", "群", "特征描述"]
    assert len(written) == len(truth) and set(written["群"]) == {0, 1, 2, 3}
