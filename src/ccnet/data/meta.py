"""Class metadata of the supported datasets: names, official colours, ignore index and default scales.

Conventions used everywhere in ``ccnet.data``:

- ``classes``: tuple of ``K`` names; training label ``k`` is ``classes[k]``.
- ``palette``: list of ``K`` ``(R, G, B)`` triples (0..255), the colours of the official visualisations.
- ``ignore_index``: 255 in every mask handed to a model (void, boundaries, unlabelled pixels).
- ``train_scale`` / ``test_scale``: ``(long_side, short_side)`` bound of the keep-ratio resize: an image is
  scaled so that its long side is <= ``long_side`` and its short side <= ``short_side`` with one of them
  equal (mmsegmentation's ``scale=(2048, 1024), keep_ratio=True``). ``None`` means "keep the image size".
- ``crop_size``: ``(H, W)`` of the training crop.
- ``flip_pairs``: ``(a, b)`` class ids that trade places under a horizontal flip (LIP's left and right arm,
  leg and shoe: 14<->15, 16<->17, 18<->19); empty for datasets without handed classes (Cityscapes, ADE20K,
  VOC, CamVid). The training flip swaps these ids on the mirrored mask and flip testing swaps these logit
  channels on the mirrored pass (:func:`flip_permutation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255

Colour = tuple[int, int, int]
FlipPairs = tuple[tuple[int, int], ...]


def check_flip_pairs(
    pairs: Iterable[Sequence[int]], num_classes: int, where: str = "flip_pairs"
) -> FlipPairs:
    """``pairs`` as a tuple of ``(a, b)`` int pairs, checked: ids in ``0..num_classes-1``, ``a != b`` and
    no id in two pairs (a class has one mirror image).

    Raises:
        ValueError: naming ``where`` and the offending pair.
    """
    checked: list[tuple[int, int]] = []
    seen: set[int] = set()
    for pair in pairs:
        values = tuple(pair) if isinstance(pair, Sequence) and not isinstance(pair, str) else (pair,)
        if len(values) != 2 or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values
        ):
            raise ValueError(f"{where}: expected pairs of two class ids, got {pair!r}")
        a, b = int(values[0]), int(values[1])
        if not (0 <= a < num_classes and 0 <= b < num_classes):
            raise ValueError(f"{where}: pair ({a}, {b}) has an id outside 0..{num_classes - 1}")
        if a == b or {a, b} & seen:
            raise ValueError(f"{where}: pair ({a}, {b}) repeats a class (each class has one mirror class)")
        seen |= {a, b}
        checked.append((a, b))
    return tuple(checked)


def flip_permutation(num_classes: int, pairs: Iterable[Sequence[int]]) -> list[int]:
    """The class order after a horizontal flip: ``perm[k]`` is the class whose mirror image is ``k``
    (``perm[a] = b`` and ``perm[b] = a`` for each pair, ``perm[k] = k`` otherwise).

    Flip testing reorders the mirrored pass's logits as ``logits[:, perm]``; the training flip maps a label
    ``k`` to ``perm[k]``. The identity when there are no pairs.
    """
    perm = list(range(num_classes))
    for a, b in check_flip_pairs(pairs, num_classes):
        perm[a], perm[b] = b, a
    return perm


@dataclass(frozen=True)
class DatasetMeta:
    """Everything about a dataset that does not depend on where its files are."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[Colour, ...]
    train_scale: tuple[int, int] | None  # (long side, short side) bound; None = original size
    test_scale: tuple[int, int] | None
    crop_size: tuple[int, int]  # (H, W)
    ignore_index: int = IGNORE_INDEX
    flip_pairs: FlipPairs = ()  # class ids swapped by a horizontal flip (left <-> right)

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.palette):
            raise ValueError(f"{self.name}: {len(self.classes)} classes but {len(self.palette)} colours")
        object.__setattr__(
            self,
            "flip_pairs",
            check_flip_pairs(self.flip_pairs, len(self.classes), f"{self.name}: flip_pairs"),
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def voc_colormap(num_colours: int = 256) -> tuple[Colour, ...]:
    """The Pascal VOC colour map: the bits of the index spread over the high bits of R, G and B.

    Colour ``i`` takes bit ``3j`` of ``i`` as bit ``7-j`` of red, bit ``3j+1`` of green and ``3j+2`` of blue.
    """
    index = np.arange(num_colours)
    rgb = np.zeros((num_colours, 3), dtype=np.int64)
    for shift in range(8):  # eight groups of three bits at most (indices < 2**24)
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            rgb[:, channel] |= bit << (7 - shift)
    return tuple((int(r), int(g), int(b)) for r, g, b in rgb)


# --- Cityscapes --------------------------------------------------------------------------------------
# labelId of each of the 19 training classes, in trainId order (from the cityscapesscripts label table).
CITYSCAPES_TRAIN_ID_TO_LABEL_ID: tuple[int, ...] = (
    7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33,
)  # fmt: skip
CITYSCAPES_NUM_LABEL_IDS = 34  # labelIds PNGs hold 0..33; every id not listed above is ignored

CITYSCAPES = DatasetMeta(
    name="cityscapes",
    classes=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
        "bicycle",
    ),
    palette=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
        (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
    train_scale=(2048, 1024),
    test_scale=(2048, 1024),
    crop_size=(512, 1024),
)  # fmt: skip

# --- ADE20K (SceneParsing 150) ----------------------------------------------------------------------
_ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator",
    "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal",
    "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board",
    "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
# The 150 colours as one flat R, G, B sequence (the palette of the official / mmsegmentation visualisation).
_ADE20K_RGB = (
    120, 120, 120, 180, 120, 120, 6, 230, 230, 80, 50, 50, 4, 200, 3, 120, 120, 80, 140, 140, 140,
    204, 5, 255, 230, 230, 230, 4, 250, 7, 224, 5, 255, 235, 255, 7, 150, 5, 61, 120, 120, 70,
    8, 255, 51, 255, 6, 82, 143, 255, 140, 204, 255, 4, 255, 51, 7, 204, 70, 3, 0, 102, 200,
    61, 230, 250, 255, 6, 51, 11, 102, 255, 255, 7, 71, 255, 9, 224, 9, 7, 230, 220, 220, 220,
    255, 9, 92, 112, 9, 255, 8, 255, 214, 7, 255, 224, 255, 184, 6, 10, 255, 71, 255, 41, 10,
    7, 255, 255, 224, 255, 8, 102, 8, 255, 255, 61, 6, 255, 194, 7, 255, 122, 8, 0, 255, 20,
    255, 8, 41, 255, 5, 153, 6, 51, 255, 235, 12, 255, 160, 150, 20, 0, 163, 255, 140, 140, 140,
    250, 10, 15, 20, 255, 0, 31, 255, 0, 255, 31, 0, 255, 224, 0, 153, 255, 0, 0, 0, 255,
    255, 71, 0, 0, 235, 255, 0, 173, 255, 31, 0, 255, 11, 200, 200, 255, 82, 0, 0, 255, 245,
    0, 61, 255, 0, 255, 112, 0, 255, 133, 255, 0, 0, 255, 163, 0, 255, 102, 0, 194, 255, 0,
    0, 143, 255, 51, 255, 0, 0, 82, 255, 0, 255, 41, 0, 255, 173, 10, 0, 255, 173, 255, 0,
    0, 255, 153, 255, 92, 0, 255, 0, 255, 255, 0, 245, 255, 0, 102, 255, 173, 0, 255, 0, 20,
    255, 184, 184, 0, 31, 255, 0, 255, 61, 0, 71, 255, 255, 0, 204, 0, 255, 194, 0, 255, 82,
    0, 10, 255, 0, 112, 255, 51, 0, 255, 0, 194, 255, 0, 122, 255, 0, 255, 163, 255, 153, 0,
    0, 255, 10, 255, 112, 0, 143, 255, 0, 82, 0, 255, 163, 255, 0, 255, 235, 0, 8, 184, 170,
    133, 0, 255, 0, 255, 92, 184, 0, 255, 255, 0, 31, 0, 184, 255, 0, 214, 255, 255, 0, 112,
    92, 255, 0, 0, 224, 255, 112, 224, 255, 70, 184, 160, 163, 0, 255, 153, 0, 255, 71, 255, 0,
    255, 0, 163, 255, 204, 0, 255, 0, 143, 0, 255, 235, 133, 255, 0, 255, 0, 235, 245, 0, 255,
    255, 0, 122, 255, 245, 0, 10, 190, 212, 214, 255, 0, 0, 204, 255, 20, 0, 255, 255, 255, 0,
    0, 153, 255, 0, 41, 255, 0, 255, 204, 41, 0, 255, 41, 255, 0, 173, 0, 255, 0, 245, 255,
    71, 0, 255, 122, 0, 255, 0, 255, 184, 0, 92, 255, 184, 255, 0, 0, 133, 255, 255, 214, 0,
    25, 194, 194, 102, 255, 0, 92, 0, 255,
)  # fmt: skip

ADE20K = DatasetMeta(
    name="ade20k",
    classes=_ADE20K_CLASSES,
    palette=tuple(zip(_ADE20K_RGB[0::3], _ADE20K_RGB[1::3], _ADE20K_RGB[2::3], strict=True)),
    train_scale=(2048, 512),
    test_scale=(2048, 512),
    crop_size=(512, 512),
)

# --- Pascal VOC 2012 (+ SBD aug) --------------------------------------------------------------------
VOC = DatasetMeta(
    name="voc",
    classes=(
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
        "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
        "tvmonitor",
    ),
    palette=voc_colormap(21),
    train_scale=(2048, 512),
    test_scale=(2048, 512),
    crop_size=(512, 512),
)  # fmt: skip

# --- LIP (Look Into Person) -------------------------------------------------------------------------
LIP = DatasetMeta(
    name="lip",
    classes=(
        "Background", "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat", "Socks", "Pants",
        "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe",
        "Right-shoe",
    ),
    palette=(
        (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
        (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255),
        (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
    ),
    train_scale=(473, 473),
    test_scale=(473, 473),
    crop_size=(473, 473),
    flip_pairs=((14, 15), (16, 17), (18, 19)),  # left/right arm, leg, shoe
)  # fmt: skip

# --- CamVid (SegNet copy: 11 classes, label 11 = void) ----------------------------------------------
CAMVID_VOID_LABEL = 11
CAMVID = DatasetMeta(
    name="camvid",
    classes=(
        "sky", "building", "pole", "road", "sidewalk", "tree", "sign/symbol", "fence", "car", "pedestrian",
        "bicyclist",
    ),
    palette=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
    train_scale=(480, 360),
    test_scale=(480, 360),
    crop_size=(360, 480),
)  # fmt: skip

# --- the built-in context task (see ccnet.data.synthetic) -------------------------------------------
CONTEXT_MARKER_COLOURS: tuple[Colour, ...] = ((220, 40, 40), (40, 200, 40), (40, 60, 230))  # red, green, blue
CONTEXT = DatasetMeta(
    name="context",
    classes=("background", "red", "green", "blue"),
    palette=((0, 0, 0), *CONTEXT_MARKER_COLOURS),
    train_scale=None,
    test_scale=None,
    crop_size=(64, 64),
)

# --- the built-in handed task (see ccnet.data.synthetic.HandedDataset): a left/right class pair -----------
HANDED = DatasetMeta(
    name="handed",
    classes=("background", "left object", "right object", "body"),
    palette=((0, 0, 0), (40, 200, 40), (40, 60, 230), (220, 40, 40)),
    train_scale=None,
    test_scale=None,
    crop_size=(64, 64),
    flip_pairs=((1, 2),),  # a mirrored "left object" is a right object
)

# --- FoodSeg103 (104 classes: background + 103 ingredients, background scored) -------------------------
FOODSEG103 = DatasetMeta(
    name="foodseg103",
    classes=(
        "background", "candy", "egg tart", "french fries", "chocolate", "biscuit", "popcorn", "pudding",
        "ice cream", "cheese butter", "cake", "wine", "milkshake", "coffee", "juice", "milk", "tea", "almond",
        "red beans", "cashew", "dried cranberries", "soy", "walnut", "peanut", "egg", "apple", "date",
        "apricot", "avocado", "banana", "strawberry", "cherry", "blueberry", "raspberry", "mango", "olives",
        "peach", "lemon", "pear", "fig", "pineapple", "grape", "kiwi", "melon", "orange", "watermelon",
        "steak", "pork", "chicken duck", "sausage", "fried meat", "lamb", "sauce", "crab", "fish",
        "shellfish", "shrimp", "soup", "bread", "corn", "hamburg", "pizza", "hanamaki baozi",
        "wonton dumplings", "pasta", "noodles", "rice", "pie", "tofu", "eggplant", "potato", "garlic",
        "cauliflower", "tomato", "kelp", "seaweed", "spring onion", "rape", "ginger", "okra", "lettuce",
        "pumpkin", "cucumber", "white radish", "carrot", "asparagus", "bamboo shoots", "broccoli",
        "celery stick", "cilantro mint", "snow peas", "cabbage", "bean sprouts", "onion", "pepper",
        "green beans", "French beans", "king oyster mushroom", "shiitake", "enoki mushroom",
        "oyster mushroom", "white button mushroom", "salad", "other ingredients",
    ),
    palette=voc_colormap(104),  # no official colours: the VOC colour map (background black)
    train_scale=(2048, 1024),
    test_scale=(2048, 1024),
    crop_size=(512, 1024),
)  # fmt: skip

KNOWN_METAS: tuple[DatasetMeta, ...] = (CITYSCAPES, ADE20K, VOC, LIP, CAMVID, CONTEXT, HANDED, FOODSEG103)


def flip_pairs_for_classes(classes: Sequence[str] | None) -> FlipPairs:
    """The flip pairs of the known dataset whose class names are exactly ``classes`` (e.g. from a weights
    file's or an ONNX file's metadata), else ``()``: weights trained on LIP flip-test with LIP's pairs."""
    if not classes:
        return ()
    names = tuple(str(c) for c in classes)
    for meta in KNOWN_METAS:
        if meta.classes == names:
            return meta.flip_pairs
    return ()
