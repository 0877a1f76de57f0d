"""Instance-based classification (Ouchi et al. 2020): p(y | x) from similarities to training instances, and the
training instances behind each answer."""
import math

import pytest
import torch

from koba_ros.nlp.instance_based import InstanceConfig, class_log_probs, fit_instance_based, predict
from koba_ros.nlp.text_classifier import encode_texts
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)


def test_class_probabilities_follow_the_equation():
    scores = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0]])
    memory_labels = torch.tensor([0, 1, 1, 2])
    log_p = class_log_probs(scores, memory_labels, classes=4)
    for b in range(2):
        denominator = sum(math.exp(v) for v in scores[b].tolist())
        for y in range(3):
            numerator = sum(math.exp(v) for v, lab in zip(scores[b].tolist(), memory_labels.tolist(), strict=True)
                            if lab == y)
            assert log_p[b, y].item() == pytest.approx(math.log(numerator / denominator), abs=1e-6)
        assert log_p[b, 3].item() == float("-inf")  # no memory instance of class 3
    assert torch.allclose(log_p.exp().sum(1), torch.ones(2))


def test_answers_come_with_the_training_sentences_behind_them():
    train = ["put the duck in the top left box", "move the rubber duck to the lower right box", "the yellow duck",
             "put the red block in the top left box", "move the red cube to the lower right box", "the red block",
             "put the blue cup in the top left box", "move the coffee cup to the lower right box", "the blue cup"]
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    config = InstanceConfig(buckets=1024, embed=32, hidden=32, epochs=40, batch=4, memory=8)
    x_train = encode_texts(train, config.buckets)
    encoder = fit_instance_based(x_train, labels, 3, config, seed=0)
    test = ["place the rubber duck into the top right box", "pick up the red cube", "the coffee cup please"]
    predicted, because = predict(encoder, encode_texts(test, config.buckets), x_train, labels, 3, explain=2)
    assert predicted.tolist() == [0, 1, 2]
    assert because.shape == (3, 2)
    assert all(labels[because[i, 0]] == predicted[i] for i in range(3))  # the nearest example carries the answer
    with pytest.raises(ValueError, match="at least two"):
        fit_instance_based(x_train[:1], labels[:1], 3, config)
