"""Synthetic data streams the simulated devices see (numpy only): labelled sentences on a few topics,
for text devices learning a classifier head online."""

from __future__ import annotations

import numpy as np

TOPICS = {
    "weather": ["Heavy {w} is expected over the {p} tonight.", "The forecast for {d} says {w} and strong winds.",
                "Temperatures will drop after the {w} clears from the {p}.", "{d} will bring {w} to most of the {p}."],
    "sports": ["The {t} won the match on {d} after extra time.", "Our {t} signed a new striker before the {e}.",
               "The coach of the {t} praised the defence after the {e}.", "Fans of the {t} celebrated the {e} all night."],
    "cooking": ["Add the {f} to the pan and stir for {n} minutes.", "This recipe needs {n} grams of {f} and some salt.",
                "Bake the {f} at {n} degrees until golden.", "Chop the {f} finely before you add it to the sauce."],
    "finance": ["Shares of the {c} fell {n} percent on {d}.", "The {c} reported higher profits for the quarter.",
                "Investors sold {c} bonds after the rate decision.", "The {c} will pay a dividend of {n} cents on {d}."],
}
FILLS = {"w": ["rain", "snow", "fog", "sunshine", "hail", "thunder"], "p": ["coast", "north", "valley", "mountains"],
         "d": ["Monday", "Friday", "the weekend", "Sunday"], "t": ["home team", "visitors", "club", "national side"],
         "e": ["final", "derby", "cup tie", "season opener"], "f": ["onions", "carrots", "garlic", "salmon", "potatoes"],
         "n": ["3", "12", "180", "200", "5"], "c": ["bank", "carmaker", "airline", "retailer"]}


def text_stream(rng: np.random.Generator, n: int, classes: list[str]) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        topic = classes[int(rng.integers(len(classes)))]
        template = TOPICS[topic][int(rng.integers(len(TOPICS[topic])))]
        out.append((template.format(**{k: v[int(rng.integers(len(v)))] for k, v in FILLS.items()}), topic))
    return out


