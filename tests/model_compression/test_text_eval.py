"""WordSim-353 from gensim's test data, and the word-pair Spearman it is scored with."""

import numpy as np
import pytest

from model_compression.datasets.text import load_wordsim
from model_compression.evaluate.embedding import pair_spearman


def test_wordsim353_has_353_scored_pairs():
    ws = load_wordsim()
    assert len(ws.pairs) == len(ws.human) == 353
    assert ws.pairs[0] == ("love", "sex") and ws.human[0] == pytest.approx(6.77)
    assert ws.human.min() >= 0.0 and ws.human.max() <= 10.0


def test_pair_spearman_ranks_cosines_against_human_scores():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 8))
    noise = rng.standard_normal((20, 8))
    mix = np.linspace(0.0, 1.0, 20)[:, None]  # pair i: b = a mixed with i/19 noise
    b = (1 - mix) * a + mix * noise
    human = np.linspace(10.0, 0.0, 20)  # the least mixed pairs are the most similar
    assert pair_spearman(a, b, human) > 0.9
    assert pair_spearman(a, b, -human) < -0.9
    assert pair_spearman(a, a, human) == 0.0  # all cosines 1: no ranking


def test_a_malformed_wordsim_file_is_named(tmp_path):
    bad = tmp_path / "ws.tsv"
    bad.write_text("# header\nlove\tsex\n")
    with pytest.raises(ValueError, match="expected 3 tab-separated fields"):
        load_wordsim(bad)
