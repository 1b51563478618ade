"""The 133 COCO panoptic categories (80 things, 53 stuff), for a label map before the annotation files are there.

The things are COCO's 80 instance categories (ids 1..90); the stuff categories (ids 92..200) are those of
panopticapi's ``panoptic_coco_categories.json``, where several COCO-Stuff classes are merged ("-merged").
"""

from __future__ import annotations

from vitadapter.data.coco_datamodule import COCO_CATEGORIES

COCO_PANOPTIC_STUFF: tuple[tuple[int, str], ...] = (
    (92, "banner"), (93, "blanket"), (95, "bridge"), (100, "cardboard"), (107, "counter"), (109, "curtain"),
    (112, "door-stuff"), (118, "floor-wood"), (119, "flower"), (122, "fruit"), (125, "gravel"), (128, "house"),
    (130, "light"), (133, "mirror-stuff"), (138, "net"), (141, "pillow"), (144, "platform"), (145, "playingfield"),
    (147, "railroad"), (148, "river"), (149, "road"), (151, "roof"), (154, "sand"), (155, "sea"), (156, "shelf"),
    (159, "snow"), (161, "stairs"), (166, "tent"), (168, "towel"), (171, "wall-brick"), (175, "wall-stone"),
    (176, "wall-tile"), (177, "wall-wood"), (178, "water-other"), (180, "window-blind"), (181, "window-other"),
    (184, "tree-merged"), (185, "fence-merged"), (186, "ceiling-merged"), (187, "sky-other-merged"),
    (188, "cabinet-merged"), (189, "table-merged"), (190, "floor-other-merged"), (191, "pavement-merged"),
    (192, "mountain-merged"), (193, "grass-merged"), (194, "dirt-merged"), (195, "paper-merged"),
    (196, "food-other-merged"), (197, "building-other-merged"), (198, "rock-merged"), (199, "wall-other-merged"),
    (200, "rug-merged"),
)  # fmt: skip

# (category id, name, isthing), ids ascending: things first, as in the panoptic json
COCO_PANOPTIC_CATEGORIES: tuple[tuple[int, str, bool], ...] = tuple(
    [(cid, name, True) for cid, name in COCO_CATEGORIES] + [(cid, name, False) for cid, name in COCO_PANOPTIC_STUFF]
)
