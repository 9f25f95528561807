"""The nine WM-811K failure-pattern classes and reference class counts, and the eight labels of
MixedWM38's mixed-type (multi-label) task."""

CLASS_NAMES: tuple[str, ...] = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Random",
    "Scratch",
    "none",
)
NUM_CLASSES = len(CLASS_NAMES)
NONE_INDEX = CLASS_NAMES.index("none")
CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}

# Labeled counts of the full WM-811K (LSWMD.pkl): the default target prior for
# prevalence-corrected metrics and the default class mix of the synthetic data.
WM811K_FULL_COUNTS: dict[str, int] = {
    "Center": 4294,
    "Donut": 555,
    "Edge-Loc": 5189,
    "Edge-Ring": 9680,
    "Loc": 3593,
    "Near-full": 149,
    "Random": 866,
    "Scratch": 1193,
    "none": 147431,
}

# MixedWM38's multi-label targets, in the order of its label vectors (and of the real file's
# ``label_names``): a map may carry several (wafer.mixed.labels: pattern codes).
MIXED_LABELS: tuple[str, ...] = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Scratch",
    "Random",
)
