"""Brush-stroke sizes: for each option, the longer side (px) the network paints at. Its
brush strokes have a fixed size in pixels, so a smaller working size gives bigger strokes
on the photo. Why bold is the default, and timings: docs/design/stroke.md.

Plain values, no imports: the models, forms, API and imaging all read them.
"""

STROKE_WORKING_SIDES = {"fine": 1024, "medium": 768, "bold": 512}
DEFAULT_STROKE = "bold"
